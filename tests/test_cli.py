"""End-to-end runs of the command line, as a user or a script would."""

import io
import json
import subprocess
import sys
import types

import numpy as np
import pytest
from signals import sine

from automix.io.audio import write_audio


def automix(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "automix", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_analyze_json_and_bad_files_in_one_call(tmp_path):
    good = write_audio(sine(-23, 3.0, 48000), 48000, tmp_path / "tone.wav", "24")
    (tmp_path / "broken.wav").write_bytes(b"garbage")
    (tmp_path / "empty.flac").write_bytes(b"")
    result = automix("analyze", "--json", tmp_path / "broken.wav", good, tmp_path / "empty.flac", tmp_path / "missing.wav")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["status"] for line in lines] == ["error", "ok", "error", "error"]
    assert lines[1]["integrated_lufs"] == round(lines[1]["integrated_lufs"], 3)
    assert abs(lines[1]["integrated_lufs"] + 23.0) < 0.1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("automix:") for line in errors)
    assert "Traceback" not in result.stderr
    assert "broken.wav" in errors[0] and "empty.flac" in errors[1] and "missing.wav" in errors[2]


def test_analyze_table_and_folder(tmp_path):
    write_audio(sine(-18, 1.0, 44100), 44100, tmp_path / "a.wav", "16")
    write_audio(sine(-18, 1.0, 44100, channels=1), 44100, tmp_path / "b.flac", "24")
    result = automix("analyze", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "a.wav" in result.stdout and "b.flac" in result.stdout


def test_empty_folder_is_a_usage_error(tmp_path):
    result = automix("analyze", tmp_path)
    assert result.returncode == 2
    assert "no audio files" in result.stderr


def test_mix_usage_errors(tmp_path):
    empty = automix("mix", tmp_path, "-o", tmp_path / "x.wav")
    assert empty.returncode == 2 and "no audio files" in empty.stderr
    missing = automix("mix", tmp_path / "nope", "-o", tmp_path / "x.wav")
    assert missing.returncode == 2 and "not a folder" in missing.stderr
    bad_role = automix("mix", tmp_path, "-o", tmp_path / "x.wav", "--role", "a=kazoo")
    assert bad_role.returncode == 2 and "kazoo" in bad_role.stderr


def test_version():
    result = automix("--version")
    assert result.returncode == 0 and result.stdout.startswith("automix ")


def test_mix_command_end_to_end(tmp_path):
    from test_mix import short_copy

    stems = short_copy("jazz_trio", tmp_path / "stems", 4.0)
    (stems / "unreadable.wav").write_bytes(b"??")
    result = automix("mix", stems, "-o", tmp_path / "song.wav", "--json", "--report", tmp_path / "r.json", "--bit-depth", "16")
    assert result.returncode == 1  # one stem could not be read; the mix was still made
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["status"] == "ok" and line["stems"] == 5 and line["skipped"] == 1
    assert abs(line["integrated_lufs"] + 14.0) <= 0.1 and line["true_peak_dbtp"] <= -1.0
    assert "unreadable.wav" in result.stderr and "Traceback" not in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["stems"][0]["plan"]["gain_rule"]
    assert len(line["third_octave_bands_db"]) > 20  # --json prints the output's analysed bands
    bare = automix("mix", stems, "-o", tmp_path / "bare.wav", "--json", "--bit-depth", "16")  # no report: still analysed
    assert len(json.loads(bare.stdout.strip().splitlines()[-1])["third_octave_bands_db"]) > 20


def test_master_command_batch(tmp_path):
    from signals import music_like

    from automix.io.audio import read_audio

    write_audio(music_like(4, 44100), 44100, tmp_path / "a.wav", "24")
    write_audio(music_like(4, 48000, seed=1) * np.float32(0.1), 48000, tmp_path / "b.flac", "24")
    (tmp_path / "c.wav").write_bytes(b"")
    out = tmp_path / "out"
    result = automix("master", tmp_path / "a.wav", tmp_path / "b.flac", tmp_path / "c.wav", "-o", out, "--json", "-j", "2", "--bit-depth", "16")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok", "error"]
    assert read_audio(out / "a.wav").sample_rate == 44100 and read_audio(out / "b.flac").sample_rate == 48000
    for record in records[:2]:
        assert abs(record["output_lufs"] + 14) <= 0.1 and record["output_true_peak_dbtp"] <= -1.0
    # the same again is byte-identical
    again = automix("master", tmp_path / "a.wav", "-o", tmp_path / "again", "--bit-depth", "16")
    assert again.returncode == 0
    assert (out / "a.wav").read_bytes() == (tmp_path / "again" / "a.wav").read_bytes()
    # a target that needs too much limiting: exit 3, nothing written
    missed = automix("master", tmp_path / "a.wav", "-o", tmp_path / "loud", "--target-lufs", "-5", "--max-limiting-db", "1")
    assert missed.returncode == 3 and not (tmp_path / "loud" / "a.wav").exists()
    dry = automix("master", tmp_path / "a.wav", "-o", tmp_path / "dry", "--dry-run", "--platform", "apple", "--json")
    assert dry.returncode == 0 and not (tmp_path / "dry").exists()
    assert abs(json.loads(dry.stdout)["output_lufs"] + 16) <= 0.1
    usage = automix("master", tmp_path / "a.wav", "-o", tmp_path / "x", "--bit-depth", "12")
    assert usage.returncode == 2 and "bit-depth" in usage.stderr


def test_master_output_name_taken_by_a_folder_fails_only_that_file(tmp_path):
    import soundfile as sf
    from signals import music_like

    for i, name in enumerate("abc"):
        sf.write(tmp_path / f"{name}.wav", music_like(1.0, 44100, seed=i).T, 44100, subtype="PCM_24")
    out = tmp_path / "out"
    (out / "b.wav").mkdir(parents=True)  # the name b's master would take
    result = automix("master", tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav", "-o", out, "--json")
    assert result.returncode == 1, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert "folder" in records[1]["error"] and records[1]["output"] is None
    assert (out / "b.wav").is_dir() and (out / "a.wav").is_file() and (out / "c.wav").is_file()
    assert "Traceback" not in result.stderr


def test_mix_matches_a_reference_and_refuses_a_stem_as_reference(tmp_path):
    """--reference on mix: the report shows the reference and the tonal EQ aims at it;
    a stem of the folder is refused as a reference before any audio is read (exit 2)."""
    import shutil

    import soundfile as sf
    from scipy import signal as sps
    from signals import music_like, pink_noise

    stems = tmp_path / "stems"
    stems.mkdir()
    for name, seed in (("vocals.wav", 1), ("drums.wav", 2)):
        sf.write(stems / name, music_like(6, 44100, seed=seed).T, 44100, subtype="PCM_24")
    dark = sps.sosfilt(sps.butter(2, 800, "lowpass", fs=48000, output="sos"), 0.2 * pink_noise(8, 48000, seed=5), axis=-1)
    sf.write(tmp_path / "dark.wav", dark.T.astype(np.float32), 48000, subtype="PCM_24")
    result = automix("mix", stems, "-o", tmp_path / "mix.wav", "--reference", tmp_path / "dark.wav",
                     "--report", tmp_path / "mix.json", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "mix.json").read_text())
    assert report["master"]["reference"]["name"] == "dark.wav"
    assert "reference dark.wav" in report["master"]["tonal_eq_reason"]
    # a dark reference: the EQ cuts the top and does not boost it
    gains = report["master"]["tonal_eq_db"]
    assert min(gains.get(band, 0.0) for band in ("6310", "7943", "10000")) < -1.0
    refused = automix("mix", stems, "-o", tmp_path / "mix2.wav", "--reference", stems / "vocals.wav")
    assert refused.returncode == 2 and "--reference" in refused.stderr
    assert not (tmp_path / "mix2.wav").exists()
    shutil.rmtree(stems)


def test_the_message_stream_is_the_real_stderr_or_a_quiet_nothing(monkeypatch):
    """cli._Messages, rich's file for stderr: what it says of the stream is the stream's own
    (a terminal, its descriptor, its encoding), and with no stream (2>&-) or a closed one
    it says "not a terminal", writes nothing and raises nothing."""
    from automix import cli

    messages = cli._Messages()
    written = []
    terminal = types.SimpleNamespace(isatty=lambda: True, fileno=lambda: 7, encoding="latin-1",
                                     write=written.append, flush=lambda: None)
    monkeypatch.setattr(sys, "stderr", terminal)
    assert messages.isatty() is True and messages.fileno() == 7 and messages.encoding == "latin-1"
    assert messages.write("abc") == 3 and written == ["abc"]
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(encoding=None))
    assert messages.encoding == "utf-8"
    monkeypatch.setattr(sys, "stderr", None)
    assert messages.isatty() is False and messages.encoding == "utf-8" and messages.write("abc") == 3
    messages.flush()
    with pytest.raises(OSError):
        messages.fileno()
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    assert messages.isatty() is False and messages.write("abc") == 3
    messages.flush()


def test_a_run_without_stderr_still_writes_every_file(tmp_path):
    """``automix master ... 2>&-``: Python starts with no sys.stderr at all; the messages
    go nowhere and the batch runs to its end."""
    import os

    import soundfile as sf

    (tmp_path / "in").mkdir()
    for i in range(2):  # not automix's writer: a batch leaves files it wrote itself out
        sf.write(tmp_path / "in" / f"s{i}.wav", sine(-20, 1.0, 44100, 440.0 * (i + 1)).T, 44100, subtype="PCM_24")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "automix", "master", str(tmp_path / "in"), "-o", str(out)], check=False,
                         stdout=subprocess.PIPE, text=True, timeout=300, preexec_fn=lambda: os.close(2))
    assert run.returncode == 0
    assert sorted(p.name for p in out.glob("*.wav")) == ["s0.wav", "s1.wav"]
