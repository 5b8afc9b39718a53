"""``automix master --cluster`` on a real Dask cluster, and URLs (issue 14, item 2).

A fixture starts a scheduler and two single-threaded worker processes on this machine
(``dask scheduler`` / ``dask worker`` as a user would) and stops them at the end. The
masters must be the same bytes as a local run's; a worker SIGKILLed mid-batch must
still leave every file mastered exactly once (one manifest line per input, every output
present and identical to the local one, no temp file left).

The cluster tests need the ``cluster`` extra and skip without it; the tests of the
error a user without the extra gets run everywhere.
"""

from __future__ import annotations

import json
import os
import signal
import socket
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

REASON = 'the cluster tests need Dask distributed and fsspec: pip install ".[test,cluster]"'
SECONDS = 2.0
RATE = 44100


def write_input(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (music_like(SECONDS, RATE, seed=seed) * np.float32(0.8)).T, RATE, subtype="PCM_24")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dask_command(*args) -> list[str]:
    # the dask entry point of this interpreter's environment, whatever is on PATH
    return [sys.executable, "-c", "import sys; from dask.cli import run_cli; sys.argv[0] = 'dask'; run_cli()", *args]


class LocalCluster:
    """A scheduler and worker processes started as a user would; all stopped by stop()."""

    def __init__(self, workers: int, folder: Path) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        logs = folder / "dask-logs"
        logs.mkdir(parents=True, exist_ok=True)
        port = self.address.rsplit(":", 1)[1]
        try:
            self._start(["scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"], logs / "scheduler.log")
            self._wait_for_port(int(port))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            for i in range(workers):
                # --no-nanny: killing the worker process is losing the worker (a nanny would restart it)
                worker = self._start(["worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name",
                                      f"w{i}", "--memory-limit", "0"], logs / f"worker{i}.log", env=env, cwd=folder)
                self.workers.append(worker)
            self._wait_for_workers(workers)
        except BaseException:
            self.stop()  # a half-started cluster leaves no process behind either
            raise

    def _start(self, args, log: Path, env=None, cwd=None) -> subprocess.Popen:
        with open(log, "w") as stderr:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(dask_command(*args), stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=cwd)
        self.processes.append(process)
        return process

    @staticmethod
    def _wait_for_port(port: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the Dask scheduler did not start")

    def _wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="20s") as client:
            client.wait_for_workers(count, timeout=60)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture()
def cluster(tmp_path):
    pytest.importorskip("distributed", reason=REASON)
    pytest.importorskip("fsspec", reason=REASON)
    started = LocalCluster(2, tmp_path)
    try:
        yield started
    finally:
        started.stop()
    assert all(p.poll() is not None for p in started.processes)  # no process left behind


def automix(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "automix", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def finish(process: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def local_masters(inputs, out: Path) -> dict[str, bytes]:
    result = finish(automix("master", *inputs, "-o", out, "-q"))
    assert result.returncode == 0, result.stderr
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_cluster_masters_are_the_local_bytes_and_file_urls_work(cluster, tmp_path):
    inputs = [write_input(tmp_path / "in" / f"song{i}.wav", seed=i) for i in range(6)]
    local = local_masters(inputs, tmp_path / "local")
    manifest = tmp_path / "cluster.jsonl"
    started = time.monotonic()
    result = finish(automix("master", *inputs, "-o", tmp_path / "cluster", "--cluster", cluster.address,
                            "--manifest", manifest, "--json"))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "cluster").iterdir())} == local
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[-1]["summary"]["done"] == 6
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(Path(line["input"]).name for line in lines) == sorted(p.name for p in inputs)
    print(f"6 files of {SECONDS:g} s through 2 workers: {elapsed:.1f} s")

    # file:// URLs in and out, through fsspec on the workers, and AUTOMIX_CLUSTER
    urls = [f"file://{inputs[0]}", f"file://{inputs[1]}"]
    env = {**os.environ, "AUTOMIX_CLUSTER": cluster.address}
    via_urls = finish(automix("master", *urls, "-o", f"file://{tmp_path / 'urls'}", "--json", env=env))
    assert via_urls.returncode == 0, via_urls.stderr
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "urls").iterdir())} == \
        {name: data for name, data in local.items() if name in ("song0.wav", "song1.wav")}
    # and resumed: both skipped, from their tags read back through fsspec
    again = finish(automix("master", *urls, "-o", f"file://{tmp_path / 'urls'}", "--skip-existing", "--json", env=env))
    assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1])["summary"]["skipped"] == 2, again.stderr


def test_a_worker_killed_mid_batch_still_masters_every_file_once(cluster, tmp_path):
    inputs = [write_input(tmp_path / "in" / f"take{i}.wav", seed=20 + i) for i in range(6)]
    local = local_masters(inputs, tmp_path / "local")
    out, manifest = tmp_path / "cluster", tmp_path / "m.jsonl"
    batch = automix("master", *inputs, "-o", out, "--cluster", cluster.address, "--manifest", manifest, "--json")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and batch.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 1:
            break
        time.sleep(0.01)
    victim = cluster.workers[0]
    while time.monotonic() < deadline and batch.poll() is None:  # kill it mid-file: while it writes a master
        if list(out.glob(f".*.automix-{victim.pid}-*.part")):
            break
        time.sleep(0.005)
    assert batch.poll() is None and list(out.glob(f".*.automix-{victim.pid}-*.part")), "no worker was killed mid-file"
    victim.send_signal(signal.SIGKILL)  # a machine lost: no goodbye to the scheduler
    victim.wait(timeout=10)
    result = finish(batch)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "WARNING" not in result.stderr, result.stderr
    written = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert sorted(written) == sorted(local), result.stderr  # no .part either
    assert written == local
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(Path(line["input"]).name for line in lines) == sorted(p.name for p in inputs)
    assert {line["status"] for line in lines} == {"done"}
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(Path(r["input"]).name for r in records[:-1]) == sorted(p.name for p in inputs)


def test_file_urls_without_a_cluster(tmp_path):
    """URLs alone (fsspec, no Dask): a folder URL is listed, each input copied to a
    private folder, each master uploaded beside its destination and moved into place."""
    pytest.importorskip("fsspec", reason=REASON)
    import tempfile

    inputs = [write_input(tmp_path / "in" / f"u{i}.wav", seed=30 + i) for i in range(2)]
    local = local_masters(inputs, tmp_path / "local")
    stages_before = {p.name for p in Path(tempfile.gettempdir()).glob("automix-stage-*")}
    result = finish(automix("master", f"file://{tmp_path / 'in'}/", "-o", f"file://{tmp_path / 'urls'}", "-j", "2", "--json"))
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "urls").iterdir())} == local
    assert [json.loads(line)["output"] for line in result.stdout.splitlines()] == \
        [f"file://{tmp_path / 'urls' / p.name}" for p in inputs]
    assert {p.name for p in Path(tempfile.gettempdir()).glob("automix-stage-*")} <= stages_before  # nothing left


def test_an_unreachable_scheduler_is_a_usage_error(tmp_path):
    pytest.importorskip("distributed", reason=REASON)
    source = write_input(tmp_path / "a.wav", seed=1)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = finish(automix("master", source, "-o", tmp_path / "out", "--cluster", address), timeout=60)
    assert result.returncode == 2 and address in result.stderr and "refused" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert time.monotonic() - started < 20 and not (tmp_path / "out").exists()


# --- without the extra: one line naming the install command, exit 2 -----------------


def test_cluster_without_the_extra_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # "import distributed" raises ImportError
    source = write_input(tmp_path / "a.wav", seed=2)
    result = CliRunner().invoke(app, ["master", str(source), "-o", str(tmp_path / "out"), "--cluster", "tcp://127.0.0.1:8786"])
    assert result.exit_code == 2 and 'pip install "automix[cluster]"' in result.stderr
    monkeypatch.setenv("AUTOMIX_CLUSTER", "tcp://127.0.0.1:8786")
    from_env = CliRunner().invoke(app, ["master", str(source), "-o", str(tmp_path / "out")])
    assert from_env.exit_code == 2 and "AUTOMIX_CLUSTER" in from_env.stderr and "automix[cluster]" in from_env.stderr
    assert not (tmp_path / "out").exists()


def test_urls_without_fsspec_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    source = write_input(tmp_path / "a.wav", seed=3)
    for args in ([f"file://{source}", "-o", str(tmp_path / "out")], [str(source), "-o", f"file://{tmp_path / 'out'}"]):
        result = CliRunner().invoke(app, ["master", *args])
        assert result.exit_code == 2 and 'pip install "automix[cluster]"' in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_help_does_not_import_dask():
    code = "import sys\nfrom automix.cli import app\nprint(any(m.split('.')[0] in ('distributed', 'dask', 'fsspec') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
