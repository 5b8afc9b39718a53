"""Test signals with known answers (kept out of conftest so tests can import them)."""

from __future__ import annotations

import numpy as np


def fade(x: np.ndarray, sample_rate: int, fade_s: float = 0.01) -> np.ndarray:
    """Raised-cosine fade in and out, so a test tone has no step at its ends."""
    n = min(int(fade_s * sample_rate), x.shape[-1] // 2)
    if n:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
        x = x.copy()
        x[..., :n] *= ramp
        x[..., -n:] *= ramp[::-1]
    return x


def sine(level_dbfs: float, seconds: float, sample_rate: int, frequency_hz: float = 1000.0,
         channels: int = 2, phase_rad: float = 0.0) -> np.ndarray:
    """A sine whose *peak* is ``level_dbfs``, identical in every channel."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    x = 10 ** (level_dbfs / 20) * np.sin(2 * np.pi * frequency_hz * t + phase_rad)
    return np.tile(x.astype(np.float32), (channels, 1))


def sequence(levels_and_seconds, sample_rate: int, frequency_hz: float = 1000.0) -> np.ndarray:
    """Concatenated 1 kHz stereo sine segments, as in EBU Tech 3341/3342."""
    return np.concatenate([sine(level, seconds, sample_rate, frequency_hz) for level, seconds in levels_and_seconds], axis=1)


def pink_noise(seconds: float, sample_rate: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Pink (1/f) noise, unit RMS per channel, independent channels."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    spectrum = rng.standard_normal((channels, n // 2 + 1)) + 1j * rng.standard_normal((channels, n // 2 + 1))
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    spectrum[:, 1:] /= np.sqrt(f[1:])
    spectrum[:, 0] = 0
    x = np.fft.irfft(spectrum, n, axis=-1)
    return (x / x.std(axis=-1, keepdims=True)).astype(np.float32)


def music_like(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A dynamic stereo signal: kick-like thumps, a chord, hats; for cross-checks."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    beat = (t * 2) % 1.0
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-beat * 30)) * t) * np.exp(-beat * 8)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.25 * t))
    hats = rng.standard_normal(n) * np.exp(-((t * 4) % 1.0) * 40)
    hats = np.diff(hats, prepend=0.0)
    left = 0.5 * kick + 0.1 * chord + 0.05 * hats
    right = 0.5 * kick + 0.08 * chord + 0.07 * hats
    return fade(np.stack([left, right]).astype(np.float32), sample_rate)


def shelved_noise(seconds: float, rate: int, low_db: float, high_db: float, seed: int) -> np.ndarray:
    """Pink noise with a low shelf (around 200 Hz) and a high shelf (around 3 kHz), unit RMS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    f = np.maximum(np.fft.rfftfreq(n, 1 / rate), 1.0)
    shape_db = low_db * (0.5 - 0.5 * np.tanh(2 * np.log2(f / 200.0))) + high_db * (0.5 + 0.5 * np.tanh(2 * np.log2(f / 3000.0)))
    magnitude = 10 ** (shape_db / 20) / np.sqrt(f)
    magnitude[0] = 0.0
    x = np.fft.irfft((rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)) * magnitude, n)
    return x / x.std()
