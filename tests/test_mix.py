"""Mixing a folder of stems: invariance, exact stem export, roles, report, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from signals import sine
from test_loudness import ebur128

from automix.errors import AutomixError
from automix.io.audio import read_audio
from automix.jobs.pipeline import OutputOptions, load_stems, mix_folder
from automix.measure import loudness
from automix.presets import load_preset

SAMPLE_STEMS = Path(__file__).resolve().parent.parent / "sample_stems"
POP = load_preset("pop")
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}


def write_stem(samples: np.ndarray, sample_rate: int, path: Path, bit_depth: str = "32f") -> None:
    """Write a test *input* with soundfile: files automix writes itself carry its
    provenance tag and are refused as stems."""
    sf.write(path, np.asarray(samples, dtype=np.float32).T, sample_rate, subtype=SUBTYPES[bit_depth])


def short_copy(song: str, folder: Path, seconds: float = 8.0) -> Path:
    """The first seconds of a sample song, so the tests stay fast."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((SAMPLE_STEMS / song).glob("*.flac")):
        audio = read_audio(path)
        write_stem(audio.samples[:, : int(seconds * audio.sample_rate)], audio.sample_rate, folder / f"{path.stem}.wav", "32f")
    return folder


def test_gain_invariance(tmp_path):
    """Stems at other levels (random, up to +-12 dB each) give the same mix within -60 dB."""
    original = short_copy("pop_song", tmp_path / "a")
    scrambled = tmp_path / "b"
    scrambled.mkdir()
    rng = np.random.default_rng(7)
    for path in sorted(original.iterdir()):
        audio = read_audio(path)
        gain_db = rng.uniform(-12, 12)
        write_stem(audio.samples * np.float32(10 ** (gain_db / 20)), audio.sample_rate, scrambled / path.name, "32f")
    options = OutputOptions(bit_depth="32f")
    mix_folder(original, tmp_path / "a.wav", POP, options)
    mix_folder(scrambled, tmp_path / "b.wav", POP, options)
    a, b = read_audio(tmp_path / "a.wav").samples, read_audio(tmp_path / "b.wav").samples
    difference_lufs = loudness.integrated_loudness(a - b, 44100, absolute_gate_lufs=-200)
    assert difference_lufs < loudness.integrated_loudness(a, 44100) - 60


def test_exported_stems_sum_to_the_unmastered_mix(tmp_path):
    stems = short_copy("jazz_trio", tmp_path / "stems", 6.0)
    result = mix_folder(stems, tmp_path / "mix.wav", POP, OutputOptions(bit_depth="32f"), no_master=True,
                        export_stems=tmp_path / "export")
    exported = sorted((tmp_path / "export").glob("*.wav"))
    assert len(exported) == 5
    total = np.zeros_like(read_audio(tmp_path / "mix.wav").samples)
    for path in exported:
        total += read_audio(path).samples
    mix = read_audio(tmp_path / "mix.wav").samples
    assert np.abs(total - mix).max() < 1e-6
    assert result.master is None
    assert loudness.integrated_loudness(mix, 44100) == pytest.approx(POP.mix.bus_lufs, abs=0.2)


def test_sample_song_meets_the_mastering_promise_and_balances_by_role(tmp_path):
    stems = short_copy("pop_song", tmp_path / "stems")
    report_path = tmp_path / "report.json"
    mix_folder(stems, tmp_path / "mix.flac", POP, OutputOptions(bit_depth="24"),
                        export_stems=tmp_path / "export", report_path=report_path)
    out = read_audio(tmp_path / "mix.flac")
    integrated, true_peak, _ = ebur128(out.samples, out.sample_rate)
    assert integrated == pytest.approx(-14.0, abs=0.1)
    assert true_peak <= -1.0
    assert sf.info(tmp_path / "mix.flac").subtype == "PCM_24"
    report = json.loads(report_path.read_text())
    roles = {stem["file"]: stem["role"] for stem in report["stems"]}
    assert roles["lead_vox.wav"] == "vocal" and roles["kick.wav"] == "kick" and roles["gtr_L.wav"] == "guitar"
    # Measured in the exported stems with libebur128: each group of stems, summed, sits
    # where the MUSDB18 averages put it relative to the vocal (drums -3.45, bass +1.0,
    # harmony -0.44 LU; written here, not read from the code), whatever the input levels.
    exported = {p.name.split("_", 1)[1]: read_audio(p).samples for p in (tmp_path / "export").glob("*.wav")}
    groups = {"vocals": ["lead_vox.wav"], "drums": ["kick.wav", "snare.wav", "hihat.wav"], "bass": ["bass.wav"],
              "harmony": ["gtr_L.wav", "gtr_R.wav", "rhodes.wav", "pad.wav"]}
    # Active loudness (relative gate only, as automix and bench/eval_balance.py measure
    # stems: the -70 LUFS gate would depend on the level) to 0.1 LU; libebur128's
    # standard gating agrees within 0.5 LU (it drops the vocal's quiet note tails).
    for meter, tolerance in ((lambda x: loudness.integrated_loudness(x, 44100, absolute_gate_lufs=-120), 0.1),
                             (lambda x: ebur128(x, 44100)[0], 0.5)):
        level = {g: meter(sum(exported[n] for n in names)) for g, names in groups.items()}
        assert level["drums"] - level["vocals"] == pytest.approx(-3.45, abs=tolerance)
        assert level["bass"] - level["vocals"] == pytest.approx(1.0, abs=tolerance)
        assert level["harmony"] - level["vocals"] == pytest.approx(-0.44, abs=tolerance)
    # the pair is placed left and right
    plans = {stem["file"]: stem["plan"] for stem in report["stems"]}
    assert plans["gtr_L.wav"]["pan"] < -0.5 < 0.5 < plans["gtr_R.wav"]["pan"]
    assert plans["lead_vox.wav"]["pan"] == 0.0 and plans["kick.wav"]["highpass_hz"] is None
    for stem in report["stems"]:
        assert stem["role_reason"] and stem["plan"]["gain_rule"] and stem["plan"]["pan_rule"]
    assert report["master"]["status"] == "ok"
    assert report["preset"]["value_origins"]["master.target_lufs"].endswith("pop.toml")


def test_role_from_audio_and_override(tmp_path):
    stems = short_copy("jazz_trio", tmp_path / "stems", 6.0)
    result = mix_folder(stems, tmp_path / "mix.wav", POP, OutputOptions(), no_master=True)
    take3 = next(s for s in result.report["stems"] if s["file"] == "take3.wav")
    assert take3["role"] == "bass" and take3["role_reason"].startswith("audio:")
    result = mix_folder(stems, tmp_path / "mix2.wav", POP, OutputOptions(), no_master=True, role_overrides={"take3": "keys"})
    take3 = next(s for s in result.report["stems"] if s["file"] == "take3.wav")
    assert take3["role"] == "keys" and take3["role_reason"] == "set with --role"
    with pytest.raises(AutomixError, match="no stem"):
        mix_folder(stems, tmp_path / "mix3.wav", POP, OutputOptions(), role_overrides={"nothing": "bass"})


def test_mixed_rates_lengths_channels_and_bad_files(tmp_path):
    folder = tmp_path / "stems"
    folder.mkdir()
    write_stem(sine(-20, 3.0, 44100, 220.0, channels=1), 44100, folder / "vocal.wav", "24")
    write_stem(sine(-30, 2.0, 48000, 55.0, channels=2), 48000, folder / "bass.wav", "24")
    write_stem(sine(-10, 3.0, 44100, 440.0, channels=1), 44100, folder / "keys.flac", "16")
    write_stem(np.zeros((1, 44100), np.float32), 44100, folder / "silent_fx.wav", "24")
    (folder / "broken.wav").write_bytes(b"nope")
    loaded = load_stems(folder)
    assert loaded.sample_rate == 44100 and len({x.shape[1] for x in loaded.samples}) == 1
    assert any("resampled 48000 -> 44100" in note for note in loaded.notes)
    result = mix_folder(folder, tmp_path / "mix.wav", POP, OutputOptions(bit_depth="16"))
    skipped = {s["file"]: s["kind"] for s in result.report["skipped"]}
    assert skipped == {"broken.wav": "unreadable", "silent_fx.wav": "silent"}
    assert read_audio(tmp_path / "mix.wav").samples.shape == (2, 3 * 44100)
    with pytest.raises(AutomixError, match="broken.wav"):
        mix_folder(folder, tmp_path / "strict.wav", POP, OutputOptions(), strict=True)


def test_near_silent_stem_is_left_out_not_raised_by_70_db(tmp_path):
    folder = tmp_path / "stems"
    folder.mkdir()
    write_stem(sine(-20, 3.0, 44100, 220.0, channels=1), 44100, folder / "violin.wav", "24")
    write_stem(sine(-20, 3.0, 44100, 110.0, channels=1), 44100, folder / "cello.wav", "24")
    bleed = sine(-20, 3.0, 44100, 220.0, channels=1) * np.float32(10 ** (-60 / 20))  # 60 dB down
    write_stem(bleed, 44100, folder / "trumpet.wav", "32f")
    result = mix_folder(folder, tmp_path / "mix.wav", POP, OutputOptions())
    assert [s["file"] for s in result.report["skipped"]] == ["trumpet.wav"]
    assert "near-silent" in result.report["skipped"][0]["reason"]


def test_empty_and_silent_folders(tmp_path):
    with pytest.raises(AutomixError, match="no audio files"):
        mix_folder(tmp_path, tmp_path / "x.wav", POP, OutputOptions())
    write_stem(np.zeros((1, 44100), np.float32), 44100, tmp_path / "a.wav", "24")
    with pytest.raises(AutomixError, match="silent"):
        mix_folder(tmp_path, tmp_path / "x.wav", POP, OutputOptions())


def test_deterministic_output(tmp_path):
    stems = short_copy("jazz_trio", tmp_path / "stems", 4.0)
    mix_folder(stems, tmp_path / "a.wav", POP, OutputOptions(bit_depth="16"))
    mix_folder(stems, tmp_path / "b.wav", POP, OutputOptions(bit_depth="16"))
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_never_writes_over_a_stem(tmp_path):
    stems = short_copy("jazz_trio", tmp_path / "stems", 3.0)
    before = (stems / "piano.wav").read_bytes()
    with pytest.raises(AutomixError, match="input"):
        mix_folder(stems, stems / "piano.wav", POP, OutputOptions())
    assert (stems / "piano.wav").read_bytes() == before


# --------------------------------------------------------------------------- streaming
def whole_signal_reference(folder: Path, *, mastering_follows: bool):
    """The mix as computed before the mix streamed: every stem read whole, analysed,
    rendered and summed in memory (load_stems, _analyse_stems, identify_stems, render)."""
    from automix.jobs.mix_folder import _analyse_stems, identify_stems
    from automix.mix.balancer import balance
    from automix.mix.renderer import render

    stems = load_stems(folder)
    stems, analyses = _analyse_stems(stems, False)
    infos, kept, _ = identify_stems(stems, analyses, {}, False)
    plan = balance(infos, POP)
    rendered = render([stems.samples[i] for i in kept], stems.sample_rate, plan, keep_stems=True,
                      mastering_follows=mastering_follows)
    return plan, rendered


@pytest.mark.parametrize("song", ["pop_song", "jazz_trio"])
def test_streamed_mix_equals_the_whole_signal_mix(tmp_path, song):
    """Same roles, plan and report numbers, and the same unmastered bus within float
    rounding, as the whole-signal path; a stem at another rate and a shorter one too."""
    stems = short_copy(song, tmp_path / "stems", 6.0)
    first = min(stems.iterdir())
    audio = read_audio(first)
    write_stem(audio.samples[:, : 4 * 44100], 44100, first, "32f")  # shorter: padded with silence
    if song == "jazz_trio":  # one stem at 48 kHz: resampled on the fly
        from automix.io.audio import resample

        second = sorted(stems.iterdir())[1]
        audio = read_audio(second)
        write_stem(resample(audio.samples, 44100, 48000), 48000, second, "32f")
    plan, reference = whole_signal_reference(stems, mastering_follows=False)
    result = mix_folder(stems, tmp_path / "mix.wav", POP, OutputOptions(bit_depth="32f"), no_master=True,
                        export_stems=tmp_path / "export")
    assert result.plan.to_dict() == plan.to_dict()
    mix = read_audio(tmp_path / "mix.wav").samples
    assert mix.shape == reference.mix.shape
    assert np.abs(mix - reference.mix).max() < 1e-5
    exported = sorted((tmp_path / "export").glob("*.wav"))
    for path, stem in zip(exported, reference.stems):
        assert np.abs(read_audio(path).samples - stem.samples).max() < 1e-5
    report = result.report
    assert report["mix"]["bus_gain_db"] == pytest.approx(reference.bus_gain_db, abs=0.01)
    assert report["mix"]["bus_rule"] == reference.bus_rule
    for stem_report, stem in zip(report["stems"], reference.stems):
        assert stem_report["rendered"]["makeup_db"] == pytest.approx(stem.makeup_db, abs=0.01)
    for name, group in reference.groups.items():
        assert report["mix"]["groups"][name]["summed_lufs"] == pytest.approx(group["summed_lufs"], abs=0.01)
    # the output as written, measured by an independent meter
    assert report["final"]["integrated_lufs"] == pytest.approx(ebur128(mix, 44100)[0], abs=0.01)


def test_mastered_streamed_mix_equals_mastering_the_whole_bus(tmp_path):
    from automix.io.audio import Audio
    from automix.master.chain import master

    stems = short_copy("jazz_trio", tmp_path / "stems", 6.0)
    _, reference = whole_signal_reference(stems, mastering_follows=True)
    expected, _ = master(Audio(reference.mix, 44100), POP.master, bit_depth="32f")
    result = mix_folder(stems, tmp_path / "mix.wav", POP, OutputOptions(bit_depth="32f"))
    out = read_audio(tmp_path / "mix.wav").samples
    assert np.abs(out - expected).max() < 1e-4
    assert result.report["final"]["integrated_lufs"] == pytest.approx(ebur128(expected, 44100)[0], abs=0.01)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]  # the temporary bus is gone


def test_temporary_bus_is_removed_when_mastering_fails(tmp_path, monkeypatch):
    import automix.jobs.mix_folder as job

    def broken(*args, **kwargs):
        raise AutomixError("mastering failed on purpose")

    monkeypatch.setattr(job, "master_stream", broken)
    stems = short_copy("jazz_trio", tmp_path / "stems", 3.0)
    with pytest.raises(AutomixError, match="on purpose"):
        mix_folder(stems, tmp_path / "mix.wav", POP, OutputOptions(), export_stems=tmp_path / "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stems"] or not list((tmp_path / "export").iterdir())
    assert not (tmp_path / "mix.wav").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


def test_streamed_roles_and_lead_features_equal_the_whole_signal_ones(tmp_path):
    """Stems with names that say nothing: every role comes from the audio."""
    from automix.jobs.mix_folder import (
        _analyse_stems,
        analyse_sources,
        identify_stems,
        open_stems,
    )

    source = short_copy("pop_song", tmp_path / "named", 6.0)
    folder = tmp_path / "stems"
    folder.mkdir()
    for index, path in enumerate(sorted(source.iterdir())):
        path.rename(folder / f"track{index:02d}.wav")
    stems = load_stems(folder)
    stems, analyses = _analyse_stems(stems, False)
    whole, _, _ = identify_stems(stems, analyses, {}, False)
    sources = open_stems(folder)
    sources, streamed_analyses, features = analyse_sources(sources, False)
    streamed, _, _ = identify_stems(sources, streamed_analyses, {}, False, features=features)
    assert [(i.name, i.role, i.role_reason) for i in streamed] == [(i.name, i.role, i.role_reason) for i in whole]
    assert {i.role_reason.split(":")[0] for i in streamed} == {"audio"}
    for a, b in zip(streamed, whole):
        assert a.analysis == b.analysis
        assert a.lead_features.continuity == pytest.approx(b.lead_features.continuity, abs=1e-9)
        assert a.lead_features.presence == pytest.approx(b.lead_features.presence, abs=1e-9)
        assert a.lead_features.melodic == pytest.approx(b.lead_features.melodic, abs=1e-6)


@pytest.mark.parametrize("seconds", [5.0, 25.0])
def test_report_measures_of_the_written_output_equal_the_whole_signal_ones(tmp_path, seconds):
    """The report's final numbers and genre comparison are streamed from the written file
    (the panning figure from only the frames it reads): equal to measuring it whole."""
    from automix.io.audio import Audio
    from automix.jobs.mix_folder import _final_measures
    from automix.measure.analyzer import analyze
    from automix.mix.balancer import compare_to_reference

    rng = np.random.default_rng(3)
    frames = int(seconds * 44100)
    left = rng.standard_normal(frames).astype(np.float32) * np.float32(0.1)
    right = (0.5 * left + 0.5 * rng.standard_normal(frames).astype(np.float32) * np.float32(0.1)).astype(np.float32)
    right[frames // 2 :] *= np.float32(0.3)  # the image changes half-way
    path = tmp_path / "out.wav"
    write_stem(np.stack([left, right]), 44100, path, "24")
    samples = read_audio(path).samples
    final, against, excerpt = _final_measures(path, POP)
    assert final == analyze(Audio(samples, 44100))
    assert against == compare_to_reference(analyze(Audio(samples, 44100)), POP, samples)
    assert excerpt.shape[0] == 2 and 0 < excerpt.shape[1] <= 44100


def test_a_mix_nobody_reads_the_analysis_of_is_not_analysed_and_writes_the_same_bytes(tmp_path, monkeypatch):
    """``analyse_output=False`` (the CLI without --report or --json): the same output file,
    no analysis of it (neither as it is written nor read back), and a report whose
    "final" is the master's measurement of what it wrote -- what an independent meter
    reads from the file -- with no band levels and no genre comparison. A report asked
    for still gets the whole analysis."""
    import automix.jobs.mix_folder as mix_module

    stems = short_copy("jazz_trio", tmp_path / "stems", 4.0)
    analysed = mix_folder(stems, tmp_path / "a.wav", POP, OutputOptions(bit_depth="24"))
    calls = []
    real = mix_module._final_measures
    monkeypatch.setattr(mix_module, "_final_measures", lambda *a, **k: calls.append(1) or real(*a, **k))
    bare = mix_folder(stems, tmp_path / "b.wav", POP, OutputOptions(bit_depth="24"), analyse_output=False)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert calls == [] and bare.master.output_analysis is None and analysed.master.output_analysis is not None
    out = read_audio(tmp_path / "b.wav")
    integrated, true_peak, _ = ebur128(out.samples, out.sample_rate)
    final = bare.report["final"]
    assert final["integrated_lufs"] == pytest.approx(integrated, abs=0.01)
    assert final["true_peak_dbtp"] == pytest.approx(true_peak, abs=0.05)
    assert final["sample_peak_dbfs"] == round(20 * np.log10(np.abs(out.samples).max()), 2)
    for key in ("integrated_lufs", "true_peak_dbtp", "loudness_range_lu", "sample_peak_dbfs", "bit_depth"):
        assert final[key] == analysed.report["final"][key]
    assert final["third_octave_bands_db"] is None and bare.report["against_genre_average"] is None
    assert analysed.report["final"]["third_octave_bands_db"] and analysed.report["against_genre_average"]
    reported = mix_folder(stems, tmp_path / "c.wav", POP, OutputOptions(bit_depth="24"), analyse_output=False,
                          report_path=tmp_path / "c.json")
    assert calls == [1] and reported.report["final"] == analysed.report["final"]
    assert reported.report["against_genre_average"] == analysed.report["against_genre_average"]
