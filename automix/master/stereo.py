"""Mastering stage 2: low end made mono, side level scaled to the preset's width."""

from __future__ import annotations

import numpy as np
from scipy import signal


def shape_stereo(samples: np.ndarray, sample_rate: int, mono_below_hz: float, width: float) -> np.ndarray:
    """Mono below ``mono_below_hz`` and side gain ``width``, in mid/side.

    The side signal is high-passed with a zero-phase 4th-order Butterworth (run forward
    and back), so the mid signal -- and everything mono -- is untouched.
    """
    if samples.shape[0] != 2 or (mono_below_hz <= 0 and width == 1.0):
        return samples
    mid = 0.5 * (samples[0] + samples[1])
    side = 0.5 * (samples[0] - samples[1]).astype(np.float64)
    if mono_below_hz > 0:
        sos = signal.butter(4, mono_below_hz, "highpass", fs=sample_rate, output="sos")
        side = signal.sosfiltfilt(sos, side)
    side *= width
    return np.stack([mid + side, mid - side]).astype(np.float32)
