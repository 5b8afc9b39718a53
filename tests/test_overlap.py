"""io/overlap.py: stages on two threads give the same bits, fail cleanly, leave no threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from automix.io.overlap import Behind, Beside, ahead
from automix.io.stream import array_source
from automix.io.audio import Audio
from automix.master import chain
from automix.measure import loudness
from automix.presets import load_preset


def _automix_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("automix-ahead") or t.name.startswith("automix-behind")]


def test_ahead_yields_in_order_and_raises_the_producers_error():
    assert list(ahead(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad block")

    got = []
    with pytest.raises(ValueError, match="bad block"):
        for item in ahead(failing()):
            got.append(item)
    assert got == [1]
    assert not _automix_threads()


def test_ahead_stops_its_producer_when_the_consumer_leaves():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    for item in ahead(endless(), depth=2):
        if item == 5:
            break
    assert not _automix_threads()
    assert len(produced) <= 5 + 1 + 2 + 1  # at most the queue's depth (and one in hand) past the break


def test_behind_consumes_in_order_and_reports_the_consumers_failure():
    seen = []
    behind = Behind(seen.append, depth=2)
    for i in range(100):
        behind.put(i)
    behind.close()
    assert seen == list(range(100))

    def consume(item):
        if item == 3:
            raise OSError("disk full")

    behind = Behind(consume)
    with pytest.raises(OSError, match="disk full"):
        for i in range(1000):
            behind.put(i)
        behind.close()
    assert not _automix_threads()


def test_beside_returns_results_in_submission_order():
    beside = Beside(lambda x: x * x)
    futures = [beside.submit(i) for i in range(20)]
    assert [f.result() for f in futures] == [i * i for i in range(20)]
    beside.close()


def test_a_threaded_master_is_bit_identical_to_a_single_threaded_one(monkeypatch):
    rng = np.random.default_rng(7)
    sr = 44100
    t = np.arange(6 * sr) / sr
    kick = np.sin(2 * np.pi * 55 * t) * (np.exp(-((t % 0.5) * 12)))
    music = 0.4 * kick + 0.05 * rng.standard_normal(t.size)
    samples = np.stack((music, np.roll(music, 30))).astype(np.float32)
    audio = Audio(samples, sr)
    settings = load_preset("pop").master
    outputs = []
    for threads in (1, 2):
        monkeypatch.setattr(loudness, "THREADS", threads)
        out, result = chain.master(audio, settings)
        outputs.append((out, result.output_lufs, result.limiter_design))
    assert outputs[0][2] == outputs[1][2]
    assert np.array_equal(outputs[0][0], outputs[1][0])
    assert outputs[0][1] == outputs[1][1]
    assert not _automix_threads()


def test_abandon_drops_the_items_still_queued():
    import time

    seen = []

    def slow(item):
        time.sleep(0.1)
        seen.append(item)

    behind = Behind(slow, depth=3)
    for i in range(4):  # one in hand, three queued
        behind.put(i)
    started = time.perf_counter()
    behind.abandon()
    assert len(seen) <= 1  # at most the one being consumed when abandon() came
    assert time.perf_counter() - started < 0.3
    assert not _automix_threads()
