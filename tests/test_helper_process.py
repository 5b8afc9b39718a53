"""The helper process (automix/io/helper.py): its protocol, its failures, and that a
master is bit-identical with and without it.

Inside pytest other threads usually run, so ``helper()`` declines to fork there; the
scenarios that need the real singleton run in a fresh interpreter with
``AUTOMIX_THREADS=2`` and assert there that the helper was used. The protocol tests
create a ``Helper()`` directly (that skips the thread check, harmless for them). Every
wait has a timeout: a hang fails its test, not the suite.

Expected values come from outside the code under test: the arguments sent, Python's own
exceptions, the single-process run (``AUTOMIX_THREADS=1``, no helper), pyebur128 and an
independent 8x interpolator (tests/sound_metrics.py).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import pyebur128
import pytest
import soundfile as sf
from sound_metrics import true_peak_8x_db

from automix.errors import AutomixError
from automix.io import helper as helper_module
from automix.io.helper import SEND_DEPTH, same
from automix.master import limiter
from automix.measure import loudness

FS = 44100
TESTS = Path(__file__).parent
LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG and /proc are Linux only")


# --- tools -----------------------------------------------------------------------------


def within(seconds: float, fn):
    """``fn()`` in a daemon thread: its value, or its exception raised here; still running
    after ``seconds`` fails the test (a hang)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"no answer within {seconds} s: hung")
    if "error" in box:
        raise box["error"]
    return box["value"]


def environment(threads: int) -> dict:
    env = dict(os.environ, AUTOMIX_THREADS=str(threads))
    env.pop("AUTOMIX_DEBUG", None)
    return env


def run_python(code: str, threads: int = 2, timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (tests/ importable), checked to exit 0."""
    prelude = f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], check=False, env=environment(threads),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a reparented zombie may never be reaped in
    a container, yet it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


# --- objects held in the helper (module level: pickled by reference, the fork has them) --


class Probe:
    """Records what reaches it there, in the order it arrives."""

    def __init__(self, tag: str = "probe") -> None:
        self.tag = tag
        self.seen: list = []

    def note(self, value) -> None:
        self.seen.append(value)

    def notes(self) -> list:
        return self.seen

    def count(self) -> int:
        return len(self.seen)

    def inspect(self, array: np.ndarray) -> tuple:
        before = array.tobytes()
        if array.size:
            array.flat[0] = array.flat[0]  # raises there if the buffer arrived read-only
        return array.flags.writeable, array.dtype.str, array.shape, before

    def fail_unpicklably(self) -> None:
        raise ValueError("holds a lock", threading.Lock())

    def generator(self):
        return (i for i in range(3))

    def fail(self, kind: str, message: str) -> None:
        raise {"value": ValueError, "automix": AutomixError, "custom": CustomError}[kind](message)

    def nap(self, seconds: float) -> None:
        time.sleep(seconds)


class CustomError(Exception):
    pass


class TwoArgumentError(Exception):
    """Pickles (its args are its message) but cannot be rebuilt from them."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


def _refuse_to_load():
    raise RuntimeError("this reply cannot be rebuilt")


class Unloadable:
    """Pickles, but loading it fails (whatever pickling support is installed)."""

    def __reduce__(self):
        return _refuse_to_load, ()


class Unrebuildable:
    def raise_it(self) -> None:
        raise TwoArgumentError("meter", "broken")

    def unloadable(self) -> Unloadable:
        return Unloadable()

    def echo(self, value):
        return value


class Mirror:
    """Takes large blocks and gives large blocks back."""

    def __init__(self) -> None:
        self.total = 0.0

    def take(self, block: np.ndarray) -> None:
        self.total += float(block.astype(np.float64).sum())

    def twice(self, block: np.ndarray) -> np.ndarray:
        return block * np.float32(2)

    def sum(self) -> float:
        return self.total


# --- 1. the held-object protocol --------------------------------------------------------


def test_methods_run_in_the_order_sent(remote):
    held = remote.hold(Probe, "first")
    other = remote.hold(Probe, "second")
    counts = []
    for i in range(40):  # well beyond SEND_DEPTH: send waits for the oldest, order kept
        held.send("note", i)
        other.send("note", -i)
        if i % 7 == 0:
            counts.append(held.call("count"))
    assert within(10, lambda: held.ask("notes")) == list(range(40))
    assert within(10, lambda: other.ask("notes")) == [-i for i in range(40)]
    # each call saw every note sent before it, and none sent after
    assert [within(10, lambda f=f: f.result()) for f in counts] == [i + 1 for i in range(0, 40, 7)]


def test_a_held_copy_is_a_copy(remote):
    here = Probe("here")
    there = remote.hold(same, here)
    there.send("note", "only there")
    assert within(10, lambda: there.ask("notes")) == ["only there"]
    assert here.seen == []


@pytest.mark.parametrize("array", [
    np.arange(2 * 4096, dtype=np.float32).reshape(2, 4096) / 7,
    np.random.default_rng(3).standard_normal((3, 5)).T,  # Fortran order
    np.arange(40, dtype=np.int16).reshape(2, 20)[:, ::3],  # strided: not contiguous
    np.zeros((2, 0), dtype=np.float32),
    np.array([np.nan, -0.0, np.inf, 1e-40], dtype=np.float32),  # bits a value compare would miss
], ids=["c-order", "f-order", "strided", "empty", "special-values"])
def test_an_array_arrives_with_its_bytes_and_writable(remote, array):
    held = remote.hold(Probe)
    writable, dtype, shape, raw = within(10, lambda: held.ask("inspect", array))
    assert writable
    assert (dtype, shape) == (array.dtype.str, array.shape)
    assert raw == array.tobytes()


@pytest.mark.parametrize("kind, error_type", [("value", ValueError), ("automix", AutomixError), ("custom", CustomError)])
def test_an_exception_there_is_raised_here(remote, kind, error_type):
    held = remote.hold(Probe)
    with pytest.raises(error_type, match="^bad block 7$"):
        within(10, lambda: held.ask("fail", kind, "bad block 7"))
    with pytest.raises(error_type, match="^bad block 8$"):
        within(10, lambda: held.call("fail", kind, "bad block 8").result())
    # a failure of a method sent without waiting comes out of the next ask
    held.send("note", 1)
    held.send("fail", kind, "bad block 9")
    held.send("note", 2)
    with pytest.raises(error_type, match="^bad block 9$"):
        within(10, lambda: held.ask("count"))
    # the object survives its methods' failures
    assert within(10, lambda: held.ask("notes")) == [1, 2]


def test_an_exception_in_the_factory_is_raised_by_the_next_ask(remote):
    held = remote.hold(Probe, "a", "too many")  # TypeError there
    with pytest.raises(TypeError, match="positional argument"):
        within(10, lambda: held.ask("notes"))


def test_what_cannot_be_pickled_back_arrives_as_its_words(remote):
    held = remote.hold(Probe)
    with pytest.raises(AutomixError, match="^ValueError: .*holds a lock"):
        within(10, lambda: held.ask("fail_unpicklably"))
    with pytest.raises(AutomixError, match="^generator: "):
        within(10, lambda: held.ask("generator"))
    held.send("note", "still here")
    assert within(10, lambda: held.ask("notes")) == ["still here"]


def test_last_ask_drops_the_object(remote):
    held = remote.hold(Probe)
    held.send("note", "a")
    assert within(10, lambda: held.ask("notes", last=True)) == ["a"]
    with pytest.raises((KeyError, AutomixError)):
        within(10, lambda: held.ask("notes"))
    dropped = remote.hold(Probe)
    dropped.send("note", "b")
    dropped.drop()
    with pytest.raises((KeyError, AutomixError)):
        within(10, lambda: dropped.ask("notes"))
    # the helper itself goes on serving
    assert within(10, lambda: remote.hold(Probe).ask("notes")) == []


def test_large_blocks_both_ways_do_not_deadlock(remote):
    """Several-MB blocks, more sends than SEND_DEPTH, replies of the same size left
    unread while sending: each pipe fills up in turn (1 MB asked for)."""
    held = remote.hold(Mirror)
    rng = np.random.default_rng(5)
    blocks = [rng.standard_normal((2, 600_000)).astype(np.float32) for _ in range(4)]  # 4.8 MB each
    expected_sum = 0.0

    def traffic():
        doubled = []
        for i in range(3 * SEND_DEPTH + 2):
            block = blocks[i % len(blocks)]
            held.send("take", block)
            doubled.append((block, held.call("twice", block)))
        return doubled, held.ask("sum")

    doubled, total = within(60, traffic)
    for i, (block, future) in enumerate(doubled):
        expected_sum += float(block.astype(np.float64).sum())
        assert np.array_equal(within(10, lambda f=future: f.result()), block * np.float32(2))
    assert total == expected_sum


def test_an_unpicklable_argument_fails_that_call_only(remote):
    held = remote.hold(Probe)
    held.send("note", "before")
    with pytest.raises(pickle.PicklingError):
        within(10, lambda: held.ask("note", lambda: None))  # a closure cannot cross
    with pytest.raises(pickle.PicklingError):
        within(10, lambda: held.send("note", threading.Lock()))
    # it took no place in the reply order: the next replies go to their own requests
    held.send("note", "after")
    assert within(5, lambda: held.ask("notes")) == ["before", "after"]
    assert within(5, lambda: held.call("count").result()) == 2


def test_submit_runs_a_function_there(remote):
    held = remote.hold(Probe)
    held.send("note", 1)
    there = within(10, lambda: remote.submit(os.getpid).result())
    assert there == remote._process.pid != os.getpid()
    assert within(10, lambda: remote.submit(divmod, 17, 5).result()) == (3, 2)
    with pytest.raises(ZeroDivisionError):
        within(10, lambda: remote.submit(divmod, 1, 0).result())
    assert within(10, lambda: held.ask("notes")) == [1]


def test_a_reply_that_cannot_be_loaded_fails_its_call_only(remote):
    held = remote.hold(Unrebuildable)
    with pytest.raises(AutomixError, match="this reply cannot be rebuilt"):
        within(5, lambda: held.ask("unloadable"))
    assert within(5, lambda: held.ask("echo", 3)) == 3
    # an exception whose class cannot be rebuilt from its args (unless something like
    # tblib's pickling support, which distributed installs, rebuilds it without __init__)
    with pytest.raises((AutomixError, TwoArgumentError)):
        within(5, lambda: held.ask("raise_it"))
    assert within(5, lambda: held.ask("echo", 4)) == 4


# --- 2. the helper killed ---------------------------------------------------------------


def test_a_killed_helper_fails_the_waiting_call_and_every_later_one(remote):
    held = remote.hold(Probe)
    assert within(10, lambda: held.ask("notes")) == []
    napping = held.call("nap", 30.0)
    os.kill(remote._process.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(AutomixError, match="helper process stopped"):
        within(5, lambda: napping.result())
    assert time.monotonic() - started < 5
    for request in (lambda: held.ask("notes"), lambda: held.send("note", 1), lambda: remote.hold(Probe)):
        with pytest.raises(AutomixError, match="helper process stopped"):
            within(5, request)
    remote._reader.join(5)  # its clean-up done before the fixture's shutdown (see the race test below)


def test_a_helper_killed_while_idle_fails_the_next_request(remote):
    held = remote.hold(Probe)
    assert within(10, lambda: held.ask("notes")) == []
    os.kill(remote._process.pid, signal.SIGKILL)
    with pytest.raises(AutomixError, match="helper process stopped"):
        # a big block: the write itself may meet the closed pipe, or the reply never comes
        within(5, lambda: held.ask("inspect", np.zeros((2, 1_000_000), np.float32)))
    remote._reader.join(5)


def test_a_dying_helper_and_shutdown_close_the_pipe_once(remote):
    """The reply thread gives the helper up (EOF) while the parent shuts it down (atexit
    after a helper died, or after a request cut off by Ctrl-C). The pipe's Connection
    closes in two steps, reading its descriptor then ``os.close`` (which releases the
    GIL); here the reply thread is held between the two for 0.3 s, an interleaving the
    scheduler can give. Closing twice is EBADF at best, at worst it closes a descriptor
    another thread opened meanwhile (the output being written)."""
    connection = remote._requests
    attempts: list = []
    entered = threading.Event()

    def close_slowly_in_the_reply_thread() -> None:  # Connection._close, with a pause
        handle = connection._handle
        if threading.current_thread() is remote._reader:
            entered.set()
            time.sleep(0.3)
        try:
            os.close(handle)
            attempts.append("closed")
        except OSError as error:
            attempts.append(os.strerror(error.errno))

    connection._close = close_slowly_in_the_reply_thread
    os.kill(remote._process.pid, signal.SIGKILL)
    entered.wait(2.0)  # the reply thread is closing (a design that closes elsewhere: no wait)
    try:
        remote.shutdown()
    except OSError as error:
        attempts.append(f"shutdown: {error}")
    remote._reader.join(5)
    assert attempts == ["closed"]


# --- 3. when there is no helper -----------------------------------------------------------


@pytest.mark.parametrize("threaded", [True, False])
def test_a_stage_held_here_answers_between_sends_and_stops_at_its_last(monkeypatch, threaded):
    """Without a helper, ``beside`` holds the object here (Here): calls run in the order
    sent, an ``ask`` sees all of them, more can be sent after one that is not the last,
    and its last ask leaves no thread behind."""
    monkeypatch.setattr(helper_module, "ENABLED", False)
    held = helper_module.beside(Probe, "here", threaded=threaded)
    assert isinstance(held, helper_module.Here)
    for value in range(5):
        held.send("note", value)
    assert within(5, lambda: held.ask("notes")) == [0, 1, 2, 3, 4]
    before = threading.active_count()
    held.send("note", 5)
    assert within(5, lambda: held.ask("count")) == 6
    held.send("note", 6)
    assert within(5, lambda: held.ask("notes", last=True)) == [0, 1, 2, 3, 4, 5, 6]
    time.sleep(0.05)
    assert threading.active_count() <= before - (1 if threaded else 0)  # its worker thread ended


def test_no_helper_with_one_thread_setting(monkeypatch):
    monkeypatch.setattr(loudness, "THREADS", 1)
    assert helper_module.helper() is None


def test_no_helper_off_linux(monkeypatch):
    """macOS has fork, but a child forked after Accelerate or libdispatch started may
    crash: the helper is Linux-only, and the run there uses threads."""
    monkeypatch.setattr(loudness, "THREADS", 2)
    assert helper_module.helper() is not None  # here (Linux): the conftest's helper
    monkeypatch.setattr(helper_module, "_FORK_IS_SAFE", False)
    assert helper_module.helper() is None
    assert helper_module._FORK_IS_SAFE is False
    monkeypatch.undo()
    assert helper_module._FORK_IS_SAFE == sys.platform.startswith("linux")
    assert helper_module._fork_is_safe("linux", ["fork", "spawn", "forkserver"])
    assert not helper_module._fork_is_safe("darwin", ["spawn", "fork", "forkserver"])  # fork there, but unsafe
    assert not helper_module._fork_is_safe("win32", ["spawn"])
    assert not helper_module._fork_is_safe("linux", ["spawn"])


def test_no_helper_beside_running_threads_then_one_once_they_end():
    done = run_python("""
        import json, threading
        from automix.io import helper as helper_module
        from automix.measure import loudness
        assert loudness.THREADS == 2
        stop = threading.Event()
        other = threading.Thread(target=stop.wait)
        other.start()
        beside = helper_module.helper()
        stop.set()
        other.join()
        first = helper_module.helper()
        again = helper_module.helper()
        print(json.dumps([beside is None, first is not None, again is first,
                          first is not None and first._process.is_alive()]))
    """)
    assert json.loads(done.stdout.splitlines()[-1]) == [True, True, True, True]


def test_no_helper_with_automix_threads_1():
    done = run_python("""
        from automix.io import helper as helper_module
        print(helper_module.helper() is None)
    """, threads=1)
    assert done.stdout.split() == ["True"]


# --- 5. the detector: started blocks finished late, locally and in the helper -----------


def loud_noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Stereo noise with clipped bursts: inter-sample peaks well above the samples."""
    rng = np.random.default_rng(seed)
    x = 0.2 * rng.standard_normal((2, int(seconds * FS)))
    for start in rng.integers(0, x.shape[1] - 2000, 12):
        x[:, start : start + 2000] = np.clip(8 * x[:, start : start + 2000], -0.99, 0.99)
    return x.astype(np.float32)


def irregular_sizes(total: int, seed: int = 1) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(rng.choice([1, 7, 300, 4095, 16384, 20000, 33333, 65536])))
    return sizes


def deferred_envelope(x: np.ndarray, depth: int, seed: int = 1, **options) -> tuple[np.ndarray, bool]:
    """The detector's envelope with each block finished only after ``depth`` more blocks
    were started (as FeatureCollector.add does with depth 1); whether it held a copy in
    the helper."""
    detector = limiter.limiter_detector(FS, x.shape[0], **options)
    started: deque = deque()
    parts = []
    used_helper = False
    position = 0
    for size in irregular_sizes(x.shape[1], seed):
        started.append(detector.start(x[:, position : position + size]))
        used_helper |= detector._held is not None
        position += size
        while len(started) > depth:
            parts.append(detector.finish(started.popleft()))
    while started:
        parts.append(detector.finish(started.popleft()))
    parts.append(detector.flush())
    assert detector._held is None  # flush let the copy there go
    return np.concatenate(parts), used_helper


DETECTOR_CASES = [
    {},
    {"decimation": 32, "refine_above": 0.5},  # the loop's decimated envelope
    {"precise": False},
]


@pytest.mark.parametrize("options", DETECTOR_CASES, ids=["precise", "decimated-refined", "bs1770-4x"])
@pytest.mark.parametrize("depth", [1, 3])
def test_started_blocks_finished_late_give_the_whole_signal_envelope(monkeypatch, options, depth):
    monkeypatch.setattr(loudness, "THREADS", 1)
    x = loud_noise(3.0)
    got, used_helper = deferred_envelope(x, depth, **options)
    assert not used_helper
    expected = limiter.detector_envelope(x, FS, **options)
    decimation = options.get("decimation", 1)
    assert got.size == -(-x.shape[1] // decimation)  # one value per frame (or per group)
    assert np.array_equal(got, expected)
    # and it is a true-peak envelope: its maximum is the inter-sample peak an independent
    # 8x interpolator reads (measured: within 0.005 dB), or for the short BS.1770 4x
    # filter, between the sample peak and that (6.3 vs 8.1 dBTP on these clipped bursts)
    peak_db, ideal_db = 20 * np.log10(got.max()), true_peak_8x_db(x)
    if options.get("precise", True):
        assert abs(peak_db - ideal_db) < 0.05
    else:
        assert 20 * np.log10(np.abs(x).max()) < peak_db < ideal_db + 0.2


@pytest.mark.parametrize("way", ["helper", "threads"])
def test_the_detector_shared_out_gives_the_one_process_envelope(monkeypatch, way):
    """The two ways the cores share a detector's chunks -- the helper (started for the
    suite by conftest) and, without it, the meters' thread pool -- give the envelope one
    thread gives, bit for bit, with irregular blocks down to a few frames: blocks too
    short to complete a chunk start none (the thread path once indexed an empty list)."""
    x = loud_noise(2.0, seed=3)
    monkeypatch.setattr(loudness, "THREADS", 1)
    expected = limiter.detector_envelope(x, FS)
    monkeypatch.setattr(loudness, "THREADS", 2)
    monkeypatch.setattr(helper_module, "ENABLED", way == "helper")
    if way == "helper":
        assert helper_module.helper() is not None, "conftest starts the helper before any thread"
    got, used_helper = deferred_envelope(x, 1, seed=4)
    assert used_helper == (way == "helper")
    assert np.array_equal(got, expected)
    detector = limiter.limiter_detector(FS, 2)
    tiny = [detector.process(x[:, i : i + 7]) for i in range(0, 700, 7)]  # no chunk completes
    assert sum(part.size for part in tiny) == 0


@pytest.mark.parametrize("way", ["helper", "threads"])
def test_the_split_band_model_with_its_high_band_finished_late_is_the_one_thread_model(monkeypatch, way):
    """SplitBandFeatures finishes each block's high-band envelope one block late (so the
    helper works on it meanwhile) and pairs the three envelopes up by position: every
    table must equal the one-thread model's fed one whole-signal block, for irregular
    blocks down to a few frames and with the whole-signal envelope kept (spilled)."""

    def model(blocks: list[int]) -> limiter.SplitBandHops:
        collector = limiter.SplitBandFeatures(FS, 2, frames=x.shape[1])
        position = 0
        for size in blocks:
            collector.add(x[:, position : position + size])
            position += size
        return collector.result()

    x = loud_noise(3.0, seed=5)
    monkeypatch.setattr(loudness, "THREADS", 1)
    expected = model([x.shape[1]])
    monkeypatch.setattr(loudness, "THREADS", 2)
    monkeypatch.setattr(helper_module, "ENABLED", way == "helper")
    got = model([5, 3, *irregular_sizes(x.shape[1] - 8, seed=6)])
    for name in ("peak_low", "peak_high", "peak_sum", "energy_low", "energy_high", "energy_cross", "candidates"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name
    assert np.array_equal(got.features.peak, expected.features.peak)


def test_the_detector_split_with_the_helper_gives_the_same_envelope():
    done = run_python("""
        import json
        from automix.io import helper as helper_module
        assert helper_module.helper() is not None  # first, before anything runs threads
        import numpy as np
        from automix.master import limiter
        from automix.measure import loudness
        from test_helper_process import FS, DETECTOR_CASES, deferred_envelope, loud_noise

        x = loud_noise(3.0)
        report = []
        for options in DETECTOR_CASES[:2]:
            loudness.THREADS = 2
            got, used_helper = deferred_envelope(x, 1, seed=2, **options)
            loudness.THREADS = 1  # the reference: one process, one thread
            expected = limiter.detector_envelope(x, FS, **options)
            report.append([used_helper, got.shape == expected.shape and bool(np.array_equal(got, expected))])
        print(json.dumps(report))
    """)
    assert json.loads(done.stdout.splitlines()[-1]) == [[True, True], [True, True]]


# --- 4. end to end: a master with and without the helper --------------------------------


#: the CLI, reporting on stderr whether the run's helper process existed
CLI = """
import sys
from automix.io import helper as helper_module
from automix.cli import main
sys.argv = ["automix"] + sys.argv[1:]
try:
    main()
finally:
    sys.stderr.write(f"HELPER-USED={int(helper_module._helper is not None)}\\n")
"""


def bursts_over_noise(seconds: float) -> np.ndarray:
    """A noise bed with 4 loud broadband bursts a second: -14 LUFS needs ~6.6 dB of
    programme limiting, and the split-band limiter cannot do it within the budget, so the
    wideband one runs (forced)."""
    rng = np.random.default_rng(1)
    x = 0.08 * rng.standard_normal((2, int(seconds * FS)))
    t = np.arange(FS // 4) / FS
    for start in range(0, x.shape[1] - t.size, FS // 2):
        x[:, start : start + t.size] += 0.5 * rng.standard_normal((2, t.size)) * np.exp(-30 * t)
    return x


def kicks_under_a_pad(seconds: float) -> np.ndarray:
    """120 bpm kicks (110 -> 50 Hz sweep) over a sustained 1.1-2.2 kHz pad 20 dB under
    them (as tests/test_pumping.py): the split-band limiter's case."""
    t_hit = np.arange(FS // 2) / FS
    hit = np.sin(2 * np.pi * np.cumsum(50 + 60 * np.exp(-40 * t_hit)) / FS) * np.exp(-30 * t_hit)
    hit += 0.1 * np.random.default_rng(0).standard_normal(t_hit.size) * np.exp(-t_hit / 0.002)
    kick = np.tile(hit, int(seconds * 2))
    t = np.arange(kick.size) / FS
    pad = sum(np.sin(2 * np.pi * f * t + k) for k, f in enumerate((1100.0, 1390.0, 1650.0, 2200.0)))
    pad *= 0.1 / np.sqrt(np.mean(pad**2))
    x = (kick + pad) * np.minimum(1.0, t / 0.05)
    return np.stack([x, 0.9 * x])


def write_input(path: Path, x: np.ndarray) -> Path:
    sf.write(path, (x * 0.9 / np.abs(x).max()).T.astype(np.float32), FS, subtype="PCM_24")
    return path


def cli(threads: int, *args: str) -> dict:
    """``automix ARGS --json --quiet`` in a fresh interpreter: its JSON line; checked to
    have used the helper exactly when it has two threads to use."""
    done = subprocess.run([sys.executable, "-c", CLI, *args, "--json", "--quiet"], check=False,
                          env=environment(threads), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    used = f"HELPER-USED={int(threads > 1)}"
    assert used in done.stderr, f"expected {used}: {done.stderr}"
    return json.loads(done.stdout.splitlines()[-1])


def master_cli(source: Path, out: Path, threads: int, *extra: str) -> dict:
    return cli(threads, "master", str(source), "-o", str(out), "--target-lufs", "-14", *extra)


def ebur128_integrated_and_true_peak(y: np.ndarray) -> tuple[float, float]:
    state = pyebur128.R128State(y.shape[0], FS, pyebur128.MeasurementMode.MODE_I | pyebur128.MeasurementMode.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(y.T).ravel().astype(np.float64), y.shape[1])
    peak = max(pyebur128.get_true_peak(state, c) for c in range(y.shape[0]))
    return pyebur128.get_loudness_global(state), 20 * np.log10(peak)


@pytest.mark.parametrize("make, extra, design", [
    (bursts_over_noise, ("--over-limit", "force"), "wideband"),
    (kicks_under_a_pad, (), "split-band"),
], ids=["wideband", "split-band"])
def test_a_master_is_bit_identical_with_and_without_the_helper(tmp_path, make, extra, design):
    source = write_input(tmp_path / "mix.wav", make(16.0))
    with_helper = master_cli(source, tmp_path / "helper", 2, *extra)
    alone = master_cli(source, tmp_path / "alone", 1, *extra)
    assert with_helper["limiter_design"] == design
    assert with_helper["limiter_programme_gain_reduction_db"] > 3.0  # the limiter really works
    written = (tmp_path / "helper" / "mix.wav").read_bytes()
    assert written == (tmp_path / "alone" / "mix.wav").read_bytes()
    # the report too (tonal EQ and glue come from the helper's input meters)
    assert {k: v for k, v in with_helper.items() if k != "output"} == {k: v for k, v in alone.items() if k != "output"}
    y, rate = sf.read(tmp_path / "helper" / "mix.wav", dtype="float64", always_2d=True)
    assert rate == FS
    integrated, true_peak_db = ebur128_integrated_and_true_peak(y.T)
    assert abs(integrated - -14.0) <= 0.1
    assert true_peak_db <= -1.0
    assert true_peak_8x_db(y.T) <= -1.0


def test_a_mix_is_bit_identical_with_and_without_the_helper(tmp_path):
    """The mix analyses every other stem in the helper (``Helper.submit``) and masters
    the bus with it."""
    n = 8 * FS
    t = np.arange(n) / FS
    rng = np.random.default_rng(4)
    kick = np.zeros(n)
    t_hit = np.arange(FS // 4) / FS
    hit = np.sin(2 * np.pi * np.cumsum(50 + 60 * np.exp(-40 * t_hit)) / FS) * np.exp(-30 * t_hit)
    for start in range(0, n - t_hit.size, FS // 2):
        kick[start : start + t_hit.size] += hit
    stems = {
        "kick": kick,
        "bass": 0.3 * np.sin(2 * np.pi * 55 * t) * (np.sin(2 * np.pi * 2 * t) > 0),
        "keys": 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)),
        "hats": 0.05 * rng.standard_normal(n) * (np.sin(2 * np.pi * 4 * t) > 0.9),
        "vocals": 0.2 * np.sin(2 * np.pi * 220 * t + 3 * np.sin(2 * np.pi * 5 * t)) * (np.sin(2 * np.pi * 0.25 * t) > 0),
    }
    folder = tmp_path / "stems"
    folder.mkdir()
    for name, x in stems.items():
        sf.write(folder / f"{name}.wav", (0.8 * np.stack([x, 0.95 * x])).T.astype(np.float32), FS, subtype="PCM_24")
    with_helper = cli(2, "mix", str(folder), "-o", str(tmp_path / "helper.wav"))
    alone = cli(1, "mix", str(folder), "-o", str(tmp_path / "alone.wav"))
    assert with_helper["stems"] == 5 and with_helper["skipped"] == 0
    assert (tmp_path / "helper.wav").read_bytes() == (tmp_path / "alone.wav").read_bytes()
    assert {k: v for k, v in with_helper.items() if k != "output"} == {k: v for k, v in alone.items() if k != "output"}
    y, _ = sf.read(tmp_path / "helper.wav", dtype="float64", always_2d=True)
    integrated, true_peak_db = ebur128_integrated_and_true_peak(y.T)
    assert abs(integrated - -14.0) <= 0.1 and true_peak_db <= -1.0


# --- 6. the helper ends with its parent ---------------------------------------------------


@linux_only
@pytest.mark.parametrize("state", ["idle", "busy"])
def test_the_helper_ends_quietly_when_its_parent_is_killed(state):
    """Idle, the helper sees its pipe close; busy in a long method, only the kernel's
    signal (PR_SET_PDEATHSIG, SIGTERM) stops it. Either way without a traceback on the
    terminal they share (the helper restores SIGTERM's default action). The parent installs the CLI's signal
    handlers first, as ``automix.cli.main`` does."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(TESTS)!r})
        from automix.io import helper as helper_module
        from automix.jobs.safety import install_stop_handlers
        from test_helper_process import Probe
        install_stop_handlers()
        made = helper_module.helper()
        if made is not None:
            held = made.hold(Probe)
            held.ask("notes")
            if {state == "busy"}:
                held.send("nap", 60.0)
        print(made._process.pid if made is not None else "none", flush=True)
        time.sleep(60)
    """)], env=environment(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = None
    try:
        line = within(30, parent.stdout.readline).strip()
        assert line != "none", "helper() declined in a fresh interpreter"
        pid = int(line)
        assert alive(pid) and pid in children(parent.pid)
        parent.kill()
        _, stderr = parent.communicate(timeout=10)  # its pipes close once the helper is gone too
        assert gone_within(pid, 5.0), f"helper {pid} outlived its killed parent"
        assert "Traceback" not in stderr, stderr
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if pid is not None and alive(pid):  # a failed run leaves no orphan behind
            os.kill(pid, signal.SIGKILL)


@linux_only
def test_a_helper_sent_sigterm_ends_quietly_and_the_run_is_told():
    """SIGTERM to the helper alone (``kill PID``, or the kernel's parent-death signal):
    it ends without a traceback of its own, and the parent's next request fails with
    the AutomixError that says so."""
    done = run_python("""
        import os, signal
        from automix.errors import AutomixError
        from automix.io import helper as helper_module
        from automix.jobs.safety import install_stop_handlers
        from test_helper_process import Probe, gone_within
        install_stop_handlers()  # as automix.cli.main does before the helper is forked
        made = helper_module.helper()
        held = made.hold(Probe)
        held.ask("notes")  # idle now, waiting for a request
        os.kill(made._process.pid, signal.SIGTERM)
        print("gone" if gone_within(made._process.pid, 5.0) else "alive")
        try:
            held.ask("notes")
            print("answered")
        except AutomixError as error:
            print("AutomixError:", error)
    """)
    lines = done.stdout.splitlines()
    assert lines[0] == "gone"
    assert lines[1].startswith("AutomixError: the helper process stopped")
    assert "Traceback" not in done.stderr, done.stderr


# --- 7. Ctrl-C ----------------------------------------------------------------------------


@linux_only
@pytest.mark.parametrize("moment", ["analysis", "render"])
def test_ctrl_c_stops_cleanly_with_the_helper(tmp_path, moment):
    """SIGINT to the run's process group (as a terminal's Ctrl-C): soon after the helper
    is forked (the analysis, its meters in the helper), or once a quarter of the output
    is written (the render, the output meters in the helper)."""
    source = write_input(tmp_path / "long.wav", bursts_over_noise(60.0))
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "automix", "master", str(source), "-o", str(out),
                            "--over-limit", "force", "--quiet"], env=environment(2), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    helpers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            helpers = helpers or children(run.pid)
            written = sum(entry.stat().st_size for entry in out.iterdir() if entry.name.endswith(".part")) \
                if out.is_dir() else 0
            if helpers and (moment == "analysis" or written > 4_000_000):  # a quarter of the output
                break
            time.sleep(0.01)
        assert run.poll() is None, "the master finished before it could be interrupted"
        assert helpers, "no helper process was started"
        if moment == "analysis":
            time.sleep(0.5)  # the analysis pass has started its threads (see the next test)
        os.killpg(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=30)
        assert run.returncode == 130, stderr
        assert "Traceback" not in stderr
        assert "stopped by SIGINT" in stderr
        left = os.listdir(out) if out.is_dir() else []
        assert not [name for name in left if name.endswith(".part")], left
        assert not (out / "long.wav").exists()
        for pid in helpers:
            assert gone_within(pid, 5.0), f"helper {pid} outlived the interrupted run"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        for pid in helpers:  # a failed run leaves no orphan behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_request_cut_off_by_a_signal_gives_the_helper_up_cleanly():
    """A signal's exception while a request's bytes are being written (the pipe full, the
    helper busy) leaves half a message: that helper must not be used again (its stream is
    out of step). The next request fails at once, and the next pass gets a new helper."""
    done = run_python("""
        import json, os, signal, threading, time
        import numpy as np
        from automix.errors import AutomixError
        from automix.io import helper as helper_module
        from test_helper_process import Probe, gone_within

        class Interrupted(BaseException):
            pass

        def interrupt(signum, frame):
            raise Interrupted()

        old = helper_module.helper()
        held = old.hold(Probe)
        held.send("nap", 1.0)  # the helper busy: the pipe fills up
        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        try:
            held.send("note", np.zeros((2, 4_000_000), np.float32))  # 32 MB into a 1 MB pipe
            cut_off = False
        except Interrupted:
            cut_off = True
        held.drop()  # as render() does on its way out
        box = []
        def next_request():
            try:
                box.append(repr(old.hold(Probe).ask("notes")))
            except AutomixError as error:
                box.append("AutomixError: " + str(error))
            except BaseException as error:
                box.append(type(error).__name__)
        thread = threading.Thread(target=next_request, daemon=True)
        thread.start()
        thread.join(2.5)
        old_gone = gone_within(old._process.pid, 5.0)
        deadline = time.monotonic() + 5  # the helper's own daemon threads end first
        while threading.active_count() > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        fresh = helper_module.helper()
        works = fresh is not None and fresh is not old and fresh.hold(Probe).ask("notes") == []
        print(json.dumps([cut_off, box[0] if box else "hung", old_gone, works]), flush=True)
    """, timeout=30)
    cut_off, next_request, old_gone, fresh_works = json.loads(done.stdout.splitlines()[-1])
    assert cut_off, "the send finished before the signal: the scenario did not happen"
    assert next_request.startswith("AutomixError: the helper process stopped")
    assert old_gone
    assert fresh_works
    assert "Traceback" not in done.stderr


@linux_only
def test_ctrl_c_while_a_worker_thread_starts_still_exits(tmp_path):
    """Without the helper, the first worker of the meters' thread pool starts in the first
    analysis block; a Ctrl-C can land in ``Thread.start`` there, before the pool records
    the thread (seen once in ~8 runs of the test above), and the interpreter's exit then
    waited for that thread forever. Here the signal is sent exactly then."""
    source = write_input(tmp_path / "mix.wav", bursts_over_noise(5.0))
    out = tmp_path / "out"
    code = textwrap.dedent("""
        import os, signal, sys, threading
        real_start = threading.Thread.start
        def start(self):
            real_start(self)
            if self.name.startswith("automix-meter") and not getattr(start, "sent", False):
                start.sent = True
                os.kill(os.getpid(), signal.SIGINT)  # handled at once: before the pool registers it
        threading.Thread.start = start
        # a thread already running: no helper is forked, so the meters' pool starts here
        threading.Thread(target=threading.Event().wait, daemon=True).start()
        sys.argv = ["automix"] + sys.argv[1:]
        from automix.cli import main
        main()
    """)
    run = subprocess.Popen([sys.executable, "-c", code, "master", str(source), "-o", str(out), "--over-limit", "force",
                            "--quiet"], env=environment(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        _, stderr = run.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail("still running 8 s after Ctrl-C: hung at exit")
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr
    left = os.listdir(out) if out.is_dir() else []
    assert not [name for name in left if name.endswith(".part")], left


def test_a_reply_that_arrives_after_the_helper_was_given_up_ends_the_reader_quietly():
    """Ctrl-C cuts a request half-way: the helper is given up (every waiting request fails)
    while a reply to an earlier one is already on its way. The reader must stop there, not
    die with a traceback on the terminal (seen once in CI: ``Exception in thread
    automix-helper-replies``)."""
    done = run_python("""
        import threading
        from automix.io import helper as helper_module

        died = []
        threading.excepthook = lambda args: died.append(args.exc_type.__name__)
        receive = helper_module._receive_parts

        def receive_then_give_up(connection):
            parts = receive(connection)
            if "remote" in globals() and connection is remote._replies:  # not the forked helper's requests
                remote._waiting.clear()  # as _break does, between the reply's arrival and its reading
            return parts

        helper_module._receive_parts = receive_then_give_up
        remote = helper_module.Helper()
        remote.submit(abs, -1)
        remote._reader.join(10)
        print(died, remote._reader.is_alive(), remote._gone)
    """)
    assert done.stdout.split() == ["[]", "False", "True"], done.stdout + done.stderr
