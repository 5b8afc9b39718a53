"""Linked feed-forward compressor, shared by the stem chains and the master's glue.

Whole signals in, array operations only (scipy's IIR filters), so it runs at C speed.
Why not pedalboard's ``Compressor``: it runs one detector per channel, so a loud event
on one side would shift the stereo image; a bus compressor must be linked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal


def one_pole(x: np.ndarray, time_ms: float, sample_rate: int) -> np.ndarray:
    """First-order low-pass with time constant ``time_ms``, started at the first value."""
    coefficient = math.exp(-1000.0 / (time_ms * sample_rate))
    b = np.array([1.0 - coefficient], dtype=x.dtype)
    a = np.array([1.0, -coefficient], dtype=x.dtype)
    return signal.lfilter(b, a, x, zi=np.array([coefficient * x[0]], dtype=x.dtype))[0]



@dataclass(frozen=True)
class CompressorResult:
    samples: np.ndarray
    max_gain_reduction_db: float
    mean_gain_reduction_db: float


def compress(samples: np.ndarray, sample_rate: int, *, threshold_db: float, ratio: float, attack_ms: float,
             release_ms: float, knee_db: float = 6.0) -> CompressorResult:
    """Linked feed-forward RMS compressor with a soft knee.

    The detector is the mean square over all channels, smoothed with the attack time;
    the static curve gives the gain reduction, which then releases at the release
    time. ``threshold_db`` is on the detector's scale (dB RMS, about LUFS for music).
    """
    if ratio <= 1.0:
        return CompressorResult(samples, 0.0, 0.0)
    power = np.mean(np.square(samples), axis=0, dtype=np.float32)
    smoothed = np.maximum(one_pole(power, attack_ms, sample_rate), np.float32(1e-20))
    over = np.log10(smoothed)
    over *= np.float32(10.0)
    over -= np.float32(threshold_db)
    slope = np.float32(1.0 - 1.0 / ratio)
    half_knee = np.float32(knee_db / 2)
    # soft knee: quadratic over [-knee/2, knee/2], straight line above, zero below
    reduction = np.where(over >= half_knee, slope * over, slope * (np.maximum(over + half_knee, 0)) ** 2 / np.float32(2 * knee_db))
    # Reduction rises at the detector's (attack) speed and falls at the release speed.
    released = one_pole(reduction, release_ms, sample_rate)
    gain_db = -np.maximum(reduction, released)
    out = samples * np.power(np.float32(10.0), gain_db / np.float32(20.0), dtype=np.float32)
    acting = gain_db < -0.01
    return CompressorResult(out, float(-gain_db.min()), float(-gain_db[acting].mean()) if acting.any() else 0.0)
