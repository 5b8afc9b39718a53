"""Mastering stage 1: tonal balance toward the preset's target spectrum."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ, AudioAnalysis
from automix.presets import MasterSettings


@dataclass(frozen=True)
class TonalMove:
    """The tonal-balance EQ: gain per third-octave band centre."""

    centres_hz: tuple[float, ...]
    gains_db: tuple[float, ...]

    def to_dict(self) -> dict:
        return {f"{c:.0f}": round(g, 2) for c, g in zip(self.centres_hz, self.gains_db) if abs(g) >= 0.05}


def target_curve_db(centres_hz: np.ndarray, settings: MasterSettings) -> np.ndarray:
    """The preset's target third-octave spectrum (shape only; the level is arbitrary).

    A straight slope in dB per octave around 1 kHz -- long-term spectra of commercial
    music fall at roughly 3-5 dB per octave in third-octave power -- plus smooth shelves
    for the bass (below ~120 Hz) and the air (above ~8 kHz).
    """
    octaves = np.log2(centres_hz / 1000.0)
    bass_weight = 1.0 / (1.0 + (centres_hz / 120.0) ** 2)
    air_weight = 1.0 / (1.0 + (8000.0 / centres_hz) ** 2)
    return settings.tilt_db_per_octave * octaves + settings.bass_db * bass_weight + settings.air_db * air_weight


def tonal_balance(analysis: AudioAnalysis, settings: MasterSettings) -> TonalMove:
    """EQ gains per third-octave band that move the mix part-way toward the target.

    Both spectra are compared as shapes (each normalised to its own power-weighted mean
    over 40 Hz-16 kHz). The difference is smoothed over about an octave, scaled by
    ``tonal_amount`` and capped at ``tonal_max_db``. Bands that hold almost nothing
    (more than 45 dB under the loudest band) are never boosted: there is nothing there
    to bring up but noise.
    """
    levels = np.asarray(analysis.band_levels_db)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: levels.size])
    if settings.tonal_amount <= 0 or levels.size == 0:
        return TonalMove(tuple(centres), tuple(0.0 for _ in centres))
    used = (centres >= 40) & (centres <= 16000)
    target = target_curve_db(centres, settings)
    weights = 10 ** (levels / 10) * used
    weights /= weights.sum()
    difference = (target - np.sum(weights * target)) - (levels - np.sum(weights * levels))
    difference = np.where(used, difference, 0.0)
    for _ in range(2):  # a 1-2-1 kernel twice: about one octave of smoothing
        difference = np.convolve(np.pad(difference, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    gains = np.clip(difference * settings.tonal_amount, -settings.tonal_max_db, settings.tonal_max_db)
    empty = levels < levels.max() - 45.0
    gains = np.where(empty & (gains > 0), 0.0, gains)
    gains = np.where(used, gains, 0.0)
    return TonalMove(tuple(float(c) for c in centres), tuple(float(g) for g in gains))


def apply_eq(samples: np.ndarray, sample_rate: int, move: TonalMove) -> np.ndarray:
    """Apply the band gains with a linear-phase FIR (no phase shift between bands)."""
    gains = np.asarray(move.gains_db)
    if not np.any(np.abs(gains) >= 0.05):
        return samples
    taps = _eq_fir(sample_rate, move.centres_hz, move.gains_db).astype(np.float32)
    delay = (taps.size - 1) // 2
    # float32 FFTs: half the time and memory of float64, far below audible error (-140 dB)
    out = signal.oaconvolve(samples, taps[None, :], mode="full", axes=-1)[:, delay : delay + samples.shape[1]]
    return np.ascontiguousarray(out, dtype=np.float32)


def _eq_fir(sample_rate: int, centres_hz: tuple[float, ...], gains_db: tuple[float, ...]) -> np.ndarray:
    """Linear-phase FIR through the band gains, interpolated on a log-frequency axis."""
    numtaps = _odd_taps(sample_rate * 0.1)  # 100 ms: resolves the 25 Hz band
    nyquist = sample_rate / 2
    grid = np.geomspace(10.0, nyquist, 512)
    curve_db = np.interp(np.log(grid), np.log(centres_hz), gains_db)  # flat beyond the ends
    freqs = np.concatenate(([0.0], grid / nyquist))
    gains = 10 ** (np.concatenate(([curve_db[0]], curve_db)) / 20)
    freqs[-1] = 1.0
    return signal.firwin2(numtaps, freqs, gains, window=("kaiser", 6.0))


def _odd_taps(n: float) -> int:
    n = int(n)
    return n if n % 2 else n + 1
