"""Sound-quality measurements for tests: THD+N, SMPTE IMD, true peak at 8x, transient loss.

Independent of automix: plain numpy/scipy, written from the definitions, so a test that
uses them never grades automix with automix's own code.
"""

from __future__ import annotations

import numpy as np
from scipy import signal


def _sinusoid_basis(frames: int, sample_rate: int, frequencies_hz: list[float], start: int = 0) -> np.ndarray:
    """Columns: DC, then cos and sin of each frequency (time counted from ``start``)."""
    t = (np.arange(frames) + start) / sample_rate
    columns = [np.ones(frames)]
    for f in frequencies_hz:
        columns += [np.cos(2 * np.pi * f * t), np.sin(2 * np.pi * f * t)]
    return np.stack(columns, axis=1)


def _fit(x: np.ndarray, sample_rate: int, frequencies_hz: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of DC plus sinusoids at known frequencies: (amplitudes, fitted signal)."""
    basis = _sinusoid_basis(x.size, sample_rate, frequencies_hz)
    coefficients, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    amplitudes = np.hypot(coefficients[1::2], coefficients[2::2])
    return amplitudes, basis @ coefficients


def _window(x: np.ndarray, sample_rate: int, skip_s: float, tail_s: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[0]
    return x[int(skip_s * sample_rate) : x.size - int(tail_s * sample_rate)]


def thd_n_db(x: np.ndarray, sample_rate: int, frequency_hz: float, *, skip_s: float = 0.2, tail_s: float = 0.05) -> float:
    """THD+N in dB: RMS of everything but the fundamental (and DC) over the fundamental's RMS.

    The fundamental is fitted by least squares at the known frequency, then removed; the
    first ``skip_s`` (onset) and last ``tail_s`` seconds are left out.
    """
    y = _window(x, sample_rate, skip_s, tail_s)
    amplitudes, fitted = _fit(y, sample_rate, [frequency_hz])
    residual = y - fitted  # the fit includes DC, so the residual has none
    fundamental_rms = amplitudes[0] / np.sqrt(2.0)
    return float(20 * np.log10(max(np.sqrt(np.mean(residual**2)), 1e-300) / fundamental_rms))


def smpte_imd_percent(x: np.ndarray, sample_rate: int, *, low_hz: float = 60.0, high_hz: float = 7000.0,
                      orders: int = 3, skip_s: float = 0.2, tail_s: float = 0.05) -> float:
    """SMPTE intermodulation distortion in percent.

    The sidebands ``high +- n * low`` (n = 1..orders) are fitted by least squares together
    with both tones; IMD is the root-sum-square of the sideband amplitudes over the
    amplitude of the high tone (SMPTE RP120 reads the same ratio by demodulating the
    high tone's amplitude).
    """
    y = _window(x, sample_rate, skip_s, tail_s)
    frequencies = [low_hz, high_hz] + [high_hz + s * n * low_hz for n in range(1, orders + 1) for s in (-1, 1)]
    amplitudes, _ = _fit(y, sample_rate, frequencies)
    return float(100 * np.sqrt(np.sum(amplitudes[2:] ** 2)) / amplitudes[1])


def true_peak_8x_db(x: np.ndarray) -> float:
    """Peak of the signal interpolated 8x through a long filter (320 taps per phase, Kaiser
    beta 10: flat to about 0.49 fs), by FFT convolution of the zero-stuffed signal.

    An independent check of the 4x BS.1770 meter: near-ideal reconstruction, as a good
    DAC sees it (see ``true_peak_ideal_db`` for the brick-wall extreme).
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    h = signal.firwin(8 * 320 + 1, 1.0 / 8, window=("kaiser", 10.0)) * 8
    stuffed = np.zeros((x.shape[0], x.shape[1] * 8))
    stuffed[:, ::8] = x
    up = signal.oaconvolve(stuffed, h[None, :], mode="full", axes=-1)
    return float(20 * np.log10(max(np.abs(up).max(), 1e-300)))


def true_peak_ideal_db(x: np.ndarray, up: int = 16) -> float:
    """Peak of the ideal (brick-wall, sinc) reconstruction, read on a ``up``-times grid.

    Computed by FFT: the spectrum is zero-padded (the Nyquist bin split between its two
    images), with the signal padded by silence so the circular reconstruction does not
    wrap. Content right up to Nyquist counts in full, as no real DAC passes it: the
    strictest reading there is. Grid error: at most ``1 - cos(pi / 2 up)`` (0.04 dB at 16x).
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    pad = 4096
    x = np.pad(x, ((0, 0), (pad, pad)))
    frames = x.shape[1]
    spectrum = np.fft.rfft(x, axis=1)
    padded = np.zeros((x.shape[0], frames * up // 2 + 1), dtype=complex)
    padded[:, : spectrum.shape[1]] = spectrum
    if frames % 2 == 0:
        padded[:, frames // 2] *= 0.5
    peak = 0.0
    for row in padded:  # one channel at a time: memory
        peak = max(peak, float(np.abs(np.fft.irfft(row, frames * up) * up).max()))
    return float(20 * np.log10(max(peak, 1e-300)))


def attack_to_body_db(x: np.ndarray, sample_rate: int, onsets: np.ndarray, *, attack_s: float = 0.01,
                      body_start_s: float = 0.03, body_stop_s: float = 0.15) -> float:
    """Mean over hits of: peak in the first ``attack_s`` after each onset over the RMS of the body
    (``body_start_s`` .. ``body_stop_s`` after it), in dB. The input's value minus the
    output's is the transient (attack-to-body) loss."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    values = []
    for onset in onsets:
        attack = np.abs(x[:, onset : onset + int(attack_s * sample_rate)]).max()
        body = x[:, onset + int(body_start_s * sample_rate) : onset + int(body_stop_s * sample_rate)]
        values.append(20 * np.log10(attack / np.sqrt(np.mean(body**2))))
    return float(np.mean(values))


def snare_hits(sample_rate: int, seconds: float, *, period_s: float = 0.5, attack_ms: float = 5.0,
               decay_ms: float = 150.0, channels: int = 2, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Noise bursts: linear attack over ``attack_ms``, then exponential decay with time constant
    ``decay_ms``, one every ``period_s``. Returns (audio peak ~1, onset sample indices)."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * sample_rate)
    hit_frames = int(period_s * sample_rate)
    t = np.arange(hit_frames) / sample_rate
    envelope = np.minimum(t / (attack_ms / 1000), 1.0) * np.exp(-np.maximum(t - attack_ms / 1000, 0) / (decay_ms / 1000))
    onsets = np.arange(0, frames - hit_frames + 1, hit_frames)
    out = np.zeros((channels, frames))
    for onset in onsets:
        noise = rng.standard_normal(hit_frames)
        out[:, onset : onset + hit_frames] = noise * envelope
    out /= np.abs(out).max()
    return out.astype(np.float32), onsets
