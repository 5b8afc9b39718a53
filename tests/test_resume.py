"""Resumable batches (issue 14, item 1): ``automix master --skip-existing --manifest``.

A batch killed half-way (SIGKILL, so nothing of automix's own cleanup runs) and run
again finishes the rest without mastering a finished file again (its inode and mtime
are untouched, and a counting wrapper sees the calls), and its manifest ends with one
line per input. An output made with other settings, from another input, or cut short
is mastered again, to the same bytes a fresh run writes. Every expectation comes from
the files on disk, the manifest and the counter, never from automix's own verdicts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from signals import music_like
from typer.testing import CliRunner

from automix.cli import app

SECONDS = 3.0
RATE = 44100


def write_input(path: Path, seed: int, level: float = 1.0) -> Path:
    """An untagged input (soundfile, not automix's writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (music_like(SECONDS, RATE, seed=seed) * np.float32(level)).T, RATE, subtype="PCM_24")
    return path


def counting_patch(counter: Path) -> str:
    """Python run before the CLI in a child: every master_file call appends the input's
    name to ``counter`` (the processing calls, counted from outside)."""
    return (
        "import automix.jobs.master_files as m\n"
        "real = m.master_file\n"
        "def counted(src, *a, **k):\n"
        f"    with open({str(counter)!r}, 'a') as f:\n"
        "        f.write(src.name + '\\n')\n"
        "    return real(src, *a, **k)\n"
        "m.master_file = counted\n"
    )


def child(args, patch: str = "", **popen) -> subprocess.Popen:
    code = f"import sys\n{patch}\nfrom automix.cli import main\nsys.argv = ['automix'] + sys.argv[1:]\nmain()\n"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def run_child(args, patch: str = "") -> subprocess.CompletedProcess:
    process = child(args, patch)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def manifest_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def calls(counter: Path) -> list[str]:
    return counter.read_text().split() if counter.exists() else []


def summary_of(stdout: str) -> dict:
    last = json.loads(stdout.strip().splitlines()[-1])
    return last["summary"]


def test_a_killed_batch_resumes_without_redoing_or_duplicating(tmp_path):
    inputs = [write_input(tmp_path / "in" / f"t{i}.wav", seed=i) for i in range(8)]
    out, manifest = tmp_path / "out", tmp_path / "batch.jsonl"
    first = child(["master", *inputs, "-o", out, "--manifest", manifest, "-q"], start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and first.poll() is None:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    os.killpg(first.pid, signal.SIGKILL)  # no cleanup of automix's own runs
    first.communicate(timeout=30)
    finished = manifest_lines(manifest)
    assert 2 <= len(finished) < len(inputs), "the batch was not stopped half-way"
    before = {line["output"]: stamp(Path(line["output"])) for line in finished}
    assert all(line["status"] == "done" for line in finished)

    counter = tmp_path / "calls.txt"
    rerun = run_child(["master", *inputs, "-o", out, "--manifest", manifest, "--skip-existing", "--json"], counting_patch(counter))
    assert rerun.returncode == 0, rerun.stderr
    # only the unfinished files were mastered, once each
    done_names = {Path(line["input"]).name for line in finished}
    assert sorted(calls(counter)) == sorted(p.name for p in inputs if p.name not in done_names)
    # the finished outputs were not touched: same inode, same mtime
    assert {o: stamp(Path(o)) for o in before} == before
    # one line per input, each one final ("done"); nothing the killed run half-wrote is left
    lines = manifest_lines(manifest)
    assert sorted(line["input"] for line in lines) == sorted(str(p.absolute()) for p in inputs)
    assert {line["status"] for line in lines} == {"done"}
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in inputs)
    summary = summary_of(rerun.stdout)
    assert (summary["done"], summary["skipped"], summary["failed"], summary["refused"]) == \
        (len(inputs) - len(finished), len(finished), 0, 0)
    # the digests in the manifest are the files' own
    import hashlib

    for line in lines:
        assert line["output_sha256"] == hashlib.sha256(Path(line["output"]).read_bytes()).hexdigest()
        assert line["input_sha256"] == hashlib.sha256(Path(line["input"]).read_bytes()).hexdigest()
        assert line["integrated_lufs"] == pytest.approx(-14.0, abs=0.1) and line["true_peak_dbtp"] <= -1.0

    # a third run skips everything and adds no line
    third = run_child(["master", *inputs, "-o", out, "--manifest", manifest, "--skip-existing", "--json"], counting_patch(counter))
    assert third.returncode == 0 and summary_of(third.stdout)["skipped"] == len(inputs)
    assert manifest_lines(manifest) == lines


def test_other_settings_another_input_and_truncated_outputs_are_redone(tmp_path, monkeypatch):
    from automix.jobs import master_files

    names = ["cut", "louder", "changed", "kept", "left"]
    inputs = [write_input(tmp_path / "in" / f"{name}.wav", seed=i) for i, name in enumerate(names)]
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    made: list[str] = []
    real = master_files.master_file

    def counted(src, *args, **kwargs):
        made.append(Path(src).stem)
        return real(src, *args, **kwargs)

    monkeypatch.setattr(master_files, "master_file", counted)

    def master(*args):
        result = CliRunner().invoke(app, ["master", *map(str, args), "-o", str(out), "--manifest", str(manifest), "--json"])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    assert master(*inputs).exit_code == 0
    first_bytes = {name: (out / f"{name}.wav").read_bytes() for name in names}
    # the damage a real catalogue meets:
    cut = out / "cut.wav"
    cut.write_bytes(first_bytes["cut"][: len(first_bytes["cut"]) // 2])  # a copy that stopped half-way
    other = CliRunner().invoke(app, ["master", str(inputs[1]), "-o", str(tmp_path / "other"), "--target-lufs", "-16"])
    assert other.exit_code == 0
    (out / "louder.wav").write_bytes((tmp_path / "other" / "louder.wav").read_bytes())  # made with other settings
    write_input(inputs[2], seed=99)  # the input changed since
    (out / "left.wav").unlink()  # and a kill left only a temp file of a dead process
    (out / ".left.wav.automix-999999-0badc0de.part").write_bytes(first_bytes["left"][:1000])
    made.clear()

    result = master(*inputs, "--skip-existing")
    assert result.exit_code == 0, result.stderr
    assert sorted(made) == ["changed", "cut", "left", "louder"]  # all but "kept"
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[-1]["summary"] == {"done": 4, "skipped": 1, "failed": 0, "refused": 0, "failed_files": []}
    assert [r["status"] for r in records[:-1] if r["input"].endswith("kept.wav")] == ["skipped"]
    # redone outputs are the same bytes a fresh run writes; the changed input's is new
    for name in ("cut", "louder", "left", "kept"):
        assert (out / f"{name}.wav").read_bytes() == first_bytes[name], name
    assert (out / "changed.wav").read_bytes() != first_bytes["changed"]
    assert not list(out.glob("*.part")) and not list(out.glob(".*.part"))
    lines = manifest_lines(manifest)
    assert len(lines) == len(names) and len({line["input"] for line in lines}) == len(names)
    assert {Path(line["input"]).stem: line["status"] for line in lines} == dict.fromkeys(names, "done")

    # without a manifest to compare digests with, the cut is found from the file alone
    bare = tmp_path / "bare"
    assert CliRunner().invoke(app, ["master", str(inputs[0]), "-o", str(bare)]).exit_code == 0
    whole = (bare / "cut.wav").read_bytes()
    (bare / "cut.wav").write_bytes(whole[: len(whole) - 3000])
    made.clear()
    again = CliRunner().invoke(app, ["master", str(inputs[0]), "-o", str(bare), "--skip-existing"])
    assert again.exit_code == 0 and made == ["cut"] and (bare / "cut.wav").read_bytes() == whole


def test_failed_files_are_listed_and_retried_without_duplicate_lines(tmp_path):
    good = write_input(tmp_path / "in" / "good.wav", seed=1)
    bad = tmp_path / "in" / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    args = ["master", str(good), str(bad), "-o", str(out), "--manifest", str(manifest), "--skip-existing", "--json"]
    for _ in range(2):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1
        summary = json.loads(result.stdout.splitlines()[-1])["summary"]
        assert summary["failed"] == 1 and len(summary["failed_files"]) == 1 and "bad.wav" in summary["failed_files"][0]
        assert "not mastered:" in result.stderr and "bad.wav" in result.stderr.split("not mastered:")[1]
        lines = manifest_lines(manifest)
        assert sorted((Path(line["input"]).name, line["status"]) for line in lines) == \
            [("bad.wav", "failed"), ("good.wav", "done")]
        assert lines[[Path(line["input"]).name for line in lines].index("bad.wav")]["error"]
    assert summary["skipped"] == 1  # the second run left good.wav alone


def test_refused_target_is_recorded_as_refused(tmp_path):
    source = write_input(tmp_path / "in" / "a.wav", seed=2)
    manifest = tmp_path / "m.jsonl"
    result = CliRunner().invoke(app, ["master", str(source), "-o", str(tmp_path / "out"), "--manifest", str(manifest),
                                      "--target-lufs", "-5", "--max-limiting-db", "1", "--json"])
    assert result.exit_code == 3
    [line] = manifest_lines(manifest)
    assert line["status"] == "refused" and line["output_sha256"] is None and line["error"]
    assert json.loads(result.stdout.splitlines()[-1])["summary"]["refused"] == 1


def test_batch_options_are_checked_before_any_audio_is_read(tmp_path, monkeypatch):
    import automix.io.audio
    import automix.jobs.master_files

    def no_reading(*args, **kwargs):
        raise AssertionError("audio was read before the arguments were checked")

    monkeypatch.setattr(automix.io.audio, "read_audio", no_reading)
    monkeypatch.setattr(automix.jobs.master_files, "file_source", no_reading)
    source = write_input(tmp_path / "a.wav", seed=3)
    (tmp_path / "folder.jsonl").mkdir()
    cases = [
        (["--manifest", tmp_path / "m.jsonl", "--dry-run"], "--dry-run"),
        (["--manifest", tmp_path / "folder.jsonl"], "folder"),
        (["--manifest", source], "input"),
        (["--manifest", "s3://bucket/m.jsonl"], "local file"),
    ]
    for extra, says in cases:
        result = CliRunner().invoke(app, ["master", str(source), "-o", str(tmp_path / "out"), *map(str, extra)])
        assert result.exit_code == 2, (extra, result.stderr, result.exception)
        assert says in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert source.read_bytes()[:4] == b"RIFF"


@pytest.mark.parametrize("fmt", ["wav", "flac", "aiff", "mp3", "opus", "aac"])
def test_a_cut_short_file_is_told_from_a_whole_one(tmp_path, fmt):
    """Truncation is found from the container's own sizes, for every format automix
    writes, at any cut: half, all but one byte, all but a few kilobytes."""
    from automix.io import lossy
    from automix.io.audio import write_audio
    from automix.jobs.manifest import incomplete_reason

    samples = music_like(2.0, 48000, seed=4)
    path = tmp_path / f"whole.{'m4a' if fmt == 'aac' else fmt}"
    if fmt in ("mp3", "opus", "aac"):
        lossy.write_lossy(samples, 48000, path, fmt)
    else:
        write_audio(samples, 48000, path, "24")
    data = path.read_bytes()
    assert incomplete_reason(path) is None
    for cut in (len(data) // 2, len(data) - 1, len(data) - 3000):
        short = tmp_path / f"short{path.suffix}"
        short.write_bytes(data[:cut])
        assert incomplete_reason(short), (fmt, cut)
    empty = tmp_path / f"empty{path.suffix}"
    empty.write_bytes(b"")
    assert incomplete_reason(empty)
