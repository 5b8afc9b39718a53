"""automix master --report: a page (or JSON) per mastered file, checked before any audio."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyebur128
import soundfile as sf

FS = 44100


def automix(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automix", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def song(path, seconds=4.0, level=0.1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    x = level * (np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.size))
    sf.write(path, np.stack((x, x)).T.astype(np.float32), FS, subtype="PCM_24")
    return path


def lufs(path) -> float:
    x, rate = sf.read(path, always_2d=True)
    state = pyebur128.R128State(x.shape[1], rate, pyebur128.MeasurementMode.MODE_I)
    state.add_frames(np.ascontiguousarray(x).ravel(), x.shape[0])
    return pyebur128.get_loudness_global(state)


def test_a_folder_gets_one_page_per_input_with_the_written_masters_numbers(tmp_path):
    inputs = [song(tmp_path / "a.wav", seed=1), song(tmp_path / "b.wav", level=0.03, seed=2)]
    done = automix("master", *inputs, "-o", tmp_path / "out", "--report", tmp_path / "reports", "--json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{") and '"input"' in line]
    assert len(records) == 2
    for record in records:
        page = tmp_path / "reports" / (Path(record["output"]).stem + ".html")
        assert record["report"] == str(page)
        html = page.read_text()
        assert "<svg" in html and "Loudness over time" in html
        # the page states the output's loudness as an independent meter reads the file
        shown = re.search(r"Integrated loudness</th><td>([^&]+)&nbsp;LUFS", html).group(1)
        assert abs(float(shown.replace("\u2212", "-")) - lufs(record["output"])) <= 0.06


def test_one_json_report_for_one_input(tmp_path):
    source = song(tmp_path / "a.wav")
    done = automix("master", source, "-o", tmp_path / "out", "--report", tmp_path / "a.json", "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    assert abs(report["output_lufs"] - lufs(tmp_path / "out" / "a.wav")) <= 0.05
    assert report["input"].endswith("a.wav") and report["status"] == "ok"


def test_report_usage_errors_come_before_any_audio(tmp_path):
    a, b = song(tmp_path / "a.wav"), song(tmp_path / "b.wav", seed=3)
    for args, message in (
        ((a, b, "--report", tmp_path / "one.html"), "one report file for 2 inputs"),
        ((a, "--report", a.with_suffix(".json").parent / "a.wav"), "exists and is not a folder"),
    ):
        done = automix("master", *args[:-2], "-o", tmp_path / "out", *args[-2:])
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    # a report folder that is the output folder is fine, but a report named as a master is not
    (tmp_path / "out").mkdir(exist_ok=True)
    done = automix("master", a, "-o", tmp_path / "out", "--report", tmp_path / "out" / "a.json")
    assert done.returncode == 0, done.stderr
