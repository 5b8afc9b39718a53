"""Reference mastering (issue 12, item 1): the master's balance moves toward a reference's.

The spectra that judge the result are measured here with scipy's Welch estimate, not
with the code under test; the references are pink noise shaped with smooth shelves
whose sizes are known.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal
from signals import shelved_noise

from automix.errors import AutomixError
from automix.io.audio import Audio
from automix.master import reference as refmod
from automix.master.reference import (
    MidSideSpectrumMeter,
    SideEQ,
    analyze_reference,
    reference_glue,
    reference_plr_db,
    reference_side_move,
    reference_tonal_move,
    reference_width,
)
from automix.master.stereo import shape_stereo
from automix.master.tonal import apply_eq, band_uncertainty_db, tonal_balance
from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ, analyze
from automix.presets import load_preset

MIX_RATE = 44100
SETTINGS = load_preset("pop").master
JUDGED = np.array([c for c in THIRD_OCTAVE_CENTRES_HZ if 40 * 0.99 <= c <= 16000 * 1.01])


def stereo(mid: np.ndarray, side: np.ndarray, level: float = 0.1) -> np.ndarray:
    return (level * np.stack([mid + side, mid - side])).astype(np.float32)


def write(path, samples: np.ndarray, rate: int) -> str:
    sf.write(str(path), samples.T, rate, subtype="FLOAT")
    return str(path)


def band_shape_db(x: np.ndarray, rate: int, *, side: bool = False) -> np.ndarray:
    """Third-octave levels of the mid (or side) over 40 Hz-16 kHz, by Welch (independent)."""
    part = 0.5 * (x[0] - x[1]) if side else x.mean(axis=0)
    f, p = signal.welch(part.astype(np.float64), rate, nperseg=8192 * max(1, round(rate / 48000)))
    return np.array([10 * np.log10(p[(f >= c / 2 ** (1 / 6)) & (f < c * 2 ** (1 / 6))].sum()) for c in JUDGED])


def distance_db(a: np.ndarray, b: np.ndarray) -> float:
    """RMS dB difference between two shapes (overall level removed)."""
    d = a - b
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


@pytest.fixture(scope="module")
def mix():
    """A neutral stereo mix: pink mid, pink side 10 dB under it, 9 s at 44.1 kHz."""
    samples = stereo(shelved_noise(9, MIX_RATE, 0, 0, 1), 10 ** (-10 / 20) * shelved_noise(9, MIX_RATE, 0, 0, 2))
    analysis = analyze(Audio(samples, MIX_RATE))
    meter = MidSideSpectrumMeter(MIX_RATE, 2)
    meter.add(samples)
    mid_db, side_db = meter.spectra_db()
    uncertainty = band_uncertainty_db(samples, MIX_RATE, len(analysis.band_levels_db))
    return samples, analysis, mid_db, side_db, uncertainty


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Dark and bright stereo references at 48 kHz (side 5 dB under the mid: wider than
    the mix), and a dark mono one at 44.1 kHz."""
    folder = tmp_path_factory.mktemp("refs")
    out = {}
    for name, low, high in (("dark", 4.0, -6.0), ("bright", -4.0, 6.0)):
        samples = stereo(shelved_noise(9, 48000, low, high, 7), 10 ** (-5 / 20) * shelved_noise(9, 48000, low, high, 8))
        out[name] = (write(folder / f"{name}.wav", samples, 48000), samples, 48000)
    mono = (0.1 * shelved_noise(8, 44100, 4.0, -6.0, 9))[None, :].astype(np.float32)
    out["dark mono"] = (write(folder / "dark_mono.wav", mono, 44100), np.concatenate([mono, mono]), 44100)
    return out


def distances(mix, path, ref_samples, ref_rate):
    samples, analysis, mid_db, _side_db, uncertainty = mix
    reference = analyze_reference(path)
    move = reference_tonal_move(analysis, reference, SETTINGS, mix_mid_db=mid_db, uncertainty_db=uncertainty)
    target = band_shape_db(ref_samples, ref_rate)
    result = {}
    for amount in (0.0, 0.5, 1.0):
        scaled = replace(move, gains_db=tuple(g * amount for g in move.gains_db))  # as plan_chain scales it
        result[amount] = distance_db(band_shape_db(apply_eq(samples, MIX_RATE, scaled), MIX_RATE), target)
    return result, move


@pytest.mark.parametrize("name", ["dark", "bright", "dark mono"])
def test_balance_moves_toward_the_reference(mix, references, name):
    """The issue's check: distance at least halved at amount 1, about half that at 0.5,
    unchanged at 0 (measured on the equalised audio, by Welch)."""
    path, ref_samples, ref_rate = references[name]
    d, move = distances(mix, path, ref_samples, ref_rate)
    assert d[0.0] > 3.0  # the references really differ from the mix
    assert d[1.0] <= 0.5 * d[0.0], d
    reduction_half, reduction_full = d[0.0] - d[0.5], d[0.0] - d[1.0]
    assert 0.35 * reduction_full <= reduction_half <= 0.7 * reduction_full, d
    assert max(abs(g) for g in move.gains_db) <= refmod.targets.REFERENCE_MAX_DB + 1e-9
    assert "reference" in move.reason


def test_direction_follows_the_reference(mix, references):
    _samples, analysis, mid_db, _s, unc = mix
    dark = reference_tonal_move(analysis, analyze_reference(references["dark"][0]), SETTINGS, mix_mid_db=mid_db, uncertainty_db=unc)
    bright = reference_tonal_move(analysis, analyze_reference(references["bright"][0]), SETTINGS, mix_mid_db=mid_db, uncertainty_db=unc)
    top = [k for k, c in enumerate(dark.centres_hz) if 6000 <= c <= 12000]
    assert all(dark.gains_db[k] < -1.0 for k in top) and all(bright.gains_db[k] > 1.0 for k in top)


def test_independent_of_the_reference_level_and_deterministic(mix, references, tmp_path):
    _samples, analysis, mid_db, _s, unc = mix
    path, ref_samples, rate = references["bright"]
    quiet = write(tmp_path / "quiet.wav", ref_samples * np.float32(10 ** (-17 / 20)), rate)
    loud = analyze_reference(path)
    soft = analyze_reference(quiet)
    assert soft.integrated_lufs == pytest.approx(loud.integrated_lufs - 17.0, abs=0.05)
    a = reference_tonal_move(analysis, loud, SETTINGS, mix_mid_db=mid_db, uncertainty_db=unc)
    b = reference_tonal_move(analysis, soft, SETTINGS, mix_mid_db=mid_db, uncertainty_db=unc)
    np.testing.assert_allclose(a.gains_db, b.gains_db, atol=0.02)
    assert reference_width(analysis.stereo_width, loud)[0] == pytest.approx(reference_width(analysis.stereo_width, soft)[0], abs=1e-3)
    assert analyze_reference(path) == loud  # same file, same numbers


def test_reference_of_another_rate_and_channels(references):
    ref48 = analyze_reference(references["dark"][0])
    mono = analyze_reference(references["dark mono"][0])
    assert (ref48.sample_rate, ref48.channels, len(ref48.mid_bands_db)) == (48000, 2, 30)
    assert mono.is_mono and mono.side_bands_db is None and mono.stereo_width == 0.0
    assert reference_width(0.09, mono) == (1.0, "width kept: the reference dark_mono.wav is mono")
    # the two dark references, one stereo at 48 kHz, one mono at 44.1 kHz, have the same mid shape
    both = [k for k, c in enumerate(THIRD_OCTAVE_CENTRES_HZ[:29]) if 63 <= c <= 12500]
    diff = np.array(ref48.mid_bands_db)[both] - np.array(mono.mid_bands_db)[both]
    assert np.abs(diff - diff.mean()).max() < 1.5  # two noise draws of 8-9 s: +-1 dB per band at 100 Hz


def test_band_limited_reference_is_not_copied_above_its_bandwidth(mix, tmp_path):
    """An MP3-like reference low-passed at 11 kHz: the mix's top is left alone, not cut."""
    _samples, analysis, mid_db, _s, unc = mix
    rate = 44100
    x = shelved_noise(9, rate, 0, 0, 21)
    sos = signal.butter(12, 11000, fs=rate, output="sos")
    low_passed = signal.sosfilt(sos, x)
    path = write(tmp_path / "lp.wav", stereo(low_passed, 0.3 * low_passed[::-1].copy()), rate)
    reference = analyze_reference(path)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: len(reference.mid_bands_db)])
    assert all(math.isnan(v) for v, c in zip(reference.mid_bands_db, centres) if c >= 16000)
    move = reference_tonal_move(analysis, reference, SETTINGS, mix_mid_db=mid_db, uncertainty_db=unc)
    assert all(g == 0.0 for g, c in zip(move.gains_db, move.centres_hz) if c >= 16000)


def test_refusals(tmp_path):
    rate = 44100
    silent = write(tmp_path / "silent.wav", np.zeros((2, rate * 8), dtype=np.float32), rate)
    with pytest.raises(AutomixError, match="silent"):
        analyze_reference(silent)
    short = write(tmp_path / "short.wav", stereo(shelved_noise(1, rate, 0, 0, 3), np.zeros(rate)), rate)
    with pytest.raises(AutomixError, match="too short to describe a tonal balance"):
        analyze_reference(short)
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(AutomixError):
        analyze_reference(tmp_path / "text.wav")
    with pytest.raises(AutomixError):
        analyze_reference(tmp_path / "missing.wav")


def test_clipped_reference_is_warned_and_its_density_not_copied(tmp_path):
    rate = 44100
    hot = np.clip(stereo(shelved_noise(8, rate, 0, 0, 4), 0.3 * shelved_noise(8, rate, 0, 0, 5), level=0.8), -1.0, 1.0)
    reference = analyze_reference(write(tmp_path / "clipped.wav", hot, rate))
    assert reference.is_clipped
    assert any("clipped" in w and "not a density" in w for w in reference.warnings)
    assert reference_plr_db(reference) is None
    unclipped = stereo(shelved_noise(8, rate, 0, 0, 4), 0.3 * shelved_noise(8, rate, 0, 0, 5))
    clean = analyze_reference(write(tmp_path / "clean.wav", unclipped, rate))
    assert not clean.is_clipped and not clean.warnings


def test_width_moves_toward_the_reference_on_rendered_audio(mix, references):
    samples, analysis, *_ = mix
    reference = analyze_reference(references["dark"][0])
    gain, reason = reference_width(analysis.stereo_width, reference)
    assert 1.0 < gain <= refmod.WIDTH_MAX and "width" in reason

    def width(x):  # side over mid plus side energy, computed here
        m, s = x[0] + x[1], x[0] - x[1]
        return float((s**2).sum() / ((m**2).sum() + (s**2).sum()))

    before, after = width(samples), width(shape_stereo(samples, MIX_RATE, 0.0, gain))
    assert abs(after - reference.stereo_width) < abs(before - reference.stereo_width)
    assert after > before
    # bounded both ways
    assert reference_width(0.45, replace(reference, stereo_width=0.01))[0] == refmod.WIDTH_MIN
    assert reference_width(0.001, replace(reference, stereo_width=0.45))[0] == refmod.WIDTH_MAX
    assert reference_width(0.0, reference)[0] == 1.0  # a mono mix has no side to scale


def test_side_eq_moves_the_side_shape_and_leaves_the_mid(mix, tmp_path):
    samples, analysis, mid_db, side_db, unc = mix
    rate = 48000
    ref = stereo(shelved_noise(9, rate, 0, 0, 11), 0.5 * shelved_noise(9, rate, 3.0, -6.0, 12))
    reference = analyze_reference(write(tmp_path / "darkside.wav", ref, rate))
    mid_move = reference_tonal_move(analysis, reference, SETTINGS, mix_mid_db=mid_db, uncertainty_db=unc)
    side_move = reference_side_move(analysis, reference, mid_move, mid_db, side_db, SETTINGS)
    assert max(abs(g) for g in side_move.gains_db) <= refmod.SIDE_RULES.max_db + 1e-9
    y = apply_eq(samples, MIX_RATE, mid_move)
    eq = SideEQ(MIX_RATE, side_move, 2)
    z = np.concatenate([eq.process(y[:, i : i + 40000]) for i in range(0, y.shape[1], 40000)] + [eq.flush()], axis=1)
    assert z.shape == y.shape
    np.testing.assert_allclose(z.mean(axis=0), y.mean(axis=0), atol=1e-6)  # the mono sum is untouched
    target = band_shape_db(ref, rate, side=True)
    before, after = distance_db(band_shape_db(y, MIX_RATE, side=True), target), distance_db(band_shape_db(z, MIX_RATE, side=True), target)
    assert after <= 0.6 * before, (before, after)


REFERENCE_FIELDS = {"name": "r", "sample_rate": 44100, "channels": 2, "duration_s": 10.0, "integrated_lufs": -9.0,
                    "true_peak_dbtp": -1.0, "loudness_range_lu": 5.0, "stereo_width": 0.2, "mid_bands_db": (),
                    "side_bands_db": (), "mid_uncertainty_db": (), "clipped_samples": 0}  # fmt: skip


def test_density_aim_is_bounded():
    base = REFERENCE_FIELDS
    assert reference_plr_db(refmod.Reference(plr_db=5.0, **base)) == refmod.PLR_MIN_DB
    assert reference_plr_db(refmod.Reference(plr_db=9.5, **base)) == 9.5
    assert reference_plr_db(refmod.Reference(plr_db=18.0, **base)) == refmod.PLR_MAX_DB


def test_denser_reference_gets_more_glue(mix):
    """A dynamic mix (PLR ~15 dB) against a reference of PLR 9 dB: the glue aims deeper
    than its own rule (which aims at DENSE_PLR_DB), never past MAX_DEPTH_DB."""
    samples, analysis, *_ = mix
    dynamic = replace(analysis, plr_db=15.0, loudness_range_lu=6.0)
    base = REFERENCE_FIELDS
    own = refmod.glue_stage.decide_glue(dynamic, SETTINGS, samples=samples)
    aimed = reference_glue(dynamic, SETTINGS, refmod.Reference(plr_db=9.0, **base), samples=samples)
    assert own.act and aimed.act
    assert aimed.depth_db > own.depth_db
    assert aimed.depth_db <= refmod.glue_stage.MAX_DEPTH_DB
    assert "reference" in aimed.reason
    open_ref = reference_glue(dynamic, SETTINGS, refmod.Reference(plr_db=16.0, **base), samples=samples)
    assert open_ref.depth_db == pytest.approx(own.depth_db)


def test_genre_target_unchanged_by_default(mix):
    """tonal_balance without a target behaves as before (the genre rules)."""
    samples, analysis, *_ = mix
    move = tonal_balance(analysis, SETTINGS, samples=samples)
    assert "the target" in move.reason


def test_width_with_mono_bass_is_judged_above_it(mix, references):
    """With the chain's EQ and mono bass predicted, the width above the mono-bass
    frequency of the rendered audio moves toward the reference's there."""
    samples, analysis, mid_db, side_db, unc = mix
    path, ref_samples, ref_rate = references["dark"]
    reference = analyze_reference(path)
    move = reference_tonal_move(analysis, reference, SETTINGS, mix_mid_db=mid_db, uncertainty_db=unc)
    ratio = refmod.side_to_mid_after(mid_db, side_db, mid_gains_db=move.gains_db, mono_below_hz=120.0)
    gain, reason = reference_width(analysis.stereo_width, reference, side_to_mid=ratio, mono_below_hz=120.0)
    assert "above 120 Hz" in reason

    def width_above(x, rate, cutoff_hz=150.0):  # computed here, by a high-passed energy ratio
        y = signal.sosfilt(signal.butter(4, cutoff_hz, "high", fs=rate, output="sos"), x.astype(np.float64))
        m, s = y[0] + y[1], y[0] - y[1]
        return float((s**2).sum() / ((m**2).sum() + (s**2).sum()))

    rendered = shape_stereo(apply_eq(samples, MIX_RATE, move), MIX_RATE, 120.0, gain)
    target = width_above(ref_samples, ref_rate)
    assert abs(width_above(rendered, MIX_RATE) - target) < 0.5 * abs(width_above(samples, MIX_RATE) - target)


def test_reference_path_checks(tmp_path, references):
    path = references["dark"][0]
    assert refmod.check_reference_path(path, inputs=[tmp_path / "song.wav"], outputs=[tmp_path / "out.wav"]) == Path(path)
    with pytest.raises(AutomixError, match="no such file"):
        refmod.check_reference_path(tmp_path / "nope.wav")
    (tmp_path / "notes.wav").write_text("hello, not audio")
    with pytest.raises(AutomixError, match="--reference .*not an audio file"):
        refmod.check_reference_path(tmp_path / "notes.wav")
    with pytest.raises(AutomixError, match="is the input"):
        refmod.check_reference_path(path, inputs=[path])
    link = tmp_path / "link.wav"
    link.symlink_to(path)
    with pytest.raises(AutomixError, match="is the output"):
        refmod.check_reference_path(path, outputs=[link])
    stems = tmp_path / "stems"
    stems.mkdir()
    inside = stems / "ref.wav"
    inside.write_bytes(Path(path).read_bytes())
    with pytest.raises(AutomixError, match="inside the input folder"):
        refmod.check_reference_path(inside, inputs=[stems])


def test_reference_loudness_target(references):
    reference = analyze_reference(references["dark"][0])
    target, note = refmod.reference_target_lufs(reference)
    assert target == round(reference.integrated_lufs, 1) and "from the reference" in note
    assert refmod.reference_target_lufs(replace(reference, integrated_lufs=-3.2))[0] == -5.0


def test_mono_mix_against_a_96k_stereo_reference(tmp_path):
    """A mono mix takes the reference's mid balance; no side EQ, width unchanged."""
    mono_mix = (0.1 * shelved_noise(9, MIX_RATE, 0, 0, 1))[None].astype(np.float32)
    analysis = analyze(Audio(mono_mix, MIX_RATE))
    meter = MidSideSpectrumMeter(MIX_RATE, 1)
    meter.add(mono_mix)
    mid_db, side_db = meter.spectra_db()
    ref = stereo(shelved_noise(9, 96000, -4.0, 6.0, 7), 0.5 * shelved_noise(9, 96000, -4.0, 6.0, 8))
    reference = analyze_reference(write(tmp_path / "r96.wav", ref, 96000))
    uncertainty = band_uncertainty_db(mono_mix, MIX_RATE, len(analysis.band_levels_db))
    move = reference_tonal_move(analysis, reference, SETTINGS, mix_mid_db=mid_db, uncertainty_db=uncertainty)
    target = band_shape_db(ref, 96000)
    before = distance_db(band_shape_db(np.concatenate([mono_mix] * 2), MIX_RATE), target)
    after = distance_db(band_shape_db(np.concatenate([apply_eq(mono_mix, MIX_RATE, move)] * 2), MIX_RATE), target)
    assert after <= 0.5 * before, (before, after)
    assert "no side" in reference_side_move(analysis, reference, move, mid_db, side_db, SETTINGS).reason
    assert reference_width(analysis.stereo_width, reference)[0] == 1.0
