"""The true-peak lookahead limiter at the end of the mastering chain.

Vectorised over whole signals (scipy's IIR and rank filters); the "lookahead" is
simply looking at later samples of the same array.

Why not pedalboard's ``Limiter``: it is a loudness maximiser with a sample-peak clip
stage, not a true-peak ceiling (after a gain to -14 LUFS it left -0.78 dBTP against a
-1 dBTP ceiling).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from automix.dsp.dynamics import one_pole
from automix.measure import loudness

CHUNK_FRAMES = 1 << 18


def _odd(n: float) -> int:
    n = max(1, int(round(n)))
    return n if n % 2 else n + 1


def smooth_gain_reduction(required_db: np.ndarray, attack_samples: int, release_ms: float, sample_rate: int,
                          hold_ms: float = 0.0) -> np.ndarray:
    """Gain curve (dB, <= 0) that never exceeds ``required_db`` at any sample.

    Attack: the centred moving average of a centred moving minimum, both ``attack``
    samples long. Each value averaged at sample n is a minimum over a window that
    contains n, so the average is <= the requirement at n -- a linear fade into every
    peak that starts ``attack / 2`` samples ahead of it.

    Release: a one-pole smoothing of the held curve, taken only where it is lower, so
    gain recovers at the release rate instead of snapping back.
    """
    length = _odd(attack_samples)
    minimum = ndimage.minimum_filter1d(required_db, length, mode="nearest")
    attack = ndimage.uniform_filter1d(minimum, length, mode="nearest")
    np.minimum(attack, 0, out=attack)
    held = attack
    hold = int(hold_ms * sample_rate / 1000.0)
    if hold > 1:
        # hold only forwards in time: the value at n is the minimum of the last `hold` samples
        held = ndimage.minimum_filter1d(attack, hold, mode="nearest", origin=(hold - 1) // 2)
    release = one_pole(held, release_ms, sample_rate)
    return np.minimum(attack, release)


@dataclass(frozen=True)
class LimiterResult:
    """Limited audio and how hard the limiter worked."""

    samples: np.ndarray
    max_gain_reduction_db: float
    mean_gain_reduction_db: float  # over the samples where it acted at all


def peak_envelope(samples: np.ndarray, factor: int, spans: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Per input sample, the largest ``|x|`` over all channels and the ``factor``
    oversampled points from that sample to the next (the true-peak detector).

    Parameters
    ----------
    spans : list of (start, stop), optional
        Only detect there (zero elsewhere); by default, everywhere.

    Spans are cut into chunks that run on a thread pool (scipy's FIR code releases the
    GIL); each writes only its own slice of the result.
    """
    channels, frames = samples.shape
    context = loudness.TAPS_PER_PHASE
    envelope = np.zeros(frames, dtype=np.float32)
    spans = spans if spans is not None else [(0, frames)]
    chunks = [(start, min(stop, start + CHUNK_FRAMES)) for lo, stop in spans for start in range(lo, stop, CHUNK_FRAMES)]

    def run(chunk: tuple[int, int]) -> None:
        start, stop = chunk
        lo, hi = max(0, start - context), min(frames, stop + context + 1)
        up = np.abs(loudness.oversample(samples[:, lo:hi], factor)).reshape(channels, hi - lo, factor)
        per_sample = up.max(axis=(0, 2))
        # include the next sample's grid point so each interval [n, n+1] is covered
        per_sample[:-1] = np.maximum(per_sample[:-1], per_sample[1:])
        envelope[start:stop] = per_sample[start - lo : stop - lo]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(run, chunks))
    return envelope


def _changed_spans(gain_db: np.ndarray, margin: int) -> list[tuple[int, int]]:
    """Runs of samples where the gain is below -0.001 dB, widened by ``margin`` each side.

    A smaller change cannot move a peak by anything that matters next to the 0.02 dB the
    mastering loop keeps under the ceiling, and a release tail stays above -0.001 dB
    after about seven time constants instead of forever.
    """
    acting = np.flatnonzero(gain_db < -1e-3)
    if acting.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(acting) > 2 * margin)
    starts = np.concatenate(([acting[0]], acting[breaks + 1])) - margin
    stops = np.concatenate((acting[breaks], [acting[-1]])) + margin + 1
    return [(max(0, int(a)), min(gain_db.size, int(b))) for a, b in zip(starts, stops)]


def limit(samples: np.ndarray, sample_rate: int, ceiling: float, *, lookahead_ms: float = 1.5,
          release_ms: float = 60.0, hold_ms: float = 5.0, factor: int | None = None, passes: int = 3) -> LimiterResult:
    """Lookahead limiter whose detector is the oversampled (true-peak) signal.

    Changing the gain from sample to sample shifts the interpolated waveform a little,
    so heavy limiting leaves small new overs. The limiter therefore detects again on its
    own output and catches what is left with a further, much gentler gain stage (up to
    ``passes`` stages in all); the result holds the ceiling by itself.

    Parameters
    ----------
    samples : numpy.ndarray
        ``(channels, samples)``; all channels get the same gain (linked).
    ceiling : float
        Linear amplitude the oversampled signal is held under.
    """
    factor = factor or loudness.oversampling_factor(sample_rate)
    attack = int(lookahead_ms * sample_rate / 1000)
    # a later stage's gain curve reaches this far around its overs (release: 5 time constants)
    reach = attack + int((hold_ms + 5 * release_ms) * sample_rate / 1000)
    frames = samples.shape[1]
    total_db = None
    out = samples
    for _ in range(passes):
        # After the first stage only the samples near a gain change can have new overs.
        spans = None if total_db is None else _changed_spans(total_db, loudness.TAPS_PER_PHASE + attack)
        envelope = peak_envelope(out, factor, spans)
        if envelope.max() <= ceiling:
            break
        segments = [(0, frames)] if total_db is None else _changed_spans(np.where(envelope > ceiling, -1.0, 0.0), reach)
        if total_db is None:
            total_db = np.zeros(frames, dtype=np.float32)
            out = samples.copy()
        for start, stop in segments:
            # float32 throughout: a gain curve needs ~1e-4 dB, not double precision
            required_db = np.log10(np.float32(ceiling) / np.maximum(envelope[start:stop], np.float32(1e-12)))
            required_db *= np.float32(20.0)
            np.minimum(required_db, np.float32(0.0), out=required_db)
            total_db[start:stop] += smooth_gain_reduction(required_db, attack, release_ms, sample_rate, hold_ms)
            out[:, start:stop] = samples[:, start:stop] * np.power(np.float32(10.0), total_db[start:stop] / np.float32(20.0), dtype=np.float32)
    if total_db is None:
        return LimiterResult(samples, 0.0, 0.0)
    acting = total_db < -0.01
    return LimiterResult(
        out,
        max_gain_reduction_db=float(-total_db.min()),
        mean_gain_reduction_db=float(-total_db[acting].mean()) if acting.any() else 0.0,
    )


