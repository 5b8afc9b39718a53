"""Balance by groups at measured levels, checked on rendered audio.

Expected levels are typed in from their sources (the MUSDB18 averages in
../shared/data/reference_stats: relative to vocals, drums -3.4, bass +1.0, other -0.4
LU; the jazz preset's moves), never read back from the code under test.
"""

import numpy as np
import pytest
from signals import pink_noise
from test_loudness import ebur128

from automix.io.audio import Audio
from automix.measure.analyzer import analyze
from automix.mix.balancer import StemInfo, balance, choose_lead, masking_cuts
from automix.mix.reference_levels import MUSDB18_RELATIVE_LU, compare_to_reference
from automix.mix.renderer import render
from automix.mix.roles import lead_features, role_from_name
from automix.presets import load_preset

RATE = 44100
POP, JAZZ = load_preset("pop"), load_preset("jazz")
rng = np.random.default_rng(5)


def hits(times_s, seconds, decay_s=0.08, centre_hz=None, seed=0) -> np.ndarray:
    """Decaying noise bursts (a drum part), mono."""
    r = np.random.default_rng(seed)
    n = int(seconds * RATE)
    x = np.zeros(n)
    length = int(0.3 * RATE)
    burst = r.standard_normal(length) * np.exp(-np.arange(length) / (decay_s * RATE))
    if centre_hz:
        burst = np.convolve(burst, np.sin(2 * np.pi * centre_hz * np.arange(200) / RATE) * np.hanning(200), "same")
    for t in times_s:
        start = int(t * RATE)
        end = min(n, start + length)
        x[start:end] += burst[: end - start]
    return (x / np.abs(x).max() * 0.5).astype(np.float32)[None, :]


def melody(seconds, base_hz=330.0, seed=0) -> np.ndarray:
    """A monophonic line of harmonic notes (a voice or a horn), mono."""
    r = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    note_s = 0.4
    freqs = base_hz * 2 ** (r.integers(0, 8, int(seconds / note_s) + 1) / 12)
    f = freqs[(t / note_s).astype(int)]
    phase = 2 * np.pi * np.cumsum(f) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.2 * x * (0.6 + 0.4 * np.abs(np.sin(np.pi * t / note_s)))).astype(np.float32)[None, :]


def chords(seconds, seed=0) -> np.ndarray:
    """Sparse low chords that decay (comping), stereo."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = np.zeros(n)
    for start in np.arange(0, seconds, 1.2):
        for f in (130.8, 164.8, 196.0):
            seg = t >= start
            x[seg] += np.sin(2 * np.pi * f * (t[seg] - start)) * np.exp(-(t[seg] - start) / 0.25)
    return (0.15 * np.stack([x, 0.8 * x])).astype(np.float32)


def infos(stems: dict[str, np.ndarray], roles: dict[str, str] | None = None, measured_lead=True) -> list[StemInfo]:
    out = []
    for name, x in stems.items():
        analysis = analyze(Audio(x, RATE))
        role = (roles or {}).get(name) or role_from_name(name).role
        out.append(StemInfo(name, role, "test", analysis,
                            lead_features=lead_features(x, RATE, analysis) if measured_lead else None))
    return out


def render_song(stems: dict[str, np.ndarray], preset, roles=None):
    stem_infos = infos(stems, roles)
    plan = balance(stem_infos, preset)
    result = render([stems[s.name] for s in stem_infos], RATE, plan, keep_stems=True, mastering_follows=True)
    return plan, {s.name: r.samples for s, r in zip(plan.stems, result.stems)}


def group_lu(rendered: dict[str, np.ndarray], names) -> float:
    return ebur128(sum(rendered[n] for n in names), RATE)[0]


SECONDS = 4.0
KIT = {
    "kick": hits(np.arange(0, SECONDS, 0.5), SECONDS, 0.1, 60, 1),
    "snare": hits(np.arange(0.25, SECONDS, 0.5), SECONDS, 0.08, 200, 2),
    "hihat": hits(np.arange(0, SECONDS, 0.125), SECONDS, 0.02, None, 3),
    "tom": hits([1.0, 3.0], SECONDS, 0.2, 100, 4),
    "oh_l": hits(np.arange(0, SECONDS, 0.125), SECONDS, 0.05, None, 5),
    "oh_r": hits(np.arange(0.0625, SECONDS, 0.125), SECONDS, 0.05, None, 6),
    "room": hits(np.arange(0, SECONDS, 0.25), SECONDS, 0.3, None, 7),
    "perc": hits(np.arange(0.1, SECONDS, 0.33), SECONDS, 0.03, None, 8),
}


def test_musdb_style_stems_land_on_the_measured_averages():
    stems = {"vocals": melody(SECONDS, seed=1), "drums": sum(KIT.values()) * np.float32(0.3),
             "bass": melody(SECONDS, 55.0, seed=2), "other": chords(SECONDS)}
    _, rendered = render_song(stems, POP)
    vocal = group_lu(rendered, ["vocals"])
    assert group_lu(rendered, ["drums"]) - vocal == pytest.approx(-3.4, abs=0.3)
    assert group_lu(rendered, ["bass"]) - vocal == pytest.approx(1.0, abs=0.3)
    assert group_lu(rendered, ["other"]) - vocal == pytest.approx(-0.4, abs=0.3)
    assert MUSDB18_RELATIVE_LU == pytest.approx({"vocals": 0.0, "drums": -3.45, "bass": 1.0, "other": -0.44}, abs=0.01)


def test_eight_drum_stems_are_no_louder_than_one():
    one = {"vocal": melody(SECONDS, seed=1), "drums": sum(KIT.values()) * np.float32(0.3)}
    eight = {"vocal": melody(SECONDS, seed=1), **KIT}
    _, rendered_one = render_song(one, POP)
    _, rendered_eight = render_song(eight, POP)
    drums_one = group_lu(rendered_one, ["drums"]) - group_lu(rendered_one, ["vocal"])
    drums_eight = group_lu(rendered_eight, list(KIT)) - group_lu(rendered_eight, ["vocal"])
    assert drums_eight == pytest.approx(drums_one, abs=1.0)
    assert drums_eight == pytest.approx(-3.4, abs=0.5)
    # inside the kit, kick and snare carry it, room and hats sit under them
    kick = ebur128(rendered_eight["kick"], RATE)[0]
    assert ebur128(rendered_eight["room"], RATE)[0] < kick - 3
    assert ebur128(rendered_eight["hihat"], RATE)[0] < kick - 3


def test_jazz_trio_piano_leads_and_drums_sit_far_under_it():
    stems = {"piano": np.concatenate([melody(SECONDS, 440.0, seed=4), melody(SECONDS, 440.0, seed=4)]) + chords(SECONDS),
             "bass": melody(SECONDS, 55.0, seed=2), "drums": sum(KIT.values()) * np.float32(0.3)}
    plan, rendered = render_song(stems, JAZZ)
    assert plan.lead == "piano" and "no vocal" in plan.lead_rule
    piano = ebur128(rendered["piano"], RATE)[0]
    # jazz practice (presets/jazz.toml): drums well under the piano, which leads
    assert ebur128(rendered["drums"], RATE)[0] < piano - 5
    assert ebur128(rendered["bass"], RATE)[0] < piano - 1


def test_without_a_vocal_the_lead_is_found_from_the_audio():
    # Both named neutrally with the same role: only the sound says which one leads.
    stems = {"take1": chords(SECONDS), "take2": np.concatenate([melody(SECONDS, 660.0, seed=7)] * 2),
             "drums": sum(KIT.values()) * np.float32(0.3)}
    roles = {"take1": "keys", "take2": "keys"}
    lead, rule = choose_lead(infos(stems, roles))
    assert lead == "take2"
    assert "continuity" in rule and "presence" in rule and "melodic" in rule and "measured" in rule
    lead, rule = choose_lead(infos(stems, roles, measured_lead=False))  # estimated from the analysis alone
    assert lead == "take2" and "estimated" in rule
    # and the name says so when there is one
    assert choose_lead(infos({"a_lead_synth": chords(SECONDS), "pad": chords(SECONDS, 1)}, {"a_lead_synth": "synth"}))[0] == "a_lead_synth"


def test_plan_does_not_depend_on_input_levels():
    stems = {"vocal": melody(SECONDS, seed=1), "kick": KIT["kick"], "gtr": chords(SECONDS)}
    quiet = {n: x * np.float32(10 ** (rng.uniform(-12, 12) / 20)) for n, x in stems.items()}
    a, b = balance(infos(stems), POP), balance(infos(quiet), POP)
    for pa, pb in zip(a.stems, b.stems):
        assert pa.target_lufs == pytest.approx(pb.target_lufs, abs=1e-6) and pa.pan == pb.pan
        assert pa.group == pb.group


def test_masking_cut_never_deeper_than_the_preset_allows_on_rendered_audio():
    # An accompaniment 20 dB hotter than the lead in the lead's own bands.
    lead = melody(SECONDS, 500.0, seed=3)
    accompaniment = np.concatenate([melody(SECONDS, 500.0, seed=3)] * 2) * np.float32(10.0)
    stem_infos = infos({"vocal": lead, "keys": accompaniment})
    plan = balance(stem_infos, POP)
    keys_plan = next(p for p in plan.stems if p.name == "keys")
    assert keys_plan.eq_cuts and all(-POP.mix.masking_max_cut_db <= c.gain_db < 0 for c in keys_plan.eq_cuts)
    cuts = masking_cuts(stem_infos[1], 30.0, stem_infos[0], 0.0, 4.0)
    assert cuts and min(c.gain_db for c in cuts) >= -4.0
    # on the rendered stem: at the cut's centre, against the same stem rendered without cuts
    result = render([lead, accompaniment], RATE, plan, keep_stems=True, mastering_follows=True)
    from dataclasses import replace
    flat = replace(plan, stems=tuple(replace(p, eq_cuts=()) for p in plan.stems))
    reference = render([lead, accompaniment], RATE, flat, keep_stems=True, mastering_follows=True)
    wet, dry = result.stems[1].samples[0], reference.stems[1].samples[0]
    spectrum = lambda x: np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(wet.size, 1 / RATE)
    for cut in keys_plan.eq_cuts:
        band = (freqs > cut.frequency_hz / 2 ** (1 / 12)) & (freqs < cut.frequency_hz * 2 ** (1 / 12))
        far = (freqs > 8000) & (freqs < 12000)
        depth = 10 * np.log10(spectrum(wet)[band].sum() / spectrum(dry)[band].sum()) \
            - 10 * np.log10(spectrum(wet)[far].sum() / spectrum(dry)[far].sum())
        assert -POP.mix.masking_max_cut_db - 0.5 <= depth < 0


def test_compare_to_reference_says_darker_or_brighter():
    white = np.random.default_rng(1).standard_normal((2, 3 * RATE)).astype(np.float32) * np.float32(0.05)
    brown = np.cumsum(np.random.default_rng(2).standard_normal((2, 3 * RATE)), axis=1)
    brown = (brown - brown.mean(axis=1, keepdims=True)).astype(np.float32)
    brown *= np.float32(0.1 / np.abs(brown).max())
    groups = POP.groups.as_dict()
    assert "brighter" in compare_to_reference(analyze(Audio(white, RATE)), groups)["verdict"]
    assert "darker" in compare_to_reference(analyze(Audio(brown, RATE)), groups)["verdict"]
    mono_ish = pink_noise(2.0, RATE, channels=1).astype(np.float32) * np.float32(0.1)
    result = compare_to_reference(analyze(Audio(np.concatenate([mono_ish, mono_ish]), RATE)), groups,
                                  samples=np.concatenate([mono_ish, mono_ish]))
    assert result["panning_similarity"] == pytest.approx(1.0, abs=1e-6) and "narrower" in result["verdict"]



def test_an_8_khz_mix_is_compared_without_a_nan_in_its_report():
    """An 8 kHz output ends at 4 kHz: it holds no band of the 4-20 kHz region, which is
    then reported as not measured (JSON null), not as 0 / 0 (NaN, which is not JSON)."""
    import json
    import warnings

    from automix.presets import load_preset

    rate = 8000
    noise = np.random.default_rng(5).standard_normal((2, 4 * rate)).astype(np.float32) * np.float32(0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0 / 0 would warn
        compared = compare_to_reference(analyze(Audio(noise, rate)), load_preset("pop").groups.as_dict())
    assert compared["high_db"] is None and compared["low_db"] is not None and compared["mid_db"] is not None
    assert "not compared" in compared["verdict"]
    json.loads(json.dumps(compared, allow_nan=False))
