"""Streaming linear-phase FIR filtering (overlap-save) with carried state.

A linear-phase FIR of ``N`` taps (``N`` odd) delays everything by ``(N - 1) / 2``
samples. :class:`StreamingFIR` filters block by block, carrying the last ``N - 1`` input
samples of each channel across block edges, and hides the delay: the first
``latency`` output samples (the filter's wind-up) are dropped and :meth:`StreamingFIR.flush`
returns the last ``latency`` samples, so the concatenated output is sample-aligned with
the input and exactly as long. Overlap-save on a grid fixed from the start of the
stream, so block by block is bit-identical to whole-signal filtering.

Memory is the block plus ``N - 1`` samples per channel, whatever the signal's length.
"""

from __future__ import annotations

import numpy as np

from automix.dsp import kernels
from automix.errors import AutomixError


class StreamingFIR:
    """Block-by-block linear-phase FIR with the delay compensated (overlap-save).

    Parameters
    ----------
    taps : numpy.ndarray
        1-D impulse response, odd length, symmetric (linear phase) so that its delay is
        ``(len(taps) - 1) // 2`` samples.
    channels : int
        Number of channels of every block.

    Notes
    -----
    Overlap-save on a fixed grid: FFTs of ``fft_size`` (a power of two, at least twice
    the taps) advance by ``hop = fft_size - len(taps) + 1`` samples from the start of
    the stream, whatever the blocks are, so any blocking gives bit-identical output.
    ``process`` returns the aligned output that is ready (fewer samples than it was
    given while the filter winds up or while a hop is incomplete); ``flush`` returns
    what is still owed. Calling ``process`` after ``flush`` is an error. float32
    throughout (rounding ~1e-7 of full scale).
    """

    _HOPS_PER_FFT_BATCH = 16  # bounds the temporary spectra to ~16 FFT frames per channel

    def __init__(self, taps: np.ndarray, channels: int):
        taps = np.asarray(taps, dtype=np.float32)
        if taps.ndim != 1 or taps.size % 2 == 0:
            raise AutomixError("a linear-phase FIR needs an odd number of taps")
        self.taps = taps
        self.channels = int(channels)
        self.latency = (taps.size - 1) // 2
        self.fft_size = max(4096, 1 << int(np.ceil(np.log2(2 * taps.size))))
        self.hop = self.fft_size - taps.size + 1
        self._spectrum = kernels.rfft(taps, self.fft_size)
        self._buffer = np.zeros((self.channels, taps.size - 1), dtype=np.float32)  # history, then pending input
        self._received = 0
        self._produced = 0  # samples of the full convolution computed so far
        self._to_drop = self.latency
        self._flushed = False

    def process(self, block: np.ndarray) -> np.ndarray:
        """Filter one ``(channels, samples)`` block; returns the aligned output so far."""
        if self._flushed:
            raise AutomixError("StreamingFIR.process after flush")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise AutomixError(f"expected a ({self.channels}, samples) block, got shape {block.shape}")
        self._buffer = np.concatenate([self._buffer, block], axis=1)
        self._received += block.shape[1]
        hops = (self._buffer.shape[1] - (self.taps.size - 1)) // self.hop
        return self._drop(self._convolve(hops))

    def flush(self) -> np.ndarray:
        """The last output samples (the filter fed with silence past the end)."""
        if self._flushed:
            return np.zeros((self.channels, 0), dtype=np.float32)
        self._flushed = True
        owed = self.latency + self._received - self._produced
        if owed <= 0:
            return np.zeros((self.channels, 0), dtype=np.float32)
        hops = -(-owed // self.hop)
        missing = self.taps.size - 1 + hops * self.hop - self._buffer.shape[1]
        self._buffer = np.concatenate([self._buffer, np.zeros((self.channels, missing), dtype=np.float32)], axis=1)
        return self._drop(self._convolve(hops)[:, :owed])

    def _convolve(self, hops: int) -> np.ndarray:
        """Full-convolution output for the next ``hops`` hops; consumes the input."""
        if hops <= 0:
            return np.zeros((self.channels, 0), dtype=np.float32)
        n, size, hop = self.taps.size, self.fft_size, self.hop
        windows = np.lib.stride_tricks.sliding_window_view(self._buffer, size, axis=1)
        parts = []
        for first in range(0, hops, self._HOPS_PER_FFT_BATCH):
            count = min(self._HOPS_PER_FFT_BATCH, hops - first)
            frames = windows[:, first * hop : (first + count - 1) * hop + 1 : hop]  # (ch, count, size)
            filtered = kernels.irfft(kernels.rfft(frames, axis=-1) * self._spectrum, size, axis=-1)[..., n - 1 :]
            parts.append(filtered.reshape(self.channels, count * hop))
        self._buffer = self._buffer[:, hops * hop :].copy()
        self._produced += hops * hop
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)

    def _drop(self, out: np.ndarray) -> np.ndarray:
        if self._to_drop and out.shape[1]:
            dropped = min(self._to_drop, out.shape[1])
            out = out[:, dropped:]
            self._to_drop -= dropped
        return np.ascontiguousarray(out)


def filter_whole(samples: np.ndarray, taps: np.ndarray, block_size: int = 1 << 18) -> np.ndarray:
    """Whole-signal linear-phase filtering, aligned (delay removed) and the same length.

    :class:`StreamingFIR` run over the signal (:func:`stream`), so it is bit-identical to
    any streamed use and holds one block of temporaries.
    """
    samples = np.asarray(samples, dtype=np.float32)
    return stream(StreamingFIR(taps, samples.shape[0]), samples, block_size)


def stream(processor, samples: np.ndarray, block_size: int = 65536) -> np.ndarray:
    """Run a length-preserving streaming stage (``process(block)``/``flush()``, output
    aligned with its input) over ``samples`` in blocks, into one preallocated float32
    array: the whole-signal wrapper of every streaming stage, bit-identical to any
    streamed use, holding one block of temporaries.
    """
    out = np.empty(samples.shape, dtype=np.float32)
    at = 0

    def place(part: np.ndarray) -> None:
        nonlocal at
        if at + part.shape[1] > out.shape[1]:
            raise AutomixError(f"{type(processor).__name__} returned more frames than it was given")
        out[:, at : at + part.shape[1]] = part
        at += part.shape[1]

    for start in range(0, samples.shape[1], block_size):
        place(processor.process(samples[:, start : start + block_size]))
    place(processor.flush())
    if at != out.shape[1]:
        raise AutomixError(f"{type(processor).__name__} returned {at} of {out.shape[1]} frames")
    return out
