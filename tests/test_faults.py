"""Fault injection on the real command line (issue 8): outputs that would destroy an
input, devices, reruns, a full disk, a read-only folder, dying workers, SIGTERM and
SIGINT mid-batch. Every case ends in a clear result or a clear error, never a
traceback, and every input is byte-identical afterwards.

Inputs are written with soundfile directly: automix's own writer tags its outputs,
and a rerun leaves tagged files out on purpose.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from signals import music_like, sine
from typer.testing import CliRunner

from automix.cli import app
from automix.jobs.safety import available_cpus, run_batch


def automix(*args, preexec_fn=None, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "automix", *map(str, args)], check=False, capture_output=True, text=True,
                          preexec_fn=preexec_fn, env=env, cwd=cwd, timeout=300)


def automix_patched(patch: str, *args):
    """Run the CLI in a child with ``patch`` (Python source) executed first."""
    code = f"import sys\n{patch}\nfrom automix.cli import main\nsys.argv = ['automix'] + sys.argv[1:]\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], check=False, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def refuse(monkeypatch):
    """Run the CLI in this process with every audio reader replaced by one that fails
    the test: a usage error must be found before any audio is read."""
    import automix.io.audio
    import automix.jobs.master_files
    import automix.jobs.mix_folder

    def no_reading(*args, **kwargs):
        raise AssertionError("audio was read before the arguments were checked")

    monkeypatch.setattr(automix.io.audio, "read_audio", no_reading)
    monkeypatch.setattr(automix.jobs.master_files, "file_source", no_reading)
    monkeypatch.setattr(automix.jobs.mix_folder, "read_audio", no_reading)

    def run(*args):
        result = CliRunner().invoke(app, list(map(str, args)))
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return run


def write_input(path: Path, seconds: float = 2.0, sample_rate: int = 44100, seed: int = 0, level: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (music_like(seconds, sample_rate, seed=seed) * np.float32(level)).T, sample_rate, subtype="PCM_24")
    return path


def make_stems(folder: Path, seconds: float = 2.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "drums.wav", music_like(seconds, 44100).T, 44100, subtype="PCM_24")
    sf.write(folder / "bass.wav", sine(-18, seconds, 44100, 110.0).T, 44100, subtype="PCM_24")
    sf.write(folder / "vox.wav", sine(-18, seconds, 44100, 440.0, channels=1).T, 44100, subtype="PCM_24")
    return folder


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def part_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.part")) if folder.exists() else []


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


# --- outputs that would destroy something: refused before any audio is read ----------


def test_output_that_is_an_input_is_refused_through_links(tmp_path, refuse):
    stems = make_stems(tmp_path / "S")
    (tmp_path / "link.wav").symlink_to(stems / "vox.wav")
    os.link(stems / "bass.wav", tmp_path / "hard.wav")
    before = digests(stems)
    for output in (stems / "vox.wav", tmp_path / "link.wav", tmp_path / "hard.wav"):
        result = refuse("mix", stems, "-o", output)
        assert result.exit_code == 2, (output, result.stderr)
        assert "input" in result.stderr and result.stderr.count("\n") == 1
    assert digests(stems) == before


def test_report_that_is_a_stem_or_the_output_is_refused(tmp_path, refuse):
    stems = make_stems(tmp_path / "S")
    before = digests(stems)
    cases = [
        ("--report", stems / "drums.wav"),  # would replace a stem with JSON
        ("--report", tmp_path / "m.wav"),  # would replace the mix with JSON
        ("--report", tmp_path / "r.txt"),  # not .json
        ("--export-stems", stems / "processed"),  # the next mix would mix them in
        ("--export-stems", tmp_path / "m.wav"),  # the output itself
    ]
    for option, path in cases:
        result = refuse("mix", stems, "-o", tmp_path / "m.wav", option, path)
        assert result.exit_code == 2, (option, path, result.stderr)
        assert result.stderr.startswith("automix:") and result.stderr.count("\n") == 1
    assert digests(stems) == before and not (tmp_path / "m.wav").exists()
    assert not (stems / "processed").exists()


def test_usage_errors_come_before_reading_audio(tmp_path, refuse):
    stems = make_stems(tmp_path / "S")
    (tmp_path / "latin1.toml").write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    (tmp_path / "existing.wav").write_bytes(b"user data")
    cases = [
        (("mix", stems, "-o", tmp_path / "song.wma"), "wma"),
        (("mix", stems, "-o", tmp_path / "song"), "extension"),
        (("mix", stems, "-o", tmp_path / "x.wav", "--format", "wma"), "--format"),
        (("mix", stems, "-o", tmp_path / "x.wav", "--format", "mp3"), "mp3"),
        (("mix", stems, "-o", tmp_path / "x.wav", "--role", "missing=bass"), "missing"),
        (("mix", stems, "-o", tmp_path / "x.wav", "--preset-file", tmp_path / "missing.toml"), "no such file"),
        (("mix", stems, "-o", tmp_path / "x.wav", "--preset-file", tmp_path / "latin1.toml"), "UTF-8"),
        (("master", stems, "-o", tmp_path / "existing.wav"), "not a folder"),
        (("master", stems, "-o", tmp_path / "m", "--preset-file", tmp_path / "missing.toml"), "no such file"),
    ]
    for args, expected in cases:
        result = refuse(*args)
        assert result.exit_code == 2, (args, result.exit_code, result.stderr)
        assert expected in result.stderr, (args, result.stderr)
    assert (tmp_path / "existing.wav").read_bytes() == b"user data"


def test_a_device_node_is_never_replaced(tmp_path, refuse):
    stems = make_stems(tmp_path / "S")
    mix = refuse("mix", stems, "-o", "/dev/null", "--format", "wav")
    master = refuse("master", stems / "vox.wav", "-o", "/dev/null")
    assert mix.exit_code == 2 and "/dev/null" in mix.stderr
    assert master.exit_code == 2 and "/dev/null" in master.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# --- reruns, silent skips -------------------------------------------------------------


def test_master_rerun_into_the_input_folder_does_not_master_its_masters(tmp_path):
    folder = tmp_path / "D"
    write_input(folder / "a.wav", 1.5)
    write_input(folder / "b.flac", 1.5, seed=1)
    originals = digests(folder)
    for inputs in ([folder], [folder, folder / "a.wav"]):  # a.wav named twice is mastered once
        result = automix("master", *inputs, "-o", folder, "-j", "2")
        assert result.returncode == 0, result.stderr
        assert len(list(folder.iterdir())) == 4  # 2 inputs + 2 masters, not 2 -> 4 -> 8
    assert "left out" in result.stderr and "written by automix" in result.stderr
    assert "mastered once" in result.stderr
    assert {k: v for k, v in digests(folder).items() if k in originals} == originals
    # named explicitly, an automix output is mastered like any file
    master = next(p for p in folder.iterdir() if p.name not in originals)
    again = automix("master", master, "-o", tmp_path / "E", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "ok"


def test_mix_rerun_leaves_the_first_mix_out_and_reports_skips(tmp_path):
    stems = make_stems(tmp_path / "S")
    sf.write(stems / "click.wav", np.full((1, 1), 0.5, np.float32), 44100)  # 1 sample
    (stems / "notes.txt").write_text("take 3 was the good one")
    (stems / "old takes").mkdir()
    write_input(stems / "old takes" / "vox_take1.wav", 1.0)
    before = digests(stems)
    first = automix("mix", stems, "-o", stems / "mix.wav", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["stems"] == 3
    second = automix("mix", stems, "-o", stems / "mix2.wav", "--report", tmp_path / "r.json", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["stems"] == 3  # not 4: mix.wav is not a stem
    report = json.loads((tmp_path / "r.json").read_text())
    kinds = {s["file"]: s["kind"] for s in report["skipped"]}
    assert kinds == {"mix.wav": "automix output", "click.wav": "too short", "notes.txt": "not audio", "old takes": "subfolder"}
    for name in kinds:
        assert f"left out {name}" in second.stderr
    # the 1-sample stem got no +48 dB: the loudest sample of the mix is the ceiling's, not a click
    assert "click.wav" not in {s["file"] for s in report["stems"]}
    assert {k: v for k, v in digests(stems).items() if k in before} == before


# --- one bad file never stops the others ----------------------------------------------


def test_garbage_and_one_sample_files_fail_alone(tmp_path):
    (tmp_path / "garbage.wav").write_bytes(np.random.default_rng(0).bytes(20000))
    sf.write(tmp_path / "one.wav", np.full((1, 1), 0.5, np.float32), 44100)
    good = write_input(tmp_path / "good.wav", 1.5)
    before = digests(tmp_path)
    for jobs in ("1", "2"):
        result = automix("master", tmp_path / "garbage.wav", tmp_path / "one.wav", good, "-o", tmp_path / f"out{jobs}", "--json", "-j", jobs)
        assert result.returncode == 1, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["status"] for r in records] == ["error", "error", "ok"]
        assert all("\n" not in r["error"] and "bug" not in r["error"] for r in records[:2])
        no_traceback(result)
    analysis = automix("analyze", "--json", tmp_path / "garbage.wav", tmp_path / "one.wav", good)
    records = [json.loads(line) for line in analysis.stdout.splitlines()]
    assert analysis.returncode == 1 and records[0]["status"] == "error" and records[2]["status"] == "ok"
    no_traceback(analysis)
    assert {k: v for k, v in digests(tmp_path).items() if k in before} == before


def test_disk_full_fails_only_the_file_that_did_not_fit(tmp_path):
    big = write_input(tmp_path / "in" / "a_big.wav", 8.0)  # ~2.1 MB as 24-bit
    small = write_input(tmp_path / "in" / "b_small.wav", 1.0, seed=1)  # ~0.26 MB

    def limit_file_size():  # the child sees a disk that is full after 1 MB per file
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        result = automix("master", big, small, "-o", out, "--json", "-j", jobs, preexec_fn=limit_file_size)
        assert result.returncode == 1, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["status"] for r in records] == ["error", "ok"]
        assert "file-size limit" in records[0]["error"] or "disk full" in records[0]["error"]
        assert sorted(p.name for p in out.iterdir()) == ["b_small.wav"]  # no temp file, no partial master
        no_traceback(result)


def test_read_only_output_folder(tmp_path):
    source = write_input(tmp_path / "a.wav", 1.0)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        result = automix("master", source, "-o", locked)
        assert result.returncode == 2 and "permission denied" in result.stderr
        mix = automix("mix", make_stems(tmp_path / "S"), "-o", locked / "m.wav")
        assert mix.returncode == 2 and "permission denied" in mix.stderr
        no_traceback(result)
    finally:
        locked.chmod(0o700)


def test_jobs_capped_at_the_cpu_count(tmp_path):
    files = [write_input(tmp_path / f"{i}.wav", 1.0, seed=i) for i in range(2)]
    result = automix("master", *files, "-o", tmp_path / "out", "-j", "1000")
    assert result.returncode == 0, result.stderr
    assert f"capped at {available_cpus()}" in result.stderr


def _job(value):
    if value == 2:
        os._exit(9)  # as the kernel's OOM killer would leave it
    if value == 4:
        raise ZeroDivisionError("division by zero")
    return {"status": "ok", "value": value}


def test_a_dying_worker_fails_only_its_file():
    records = list(run_batch(_job, [(i,) for i in range(6)], [f"file{i}" for i in range(6)], workers=2))
    assert [i for i, _ in records] == list(range(6))
    statuses = [r["status"] for _, r in records]
    assert statuses == ["ok", "ok", "error", "ok", "error", "ok"]
    assert "worker process stopped" in records[2][1]["error"] and "file2" in records[2][1]["error"]
    assert "bug in automix" in records[4][1]["error"]


def test_a_worker_killed_mid_file_through_the_cli(tmp_path):
    files = [write_input(tmp_path / f"{name}.wav", 1.0, seed=i) for i, name in enumerate("abc")]
    patch = (
        "import os, automix.jobs.master_files as m\n"
        "real = m.master_file\n"
        "def dies_on_b(src, *a, **k):\n"
        "    if src.name == 'b.wav':\n"
        "        os.kill(os.getpid(), 9)  # as the OOM killer would\n"
        "    return real(src, *a, **k)\n"
        "m.master_file = dies_on_b\n"
    )
    result = automix_patched(patch, "master", *files, "-o", tmp_path / "out", "-j", "2", "--json")
    assert result.returncode == 1, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert "worker process stopped" in records[1]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "c.wav"]
    no_traceback(result)


def test_no_worker_can_start_so_the_batch_runs_in_process(monkeypatch):
    import automix.jobs.safety

    def fork_fails(*args):
        raise BlockingIOError(11, "Resource temporarily unavailable")  # EAGAIN, as fork under RLIMIT_NPROC

    monkeypatch.setattr(automix.jobs.safety, "_submit", fork_fails)
    records = list(run_batch(_job, [(i,) for i in (0, 1, 3, 4)], ["a", "b", "c", "d"], workers=2))
    assert [r["status"] for _, r in records] == ["ok", "ok", "ok", "error"]


def test_an_internal_error_is_one_line_unless_debugging(tmp_path):
    source = write_input(tmp_path / "a.wav", 1.0)
    patch = "def _bad(*a, **k):\n    raise ValueError('plan went wrong')\nimport automix.jobs.master_files\nautomix.jobs.master_files.plan_master = _bad\n"
    result = automix_patched(patch, "master", source, "-o", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.count("this is a bug in automix") == 1
    no_traceback(result)
    code = f"import os, sys\nos.environ['AUTOMIX_DEBUG'] = '1'\n{patch}"
    debug = automix_patched(code, "master", source, "-o", tmp_path / "out")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# --- signals ----------------------------------------------------------------------------


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields[2] is the pgrp
            members.append(int(entry))
    return members


def _catches(pid: int, sig: int) -> bool:
    """True once the process has installed a handler for ``sig`` (its startup is over)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(mask >> (sig - 1) & 1)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _hangup_not_ignored() -> None:
    """In the child: SIGHUP at its default, as a terminal's command starts (pytest run
    under ``nohup`` would pass it on ignored, and automix keeps an ignored signal so)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture(scope="module")
def long_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    for i in range(4):
        write_input(folder / f"song{i}.wav", 12.0, 48000, seed=i, level=0.3)
    return folder


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
@pytest.mark.parametrize(("command", "sig", "to_group", "code"), [
    ("master -j 2", signal.SIGTERM, False, 143),
    ("master -j 2", signal.SIGINT, True, 130),  # Ctrl-C: the terminal signals the whole group
    ("master -j 1", signal.SIGTERM, False, 143),
    ("mix", signal.SIGINT, False, 130),
    ("master -j 2", signal.SIGKILL, False, -9),  # the workers follow their parent (and clean up)
    ("master -j 2", signal.SIGHUP, True, 129),  # the terminal or SSH session closed: the whole group
    ("master -j 1", signal.SIGHUP, True, 129),  # the helper process too
])
def test_a_signal_stops_the_whole_job(tmp_path, long_inputs, command, sig, to_group, code):
    before = digests(long_inputs)
    out = tmp_path / "out"
    if command == "mix":
        args = ["mix", long_inputs, "-o", out / "mix.wav", "--export-stems", out / "stems"]
    else:
        args = ["master", long_inputs, "-o", out, "--target-lufs", "-9", "--over-limit", "force", "-j", command[-1]]
    process = subprocess.Popen([sys.executable, "-m", "automix", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_hangup_not_ignored)
    try:
        deadline = time.monotonic() + 30
        want = 2 if command.endswith("2") else 0
        while time.monotonic() < deadline and not (_catches(process.pid, signal.SIGTERM) and len(_children(process.pid)) >= want):
            time.sleep(0.05)
        time.sleep(0.5)  # mid-run: reading or processing the first files
        assert process.poll() is None, "finished before the signal: make the inputs longer"
        if to_group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"stopped by {sig.name}" in stderr or sig == signal.SIGKILL
    deadline = time.monotonic() + (15 if sig == signal.SIGKILL else 0.2)
    while _group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(process.pid) == []  # no worker survives its parent
    assert part_files(out) == []
    assert digests(long_inputs) == before


def _reader_leaves_after_one_line(args: list) -> tuple[subprocess.Popen, str, str]:
    """Run automix with its stdout read by a reader that leaves after the first line
    (``| head -1``); returns the process, that line and its stderr."""
    process = subprocess.Popen([sys.executable, "-m", "automix", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read()
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process, line, stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_reader_that_leaves_stops_the_batch_as_sigpipe_would(tmp_path, jobs):
    """``automix master *.wav --json | head -1``: the batch stops at the next line it
    cannot write, with SIGPIPE's exit code (141, as a shell reports it) and a reason --
    not typer's silent exit 1 -- and leaves every output whole, no temp file, and the
    inputs as they were."""
    inputs = tmp_path / "in"
    for i in range(4):
        write_input(inputs / f"song{i}.wav", 3.0, seed=i, level=0.3)
    before = digests(inputs)
    out = tmp_path / "out"
    process, line, stderr = _reader_leaves_after_one_line(["master", inputs, "-o", out, "--json", "-j", jobs])
    assert json.loads(line)["status"] == "ok"
    assert process.returncode == 128 + signal.SIGPIPE, stderr
    assert "standard output was closed" in stderr and "Traceback" not in stderr
    assert part_files(out) == []
    written = sorted(p.name for p in out.glob("*.wav"))
    for name in written:  # whole: the input's length, and readable to the end
        assert sf.info(out / name).frames == sf.info(inputs / name).frames
        assert np.isfinite(sf.read(out / name)[0]).all()
    if jobs == "1":  # the first files in order, up to the one whose line found the reader gone
        # (the second, unless this process stalled between reading its line and leaving)
        assert written == [f"song{i}.wav" for i in range(len(written))] and 2 <= len(written) < 4
    assert digests(inputs) == before


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_messages_that_cannot_be_written_never_stop_the_batch(tmp_path):
    """``2>>log`` on a full disk: every message is lost, none of the files. (Before, the
    first line that could not be written ended the batch with exit 1.)"""
    inputs = tmp_path / "in"
    for i in range(3):
        write_input(inputs / f"song{i}.wav", 1.0, seed=i, level=0.3)
    out = tmp_path / "out"
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-m", "automix", "master", str(inputs), "-o", str(out)], check=False,
                             stdout=subprocess.PIPE, stderr=full, text=True, timeout=300)
    assert run.returncode == 0
    assert sorted(p.name for p in out.glob("*.wav")) == ["song0.wav", "song1.wav", "song2.wav"]
    assert part_files(out) == []


def test_analyze_stops_when_its_reader_leaves(tmp_path):
    for i in range(3):
        write_input(tmp_path / f"song{i}.wav", 1.0, seed=i)
    process, line, stderr = _reader_leaves_after_one_line(["analyze", tmp_path, "--json"])
    assert json.loads(line)["status"] == "ok"
    assert process.returncode == 128 + signal.SIGPIPE, stderr
    assert "standard output was closed" in stderr and "Traceback" not in stderr


def test_the_next_run_removes_temp_files_of_a_killed_run(tmp_path):
    source = write_input(tmp_path / "a.wav", 1.0)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=False, capture_output=True, text=True)
    stale = out / f".a.wav.automix-{int(dead.stdout)}-0badf00d.part"
    stale.write_bytes(b"half a master")
    result = automix("master", source, "-o", out)
    assert result.returncode == 0, result.stderr
    assert not stale.exists() and (out / "a.wav").exists()


SLOW_WRITER = """
import sys, time
from pathlib import Path
from automix.io.audio import atomic_output
from automix.jobs.safety import Stopped, install_stop_handlers, run_batch

def write_slowly(path):
    with atomic_output(Path(path)) as temp:
        Path(temp).write_bytes(b"half")
        time.sleep(60)  # stopped here, mid-write
    return {"status": "ok"}

install_stop_handlers()
out = Path(sys.argv[1])
try:
    for _ in run_batch(write_slowly, [(out / f"{i}.wav",) for i in range(4)], list("abcd"), workers=2):
        pass
except Stopped as stop:
    sys.exit(stop.exit_code)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_workers_stopped_mid_write_remove_their_temp_files(tmp_path, sig):
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(out)], start_new_session=True,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(part_files(out)) < 2:  # both workers inside atomic_output
            time.sleep(0.05)
        assert len(part_files(out)) == 2
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 128 + sig, stderr
    assert stderr == ""
    assert part_files(out) == [] and list(out.iterdir()) == []
    assert _group_members(process.pid) == []


# --- a worker never outlives its batch ----------------------------------------------------


def _exit_code(worker, timeout_s: float = 10.0) -> int | None:
    """The worker's exit code once it has left, or None after ``timeout_s``.

    Not ``worker.join()`` then ``worker.exitcode``: a pool whose worker died is broken,
    and its manager thread reaps that worker too. A join that loses the race finds the
    process gone (ECHILD) before the other thread has recorded its code, and returns
    with ``exitcode`` None (CI saw it once; reproduced by widening that gap on purpose).
    """
    deadline = time.monotonic() + timeout_s
    while worker.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return worker.exitcode


class _SignalledInAFinalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)  # the handler runs in here: Python swallows its Stopped ("Exception ignored in")


def _a_job_whose_stop_is_swallowed() -> str:
    _SignalledInAFinalizer()  # collected at once
    time.sleep(0.3)
    return "finished, and ready for the next file"


def test_a_stop_swallowed_inside_a_finalizer_still_ends_the_worker():
    """A stop signal whose Stopped is raised inside a __del__ never unwinds the job: the job
    ends normally. The worker must still leave when the job ends, not take the next file
    with its signals ignored (a worker of a killed batch was found idle, its parent gone,
    a quarter of an hour later)."""
    from concurrent.futures.process import BrokenProcessPool

    from automix.jobs import safety

    pool = safety._new_pool(1)
    try:
        future = safety._submit(pool, _a_job_whose_stop_is_swallowed, ())
        worker = next(iter(pool._processes.values()))
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=60)
        assert _exit_code(worker) == 128 + signal.SIGTERM  # as the signal asked, not a crash
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _threads_in_a_worker() -> int:
    from automix.measure import loudness

    return loudness.THREADS


def test_an_idle_worker_stopped_by_a_signal_leaves_with_its_code():
    """Between files there is nothing to clean up: the worker leaves at once, 128 + the
    signal's number (what a shell reports for a process stopped by that signal). And a
    worker's file runs on one core, without a helper process (the workers use the cores)."""
    from automix.jobs import safety

    pool = safety._new_pool(1)
    try:
        assert safety._submit(pool, _threads_in_a_worker, ()).result(timeout=60) == 1
        worker = next(iter(pool._processes.values()))
        os.kill(worker.pid, signal.SIGTERM)
        assert _exit_code(worker) == 128 + signal.SIGTERM
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pool_script(*lines: str) -> subprocess.CompletedProcess:
    """Run lines of Python that start a one-worker pool (``pool``) from automix.jobs.safety."""
    script = "\n".join(("import os, signal, sys, time", "from automix.jobs import safety", *lines)) + "\n"
    return subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _running(pid)


def _worker_of_a_killed_parent(*setup: str) -> int:
    """Run ``setup`` (lines patching automix.jobs.safety), start a one-worker pool whose
    worker sleeps in its job, SIGKILL the pool's process; the worker's pid."""
    run = _pool_script(
        *setup,
        "pool = safety._new_pool(1)",
        "future = safety._submit(pool, time.sleep, (60,))",
        "time.sleep(1.5)  # the worker is in its job",
        "print(*[p.pid for p in pool._processes.values()], flush=True)",
        "os.kill(os.getpid(), signal.SIGKILL)",
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    (worker,) = (int(pid) for pid in run.stdout.split())
    return worker


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_the_death_signal_stops_a_worker_long_before_the_watch_would():
    """With the watch slowed to a minute, only the kernel's death signal can end the
    worker of a SIGKILLed parent within seconds."""
    worker = _worker_of_a_killed_parent("safety.PARENT_POLL_S = 60.0")
    assert _gone_within(worker, 5.0), "the worker outlived its parent"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGHUP"])
def test_a_worker_keeps_a_signal_ignored_when_its_batch_runs_with_it_ignored(sig):
    """A shell starts background jobs with SIGINT ignored so that Ctrl-C meant for the
    foreground leaves them running, and ``nohup`` starts its command with SIGHUP ignored
    so that it outlives the terminal: their workers must ignore it too."""
    run = _pool_script(
        f"signal.signal(signal.{sig}, signal.SIG_IGN)",
        "pool = safety._new_pool(1)",
        "future = safety._submit(pool, time.sleep, (1.0,))",
        "time.sleep(0.5)",
        f"[os.kill(p.pid, signal.{sig}) for p in pool._processes.values()]",
        "future.result(timeout=30)",
        "pool.shutdown(wait=True)",
        "print('finished')",
    )
    assert run.returncode == 0 and run.stdout.strip() == "finished", run.stderr


def test_a_batch_that_ends_normally_lets_its_workers_go():
    """The watch thread must not hold a finished worker back (a thread Python waits for at
    exit would hang the pool's shutdown)."""
    run = _pool_script(
        "pool = safety._new_pool(2)",
        "print(sum(safety._submit(pool, abs, (-k,)).result(timeout=30) for k in range(4)), flush=True)",
        "pool.shutdown(wait=True)",
        "print('shut down')",
    )
    assert run.returncode == 0 and run.stdout.splitlines() == ["6", "shut down"], run.stderr


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_a_worker_whose_parent_vanished_without_its_death_signal_leaves():
    """The parent SIGKILLed and its death signal lost (here: never armed, as on macOS): the
    worker sees its parent gone within PARENT_POLL_S and stops as the signal would have."""
    worker = _worker_of_a_killed_parent("safety._stop_with_parent = lambda parent_pid: None  # no PR_SET_PDEATHSIG",
                                        "safety.PARENT_POLL_S = 0.1")
    assert _gone_within(worker, 5.0), "the worker outlived its parent"
