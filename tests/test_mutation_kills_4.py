"""Tests written for the mutants that survived the fourth round of mutation analysis
(bench/mutation.py keys helper, detector_start, collector_defer, chain_meters,
analyzer_peak, mix_helper, file_blocks; the equivalent survivors and why are in its
EQUIVALENT table): the helper process and the code around it (47765ff..4813b14).

Expected values come from outside the code under test: the bytes pickle itself writes,
the kernel's pipe capacity (``F_GETPIPE_SZ``), the process table, the same computation
run in one process, libebur128, whole-file soxr resampling, arithmetic on the signal.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import multiprocessing
import os
import pickle
import signal
import threading
import time

import numpy as np
import pyebur128
import pytest
import soundfile as sf
import soxr

from automix.errors import AutomixError
from automix.io import helper as helper_module
from automix.io.audio import Audio
from automix.io.helper import SEND_DEPTH, Held, Helper
from automix.io.stream import BlockSource, array_source, file_source
from automix.master import limiter
from automix.measure import loudness
from automix.measure.analyzer import Analyzer

RATE = 44100
F_GETPIPE_SZ = 1032  # <linux/fcntl.h>: F_LINUX_SPECIFIC_BASE + 8


def gone_within(pid: int, seconds: float) -> bool:
    """The process has ended (or is a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


class Box:
    """Held in the helper: notes what it is given."""

    def __init__(self) -> None:
        self.seen: list = []

    def note(self, value) -> None:
        self.seen.append(value)

    def notes(self) -> list:
        return self.seen

    def nap(self, seconds: float) -> None:
        time.sleep(seconds)


def threads_setting() -> int:
    """Run in the helper: the meters' thread count there."""
    return loudness.THREADS


def sigint_disposition() -> bool:
    """Run in the helper: whether SIGINT is ignored there."""
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


# --- io/helper.py: the wire ---------------------------------------------------------------


def test_pickled_splits_out_each_array_buffer_as_pickle_itself_does():
    arrays = [np.arange(6, dtype=np.float32), np.arange(10, dtype=np.int16) * 3, np.ones((2, 3), dtype=np.float64)]
    message = ("call", 7, ("note", (arrays, "text"), False))
    data, raw = helper_module._pickled(message)
    expected_buffers: list = []
    expected = pickle.dumps(message, protocol=5, buffer_callback=expected_buffers.append)
    assert data == expected
    assert [bytes(part) for part in raw] == [bytes(b.raw()) for b in expected_buffers]
    assert [part.nbytes for part in raw] == [a.nbytes for a in arrays]


def test_pickled_turns_local_objects_and_locks_into_a_pickling_error():
    def local():
        return 1

    for value in (local, threading.Lock(), lambda: 0):
        with pytest.raises(pickle.PicklingError):
            helper_module._pickled(("run", -1, (value, ())))


def test_messages_cross_a_pipe_whole_and_in_step():
    receiving, sending = multiprocessing.Pipe(duplex=False)
    first = [np.arange(5, dtype=np.float32), np.zeros((2, 0), dtype=np.float32), np.arange(9, dtype=np.int32) - 4]
    second = {"b": np.full(3, 2.5), "s": "after"}
    helper_module._send(sending, ("a", first))
    helper_module._send(sending, second)
    data, buffers = helper_module._receive_parts(receiving)
    assert data == pickle.dumps(("a", first), protocol=5, buffer_callback=lambda b: None)
    assert [len(b) for b in buffers] == [a.nbytes for a in first]
    tag, arrays = helper_module._unpickled(data, buffers)
    assert tag == "a"
    for got, sent in zip(arrays, first):
        assert got.dtype == sent.dtype and got.shape == sent.shape and np.array_equal(got, sent)
        assert got.flags.writeable
    again = helper_module._receive(receiving)  # the next message starts where the first ended
    assert again["s"] == "after" and np.array_equal(again["b"], second["b"])
    receiving.close()
    sending.close()


def test_the_pipes_are_widened_to_the_asked_capacity(remote):
    for end in (remote._requests, remote._replies):
        assert fcntl.fcntl(end.fileno(), F_GETPIPE_SZ) == helper_module.PIPE_BYTES


# --- io/helper.py: the helper process -------------------------------------------------------


def test_the_helper_runs_one_meter_thread_and_ignores_ctrl_c(remote):
    assert remote.submit(threads_setting).result() == 1
    assert remote.submit(sigint_disposition).result() is True
    os.kill(remote._process.pid, signal.SIGINT)
    time.sleep(0.1)
    assert remote._process.is_alive()
    assert remote.submit(divmod, 7, 2).result() == (3, 1)
    assert remote._process.daemon  # ends with this process's multiprocessing clean-up too


def test_shutdown_lets_the_helper_end_by_itself(remote):
    held = remote.hold(Box)
    held.send("note", 1)
    started = time.monotonic()
    remote.shutdown()
    assert time.monotonic() - started < 4.0
    assert remote._process.exitcode == 0  # it saw the pipe close: not killed


def test_shutdown_kills_a_helper_that_does_not_end(remote, monkeypatch):
    held = remote.hold(Box)
    held.send("nap", 30.0)
    process = remote._process
    real_join = process.join
    # waited for 0.3 s at most (not the 5 s shutdown allows) before the kill
    monkeypatch.setattr(process, "join", lambda timeout=None: real_join(None if timeout is None else min(timeout, 0.3)))
    started = time.monotonic()
    remote.shutdown()
    assert time.monotonic() - started < 4.0
    assert not process.is_alive()
    assert process.exitcode == -signal.SIGKILL


def test_giving_the_helper_up_ends_it_and_fails_what_waits(remote):
    held = remote.hold(Box)
    assert held.ask("notes") == []
    napping = held.call("nap", 30.0)
    pid = remote._process.pid
    remote._break()
    assert gone_within(pid, 2.0)
    assert remote._requests.closed  # its descriptor is released at once, not at shutdown
    with pytest.raises(AutomixError, match="helper process stopped"):
        napping.result()
    with pytest.raises(AutomixError, match="helper process stopped"):
        held.ask("notes")
    held.drop()  # no error: nothing is left there either
    remote._reader.join(5)


def test_send_keeps_at_most_send_depth_calls_in_flight(remote):
    held = remote.hold(Box)
    depths = []
    for i in range(12):
        held.send("note", i)
        depths.append(len(held._pending))
    assert max(depths) == SEND_DEPTH
    assert depths == [min(i + 2, SEND_DEPTH) for i in range(12)]  # the factory's call counts too
    assert held.ask("notes") == list(range(12))
    assert len(held._pending) == 0


def test_ask_last_and_drop_forget_the_object_there(remote):
    held = remote.hold(Box)
    held.send("note", "x")
    assert held.ask("notes", last=True) == ["x"]
    with pytest.raises(KeyError):
        held.ask("notes")
    other = remote.hold(Box)
    other.send("note", 1)
    other.drop()
    assert len(other._pending) == 0
    with pytest.raises(KeyError):
        other.ask("notes")
    # call: a future of the method's value, in the order sent
    third = remote.hold(Box)
    third.send("note", 5)
    assert third.call("notes").result() == [5]


def test_each_held_object_has_its_own_key(remote):
    first, second = remote.hold(Box), remote.hold(Box)
    assert first._key != second._key
    first.send("note", "one")
    second.send("note", "two")
    assert (first.ask("notes"), second.ask("notes")) == (["one"], ["two"])


def test_the_run_helper_is_started_once_and_replaced_when_it_cannot_serve(monkeypatch):
    running = helper_module.helper()
    assert running is not None and running._process.is_alive()
    assert helper_module.helper() is running  # once per run
    monkeypatch.setattr(loudness, "THREADS", 2)
    assert helper_module.helper() is running
    monkeypatch.setattr(helper_module, "ENABLED", False)
    assert helper_module.helper() is None
    monkeypatch.setattr(helper_module, "ENABLED", True)
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # no other thread runs
    at_exit: list = []
    monkeypatch.setattr(helper_module.atexit, "register", at_exit.append)
    made = []
    try:
        # one inherited through fork (started by another pid) is not this process's
        monkeypatch.setattr(helper_module, "_helper", (os.getpid() + 1, running))
        fresh = helper_module.helper()
        made.append(fresh)
        assert fresh is not None and fresh is not running and fresh._process.is_alive()
        assert helper_module._helper == (os.getpid(), fresh)
        assert helper_module.helper() is fresh
        assert at_exit == [fresh.shutdown]  # let it finish what it was sent and end, at exit
        # a helper given up is replaced
        fresh._break()
        fresh._reader.join(5)
        again = helper_module.helper()
        made.append(again)
        assert again is not None and again is not fresh and again.submit(divmod, 9, 4).result() == (2, 1)
        # none is started while other threads run
        monkeypatch.setattr(helper_module, "_helper", None)
        monkeypatch.setattr(threading, "active_count", lambda: 2)
        assert helper_module.helper() is None
    finally:
        for one in made:
            if one is not None:
                one.shutdown()


# --- master/limiter.py: the detector's chunks shared with the helper -------------------------


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal((2, int(seconds * RATE)))).astype(np.float32)


def test_every_eighth_chunk_is_computed_here_the_rest_in_the_helper(monkeypatch):
    monkeypatch.setattr(loudness, "THREADS", 2)
    remote = helper_module.helper()
    assert remote is not None
    x = _noise(7.0, seed=21)
    detector = limiter.limiter_detector(RATE, 2)
    size, rows, lead = limiter._DETECTOR_FFT, detector._rows, detector._lead
    # the chunks of the stream: the lead's zeros, the signal, the flush's zeros
    padded = np.concatenate((np.zeros((2, lead), np.float32), x, np.zeros((2, 2 * size), np.float32)), axis=1)
    position_of = {hashlib.sha1(np.ascontiguousarray(padded[:, k * rows : k * rows + size]).tobytes()).hexdigest(): k
                   for k in range((padded.shape[1] - size) // rows + 1)}
    here: list[int] = []
    there: list[int] = []
    real_rows_of, real_call = limiter.PeakDetector._rows_of, Held.call

    def rows_of_here(self, piece):
        here.append(position_of[hashlib.sha1(np.ascontiguousarray(piece).tobytes()).hexdigest()])
        return real_rows_of(self, piece)

    def call_there(self, method, *args):
        if method == "_rows_of":
            there.append(position_of[hashlib.sha1(np.ascontiguousarray(args[0]).tobytes()).hexdigest()])
        return real_call(self, method, *args)

    monkeypatch.setattr(limiter.PeakDetector, "_rows_of", rows_of_here)
    monkeypatch.setattr(Held, "call", call_there)
    parts, position = [], 0
    for block in (20000, 50000, 1, 70000, 33333, 90000):  # chunks completed 0, 1 or several at a time
        parts.append(detector.process(x[:, position : position + block]))
        position += block
    parts.append(detector.process(x[:, position:]))
    key = detector._held._key
    parts.append(detector.flush())
    chunks = len(here) + len(there)
    assert sorted(here + there) == list(range(chunks))  # each chunk once, in one place
    assert chunks * rows >= x.shape[1] > (chunks - 2) * rows
    assert here == list(range(0, chunks, limiter.OWN_CHUNK_EVERY))
    assert len(there) > len(here)
    # the same envelope as one process computing every chunk
    monkeypatch.setattr(loudness, "THREADS", 1)
    monkeypatch.setattr(limiter.PeakDetector, "_rows_of", real_rows_of)
    assert np.array_equal(np.concatenate(parts), limiter.detector_envelope(x, RATE))
    # flush let the copy there go
    assert detector._held is None
    with pytest.raises(KeyError):
        Held(remote, key).ask("_rows_of", np.zeros((2, size), np.float32))


def test_a_pickled_detector_leaves_its_helper_handle_behind(monkeypatch):
    monkeypatch.setattr(loudness, "THREADS", 2)
    detector = limiter.limiter_detector(RATE, 2)
    detector.process(_noise(1.0, seed=2))
    assert detector._held is not None
    copy = pickle.loads(pickle.dumps(detector))
    assert copy._held is None and detector._held is not None
    assert copy._pieces == detector._pieces and np.array_equal(copy._tail, detector._tail)
    detector.flush()


def test_started_blocks_finish_in_order_without_a_helper(monkeypatch):
    """start/finish with several blocks started ahead, the thread pool sharing chunks."""
    monkeypatch.setattr(helper_module, "ENABLED", False)
    monkeypatch.setattr(loudness, "THREADS", 2)
    x = _noise(3.0, seed=5)
    detector = limiter.limiter_detector(RATE, 2)
    started = [detector.start(x[:, i : i + 40000]) for i in range(0, x.shape[1], 40000)]
    assert detector._held is None
    got = np.concatenate([detector.finish(s) for s in started] + [detector.flush()])
    monkeypatch.setattr(loudness, "THREADS", 1)
    assert got.size == x.shape[1]
    assert np.array_equal(got, limiter.detector_envelope(x, RATE))
    # a true-peak envelope: never under the sample magnitudes
    assert np.all(got >= np.abs(x).max(axis=0) - 1e-7)


def test_flush_returns_the_whole_rest_of_the_envelope():
    """Independent of the detector's own flush arithmetic: one value per input frame,
    the last ones (read from the flush) at least the samples' magnitude there."""
    x = _noise(1.3, seed=8)
    x[:, -5:] = 0.95
    for precise in (True, False):
        detector = limiter.limiter_detector(RATE, 2, precise=precise)
        head = detector.process(x)
        tail = detector.flush()
        got = np.concatenate((head, tail))
        assert got.size == x.shape[1]
        assert np.all(got >= np.abs(x).max(axis=0) - 1e-6)
        assert np.all(got[-5:] >= 0.95 - 1e-6)


# --- master/loop.py: FeatureCollector finishes each block one block later ---------------------


def test_collector_features_equal_with_and_without_the_deferral(monkeypatch):
    from automix.master.loop import FeatureCollector

    x = _noise(3.0, seed=13)
    x[:, 70000:70100] *= 3.0
    monkeypatch.setattr(loudness, "THREADS", 1)
    envelope = limiter.detector_envelope(x, RATE)
    for threads in (1, 2):
        monkeypatch.setattr(loudness, "THREADS", threads)
        collector = FeatureCollector(RATE, 2)
        collector.add(x[:, :0])
        for start in range(0, x.shape[1], 30011):
            collector.add(x[:, start : start + 30011])
        features = collector.result()
        assert features.frames == x.shape[1]
        # the peak table pools the detector's whole envelope (independent: max per hop)
        assert np.isclose(features.peak.max(), envelope.max(), rtol=0, atol=0)
        assert collector._started is None
        per_hop = features.peak.size
        assert per_hop * features.frames // per_hop == features.frames


# --- measure/analyzer.py: Analyzer.result -----------------------------------------------------


def _tone(seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.stack([amplitude * np.sin(2 * np.pi * 997 * t)] * 2).astype(np.float32)


def test_a_true_peak_measured_elsewhere_is_the_one_reported():
    x = _tone(1.0, 0.5)
    analyzer = Analyzer(RATE, 2, true_peak=False)
    analyzer.add(x)
    plain = analyzer.result()
    assert not plain.true_peak_measured
    given = analyzer.result(0.25)
    assert given.true_peak_dbtp == pytest.approx(20 * math.log10(0.25), abs=1e-12)
    assert given.true_peak_measured
    assert given.plr_db == pytest.approx(given.true_peak_dbtp - given.integrated_lufs, abs=1e-12)
    # a 997 Hz tone at 0.5 on two channels reads -6.02 LUFS (BS.1770: a 0 dBFS 997 Hz
    # sine reads -3.01 LUFS on one channel, +3.01 for two): a -12.04 dBTP peak is 6.02 under
    assert given.plr_db == pytest.approx(-6.02, abs=0.02)
    assert plain.plr_db == pytest.approx(0.0, abs=0.02)


def test_quiet_audio_under_the_gate_has_no_plr():
    analyzer = Analyzer(RATE, 2)
    analyzer.add(_tone(2.0, 1e-4))  # -80 dBFS: under the -70 LUFS absolute gate
    analysis = analyzer.result()
    assert analysis.integrated_lufs == loudness.SILENCE_DB
    assert analysis.true_peak_dbtp == pytest.approx(-80.0, abs=0.05)
    assert analysis.plr_db == 0.0


def test_silence_and_nothing_read_as_silence():
    silent = Analyzer(RATE, 2)
    silent.add(np.zeros((2, RATE), np.float32))
    empty = Analyzer(RATE, 2)
    for analysis in (silent.result(), empty.result()):
        assert analysis.rms_dbfs == loudness.SILENCE_DB
        assert analysis.crest_factor_db == 0.0
        assert analysis.plr_db == 0.0
        assert analysis.dc_offset == 0.0


def test_dc_offset_is_the_larger_channel_mean():
    x = np.stack([np.full(RATE, 0.01), np.full(RATE, -0.25)]).astype(np.float32)
    analyzer = Analyzer(RATE, 2)
    analyzer.add(x)
    assert analyzer.result().dc_offset == pytest.approx(0.25, abs=1e-6)


@pytest.mark.parametrize("run", [3, 4])
def test_a_clipped_run_still_open_at_the_end_is_counted(run):
    x = 0.1 * _noise(1.0, seed=3)
    x[0, 1000:1005] = 1.0  # a closed run of 5
    x[1, -run:] = -1.0  # a run of 3 or 4 open at the end of the stream
    analyzer = Analyzer(RATE, 2)
    analyzer.add(x[:, :20000])
    analyzer.add(x[:, 20000:])
    assert analyzer.result().clipped_samples == 5 + run
    short = x.copy()
    short[1, -2:] = -1.0
    short[1, -run:-2] = 0.0  # only 2 at the end: not clipping
    analyzer = Analyzer(RATE, 2)
    analyzer.add(short)
    assert analyzer.result().clipped_samples == 5


# --- io/stream.py: _FileBlocks ------------------------------------------------------------------


def _write(path, x: np.ndarray, rate: int):
    sf.write(path, x.T, rate, subtype="FLOAT")
    return path


def _blocks_of(source: BlockSource, seconds: float = 10.0) -> list:
    box: dict = {}
    reader = threading.Thread(target=lambda: box.setdefault("blocks", list(source.blocks())), daemon=True)
    reader.start()
    reader.join(seconds)
    assert "blocks" in box, "reading the source did not end"
    return box["blocks"]


@pytest.mark.parametrize("channels", [1, 2])
def test_file_blocks_are_the_file_in_blocks_of_the_asked_size(tmp_path, channels):
    x = (0.3 * np.random.default_rng(channels).standard_normal((channels, 10 * 1000 + 1))).astype(np.float32)
    source = file_source(_write(tmp_path / "a.wav", x, RATE), block_frames=1000)
    blocks = _blocks_of(source)
    assert [b.shape for b in blocks] == [(channels, 1000)] * 10 + [(channels, 1)]
    assert np.array_equal(np.concatenate(blocks, axis=1), x)
    assert all(b.flags.c_contiguous for b in blocks)
    again = pickle.loads(pickle.dumps(source))  # a source crosses to the helper
    assert np.array_equal(np.concatenate(_blocks_of(again), axis=1), x)


@pytest.mark.parametrize("frames", [48000 // 2 + 1, 48000 // 2 + 300])
def test_resampled_file_blocks_equal_resampling_the_whole_file(tmp_path, frames):
    t = np.arange(frames) / 48000
    x = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), 0.3 * np.sin(2 * np.pi * 3100 * t)]).astype(np.float32)
    source = file_source(_write(tmp_path / "b.wav", x, 48000), sample_rate=RATE, block_frames=300)
    blocks = _blocks_of(source)
    whole = soxr.resample(x.T, 48000, RATE, quality="VHQ").T
    assert source.frames == whole.shape[1] == int(frames * RATE / 48000 + 0.5)
    assert all(b.shape[1] > 0 and b.shape[0] == 2 for b in blocks)  # no empty block
    got = np.concatenate(blocks, axis=1)
    assert got.shape == whole.shape
    assert np.abs(got - whole).max() < 1e-5


def test_file_blocks_end_if_the_file_shrank_since_it_was_opened(tmp_path):
    x = (0.2 * np.random.default_rng(4).standard_normal((2, 5000))).astype(np.float32)
    path = _write(tmp_path / "c.wav", x, RATE)
    source = file_source(path, block_frames=1000)
    _write(path, x[:, :2500], RATE)  # rewritten shorter behind the run's back
    got = np.concatenate(_blocks_of(source, 5.0), axis=1)
    assert np.array_equal(got, x[:, :2500])


# --- jobs/mix_folder.py: _ResampledBlocks, _FittedBlocks ------------------------------------------


class Counted:
    """A source's ``blocks`` that counts the blocks read (a module-level class: pickles)."""

    def __init__(self, x: np.ndarray, size: int) -> None:
        self.x, self.size, self.read = x, size, 0

    def __call__(self):
        for start in range(0, self.x.shape[1], self.size):
            self.read += 1
            yield self.x[:, start : start + self.size]


class Unreadable:
    """A source's ``blocks`` that fails to read (module level: pickles)."""

    def __call__(self):
        raise AutomixError("f.wav: cannot read as audio")
        yield  # a generator, as every source's blocks


def test_resampled_blocks_have_no_empty_block_and_pickle():
    from automix.jobs.mix_folder import _resampled

    x = (0.3 * np.random.default_rng(6).standard_normal((2, 9000))).astype(np.float32)
    source = BlockSource(48000, 2, x.shape[1], "s", Counted(x, 200), ())
    out = _resampled(source, RATE)
    blocks = _blocks_of(out)
    assert all(b.shape[1] > 0 for b in blocks)
    whole = soxr.resample(x.T, 48000, RATE, quality="VHQ").T
    assert np.abs(np.concatenate(blocks, axis=1) - whole).max() < 1e-5
    assert out.frames == whole.shape[1]
    assert np.array_equal(np.concatenate(_blocks_of(pickle.loads(pickle.dumps(out))), axis=1),
                          np.concatenate(blocks, axis=1))


def test_fitted_blocks_cut_a_longer_source_and_stop_reading_it():
    from automix.jobs.mix_folder import _fitted

    x = (0.3 * np.random.default_rng(7).standard_normal((2, 10_000))).astype(np.float32)
    counted = Counted(x, 1000)
    fitted = _fitted(BlockSource(RATE, 2, x.shape[1], "s", counted, ()), 2500)
    blocks = _blocks_of(fitted)
    assert np.array_equal(np.concatenate(blocks, axis=1), x[:, :2500])
    assert counted.read == 3  # the third block holds the last frames wanted: no more is decoded
    exact = Counted(x, 1000)
    assert np.array_equal(np.concatenate(_blocks_of(_fitted(BlockSource(RATE, 2, 10_000, "s", exact, ()), 3000)), axis=1),
                          x[:, :3000])
    assert exact.read == 3


# --- jobs/mix_folder.py: _each_stem, analyse_sources ----------------------------------------------


class _Stems:
    def __init__(self, n: int) -> None:
        self.names = tuple(f"s{i}" for i in range(n))
        self.paths = tuple(None for _ in range(n))


@pytest.mark.parametrize("workers, threads, expected", [(1, 2, 1), (None, 2, 2), (None, 1, 1), (3, 1, 3)])
def test_each_stem_runs_on_the_workers_asked(monkeypatch, workers, threads, expected):
    from automix.jobs.mix_folder import _each_stem

    monkeypatch.setattr(loudness, "THREADS", threads)
    lock, running, most = threading.Lock(), [0], [0]

    def measure(index):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return index * 10

    keep, results, skipped = _each_stem(_Stems(6), measure, False, workers=workers)
    assert (keep, results, skipped) == (list(range(6)), [0, 10, 20, 30, 40, 50], ())
    assert most[0] == expected


def _real_measure_stem():
    from automix.jobs import mix_folder

    return mix_folder._measure_stem


_REAL_MEASURE = _real_measure_stem()
MEASURED_HERE: list = []
_RUNNING = {"now": 0, "most": 0}
_RUNNING_LOCK = threading.Lock()


def recording_measure(source, path=None, *, true_peak=True):
    """``_measure_stem`` that notes, in the process running it, which stem it measured
    and how many ran at once (module level: pickled by name, so the helper runs it too,
    noting in its own copy)."""
    with _RUNNING_LOCK:
        MEASURED_HERE.append(source.name)
        _RUNNING["now"] += 1
        _RUNNING["most"] = max(_RUNNING["most"], _RUNNING["now"])
    try:
        # long enough for another thread to start one beside it: the first stem longest,
        # so that a second thread, back from the helper with the second, starts the third
        time.sleep(0.5 if source.name == "a.wav" else 0.05)
        return _REAL_MEASURE(source, path, true_peak=true_peak)
    finally:
        with _RUNNING_LOCK:
            _RUNNING["now"] -= 1


def test_every_other_stem_is_analysed_in_the_helper_with_the_same_results(tmp_path, monkeypatch):
    from automix.jobs import mix_folder

    folder = tmp_path / "stems"
    folder.mkdir()
    rng = np.random.default_rng(9)
    t = np.arange(RATE) / RATE
    for i, name in enumerate(["a", "b", "c", "d", "e", "f"]):
        x = (0.1 + 0.1 * i) * np.sin(2 * np.pi * (110 * (i + 1)) * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(folder / f"{name}.wav", np.stack([x, 0.9 * x]).T.astype(np.float32), RATE, subtype="FLOAT")
    stems = mix_folder.open_stems(folder)
    assert stems.names == ("a.wav", "b.wav", "c.wav", "d.wav", "e.wav", "f.wav")
    # stem d reads an array in memory (cannot be pickled): analysed here; stem f fails
    in_memory = np.concatenate(list(stems.sources[3].blocks()), axis=1)
    sources = list(stems.sources)
    sources[3] = array_source(Audio(in_memory, RATE, folder / "d.wav"))
    sources[5] = BlockSource(RATE, 2, stems.frames, "f.wav", Unreadable(), ())
    import dataclasses

    stems = dataclasses.replace(stems, sources=tuple(sources))
    monkeypatch.setattr(mix_folder, "_measure_stem", recording_measure)
    outcomes = {}
    for enabled in (False, True):
        monkeypatch.setattr(helper_module, "ENABLED", enabled)
        monkeypatch.setattr(loudness, "THREADS", 2)
        MEASURED_HERE.clear()
        _RUNNING["most"] = 0
        kept, analyses, features = mix_folder.analyse_sources(stems, False)
        outcomes[enabled] = (kept, analyses, features, sorted(MEASURED_HERE), _RUNNING["most"])
    alone, shared = outcomes[False], outcomes[True]
    assert alone[3] == ["a.wav", "b.wav", "c.wav", "d.wav", "e.wav", "f.wav"]
    assert shared[3] == ["a.wav", "c.wav", "d.wav", "e.wav"]  # b and f went to the helper
    assert (alone[4], shared[4]) == (2, 1)  # without it on the meters' threads; with it here one at a time
    assert all(a.true_peak_measured for a in shared[1])  # the 4x scan by default
    for kept in (alone[0], shared[0]):
        assert kept.names == ("a.wav", "b.wav", "c.wav", "d.wav", "e.wav")
        assert [row[0] for row in kept.skipped] == ["f.wav"]
    assert shared[1] == alone[1]
    for a, b in zip(shared[2], alone[2]):
        for field in dataclasses.fields(a):
            assert np.array_equal(getattr(a, field.name), getattr(b, field.name)), field.name
    # the analyses are each stem's own: louder stems (by construction) read louder
    levels = [a.integrated_lufs for a in shared[1]]
    assert levels == sorted(levels)


# --- master/chain.py: render, OutputMeters, measure_source, InputMeters --------------------------


def _ebur128(x: np.ndarray) -> tuple[float, float]:
    state = pyebur128.R128State(x.shape[0], RATE, pyebur128.MeasurementMode.MODE_I | pyebur128.MeasurementMode.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(x.T).ravel().astype(np.float64), x.shape[1])
    return pyebur128.get_loudness_global(state), 20 * math.log10(max(pyebur128.get_true_peak(state, c) for c in range(x.shape[0])))


def _bursts(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(11)
    x = 0.05 * rng.standard_normal((2, int(seconds * RATE)))
    t = np.arange(RATE // 4) / RATE
    for start in range(0, x.shape[1] - t.size, RATE // 2):
        x[:, start : start + t.size] += 0.5 * rng.standard_normal((2, t.size)) * np.exp(-30 * t)
    return x.astype(np.float32)


def _master_both_ways(monkeypatch, x: np.ndarray, settings, in_render: list, block_frames: int, **options) -> list:
    """``master_stream`` of ``x`` (32-bit float, two threads' setting) with the helper and
    without it: ``[(samples, result) with, (samples, result) without]``."""
    from automix.master.chain import ArraySink, master_stream

    runs = []
    for enabled in (True, False):
        monkeypatch.setattr(helper_module, "ENABLED", enabled)
        monkeypatch.setattr(loudness, "THREADS", 2)
        sink = ArraySink(2, x.shape[1])
        in_render.clear()
        outcome = master_stream(array_source(Audio(x, RATE), block_frames=block_frames), settings, sink, bit_depth="32f",
                                **options)
        runs.append((sink.samples.copy(), outcome))
    return runs


def _count_chunks_and_holds(monkeypatch) -> tuple[dict, list, list]:
    """Counts the detector chunks computed in this process (``n``), the chunks each
    render computed (a list), and records every object made in the helper."""
    from automix.master import chain

    counter, lock, in_render, held = {"n": 0}, threading.Lock(), [], []
    real_rows_of, real_render, real_hold = limiter.PeakDetector._rows_of, chain.render, Helper.hold

    def rows_of(self, piece):
        with lock:
            counter["n"] += 1
        return real_rows_of(self, piece)

    def render(*args, **kwargs):
        before = counter["n"]
        out = real_render(*args, **kwargs)
        in_render.append(counter["n"] - before)
        return out

    def hold(self, factory, *args):
        made = real_hold(self, factory, *args)
        held.append(made)
        return made

    monkeypatch.setattr(limiter.PeakDetector, "_rows_of", rows_of)
    monkeypatch.setattr(chain, "render", render)
    monkeypatch.setattr(Helper, "hold", hold)
    return counter, in_render, held


def counter_one_pass(monkeypatch, counter: dict, x: np.ndarray) -> int:
    """The chunks one detector computes over ``x``."""
    before = counter["n"]
    limiter.detector_envelope(x, RATE)
    return counter["n"] - before


def _master_without_kept_envelopes(monkeypatch, x, settings, in_render: list, **options) -> np.ndarray:
    from automix.master.chain import ArraySink, master_stream

    with monkeypatch.context() as patch:
        patch.setattr(limiter.EnvelopeSpill, "holds", lambda self, frames: False)  # as after a full disk
        patch.setattr(helper_module, "ENABLED", False)
        sink = ArraySink(2, x.shape[1])
        in_render.clear()
        master_stream(array_source(Audio(x, RATE), block_frames=44100), settings, sink, bit_depth="32f", **options)
    return sink.samples.copy()


def _all_let_go(held: list) -> bool:
    """Every object made in the helper is gone there (asking it fails with KeyError)."""
    for one in held:
        try:
            one.ask("__sizeof__")
        except KeyError:
            continue
        return False
    return True


def test_a_master_with_and_without_the_helper_is_the_same_and_measured_right(monkeypatch):
    from sound_metrics import true_peak_8x_db

    from automix.presets import load_preset

    x = _bursts(4.0)
    settings = load_preset("pop").master
    counter, in_render, held = _count_chunks_and_holds(monkeypatch)
    (y, shared), (y_alone, alone) = _master_both_ways(monkeypatch, x, settings, in_render, 30000, over_limit="force")
    assert held and _all_let_go(held)  # the meters and detectors made there were all dropped
    # the render limits with the model pass's kept envelope: it detects nothing itself;
    # with no envelope kept (a full disk) it detects its own input, to about the same master
    assert in_render == [0] * alone.renders
    y_detected = _master_without_kept_envelopes(monkeypatch, x, settings, in_render, over_limit="force")
    assert in_render == [counter_one_pass(monkeypatch, counter, x)] * alone.renders
    assert np.abs(y_detected - y).max() < 1e-4
    assert np.array_equal(y, y_alone)
    fields = ("input_lufs", "input_true_peak_dbtp", "output_lufs", "output_true_peak_dbtp",
              "output_precise_true_peak_dbtp", "output_lra_lu", "gain_db", "limiter_max_gain_reduction_db",
              "limiter_mean_gain_reduction_db", "stereo_width", "renders")
    assert [getattr(shared, f) for f in fields] == [getattr(alone, f) for f in fields]
    assert shared.glue == alone.glue and repr(shared.tonal_eq) == repr(alone.tonal_eq)
    input_lufs, input_peak = _ebur128(x)
    output_lufs, output_peak = _ebur128(y)
    assert shared.input_lufs == pytest.approx(input_lufs, abs=0.05)
    assert shared.input_true_peak_dbtp == pytest.approx(input_peak, abs=0.35)  # 4x filters differ on noise
    assert shared.output_lufs == pytest.approx(output_lufs, abs=0.05)
    assert shared.output_true_peak_dbtp == pytest.approx(output_peak, abs=0.05)
    assert shared.output_precise_true_peak_dbtp == pytest.approx(true_peak_8x_db(y), abs=0.05)


@pytest.mark.parametrize("given", [False, True])
def test_the_input_meters_read_the_same_in_the_helper_and_here(monkeypatch, given):
    from automix.master import chain
    from automix.measure.analyzer import analyze

    x = _bursts(2.0)
    x[1] *= 0.5  # a side signal for the mid/side spectra
    analysis = analyze(Audio(x, RATE)) if given else None
    measured = {}
    for enabled in (True, False):
        monkeypatch.setattr(helper_module, "ENABLED", enabled)
        monkeypatch.setattr(loudness, "THREADS", 2)
        measured[enabled] = chain.measure_source(array_source(Audio(x, RATE), block_frames=20000), analysis,
                                                 with_mid_side=True)
    there, here = measured[True], measured[False]
    assert there.analysis == here.analysis
    assert np.array_equal(there.band_uncertainty_db, here.band_uncertainty_db)
    assert pickle.dumps(there.glue_detector) == pickle.dumps(here.glue_detector)
    assert there.mid_side is not None and pickle.dumps(there.mid_side) == pickle.dumps(here.mid_side)
    lufs, peak = _ebur128(x)
    assert there.analysis.true_peak_measured
    assert there.analysis.true_peak_dbtp == pytest.approx(peak, abs=0.35)  # 4x filters differ on noise
    assert there.analysis.integrated_lufs == pytest.approx(lufs, abs=0.05)
    without = chain.measure_source(array_source(Audio(x, RATE)), analysis)
    assert without.mid_side is None


def test_the_output_meters_skip_empty_blocks_and_read_what_they_are_given():
    from automix.master.chain import OutputMeters

    x = _bursts(1.0)
    meters = OutputMeters(RATE, 2)
    meters.add(x[:, :1000])
    meters.add(x[:, 1000:])
    measured, true_peak_4x, peak = meters.result()
    lufs, true_peak = _ebur128(x)
    assert measured.integrated_lufs == pytest.approx(lufs, abs=0.05)
    assert measured.true_peak_dbtp == pytest.approx(true_peak, abs=0.35)
    assert measured.true_peak_dbtp == 20 * math.log10(true_peak_4x)
    assert 20 * math.log10(peak) >= 20 * math.log10(np.abs(x).max())
    # peaks only (the render measures the loudness in its own process): the same peaks
    peaks = OutputMeters(RATE, 2, False)
    peaks.add(x[:, :1000])
    peaks.add(x[:, 1000:])
    assert peaks.result() == (None, true_peak_4x, peak)


def test_a_render_measures_its_loudness_here_and_its_peaks_beside_as_one_meter_would(tmp_path):
    """Without an analysis the render's loudness is measured in this process and its peaks
    in the helper: the measurement equals one full meter's over what was written."""
    from test_mutation_kills_7 import _assert_measured_as_written

    from automix.master import chain
    from automix.presets import load_preset

    x = _bursts(2.0)
    settings = load_preset("pop").master
    plan = chain.plan_chain(chain.measure_source(array_source(Audio(x, RATE))), settings)
    for analyse in (False, True):
        sink = chain.ArraySink(2, x.shape[1])
        rendered = chain.render(array_source(Audio(x, RATE)), plan, 6.0, -1.0, 60.0, "24", sink, analyse=analyse)
        _assert_measured_as_written(rendered, sink.read(), RATE)  # one full meter's reading (and libebur128's)
        assert rendered.measured.true_peak_dbtp <= -1.0 + 1e-3


def test_each_stem_sets_failures_aside_and_refuses_only_when_asked_or_when_none_is_left():
    from automix.jobs.mix_folder import _each_stem

    def measure(index):
        if index in (1, 3):
            raise AutomixError(f"stem {index} is broken")
        return index

    assert _each_stem(_Stems(3), lambda i: i, True) == ([0, 1, 2], [0, 1, 2], ())  # strict, nothing fails
    keep, results, skipped = _each_stem(_Stems(5), measure, False)
    assert (keep, results) == ([0, 2, 4], [0, 2, 4])
    assert [(name, kind) for name, _, kind in skipped] == [("s1", "unreadable"), ("s3", "unreadable")]
    assert "stem 1 is broken" in skipped[0][1]
    with pytest.raises(AutomixError, match="stem 1 is broken"):
        _each_stem(_Stems(5), measure, True)
    with pytest.raises(AutomixError, match="no stem could be analysed"):
        _each_stem(_Stems(2), lambda i: measure(2 * i + 1), False)


def test_each_stem_waits_for_the_stems_already_started_when_interrupted(monkeypatch):
    from automix.jobs.mix_folder import _each_stem

    monkeypatch.setattr(loudness, "THREADS", 2)
    calls, running, second_started = [], [0], threading.Event()

    def measure(index):
        calls.append(index)
        if index == 0:
            second_started.wait(5)
            raise KeyboardInterrupt  # as a signal's exception, which no stem catches
        running[0] += 1
        if index == 1:
            second_started.set()
        time.sleep(0.3)
        running[0] -= 1
        return index

    with pytest.raises(KeyboardInterrupt):
        _each_stem(_Stems(6), measure, False)
    assert running[0] == 0  # the stem already started was waited for: nothing runs on behind
    assert len(calls) <= 3  # the queued ones were not analysed


def test_the_decimated_envelope_pools_the_full_rate_one_last_partial_group_included(monkeypatch):
    monkeypatch.setattr(loudness, "THREADS", 1)
    x = _noise(2.0, seed=17)
    x = x[:, : x.shape[1] - x.shape[1] % 32 + 17]  # a last group of 17 frames
    x[:, -3] = 0.9  # its peak: the pooled value must be the group's maximum
    for precise in (True, False):
        full = limiter.detector_envelope(x, RATE, precise=precise)
        detector = limiter.limiter_detector(RATE, 2, decimation=32, precise=precise)
        got = np.concatenate((detector.process(x), detector.flush()))
        expected = np.concatenate((full, np.zeros(-full.size % 32, np.float32))).reshape(-1, 32).max(axis=1)
        assert np.array_equal(got, expected)
        if precise:  # it counts the frames it returned: a second flush has no rest to give
            assert detector.flush().size == 0


def test_a_block_ending_one_frame_short_of_a_chunk_completes_none(monkeypatch):
    monkeypatch.setattr(loudness, "THREADS", 1)
    x = _noise(1.0, seed=19)
    detector = limiter.limiter_detector(RATE, 2)
    short = limiter._DETECTOR_FFT - 1 - detector._lead  # the buffer one frame short of a chunk
    first = detector.process(x[:, :short])
    assert first.size == 0
    got = np.concatenate((first, detector.process(x[:, short:]), detector.flush()))
    assert np.array_equal(got, limiter.detector_envelope(x, RATE))


def test_a_detector_never_flushed_lets_its_copy_in_the_helper_go(monkeypatch):
    import gc

    monkeypatch.setattr(loudness, "THREADS", 2)
    remote = helper_module.helper()
    detector = limiter.limiter_detector(RATE, 2)
    detector.process(_noise(1.0, seed=23))
    key = detector._held._key
    probe = np.zeros((2, limiter._DETECTOR_FFT), np.float32)
    assert len(Held(remote, key).ask("_rows_of", probe)) > 0  # it is there
    del detector  # a pass that failed: no flush
    gc.collect()
    with pytest.raises(KeyError):
        Held(remote, key).ask("_rows_of", probe)


def test_render_limits_wideband_unless_asked_for_the_split_band_limiter():
    import inspect

    from automix.master.chain import render

    assert inspect.signature(render).parameters["split_band"].default is False


def _pad_level_swing_db(y: np.ndarray) -> float:
    """How far the 1.1-2.2 kHz pad's level (50 ms RMS, 1-2.5 kHz band) moves over the
    steady part: a wideband limiter pumps it with every kick, a split-band one leaves it."""
    from scipy.signal import butter, sosfilt

    band = sosfilt(butter(4, [1000, 2500], btype="bandpass", fs=RATE, output="sos"), y.mean(axis=0))
    hop = RATE // 20
    frames = band[RATE : band.size - RATE // 2][: (band.size - 3 * RATE // 2) // hop * hop].reshape(-1, hop)
    rms_db = 10 * np.log10(np.mean(frames**2, axis=1))
    return float(rms_db.max() - rms_db.min())


def test_a_split_band_master_with_and_without_the_helper_is_the_same_and_does_not_pump(monkeypatch):
    from test_helper_process import kicks_under_a_pad

    from automix.presets import load_preset

    x = kicks_under_a_pad(6.0).astype(np.float32)
    x *= np.float32(0.9 / np.abs(x).max())
    settings = load_preset("pop").master
    counter, in_render, held = _count_chunks_and_holds(monkeypatch)
    monkeypatch.setattr(loudness, "THREADS", 1)
    limiter.detector_envelope(x, RATE)
    one_pass, counter["n"] = counter["n"], 0  # the chunks of one detector over the signal
    (y, shared), (y_alone, alone) = _master_both_ways(monkeypatch, x, settings, in_render, 44100)
    assert held and _all_let_go(held)
    # the render reads the two band envelopes kept by the model pass: only its safety
    # stage detects (its own input, as long as the signal); with none kept, three detect
    assert in_render == [one_pass] * alone.renders
    y_detected = _master_without_kept_envelopes(monkeypatch, x, settings, in_render)
    assert in_render == [3 * one_pass] * alone.renders
    assert np.abs(y_detected - y).max() < 1e-4
    assert shared.limiter_design == alone.limiter_design == "split-band"
    assert shared.limiter_programme_gain_reduction_db > 2.0  # the limiter really works
    assert np.array_equal(y, y_alone)
    assert _pad_level_swing_db(y) < 1.0  # the pad is not pumped by the kicks' limiting
    lufs, _ = _ebur128(y)
    assert shared.output_lufs == pytest.approx(lufs, abs=0.05)


def test_input_meters_measure_the_true_peak_only_when_asked():
    from automix.master.chain import InputMeters

    x = _bursts(1.0)
    plain = InputMeters(RATE, 2, x.shape[1], False)
    plain.add(x)
    assert plain.result()[2] is None and plain.result()[3] is None
    asked = InputMeters(RATE, 2, x.shape[1], True, True)
    asked.add(x)
    assert 20 * math.log10(asked.result()[3]) == pytest.approx(_ebur128(x)[1], abs=0.35)


class FailingBlocks:
    """A source's ``blocks`` that fails after two blocks (module level: pickles)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def __call__(self):
        yield self.x[:, :10000]
        yield self.x[:, 10000:20000]
        raise AutomixError("the disk went away")


def test_a_failed_analysis_pass_lets_its_meters_go(monkeypatch):
    from automix.master import chain

    _, _, held = _count_chunks_and_holds(monkeypatch)
    x = _bursts(1.0)
    for enabled in (True, False):
        monkeypatch.setattr(helper_module, "ENABLED", enabled)
        monkeypatch.setattr(loudness, "THREADS", 2)
        before = threading.active_count()
        with pytest.raises(AutomixError, match="the disk went away"):
            chain.measure_source(BlockSource(RATE, 2, x.shape[1], "x", FailingBlocks(x), ()))
        deadline = time.monotonic() + 2
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert threading.active_count() <= before  # the meters' thread was let go too
    assert held and _all_let_go(held)
