"""dsp/iir.py: recursive filters fed digital silence stay out of subnormal numbers."""

from __future__ import annotations

import numpy as np
import pyebur128
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
    plain, plain_zi = signal.sosfilt(sos, x, axis=-1, zi=np.zeros((sos.shape[0], 2, 2)))
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
