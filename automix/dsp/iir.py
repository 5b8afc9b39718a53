"""Recursive (IIR) filtering of streams, safe from subnormal slow-downs.

Digital silence -- a vocal stem between its phrases, the tail of a song -- drives a
recursive filter's state down into subnormal floating-point numbers, where it can settle
in a limit cycle instead of reaching zero, and every multiply then runs many times
slower. Measured here: K-weighting a vocal stem that is half silence took 0.58 s per
minute of stereo audio, against 0.04 s for noise.

``sosfilt`` adds ``SUBNORMAL_GUARD`` to what the filter sees. It is -400 dBFS, far under
any signal or measurement (24-bit quantisation is -144 dBFS), it is the same whatever the
block sizes, and it keeps the state in normal numbers: the same stem then filters in
0.04 s. A filter that passes DC adds that constant to its output (invisible in float32
next to any audible sample, and rounded away by the output's quantisation); the
K-weighting and the side-chain high-passes remove it.

The filters run in scipy.signal's compiled kernels, loaded without ``import
scipy.signal`` (see :mod:`automix.dsp.kernels`).
"""

from __future__ import annotations

import numpy as np

from automix.dsp.kernels import linear_filter, sosfilt_kernel

#: A constant added to a recursive filter's input: -400 dBFS (see the module docstring).
SUBNORMAL_GUARD = 1e-20


def guarded(x: np.ndarray) -> np.ndarray:
    """``x + SUBNORMAL_GUARD`` in ``x``'s float type: what any recursive filter of a
    stream should be fed (the compressor's detectors use it too)."""
    return x + np.asarray(SUBNORMAL_GUARD, dtype=x.dtype)


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.sosfilt(sos, x + SUBNORMAL_GUARD, axis=-1, zi=zi)``: the next block
    of a stream (``x`` shaped ``(channels, n)``, ``zi`` the state carried across blocks,
    shaped ``(sections, channels, 2)``).

    Returns the filtered block and the new state, in the type scipy would give
    (``np.result_type(sos, x, zi)``).
    """
    dtype = _checked(sos, x, zi)
    # guarded(x) written straight into a fresh C-ordered array of the filter's type (the
    # sum is taken in x's type, as guarded's, then cast), which is filtered in place
    fed = np.empty(x.shape, dtype)
    np.add(x, np.asarray(SUBNORMAL_GUARD, dtype=x.dtype), out=fed)
    return _filter_in_place(np.asarray(sos), fed, zi)


def sosfilt_as(sos: np.ndarray, x: np.ndarray, zi: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """``sosfilt(sos, x.astype(dtype), zi)`` with one copy of ``x``, not two: a float32
    block K-weighted in float64, as the loudness meters do."""
    dtype = np.dtype(dtype)
    if _checked(sos, x, zi) != dtype:
        raise TypeError(f"sosfilt_as: the filter, its state and the block must fit in {dtype}")
    fed = np.add(x, np.asarray(SUBNORMAL_GUARD, dtype=dtype), dtype=dtype, order="C")
    return _filter_in_place(np.asarray(sos), fed, zi)


def sosfilt_plain(sos: np.ndarray, x: np.ndarray, zi: np.ndarray | None = None):
    """``scipy.signal.sosfilt(sos, x, axis=-1, zi=zi)``, without the subnormal guard.

    For a whole signal that is filtered once (``zi=None``: returns only the output).
    """
    dtype = _checked(sos, x, zi)
    return _filter_in_place(np.asarray(sos), np.array(x, dtype=dtype, order="C"), zi)


def _checked(sos, x: np.ndarray, zi) -> np.dtype:
    """The type the filter runs in, after checking the shapes."""
    sos = np.asarray(sos)
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ValueError(f"sos must be shaped (sections, 6), got {sos.shape}")
    dtype = np.result_type(sos, x) if zi is None else np.result_type(sos, x, np.asarray(zi))
    if dtype.char not in "fd":
        raise TypeError(f"sosfilt runs in float32 or float64, not {dtype}")
    state_shape = (sos.shape[0], *x.shape[:-1], 2)
    if zi is not None and np.shape(zi) != state_shape:
        raise ValueError(f"zi must be shaped {state_shape}, got {np.shape(zi)}")
    return dtype


def _filter_in_place(sos: np.ndarray, out: np.ndarray, zi):
    """Filter ``out`` (a fresh C-ordered array of the filter's type) in place: the kernel
    filters the rows of its 2-D view, with one (sections, 2) state per row. (Copies of
    1 MB blocks are not free: each is a fresh allocation the kernel must page in, about
    as long as the filter itself, so the block is copied once, not three times.)"""
    if not out.flags.c_contiguous:  # its 2-D view would be a copy, filtered instead of it
        raise ValueError("internal error: the filter's buffer must be C-ordered")
    sections, dtype, shape = sos.shape[0], out.dtype, out.shape
    state = np.zeros((sections, *shape[:-1], 2), dtype) if zi is None else np.asarray(zi, dtype)
    rows = np.array(np.moveaxis(state, 0, -2).reshape(-1, sections, 2), order="C")  # a copy: never the caller's zi
    sosfilt_kernel(sos.astype(dtype, copy=False), out.reshape(-1, shape[-1]), rows)
    if zi is None:
        return out
    return out, np.moveaxis(rows.reshape(*shape[:-1], sections, 2), -2, 0)


def lfilter(b: np.ndarray, a: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.lfilter(b, a, x, axis=-1, zi=zi)`` for a recursive filter (``len(a) > 1``).

    Returns the output and the final state.
    """
    return linear_filter(b, a, x, -1, zi)
