"""End-to-end runs of the command line, as a user or a script would."""

import json
import subprocess
import sys

import numpy as np
from signals import sine

from automix.audio import write_audio


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


def test_version():
    result = automix("--version")
    assert result.returncode == 0 and result.stdout.startswith("automix ")
