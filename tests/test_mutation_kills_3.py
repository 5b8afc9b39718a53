"""Tests written for the mutants that survived the third round of mutation analysis
(bench/mutation.py keys dither_draw, signal_spill, peak_stream, detector_chunks, open_each,
allocator; /work/notes/mutation_report_3.md): the code of issue 11's speed work.

Every expected value comes from outside the code under test: the codes a 16/24-bit PCM
file can hold, the samples written to a spill, glibc's own malloc statistics
(``mallinfo2``), the amplitude of a sinusoid whose samples miss its crest, a thread's name.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from automix.errors import AutomixError
from automix.io.dither import Dither
from automix.io.stream import SignalSpill

RATE = 44100


# --- io/dither.py: Dither.process --------------------------------------------------------


def test_32f_passes_float32_blocks_through_untouched_and_uncopied():
    x = (np.random.default_rng(3).standard_normal((2, 1000)) * 0.3).astype(np.float32)
    out = Dither("32f", 2).process(x)
    assert out is not None and out.dtype == np.float32
    assert np.array_equal(out, x)
    assert np.shares_memory(out, x)  # no copy of every block of a float master
    wide = x.astype(np.float64) + 1e-9
    assert np.array_equal(Dither("32f", 2).process(wide), wide.astype(np.float32))


@pytest.mark.parametrize("bits", [16, 24])
def test_full_scale_lands_on_the_largest_pcm_codes(bits):
    # a B-bit PCM sample holds -2^(B-1) .. 2^(B-1) - 1: +1.0 can only be written as the
    # largest positive code; -1.0 is a code itself, and the dither (+-1 LSB) can only
    # move it up by one
    lsb = 2.0 ** -(bits - 1)
    dither = Dither(str(bits), 2)
    top = dither.process(np.ones((2, 20_000), dtype=np.float32))
    assert np.all(top == np.float32(1.0 - lsb))
    bottom = dither.process(-np.ones((2, 20_000), dtype=np.float32))
    assert bottom.min() == -1.0
    assert set(np.unique(bottom).tolist()) <= {-1.0, float(np.float32(-1.0 + lsb))}


# --- io/stream.py: SignalSpill -----------------------------------------------------------


def _blocks(rng, channels, sizes):
    return [rng.standard_normal((channels, n)).astype(np.float32) for n in sizes]


@pytest.mark.parametrize("channels", [1, 2])
def test_spill_gives_back_exactly_what_was_written_in_blocks_of_its_size_as_often_as_asked(channels):
    rng = np.random.default_rng(5)
    written = _blocks(rng, channels, [7, 0, 1000, 1, 2500])
    with SignalSpill(RATE, channels, "keys", block_frames=1024) as spill:
        for block in written:
            spill.write(block)
        source = spill.source()
        assert (source.sample_rate, source.channels, source.frames, source.name) == (RATE, channels, 3508, "keys")
        expected = np.concatenate(written, axis=1)
        for _ in range(2):  # re-readable from the start
            read = list(source.blocks())
            assert [b.shape for b in read] == [(channels, 1024)] * 3 + [(channels, 3508 - 3072)]
            assert all(b.dtype == np.float32 for b in read)
            assert np.array_equal(np.concatenate(read, axis=1), expected)


def test_spill_of_nothing_reads_as_nothing():
    with SignalSpill(RATE, 2) as spill:
        spill.write(np.zeros((2, 0), dtype=np.float32))
        source = spill.source()
        assert source.frames == 0 and list(source.blocks()) == []
        assert spill.usable


def test_spill_stores_float64_blocks_as_float32_and_refuses_a_wrong_channel_count():
    x = np.linspace(-1, 1, 300).reshape(2, 150)
    with SignalSpill(RATE, 2, block_frames=100) as spill:
        spill.write(x)
        with pytest.raises(AutomixError, match="3-channel block for a 2-channel"):
            spill.write(np.zeros((3, 10), dtype=np.float32))
        assert np.array_equal(np.concatenate(list(spill.source().blocks()), axis=1), x.astype(np.float32))


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, inner):
        self.inner, self.writes = inner, 0

    def write(self, data):
        self.writes += 1
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_spill_that_cannot_write_turns_unusable_and_writes_no_more():
    spill = SignalSpill(RATE, 2)
    spill.write(np.ones((2, 10), dtype=np.float32))
    full = spill._file = _FullDisk(spill._file)
    spill.write(np.ones((2, 10), dtype=np.float32))
    assert spill.usable is False
    assert spill.frames == 10  # the failed block is not counted
    spill.write(np.ones((2, 10), dtype=np.float32))
    assert full.writes == 1  # given up: no further attempts
    spill._file = full.inner
    spill.close()


def test_a_kept_signal_cut_short_is_an_error_not_a_short_stream():
    with SignalSpill(RATE, 2, block_frames=64) as spill:
        spill.write(np.ones((2, 200), dtype=np.float32))
        source = spill.source()
        spill._file.truncate(150 * 2 * 4)  # the file lost its last 50 frames
        with pytest.raises(AutomixError, match=r"ended early \(150 of 200 frames\)"):
            list(source.blocks())


def test_closing_a_spill_deletes_its_file():
    with SignalSpill(RATE, 1) as spill:
        spill.write(np.ones((1, 10), dtype=np.float32))
        handle = spill._file
        assert not handle.closed
    assert handle.closed  # a TemporaryFile: closed is deleted
    spill = SignalSpill(RATE, 1)
    handle = spill._file
    spill.close()
    assert handle.closed


# --- jobs/allocator.py: keep_freed_memory ------------------------------------------------

_ALLOCATOR_PROBE = textwrap.dedent('''
    import ctypes, json
    from automix.jobs.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    MB = 1 << 20
    out = {"took": keep_freed_memory()}

    def mmapped(size):
        before = libc.mallinfo2().hblkhd
        p = libc.malloc(size)
        grew = libc.mallinfo2().hblkhd - before
        libc.free(p)
        return grew >= size

    out["mmapped_32_5"] = mmapped(int(32.5 * MB))  # first: while the heap's top is still small
    out["mmapped_31_5"] = mmapped(int(31.5 * MB))
    # the step the heap grows by past a request: the top pad
    blocks, arena = [], libc.mallinfo2().arena
    while libc.mallinfo2().arena == arena:
        top = libc.mallinfo2().keepcost  # free bytes at the top before this request
        blocks.append(libc.malloc(8 * MB))
    out["pad_mb"] = (libc.mallinfo2().arena - arena - 8 * MB + top) / MB
    for p in reversed(blocks):
        libc.free(p)

    def arena_after_freeing(total_mb):
        ps = [libc.malloc(24 * MB) for _ in range(total_mb // 24)]
        for p in reversed(ps):
            libc.free(p)
        return libc.mallinfo2().arena / MB

    out["arena_after_240"] = arena_after_freeing(240)
    out["arena_after_1200"] = arena_after_freeing(1200)
    print(json.dumps(out))
''')


def _glibc_with_mallinfo2() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="glibc >= 2.33 (mallinfo2) only")
def test_glibc_keeps_block_sized_buffers_and_the_freed_heap_as_the_module_says():
    """Read back from glibc's own statistics (a fresh process: nothing else allocating):
    buffers under 32 MB come from the heap, larger ones are mapped (and given back at
    once); the heap grows in 64 MB steps past a request; up to 1 GB free at its top is
    kept, more is trimmed."""
    done = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE], capture_output=True, text=True, check=True,
                          timeout=60)
    out = json.loads(done.stdout)
    assert out["took"] is True
    assert out["mmapped_31_5"] is False and out["mmapped_32_5"] is True
    assert 64.0 <= out["pad_mb"] < 64.1  # + glibc's MINSIZE and the page rounding
    assert out["arena_after_240"] >= 240  # 240 MB freed, all still held
    assert out["arena_after_1200"] < 600  # 1.2 GB freed: over 1 GB at the top, trimmed to the pad


def test_elsewhere_keep_freed_memory_does_nothing_and_says_so(monkeypatch):
    import ctypes

    from automix.jobs import allocator

    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
    monkeypatch.setattr(allocator.sys, "platform", "linux")

    class NoMallopt:  # musl: a libc without mallopt
        def __init__(self, name):
            pass

    monkeypatch.setattr(ctypes, "CDLL", NoMallopt)
    assert allocator.keep_freed_memory() is False

    def unloadable(name):
        raise OSError("no libc")

    monkeypatch.setattr(ctypes, "CDLL", unloadable)
    assert allocator.keep_freed_memory() is False
