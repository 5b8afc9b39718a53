"""dsp/iir.py: recursive filters fed digital silence stay out of subnormal numbers."""

from __future__ import annotations

import numpy as np
import pyebur128
import pytest
from scipy import signal

from automix.dsp import iir
from automix.measure import loudness

FS = 44100


def _subnormal_count(x: np.ndarray) -> int:
    magnitude = np.abs(x)
    return int(np.count_nonzero((magnitude > 0) & (magnitude < np.finfo(x.dtype).tiny)))


def _burst_then_silence() -> np.ndarray:
    x = np.zeros((2, 12 * FS))
    x[:, :FS] = np.random.default_rng(3).standard_normal((2, FS)) * 0.3
    return x


def test_the_k_weighting_of_silence_stays_in_normal_numbers():
    sos = loudness.k_weighting_sos(FS)
    x = _burst_then_silence()
    # scipy alone: the state decays into subnormals (the 50x slow-down this module avoids)
    plain, _ = signal.sosfilt(sos, x, axis=-1, zi=np.zeros((sos.shape[0], 2, 2)))
    assert _subnormal_count(plain) > 1000
    y, zi = np.zeros_like(x), np.zeros((sos.shape[0], 2, 2))
    for start in range(0, x.shape[1], 16384):
        y[:, start : start + 16384], zi = iir.sosfilt(sos, x[:, start : start + 16384], zi)
    assert _subnormal_count(y) == 0 and _subnormal_count(zi) == 0
    # and nothing measurable changed: the guard is -400 dBFS
    assert np.abs(y - plain).max() < 1e-15


def test_a_half_silent_signal_still_reads_as_libebur128_reads_it():
    x = _burst_then_silence().astype(np.float32)
    meter = loudness.LoudnessMeter(FS, 2)
    meter.add(x)
    state = pyebur128.R128State(2, FS, pyebur128.MeasurementMode.MODE_I)
    state.add_frames(np.ascontiguousarray(x.T).ravel().astype(np.float64), x.shape[1])
    assert abs(meter.result().integrated_lufs - pyebur128.get_loudness_global(state)) <= 0.01


# --- the compiled kernels, loaded without `import scipy.signal` -------------------------


@pytest.mark.parametrize("x_type", [np.float32, np.float64])
@pytest.mark.parametrize("sos_type", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 5000), (6, 777), (3000,)])
def test_sosfilt_is_scipy_sosfilt_bit_for_bit(x_type, sos_type, shape):
    """Same output, state and float type as scipy.signal.sosfilt: every filter of a
    stream runs here, so any difference would move every measurement."""
    rng = np.random.default_rng(len(shape) + shape[0])
    sos = signal.butter(4, 90.0, "highpass", fs=FS, output="sos").astype(sos_type)
    x = rng.standard_normal(shape).astype(x_type)
    zi = rng.standard_normal((2, *shape[:-1], 2)).astype(x_type)
    zi_before = zi.copy()
    ours, ours_zi = iir.sosfilt(sos, x, zi)
    assert np.array_equal(zi, zi_before)  # the kernel works in place: on a copy, never on the caller's state
    theirs, theirs_zi = signal.sosfilt(sos, iir.guarded(x), axis=-1, zi=zi)
    assert ours.dtype == theirs.dtype and ours_zi.dtype == theirs_zi.dtype
    assert np.array_equal(ours, theirs) and np.array_equal(ours_zi, theirs_zi)
    assert np.array_equal(iir.sosfilt_plain(sos, x), signal.sosfilt(sos, x, axis=-1))


@pytest.mark.parametrize("layout", ["transposed", "strided", "column slice"])
@pytest.mark.parametrize("x_type", [np.float32, np.float64])
def test_sosfilt_of_a_view_in_any_layout_is_scipy_sosfilt(layout, x_type):
    """sosfilt filters a fresh guarded copy in place: a view that is not C-ordered (a
    decoder's transposed frames, a strided or sliced block) must still be filtered, not
    a temporary copy of it."""
    rng = np.random.default_rng(3)
    sos = signal.butter(2, 60.0, "highpass", fs=FS, output="sos")
    base = rng.standard_normal((3000, 2)).astype(x_type)
    x = {"transposed": base.T, "strided": base.T[:, ::2], "column slice": np.ascontiguousarray(base.T)[:, 100:2100]}[layout]
    zi = np.zeros((1, 2, 2))
    ours, ours_zi = iir.sosfilt(sos, x, zi)
    theirs, theirs_zi = signal.sosfilt(sos, iir.guarded(x), axis=-1, zi=zi)
    assert np.array_equal(ours, theirs) and np.array_equal(ours_zi, theirs_zi)
    assert np.array_equal(iir.sosfilt_plain(sos, x), signal.sosfilt(sos, x, axis=-1))


@pytest.mark.parametrize("x_type", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("layout", ["C", "transposed"])
def test_sosfilt_as_is_sosfilt_of_the_cast_block(x_type, layout):
    """The meters' K-weighting in float64 of float32 blocks, cast and guarded in one copy:
    bit for bit what casting first and then sosfilt give."""
    rng = np.random.default_rng(4)
    sos = signal.butter(2, 38.0, "highpass", fs=FS, output="sos")
    base = (rng.standard_normal((2, 4000)) * (3000 if x_type is np.int16 else 0.3)).astype(x_type)
    x = base if layout == "C" else np.ascontiguousarray(base.T).T
    zi = rng.standard_normal((1, 2, 2))
    ours, ours_zi = iir.sosfilt_as(sos, x, zi, np.float64)
    theirs, theirs_zi = iir.sosfilt(sos, x.astype(np.float64), zi)
    assert ours.dtype == np.float64
    assert np.array_equal(ours, theirs) and np.array_equal(ours_zi, theirs_zi)
    with pytest.raises(TypeError, match="fit in float32"):
        iir.sosfilt_as(sos, x, zi, np.float32)  # a float64 filter cannot run in float32


def test_sosfilt_refuses_what_scipy_refuses():
    x = np.zeros((2, 10), np.float32)
    with pytest.raises(ValueError, match="sos"):
        iir.sosfilt_plain(np.zeros((2, 5)), x)
    with pytest.raises(ValueError, match="zi"):
        iir.sosfilt(np.array([[1.0, 0, 0, 1, 0, 0]]), x, np.zeros((1, 3, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        iir.sosfilt_plain(np.array([[1.0, 0, 0, 1, 0, 0]]), np.zeros((2, 10), np.complex64))


@pytest.mark.parametrize("x_type", [np.float32, np.float64])
def test_one_pole_lfilter_is_scipy_lfilter_bit_for_bit(x_type):
    x = np.random.default_rng(5).standard_normal(4000).astype(x_type)
    coefficient = 0.995
    b = np.array([1 - coefficient], x_type)
    a = np.array([1.0, -coefficient], x_type)
    zi = np.array([coefficient * x[0]], x_type)
    ours, ours_zf = iir.lfilter(b, a, x, zi)
    theirs, theirs_zf = signal.lfilter(b, a, x, zi=zi)
    assert ours.dtype == theirs.dtype == x_type
    assert np.array_equal(ours, theirs) and np.array_equal(ours_zf, theirs_zf)
