"""The true-peak lookahead limiter at the end of the mastering chain: streaming, clean lows.

API
---
``TruePeakLimiter(sample_rate, channels, threshold_db, release_ms=RELEASE_MS, *,
hold_ms=HOLD_MS, lookahead_ms=LOOKAHEAD_MS, factor=None, precise=True)``
    Streaming limiter; all state is carried across blocks, memory depends on the block
    size only. ``process(block) -> ndarray`` takes ``(channels, n)`` float32 and returns
    the output that is ready: the output stream is aligned with the input stream (output
    frame ``k`` is input frame ``k`` times its gain) but lags it by up to
    ``latency_frames`` (the detector works in fixed chunks of ~16k frames), so the first
    calls return fewer frames than they get, or none. ``flush() -> ndarray`` returns the
    rest; the concatenated output has exactly as many frames as the input. Any split of
    the input into blocks gives a bit-identical output. ``stats() -> LimiterStats``.
``limit(samples, sample_rate, ceiling=None, *, threshold_db=None, release_ms=RELEASE_MS,
hold_ms=HOLD_MS, lookahead_ms=LOOKAHEAD_MS, factor=None, passes=1, block_frames=65536)
-> LimiterResult``
    The whole-signal wrapper: same length, aligned, ``.samples`` and ``.stats`` (plus
    ``.max_gain_reduction_db`` / ``.mean_gain_reduction_db`` as before). Give the
    threshold either as ``threshold_db`` (dBTP) or, as the old API did, as a linear
    ``ceiling``. ``hold_ms`` below ``HOLD_MS`` is raised to it (the old loop shortened the
    hold with the release, which let the gain follow a bass waveform); ``passes`` is
    accepted and ignored (no re-detection is needed any more).
``gain_reduction_db(envelope, sample_rate, threshold_db, release_ms=RELEASE_MS, *,
hold_ms=HOLD_MS, lookahead_ms=LOOKAHEAD_MS) -> ndarray``
    The gain computer alone, a pure function at any rate: gain reduction (dB, >= 0) per
    envelope value, aligned with it. ``GainComputer`` is the same, streaming.
``limiter_detector(sample_rate, channels, refine_above=0.0, decimation=1) -> PeakDetector``
    The limiter's own detector, streaming (``process``/``flush``), optionally max-pooled
    by ``decimation``; ``detector_envelope(samples, sample_rate, ...)`` runs it on a whole
    signal, ``decimate_envelope(envelope, factor)`` max-pools.
``peak_envelope(samples, factor, spans=None)``, ``smooth_gain_reduction(...)``
    Kept from the previous limiter for existing callers.
``SplitBandLimiter(sample_rate, channels, threshold_db, release_ms=RELEASE_MS, *,
crossover_hz=CROSSOVER_HZ, low_hold_ms=HOLD_MS, high_hold_ms=HIGH_HOLD_MS, lookahead_ms=
LOOKAHEAD_MS, low_share=LOW_SHARE, max_low_db=MAX_LOW_DB, factor=None, precise=True)``
    The same interface as ``TruePeakLimiter`` (``process``/``flush``/``stats``/
    ``latency_frames``, block-size invariant, aligned): a linear-phase complementary
    crossover at 150 Hz, the reduction taken from the band that makes the peak
    (``allocate_band_gains``), each band with its own gain computer, then a wideband
    ``TruePeakLimiter`` as a safety stage that guarantees the ceiling. ``stats()``: per
    frame, the deeper band's reduction plus the safety stage's; ``band_stats()``: low,
    high, safety apart. ``limit(..., split_band=True)`` runs it on a whole signal.
``SplitBandFeatures(sample_rate, channels)`` (``add(block)``, ``result() -> SplitBandHops``)
and ``split_band_hop_energy(hops, gain_db, threshold_db, release_ms) -> (energy, reduction_db)``
    Its model for the mastering loop: per hop (the loop's hops), the largest envelope of
    each band, of the whole and of ``low + high``, the simultaneous (low, high, sum)
    values at the frames where each of them peaks, and the K-weighted energies ``E_L``,
    ``E_H``, ``E_LH``. The gains are allocated on each hop's three binding frames (the
    lowest kept: the render's gain over a hop is its lowest per-frame requirement), the
    band gain computers run at the hop rate (``split_band_gain_reduction_db``) and the
    output's hop energy is ``a^2 E_L + b^2 E_H + 2 a b E_LH``. Predicted minus rendered
    integrated loudness (kick and pad, pink noise, snares on noise; 3.7-14.6 dB of
    reduction, 60 and 5 ms): +0.003 .. +0.023 LU (allocating on the hop maxima instead:
    -0.135 .. -0.016).

Split-band measurements (44.1 kHz, tests/test_pumping.py, bench/limiter_quality.py): a kick
(110 -> 50 Hz sweep) over a 1.1-2.2 kHz pad, the limiter taking 1.5 / 5 dB on the kicks:
added pad swing +0.00 / +0.01 dB (wideband +1.46 / +4.96). A kick whose first sample jumps
to full scale (a step: a broadband click) makes its peak in the high band: no better than
wideband (+1.1 / +3.3 dB at 1.5 / 4 dB). THD+N, IMD and ceiling as the wideband limiter.

The loop's cheap model: the envelope of the signal before the limiter, once, at unit
gain and max-pooled by ``D`` (``limiter_detector(sr, ch, refine_above=threshold / largest
gain, decimation=D)``); then for each candidate input gain ``g`` dB,
``gain_reduction_db(pooled, sr / D, threshold_db - g, release_ms)`` is the gain
reduction per ``D`` frames. Integrated loudness predicted that way against the rendered
output (pink noise, kicks, snares, a mix; 3-10 dB of reduction; 60 and 5 ms): D = 8:
-0.003..+0.001 LU, D = 32: -0.020..0.000 LU, D = 64: -0.033..0.000 LU (the pooled model
limits a little more: it never predicts too loud by more than 0.001 LU).

How it works
------------
Detector: per sample ``n``, the largest ``|x|`` over all channels on the oversampled
signal from ``n - 1`` to ``n + 1``. Two grids, each sample interpolated once, by FFT over
chunks at fixed stream positions: the near-ideal 8x reconstruction of
``loudness.true_peak_precise`` (256 taps per phase) and the BS.1770 4x meter's own
(16 taps per phase; its short filter can read a little above the ideal). Near the
threshold each grid is refined between grid points (the sinusoid through three points,
as the meters do). So both meters read the output at the threshold (measured: 4x
+0.000 dB, near-ideal <= +0.002 dB) without re-detecting the output.

Gain computer, in dB, all of it windows and one recursive filter (no per-sample Python):

1. requirement ``r[n] = min(0, threshold - 20 log10 env[n])``;
2. hold + lookahead: the minimum of ``r`` over ``[n - hold, n + lookahead]``. The hold is
   at least one period of the programme's low end (25 ms: 40 Hz), so within a bass note
   the gain cannot follow the waveform -- the cause of the old limiter's 1-9 % THD at
   50 Hz, whose 5 ms hold was shorter than half a 50 Hz period;
3. release: the gain reduction decays exponentially (time constant ``release_ms``) from
   wherever the held curve leaves it, ``s[n] = max(s_held[n], c * s[n-1])``. This
   recursion is a running maximum in the log domain (``np.maximum.accumulate``),
   re-based every 8192 samples of absolute position so it stays exact across blocks;
4. attack: two cascaded moving averages whose lengths add up to the lookahead. Each
   averaged value is a minimum over a window that contains ``n``, so the smooth curve is
   never above the requirement, and the gain fades in before a peak and its release
   corner is rounded. The averages use running sums carried across blocks (sequential
   ``cumsum``: the same additions in the same order whatever the block size).

``release_ms`` only sets step 3: it never shortens the hold, so every release the loop
may choose keeps a steady bass note at a constant gain.

Measured (44.1 kHz, 6 dB of gain reduction, releases 60/30/15/5 ms; bench/limiter_quality.py):
THD+N <= -138 dB at 50 Hz, 100 Hz and 1 kHz at every release (previous limiter: -40/-27/
-23/-21 dB at 50 Hz); SMPTE IMD 0.00 % (previous 0.2-8 %); snare attack-to-body loss
1.2/1.5/1.7/1.9 dB (previous 2.7/2.8/3.1/3.4 dB). CPU per second of stereo pink noise
at 0/6/12 dB of reduction: 6/8/9 ms (previous 4.5/18/18 ms, which still needed the loop
to re-check the ceiling).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from automix.dsp import design, iir, kernels
from automix.dsp.dynamics import one_pole
from automix.dsp.fir import stream
from automix.errors import AutomixError
from automix.io.helper import helper, same
from automix.io.overlap import Beside
from automix.io.stream import Spill
from automix.measure import loudness

CHUNK_FRAMES = 1 << 18
#: The hold: one period of 40 Hz, the lowest fundamental of a bass or kick that matters
#: in a master (a 5-string bass's low B is 31 Hz; most kick fundamentals are 40-60 Hz).
#: Shorter than half a period and the gain follows the waveform (issue 10: 5 ms hold ->
#: THD+N -40 dB at 50 Hz, -21 dB with a 5 ms release).
HOLD_MS = 25.0
#: Lookahead = attack: long enough that the fade into a peak is a smooth curve spread over
#: many periods of the treble (5 ms = 35 periods of 7 kHz; IMD test in tests/test_limiter.py).
LOOKAHEAD_MS = 5.0
RELEASE_MS = 60.0
#: Stats granule and the threshold for "acting".
GRANULE_S = 0.1
ACTING_DB = 0.01
BLOCK_FRAMES = 1 << 16
_RELEASE_SEGMENT = 8192  # re-basing period of the log-domain release (exactness, not tuning)


# --- detector -----------------------------------------------------------------------


#: The detector's reconstruction: 8x (>= 352.8 kHz) through a 256-taps-per-phase Kaiser
#: (beta 10) interpolator computed by FFT, the near-ideal reconstruction of
#: ``loudness.true_peak_precise``. The 4x, 16-tap BS.1770 interpolator under-reads content
#: near Nyquist; a limiter pins many peaks at the threshold, so the worst under-read among
#: them shows: measured on a near-ideal reading of the output, +0.22 dB (pink noise),
#: +0.85 (snare), +1.24 (white noise), +0.74 (20 kHz sine) over the threshold with the 4x
#: detector, <= +0.002 dB with this one (and +0.000 on the 4x meter, whose grid it also reads).
#: The meter's own setting, not a copy: that guarantee needs the two to be one filter.
PRECISE_TAPS_PER_PHASE = loudness.PRECISE_TAPS_PER_PHASE
_DETECTOR_FFT = 1 << 14
#: With a helper process, this process computes every this-many-th detector chunk and
#: the helper the rest: the model pass's chain, loudness and tables run here, so this
#: share evens the two processes' loads (measured on a 3.5-min master: 1.05 s and 1.04 s
#: of CPU at 8; at 4 the helper waited, at 12 this process did).
OWN_CHUNK_EVERY = 8
#: The same for the split-band limiter's safety stage, which detects its own input in a
#: render, where the helper also meters the output: every other chunk here (measured on
#: a 150-s split-band render: 1.90 s at 8, 1.64 s at 2, 1.75 s at 3, 1.76 s at 1).
SAFETY_OWN_CHUNK_EVERY = 2


def detector_factor(sample_rate: int) -> int:
    """Oversampling of the limiter's detector: the near-ideal meter's (at least 8x,
    >= 352.8 kHz), which the detector's grid must be for the meter to read the threshold."""
    return loudness.precise_oversampling_factor(sample_rate)


@lru_cache(maxsize=8)
def _grid_spectra(grids: tuple[tuple[int, int], ...], taps_per_phase: int) -> np.ndarray:
    """FFTs of the branches 1 .. factor-1 of each ``(factor, taps)`` interpolator, all
    aligned on the first one's delay (``taps_per_phase // 2``), stacked."""
    delay = taps_per_phase // 2
    aligned = []
    for factor, taps in grids:
        branches = loudness.polyphase_branches(factor, taps)
        padded = np.zeros((factor - 1, taps_per_phase))
        offset = delay - taps // 2  # a shorter filter sits later, so both are centred alike
        padded[:, offset : offset + taps] = branches
        aligned.append(padded)
    return kernels.rfft(np.concatenate(aligned), _DETECTOR_FFT, axis=-1).astype(np.complex64)


class PeakDetector:
    """Streaming true-peak detector: per input sample, the largest ``|x|`` over all channels
    on the oversampled signal between the previous and the next sample.

    ``precise`` (default): 8x near-ideal reconstruction by FFT (overlap-save) over chunks
    at fixed positions of the stream (so the output does not depend on the block sizes),
    each sample interpolated once; chunks whose samples cannot reach ``refine_above``
    (times the interpolator's worst-case gain) are not interpolated: their values are the
    sample peaks, exact enough below that level. ``precise=False``: the 4x BS.1770
    interpolator (``loudness.oversample``), every block.

    Samples whose peak could exceed ``refine_above`` are refined between grid points (the
    peak of the sinusoid through three grid points). ``process`` returns the envelope of
    the next frames it can complete (it lags the input by up to ``latency_frames``);
    ``flush`` returns the rest. With ``decimation`` > 1 each returned value is the maximum
    of that many consecutive frames (frames ``k * decimation`` onwards; ``flush`` pools the
    last partial group): the low-rate envelope the loop's model runs on.
    """

    def __init__(self, channels: int, factor: int | None = None, refine_above: float = 0.0,
                 taps_per_phase: int | None = None, decimation: int = 1, *, precise: bool = True,
                 meter_factor: int | None = 4, window_frames: int = 1):
        self.channels = channels
        self.window_frames = max(1, int(window_frames))
        self.precise = precise
        self.factor = int(factor or (8 if precise else 4))
        self.taps_per_phase = int(taps_per_phase or (PRECISE_TAPS_PER_PHASE if precise else loudness.TAPS_PER_PHASE))
        self.refine_above = float(refine_above)
        self.decimation = int(decimation)
        self._ungrouped = np.zeros(0, dtype=np.float32)  # envelope frames of an unfinished group
        self._prev_row_peak = np.float32(0.0)
        self._received = self._returned = 0
        self._held = None  # this detector's copy in the helper process, once used
        self._let_go = None  # drops that copy, once (at flush, or when this detector is collected)
        self._pieces = 0  # chunks started so far (every own_chunk_every-th is computed here)
        self.own_chunk_every = OWN_CHUNK_EVERY
        if precise:
            # the near-ideal grid, and the BS.1770 meter's own (its short filter can read
            # a little above the ideal: up to 0.15 dB on noise), so both readings hold
            self._grids = ((self.factor, self.taps_per_phase),)
            if meter_factor:
                self._grids += ((int(meter_factor), loudness.TAPS_PER_PHASE),)
            delay = self.taps_per_phase // 2
            self._lead = self.taps_per_phase - 1 - delay  # input needed before a chunk's first row
            self._rows = _DETECTOR_FFT - self.taps_per_phase + 1  # rows per chunk (overlap-save)
            self.latency_frames = self._rows + delay
            self._tail = np.zeros((channels, self._lead), dtype=np.float32)  # zeros before the start
            self._prev_points = [np.zeros(channels, dtype=np.float32) for _ in self._grids]  # last point of the last row
            worst = [np.abs(loudness.polyphase_branches(f, t)).sum(axis=1).max() / math.cos(math.pi / (2 * f))
                     for f, t in self._grids]
            self._worst_gain = float(max(1.0, *worst))
        else:
            # interpolated values at sample n use about taps_per_phase / 2 input samples
            # each side; +2 for the refinement's neighbours and the previous sample's row
            self.context = self.taps_per_phase + 2
            self.latency_frames = self.context
            self._tail = np.zeros((channels, self.context), dtype=np.float32)

    def process(self, block: np.ndarray) -> np.ndarray:
        return self.finish(self.start(block))

    def start(self, block: np.ndarray) -> list:
        """Begin the envelope of the next block; :meth:`finish` completes it.

        ``process(block)`` is ``finish(start(block))``. A caller that starts the next
        block before it finishes this one lets the cores work on both (the chunks given
        to the helper process or the threads run meanwhile); blocks must be finished in
        the order they were started. Same envelope either way.
        """
        self._received += block.shape[1]
        return self._start_precise(block) if self.precise else [self._detect(block)]

    def finish(self, started: list) -> np.ndarray:
        """The envelope frames completed by a :meth:`start`, in stream order."""
        return self._group(self._joined(started) if self.precise else started[0])

    def _joined(self, started: list) -> np.ndarray:
        parts = [self._join(*(rows.result() if isinstance(rows, Future) else rows)) for rows in started]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def flush(self) -> np.ndarray:
        """The envelope of the rest (every started block finished first)."""
        if self.precise:
            missing = self._received - self._returned
            chunks = -(-(self._tail.shape[1] - self._lead) // self._rows)
            pad = (chunks - 1) * self._rows + _DETECTOR_FFT - self._tail.shape[1]
            envelope = self._joined(self._start_precise(np.zeros((self.channels, max(pad, 0)), dtype=np.float32)))
            envelope = self._group(envelope[:missing])
        else:
            envelope = self._group(self._detect(np.zeros((self.channels, self.context), dtype=np.float32)))
        if self._ungrouped.size:
            envelope = np.concatenate((envelope, [self._ungrouped.max()]))
            self._ungrouped = self._ungrouped[:0]
        if self._held is not None:
            self._let_go()  # the copy in the helper: dropped now, not again when this is collected
            self._held = None
        return envelope

    def _group(self, envelope: np.ndarray) -> np.ndarray:
        self._returned += envelope.size
        if self.decimation == 1:
            return envelope
        pending = np.concatenate((self._ungrouped, envelope))
        whole = pending.size - pending.size % self.decimation
        self._ungrouped = pending[whole:]
        return pending[:whole].reshape(-1, self.decimation).max(axis=1)

    def _start_precise(self, block: np.ndarray) -> list:
        """The chunks of ``block`` (after the carried tail) that can be completed: each
        one's :meth:`_rows_of`, or its future."""
        buffer = np.concatenate((self._tail, block), axis=1) if block.shape[1] else self._tail
        rows, size = self._rows, _DETECTOR_FFT
        starts = range(0, buffer.shape[1] - size + 1, rows)
        pieces = [buffer[:, start : start + size] for start in starts]
        start = starts[-1] + rows if pieces else 0
        self._tail = buffer[:, start:].copy() if start else buffer
        return self._rows_of_each(pieces)

    def _rows_of_each(self, pieces: list[np.ndarray]) -> list:
        """:meth:`_rows_of` of each piece, or its future. A chunk's heavy part depends on
        nothing carried, so the cores share the pieces: the helper process (a copy of
        this detector lives there) takes all but every ``own_chunk_every``-th, else the
        meter's threads all but the first. :meth:`finish` joins them in stream order:
        bit-identical to one after the other."""
        remote = helper() if self._held is None else None
        if remote is not None:
            self._held = remote.hold(same, self)
            self._let_go = weakref.finalize(self, self._held.drop)
        if self._held is not None:
            first = self._pieces
            self._pieces += len(pieces)
            found = [None if (first + k) % self.own_chunk_every == 0 else self._held.call("_rows_of", piece)
                     for k, piece in enumerate(pieces)]  # all sent before any is computed here
            return [self._rows_of(piece) if job is None else job for job, piece in zip(found, pieces)]
        pool = loudness._executor() if len(pieces) > 1 else None
        if pool is None:
            return [self._rows_of(piece) for piece in pieces]
        jobs = [pool.submit(self._rows_of, piece) for piece in pieces[1:]]
        return [self._rows_of(pieces[0])] + jobs

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_held": None, "_let_go": None}  # the copy in the helper has no helper of its own

    def _rows_of(self, piece: np.ndarray) -> tuple:
        """The peak of each of the ``rows`` rows from ``piece[:, lead]`` on (``piece`` holds
        the interpolators' context both sides), refined, except where refining row 0 needs
        the previous chunk's last grid point: that part is left to :meth:`_join`. Reads
        no state that changes, so chunks may run on any thread.

        Returns ``(row_peak, row_zero, last_points)``: what refining row 0 needs (``None``
        where nothing was interpolated) and, per grid, the last grid point.
        """
        rows, lead, taps = self._rows, self._lead, self.taps_per_phase
        samples = np.abs(piece[:, lead : lead + rows + 1])  # every grid's column 0, and the next row's
        level = max(float(piece.max()), -float(piece.min()))
        if level * self._worst_gain <= self.refine_above:
            # nothing here can reach the level that matters: sample peaks will do
            return samples[:, :rows].max(axis=0), None, [samples[:, rows - 1] for _ in self._grids]
        spectrum = kernels.rfft(piece, axis=-1)
        product = spectrum[:, None, :] * _grid_spectra(self._grids, taps)[None]
        branches = kernels.irfft(product, _DETECTOR_FFT, axis=-1)[:, :, taps - 1 : taps - 1 + rows]
        # |x| over all channels and branches, without an absolute copy of every branch
        row_peak = np.maximum(np.maximum(branches.max(axis=(0, 1)), -branches.min(axis=(0, 1))), samples[:, :rows].max(axis=0))
        lowest_cos = math.cos(math.pi / (2 * min(factor for factor, _ in self._grids)))
        candidates = np.count_nonzero(row_peak > self.refine_above * lowest_cos)
        # few rows near the threshold: refine them all rather than pay for two rank filters
        binding = self._binding_level(row_peak) if candidates > rows // 16 else np.zeros_like(row_peak)
        row_zero = (row_peak[0], binding[0], samples[:, 0], samples[:, 1], [])  # float32 scalars: compared as the rows are
        last_points, first = [], 0
        for factor, _ in self._grids:
            grid = branches[:, first : first + factor - 1]
            first += factor - 1
            cos = math.cos(math.pi / (2 * factor))
            hot = np.flatnonzero((row_peak > self.refine_above * cos) & (row_peak > binding * cos))
            if hot.size:
                row_peak[hot] = _refine_rows(grid, samples, hot, row_peak[hot], factor)
            row_zero[4].append(np.abs(grid[:, :, 0]))
            last_points.append(np.abs(grid[:, -1, rows - 1]))
        return row_peak, row_zero, last_points

    def _join(self, row_peak: np.ndarray, row_zero: tuple | None, last_points: list) -> np.ndarray:
        """A chunk's envelope, in stream order. Row 0 is refined again from its grid peak,
        now with its left neighbour, the previous chunk's last grid point, exactly as the
        other rows were (in :meth:`_rows_of` NaN stood for that point)."""
        if row_zero is not None:
            peak, binding, sample, following, grids = row_zero
            for index, (factor, _) in enumerate(self._grids):
                cos = math.cos(math.pi / (2 * factor))
                if peak > self.refine_above * cos and peak > binding * cos:
                    points = np.concatenate((self._prev_points[index][:, None], sample[:, None], grids[index],
                                             following[:, None]), axis=1)
                    peak = _refine_points(points[:, None, :], factor, floor=np.array([peak], dtype=np.float32))[0]
            row_peak[0] = peak
        self._prev_points = last_points
        envelope = np.maximum(np.concatenate(([self._prev_row_peak], row_peak[:-1])), row_peak)
        self._prev_row_peak = row_peak[-1]
        return envelope.astype(np.float32, copy=False)

    def _binding_level(self, row_peak: np.ndarray) -> np.ndarray:
        """Per row, the smallest maximum of any ``window_frames`` window holding it.

        The limiter only ever uses the largest value in such a window (its hold and
        lookahead), so a row whose refined value cannot exceed this -- refinement lifts a
        grid value by at most ``1 / cos(pi / 2 factor)`` -- changes nothing and is not
        refined. Outside the chunk counts as 0: rows near its edges are always refined.
        """
        size = self.window_frames
        if size <= 1:
            return np.zeros_like(row_peak)
        trailing = (size - 1) // 2  # origin for a window that ends at the output index
        window_max = kernels.maximum_filter1d(row_peak, size, mode="constant", cval=0.0, origin=trailing)
        # windows holding row n end at n .. n + size - 1: the minimum over those, shifted
        lowest = kernels.minimum_filter1d(window_max, size, mode="constant", cval=0.0, origin=trailing)
        return np.concatenate((lowest[size - 1 :], np.zeros(size - 1, dtype=lowest.dtype)))[: row_peak.size]

    def _detect(self, block: np.ndarray) -> np.ndarray:
        seg = np.concatenate((self._tail, block), axis=1) if block.shape[1] else self._tail
        length = seg.shape[1]
        first, stop = self.context, length - self.context  # rows with full context both sides
        if stop <= first:
            self._tail = seg
            return np.zeros(0, dtype=np.float32)
        factor = self.factor
        flat = loudness.oversample(seg, factor, self.taps_per_phase)
        np.abs(flat, out=flat)
        grid = flat.reshape(self.channels, length, factor)
        # column by column: numpy's reduction over a length-4 axis is several times slower
        row_peak = grid[0, :, 0].copy()
        for channel in range(self.channels):
            for column in range(1 if channel == 0 else 0, factor):
                np.maximum(row_peak, grid[channel, :, column], out=row_peak)
        # the largest refinement lifts a grid value by 1 / cos(pi / 2 factor)
        limit = self.refine_above * math.cos(math.pi / (2 * factor))
        rows = np.flatnonzero(row_peak[first - 1 : stop] > limit) + (first - 1)
        if rows.size:
            index = rows[:, None] * factor + np.arange(-1, factor + 1)[None, :]
            row_peak[rows] = _refine_points(flat.reshape(self.channels, length * factor)[:, index], factor)
        envelope = np.maximum(row_peak[first - 1 : stop - 1], row_peak[first:stop])
        self._tail = seg[:, stop - self.context :]
        return envelope


def _refine_rows(grid: np.ndarray, samples: np.ndarray, hot: np.ndarray, floor: np.ndarray, factor: int) -> np.ndarray:
    """:func:`_refine_points` of rows ``hot`` (ascending) of a chunk, without gathering
    each row's points into a row of their own: the ``factor + 2`` points of every hot row
    are laid out point by point, ``(channels, factor + 2, rows)``, and only the local
    maxima are read back out of them (by flat index). The same values as gathering each
    row's points: measured over a 3.5-min master's detector, 0.23 s instead of 0.38 s
    (the row-wise copy was a transposed one, and each maximum a three-index gather).

    ``grid``: ``(channels, factor - 1, n)`` interpolated points between the samples;
    ``samples``: ``|x|`` at each row's own sample and the next one's, ``(channels, n + 1)``;
    ``floor``: ``float32`` per hot row (its grid peak). Row 0's left neighbour (the last
    point of the chunk before) is unknown: NaN, never a maximum and never beside one.
    """
    channels, count = grid.shape[0], hot.size
    points = np.empty((channels, factor + 2, count), dtype=np.float32)
    points[:, 0] = grid[:, -1, np.maximum(hot - 1, 0)]  # each row's left neighbour: the last point of the row before
    if hot[0] == 0:
        points[:, 0, 0] = np.nan
    points[:, 1] = samples[:, hot]
    points[:, 2 : factor + 1] = grid[:, :, hot]
    points[:, factor + 1] = samples[:, hot + 1]
    np.abs(points[:, 0], out=points[:, 0])
    np.abs(points[:, 2 : factor + 1], out=points[:, 2 : factor + 1])
    left, mid, right = points[:, :-2], points[:, 1:-1], points[:, 2:]
    peak = np.array(floor, dtype=np.float32)
    local = mid > (peak * np.float32(math.cos(math.pi / (2 * factor))))[None, None, :]
    local &= mid >= left
    local &= mid >= right
    found = np.flatnonzero(local)  # flat indices into (channels, factor, count)
    if found.size:
        channel, row = found // (factor * count), found % count
        at = found + (2 * channel + 1) * count  # the same point's flat index in ``points``
        flat = points.reshape(-1)
        amplitude = loudness.sinusoid_peak(flat[at - count], flat[at], flat[at + count], factor).astype(np.float32)
        np.maximum.at(peak, row, amplitude)
    return peak


def _refine_points(points: np.ndarray, factor: int, floor: np.ndarray | None = None) -> np.ndarray:
    """Peak over channels of each row's grid points, each local maximum refined.

    ``points``: ``(channels, rows, factor + 2)`` absolute values, each row's ``factor``
    grid points with the neighbouring point on each side. ``A cos(w t + p)`` through
    points ``l, m, r`` has ``cos w = (l + r) / 2m`` and amplitude
    ``sqrt(m^2 + ((r - l) / 2 sin w)^2)``; ``w`` is at most ``pi / factor`` (the input
    Nyquist), so the lift is capped at ``1 / cos(pi / 2 factor)``.

    ``floor`` (per row, at least the row's largest point, e.g. its grid peak): the result
    is the larger of it and the refined maxima, and a point that the cap cannot lift past
    it is not refined at all (the same result, cheaper).
    """
    left, mid, right = points[..., :-2], points[..., 1:-1], points[..., 2:]
    if floor is None:
        peak = mid.max(axis=(0, 2))
        reach = mid > 0
    else:
        peak = np.array(floor, dtype=np.float32)
        reach = mid > (peak * np.float32(math.cos(math.pi / (2 * factor))))[None, :, None]
    channel, row, column = np.nonzero(reach & (mid >= left) & (mid >= right))
    if row.size:
        amplitude = loudness.sinusoid_peak(left[channel, row, column], mid[channel, row, column], right[channel, row, column], factor)
        np.maximum.at(peak, row, amplitude.astype(np.float32))
    return peak


def wideband_envelope_serves_split_band(sample_rate: int, channels: int) -> bool:
    """Whether the wideband limiter's detector (at unit gain, refining everywhere) gives
    exactly the split-band limiter's whole-signal envelope: the same detector when the
    two holds give the same window."""
    return (limiter_detector(sample_rate, channels).window_frames
            == limiter_detector(sample_rate, channels, hold_ms=HIGH_HOLD_MS).window_frames)


def limiter_detector(sample_rate: int, channels: int, refine_above: float = 0.0, decimation: int = 1, *,
                     hold_ms: float = HOLD_MS, lookahead_ms: float = LOOKAHEAD_MS, precise: bool = True,
                     factor: int | None = None) -> PeakDetector:
    """A streaming ``PeakDetector`` set up exactly as ``TruePeakLimiter``'s own.

    Feed it the signal before the limiter to get the envelope its gain computer sees (at
    unit gain: the envelope of ``g * x`` is ``g`` times it). ``refine_above``: the lowest
    level that can matter, i.e. the threshold over the largest input gain to be tried
    (0: everywhere). Rows that cannot be the largest in any hold + lookahead window are
    left unrefined, which changes no gain (a window's maximum is all the gain computer
    uses), even after max-pooling by ``decimation``.
    """
    factor = factor or (detector_factor(sample_rate) if precise else loudness.oversampling_factor(sample_rate))
    detector = PeakDetector(channels, factor, refine_above, decimation=decimation, precise=precise,
                            meter_factor=loudness.oversampling_factor(sample_rate))
    window = GainComputer(sample_rate, 0.0, RELEASE_MS, hold_ms=hold_ms, lookahead_ms=lookahead_ms).window_frames
    detector.window_frames = window + 1  # env[n] spans rows n-1 and n
    return detector


def detector_envelope(samples: np.ndarray, sample_rate: int, factor: int | None = None,
                      refine_above: float = 0.0, block_frames: int = BLOCK_FRAMES, decimation: int = 1,
                      precise: bool = True) -> np.ndarray:
    """``limiter_detector`` over a whole signal (in blocks): linear, one value per frame
    (or per ``decimation`` frames, their maximum)."""
    samples = _as_audio(samples)
    detector = limiter_detector(sample_rate, samples.shape[0], refine_above, decimation, precise=precise, factor=factor)
    parts = [detector.process(samples[:, i : i + block_frames]) for i in range(0, samples.shape[1], block_frames)]
    parts.append(detector.flush())
    return np.concatenate(parts)


class EnvelopeSpill(Spill):
    """The detector's envelope of a whole signal, kept in a temporary file (a one-channel
    :class:`~automix.io.stream.Spill`: 4 bytes per frame, not in memory) so that a later
    render of the same signal at another gain reads it instead of detecting again: the
    detector is linear up to the absolute value, so the envelope of ``g * x`` is ``g``
    times the envelope of ``x``.

    ``write(envelope)`` appends (in stream order); ``detector(gain)`` returns an object
    with the detector's interface (``process(block)``, ``flush()``, ``latency_frames``)
    that hands out the kept envelope, scaled, one value per frame it is given, with no
    latency. If the file cannot be written (a full disk), ``usable`` turns False and the
    render detects as usual.
    """

    def __init__(self) -> None:
        super().__init__(1, prefix="automix-envelope-")

    def write(self, envelope: np.ndarray) -> None:
        super().write(np.asarray(envelope)[None, :])

    def detector(self, gain: float) -> _SpilledEnvelope:
        return _SpilledEnvelope(self, np.float32(gain))


class _SpilledEnvelope:
    """An ``EnvelopeSpill`` read back in order, scaled: a detector with no latency."""

    latency_frames = 0

    def __init__(self, spill: EnvelopeSpill, gain: np.float32) -> None:
        self._spill, self._gain, self._at = spill, gain, 0

    def process(self, block: np.ndarray) -> np.ndarray:
        count = block.shape[1]
        values = self._spill.read(self._at, count)[0]
        if values.size != count:
            raise AutomixError(f"the kept limiter envelope ended early ({values.size} of {count} frames): "
                               "the render's input differs from the model pass's")
        self._at += count
        return values * self._gain

    def flush(self) -> np.ndarray:
        return np.zeros(0, dtype=np.float32)


def decimate_envelope(envelope: np.ndarray, factor: int) -> np.ndarray:
    """Max-pool by ``factor`` (the last partial group too): a conservative low-rate envelope."""
    pad = -envelope.size % factor
    padded = np.concatenate((envelope, np.zeros(pad, dtype=envelope.dtype))) if pad else envelope
    return padded.reshape(-1, factor).max(axis=1)


# --- gain computer ------------------------------------------------------------------


class _RunningMean:
    """Trailing moving average of length ``n`` with its running sum carried across blocks.

    The running sum is a sequential ``cumsum`` that starts from the previous block's last
    value, so the sums -- and the averages -- are bit-identical whatever the block size.
    """

    def __init__(self, n: int):
        self.n = n
        self._sums = np.zeros(n)  # the running sum before the start is 0 (gain 0 dB)

    def process(self, x: np.ndarray) -> np.ndarray:
        sums = np.cumsum(np.concatenate((self._sums[-1:], x)))[1:]
        full = np.concatenate((self._sums, sums))
        self._sums = full[-self.n :]
        return (full[self.n :] - full[: -self.n]) / self.n


class GainComputer:
    """Streaming gain computer (see the module docstring): detector envelope in, gain
    reduction in dB (>= 0) out, ``latency_frames`` (= lookahead) behind.

    Works at any rate: the windows are converted to samples of ``sample_rate``.
    """

    def __init__(self, sample_rate: float, threshold_db: float, release_ms: float = RELEASE_MS, *,
                 hold_ms: float = HOLD_MS, lookahead_ms: float = LOOKAHEAD_MS):
        if not (sample_rate > 0 and release_ms > 0 and hold_ms >= 0 and lookahead_ms >= 0 and math.isfinite(threshold_db)):
            raise AutomixError(f"limiter settings out of range (rate {sample_rate}, release {release_ms} ms, "
                               f"hold {hold_ms} ms, lookahead {lookahead_ms} ms, threshold {threshold_db} dB)")
        self.threshold_db = float(threshold_db)
        lookahead = max(1, round(lookahead_ms * sample_rate / 1000.0))
        # rounded up: never shorter than asked (the low-end period), at any rate
        hold = max(0, math.ceil(hold_ms * sample_rate / 1000.0 - 1e-9))
        self.latency_frames = lookahead - 1
        self._window = hold + lookahead  # minimum over [n - hold, n + lookahead - 1]
        self.window_frames = self._window
        self._history = np.zeros(self._window - 1)  # requirements before the start: 0 dB
        self._decay = -1000.0 / (release_ms * sample_rate)  # log of the per-sample release factor
        self._position = 0  # absolute index of the next held value (for re-basing)
        self._log_max = -np.inf  # running maximum of the release recursion (log domain)
        first = (lookahead + 1) // 2
        self._means = (_RunningMean(first), _RunningMean(lookahead + 1 - first))
        self._to_drop = self.latency_frames  # outputs that belong to before the start

    def process(self, envelope: np.ndarray) -> np.ndarray:
        envelope = np.asarray(envelope, dtype=np.float64)
        with np.errstate(divide="ignore"):
            required = self.threshold_db - 20.0 * np.log10(envelope)
        np.minimum(required, 0.0, out=required)
        # 1. hold + lookahead: trailing minimum over the window, read `lookahead - 1` later
        extended = np.concatenate((self._history, required))
        held = kernels.minimum_filter1d(extended, self._window, origin=(self._window - 1) // 2)[self._window - 1 :]
        self._history = extended[extended.size - (self._window - 1) :] if self._window > 1 else extended[:0]
        # 2. release, on the gain reduction s >= 0: s[n] = max(held[n], c * s[n-1])
        reduction = self._release(-held)
        # 3. attack: smooth, never above the requirement
        gain = self._means[1].process(self._means[0].process(-reduction))
        np.minimum(gain, 0.0, out=gain)
        drop = min(self._to_drop, gain.size)
        self._to_drop -= drop
        return -gain[drop:] + 0.0  # + 0.0: no -0.0 in the output

    def flush(self) -> np.ndarray:
        """Gain reduction for the last ``latency_frames`` values (the signal is over: 0 after it)."""
        return self.process(np.zeros(self.latency_frames))

    def _release(self, held_reduction: np.ndarray) -> np.ndarray:
        """``s[n] = max(h[n], exp(decay) s[n-1])`` as ``log s[n] = (n - b + 1) decay +
        max(log s[b - 1], max_{b <= k <= n} (log h[k] - (k - b + 1) decay))`` for segments
        starting at absolute positions ``b`` (multiples of 8192): the maximum is exact and
        the rest depends only on absolute positions, so blocks do not change a bit."""
        out = np.empty(held_reduction.size)
        with np.errstate(divide="ignore"):
            log_held = np.log(held_reduction)
        done = 0
        while done < held_reduction.size:
            position = self._position
            base = position - position % _RELEASE_SEGMENT
            if position == base and position > 0:
                self._log_max += _RELEASE_SEGMENT * self._decay  # log s at base - 1
            take = min(held_reduction.size - done, base + _RELEASE_SEGMENT - position)
            ramp = (np.arange(position, position + take) - base + 1) * self._decay
            running = np.maximum.accumulate(np.concatenate(([self._log_max], log_held[done : done + take] - ramp)))[1:]
            self._log_max = running[-1]
            out[done : done + take] = np.exp(running + ramp)
            done += take
            self._position += take
        return out


def gain_reduction_db(envelope: np.ndarray, sample_rate: float, threshold_db: float, release_ms: float = RELEASE_MS,
                      *, hold_ms: float = HOLD_MS, lookahead_ms: float = LOOKAHEAD_MS) -> np.ndarray:
    """The limiter's gain computer on a whole detector envelope, at any rate.

    Parameters
    ----------
    envelope : numpy.ndarray
        Linear detector values (``detector_envelope``, or it max-pooled with
        ``decimate_envelope`` and ``sample_rate`` divided by the same factor).
    threshold_db : float
        dBTP the output is held under.

    Returns
    -------
    numpy.ndarray
        Gain reduction in dB (>= 0), one value per envelope value, aligned with it.
    """
    computer = GainComputer(sample_rate, threshold_db, release_ms, hold_ms=hold_ms, lookahead_ms=lookahead_ms)
    return _run_computer(computer, envelope)


#: Values a gain computer takes at a time when it runs over a whole envelope, and hops the
#: loop's model predicts at a time. The result does not depend on it (the computer
#: streams); it bounds the temporaries: measured, a split-band prediction's traced peak is
#: 9.3 MB at 65536, 4.1 MB at 16384, 1.1 MB at 4096 hops, at the same CPU time for 16384
#: and 65536 (6.9-7.1 ms per minute of audio).
COMPUTER_CHUNK = 1 << 14


def _run_computer(computer: GainComputer, envelope: np.ndarray) -> np.ndarray:
    parts = [computer.process(envelope[start : start + COMPUTER_CHUNK])
             for start in range(0, envelope.size, COMPUTER_CHUNK)]
    return np.concatenate((*parts, computer.flush()))


# --- statistics ---------------------------------------------------------------------


@dataclass(frozen=True)
class LimiterStats:
    """How hard the limiter worked.

    Attributes
    ----------
    max_gain_reduction_db, max_gain_reduction_time_s : float
        The deepest gain reduction and when (seconds from the start of the input).
    mean_gain_reduction_db : float
        Mean over the samples where it acted (more than 0.01 dB).
    programme_gain_reduction_db : float
        The gain reduction exceeded 10 % of the time: the deepest reduction in each 100 ms
        granule, then the 90th percentile over granules. Judge "too much limiting" by
        this, not by one click's maximum.
    timeline_db : numpy.ndarray
        The deepest gain reduction in each granule (for plots).
    granule_s : float
    """

    max_gain_reduction_db: float = 0.0
    max_gain_reduction_time_s: float = 0.0
    mean_gain_reduction_db: float = 0.0
    programme_gain_reduction_db: float = 0.0
    timeline_db: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    granule_s: float = GRANULE_S


class _StatsAccumulator:
    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.granule = max(1, round(GRANULE_S * sample_rate))
        self.position = 0
        self.max_db, self.max_at = 0.0, 0
        self.acting_sum, self.acting_count = 0.0, 0
        self.granules: list[np.ndarray] = []
        self.partial = 0.0  # deepest reduction so far in the granule being filled

    def add(self, reduction_db: np.ndarray) -> None:
        if reduction_db.size == 0:
            return
        peak = int(np.argmax(reduction_db))
        if reduction_db[peak] > self.max_db:
            self.max_db, self.max_at = float(reduction_db[peak]), self.position + peak
        acting = reduction_db[reduction_db > ACTING_DB]
        self.acting_sum += float(acting.sum(dtype=np.float64))
        self.acting_count += acting.size
        # split at granule edges (absolute positions)
        offset = self.position % self.granule
        edges = np.arange(self.granule - offset if offset else 0, reduction_db.size, self.granule)
        if edges.size and edges[0] == 0:
            edges = edges[1:]
        pieces = np.maximum.reduceat(reduction_db, np.concatenate(([0], edges)))
        pieces[0] = max(pieces[0], self.partial)
        complete = pieces[:-1]
        if complete.size:
            self.granules.append(complete.astype(np.float32))
        self.partial = float(pieces[-1])
        self.position += reduction_db.size
        if self.position % self.granule == 0:
            self.granules.append(np.array([self.partial], dtype=np.float32))
            self.partial = 0.0

    def stats(self) -> LimiterStats:
        timeline = np.concatenate(self.granules) if self.granules else np.zeros(0, dtype=np.float32)
        if self.position % self.granule:
            timeline = np.concatenate((timeline, np.array([self.partial], dtype=np.float32)))
        return LimiterStats(
            max_gain_reduction_db=self.max_db,
            max_gain_reduction_time_s=self.max_at / self.sample_rate,
            mean_gain_reduction_db=self.acting_sum / self.acting_count if self.acting_count else 0.0,
            programme_gain_reduction_db=float(np.percentile(timeline, 90)) if timeline.size else 0.0,
            timeline_db=timeline,
            granule_s=self.granule / self.sample_rate,
        )


# --- the limiter --------------------------------------------------------------------


def _as_audio(samples: np.ndarray, channels: int | None = None) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim != 2 or (channels is not None and samples.shape[0] != channels):
        raise AutomixError(f"the limiter expects audio shaped (channels{'=' + str(channels) if channels else ''}, "
                           f"samples), got shape {samples.shape}")
    if samples.dtype != np.float32:
        samples = samples.astype(np.float32)
    if not np.isfinite(samples).all():
        raise AutomixError("the limiter got audio with NaN or infinite samples")
    return samples


class TruePeakLimiter:
    """Streaming true-peak lookahead limiter (see the module docstring for the design).

    Parameters
    ----------
    sample_rate, channels : int
    threshold_db : float
        dBTP the output is held under (all channels get the same gain).
    release_ms : float
        Time constant of the recovery after the hold; never shortens the hold.
    hold_ms, lookahead_ms : float
        Hold after a peak (keep it >= one period of the programme's low end) and the fade
        before it. ``latency_frames`` is the lookahead plus the detector's context.
    factor : int, optional
        Detector oversampling (default: ``detector_factor``, 8x at 44.1/48 kHz).
    precise : bool
        The near-ideal 8x detector (default); False: the 4x BS.1770 interpolator (faster,
        holds the 4x meter's reading but lets near-Nyquist content over on a DAC).
    """

    def __init__(self, sample_rate: int, channels: int, threshold_db: float, release_ms: float = RELEASE_MS, *,
                 hold_ms: float = HOLD_MS, lookahead_ms: float = LOOKAHEAD_MS, factor: int | None = None,
                 precise: bool = True, detector=None):
        if channels < 1 or sample_rate < 1:
            raise AutomixError(f"the limiter needs at least one channel and a positive rate (got {channels}, {sample_rate})")
        self.sample_rate, self.channels, self.threshold_db = int(sample_rate), int(channels), float(threshold_db)
        threshold = 10.0 ** (threshold_db / 20.0)
        # refine only where a peak could reach the threshold (a little lower still,
        # against float32 rounding); or the envelope an earlier pass kept (EnvelopeSpill)
        self._detector = detector or limiter_detector(sample_rate, channels, 0.999 * threshold, hold_ms=hold_ms,
                                                      lookahead_ms=lookahead_ms, precise=precise, factor=factor)
        self._gain = GainComputer(sample_rate, threshold_db, release_ms, hold_ms=hold_ms, lookahead_ms=lookahead_ms)
        self.latency_frames = self._detector.latency_frames + self._gain.latency_frames
        self._pending = np.zeros((channels, 0), dtype=np.float32)  # input not yet output
        self._stats = _StatsAccumulator(self.sample_rate)
        self._flushed = False

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed ``(channels, n)`` audio; returns the limited frames that are ready (aligned
        with the input stream, ``latency_frames`` behind it)."""
        if self._flushed:
            raise AutomixError("the limiter was already flushed; make a new one for a new signal")
        block = _as_audio(block, self.channels)
        reduction = self._gain.process(self._detector.process(block))
        return self._emit(block, reduction)

    def flush(self) -> np.ndarray:
        """The remaining output frames (the input is over)."""
        if self._flushed:
            return np.zeros((self.channels, 0), dtype=np.float32)
        self._flushed = True
        reduction = self._gain.process(self._detector.flush())
        reduction = np.concatenate((reduction, self._gain.flush()))
        return self._emit(np.zeros((self.channels, 0), dtype=np.float32), reduction[: self._pending.shape[1]])

    def stats(self) -> LimiterStats:
        return self._stats.stats()

    def _emit(self, block: np.ndarray, reduction_db: np.ndarray) -> np.ndarray:
        pending = np.concatenate((self._pending, block), axis=1) if self._pending.size else block
        ready = reduction_db.size
        gain = np.power(10.0, reduction_db * -0.05).astype(np.float32)
        out = pending[:, :ready] * gain
        self._pending = pending[:, ready:].copy() if ready else pending
        self._stats.add(reduction_db)
        return out


@dataclass(frozen=True)
class LimiterResult:
    """Limited audio (same shape as the input, aligned with it) and the limiter's statistics."""

    samples: np.ndarray
    stats: LimiterStats

    @property
    def max_gain_reduction_db(self) -> float:
        return self.stats.max_gain_reduction_db

    @property
    def mean_gain_reduction_db(self) -> float:
        return self.stats.mean_gain_reduction_db


def limit(samples: np.ndarray, sample_rate: int, ceiling: float | None = None, *, threshold_db: float | None = None,
          release_ms: float = RELEASE_MS, hold_ms: float = HOLD_MS, lookahead_ms: float = LOOKAHEAD_MS,
          factor: int | None = None, passes: int = 1, block_frames: int = BLOCK_FRAMES,
          split_band: bool = False) -> LimiterResult:
    """True-peak limit a whole signal (runs ``TruePeakLimiter`` in blocks of ``block_frames``).

    Parameters
    ----------
    samples : numpy.ndarray
        ``(channels, samples)``; all channels get the same gain (linked).
    ceiling : float, optional
        Old API: linear amplitude the true peak is held under. Give this or ``threshold_db``.
    threshold_db : float, optional
        dBTP the true peak is held under.
    hold_ms : float
        Raised to at least ``HOLD_MS`` (see the module docstring).
    passes : int
        Ignored; kept for old callers.
    split_band : bool
        Run ``SplitBandLimiter`` (default: the wideband ``TruePeakLimiter``).
    """
    del passes
    if (ceiling is None) == (threshold_db is None):
        raise AutomixError("limit() needs exactly one of ceiling (linear) or threshold_db")
    if threshold_db is None:
        if not ceiling > 0:
            raise AutomixError(f"the limiter ceiling must be positive, got {ceiling}")
        threshold_db = 20.0 * math.log10(ceiling)
    samples = _as_audio(samples)
    if split_band:
        limiter = SplitBandLimiter(sample_rate, samples.shape[0], threshold_db, release_ms,
                                   low_hold_ms=max(hold_ms, HOLD_MS), lookahead_ms=lookahead_ms, factor=factor)
    else:
        limiter = TruePeakLimiter(sample_rate, samples.shape[0], threshold_db, release_ms,
                                  hold_ms=max(hold_ms, HOLD_MS), lookahead_ms=lookahead_ms, factor=factor)
    return LimiterResult(stream(limiter, samples, block_frames), limiter.stats())


# --- kept for existing callers --------------------------------------------------------


def _odd(n: float) -> int:
    n = max(1, round(n))
    return n if n % 2 else n + 1


def smooth_gain_reduction(required_db: np.ndarray, attack_samples: int, release_ms: float, sample_rate: int,
                          hold_ms: float = 0.0) -> np.ndarray:
    """The previous limiter's gain curve (dB, <= 0, never above ``required_db``); the
    limiter itself now uses ``GainComputer``."""
    length = _odd(attack_samples)
    minimum = kernels.minimum_filter1d(required_db, length, mode="nearest")
    attack = kernels.uniform_filter1d(minimum, length, mode="nearest")
    np.minimum(attack, 0, out=attack)
    held = attack
    hold = int(hold_ms * sample_rate / 1000.0)
    if hold > 1:
        held = kernels.minimum_filter1d(attack, hold, mode="nearest", origin=(hold - 1) // 2)
    release = one_pole(held, release_ms, sample_rate)
    return np.minimum(attack, release)


def peak_envelope(samples: np.ndarray, factor: int, spans: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Per input sample, the largest ``|x|`` over all channels and the ``factor``
    oversampled grid points from that sample to the next but one (no refinement).

    Parameters
    ----------
    spans : list of (start, stop), optional
        Only detect there (zero elsewhere); by default, everywhere.
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
        per_sample[:-1] = np.maximum(per_sample[:-1], per_sample[1:])
        envelope[start:stop] = per_sample[start - lo : stop - lo]

    for chunk in chunks:  # one thread: parallelism belongs to the caller (files, channels)
        run(chunk)
    return envelope


# --- split-band limiter ------------------------------------------------------------------
#
# A wideband limiter ducks everything by the full reduction whenever a kick peaks: a
# sustained pad swings with the kick (issue 10: +1.2 dB of added pad swing at 1.3 dB of
# reduction, +2.4 dB at 5.4 dB, measured through the whole master). The split-band stage
# splits the signal at ~150 Hz with a linear-phase complementary crossover (L + H is the
# input, delayed), takes the reduction from the band that makes the peak, each band with
# its own gain computer, and ends in the wideband ``TruePeakLimiter`` as a safety stage
# that guarantees the ceiling (it does ~nothing when the bands did their job).

#: Crossover: the -6 dB point of the low-pass. Kick and bass fundamentals sit at 40-110 Hz
#: (most kicks 40-60 Hz, a sweep from ~110 Hz), so they fall in the low band; a pad or
#: vocal (>= 200 Hz) in the high band.
CROSSOVER_HZ = 150.0
#: Length of the crossover FIR: 36 ms (1589 taps at 44.1 kHz) with a Kaiser window
#: (beta 5.65, 60 dB stop band) gives a 100 Hz transition: flat to ~100 Hz, -60 dB from
#: ~200 Hz. Its delay (18 ms) adds to the latency, not to the sound (linear phase).
CROSSOVER_MS = 36.0
_CROSSOVER_BETA = 5.65
#: The high band's hold. One period of its lowest content (~150 Hz) would be 6.7 ms, but
#: a short hold lets the gain recover inside a snare's body while its attack is held
#: down: measured attack-to-body loss at 6 dB of reduction (bench/limiter_quality.py,
#: release 60 / 5 ms): hold 7 ms 1.84 / 2.73 dB, 25 ms 1.25 / 2.01, 50 ms 0.56 / 1.06
#: (wideband 1.18 / 1.91); a longer hold costs loudness on dense material (pink noise at
#: 6 dB: +0.34 / -0.02 / -0.33 LU against the wideband limiter). 25 ms: no worse than
#: the wideband limiter on either.
HIGH_HOLD_MS = 25.0
#: When both bands are over their share, the low band keeps this fraction of the
#: threshold and the high band the rest (the low band gives up more: a level change there
#: is heard as less punch, in the high band as pumping of everything else). Measured
#: loudness against the wideband limiter at the same input, 3 / 6 dB of reduction:
#: share 1/3: pink noise +0.23 / -0.03 LU, snares on noise -0.06 / -0.14, kick and pad
#: +0.04 / +0.30; share 1/2: -0.35 / -1.14, -0.16 / -0.83 (the high band, which carries
#: the loudness, gives up more); share 0.2: +0.62 / +0.91 but the low band sits at its
#: 12 dB floor on pink noise (a tone change) and the safety stage takes up to 0.85 dB.
LOW_SHARE = 1.0 / 3.0
#: Most reduction the low band takes alone; past it the high band shares the reduction.
#: Off by default: the shares already keep the low band's output peak at >= 1/3 of the
#: threshold, and a gain floor makes loudness fall as input gain rises (the high band must
#: make up for the clamped low band): pink noise 4-16 dB over, floor 12 dB: -10.03, -10.09,
#: -10.23, -10.33 LUFS; no floor: -10.03, -10.09, -10.19, -10.23 (wideband -10.2 .. -9.8).
MAX_LOW_DB = math.inf


class _Crossover:
    """Streaming linear-phase complementary crossover: ``low`` is ``x`` through a FIR
    low-pass, ``high = x - low`` (both delayed by the FIR's delay, then re-aligned), so
    ``low + high`` is the input up to float rounding.

    The FIR runs by overlap-save FFT over chunks at fixed stream positions, so the output
    does not depend on the block sizes. ``process`` returns ``(low, high)`` for the next
    frames it can complete (aligned with the input stream, up to ``latency_frames``
    behind); ``flush`` the rest.
    """

    def __init__(self, sample_rate: int, channels: int, cutoff_hz: float = CROSSOVER_HZ,
                 length_ms: float = CROSSOVER_MS):
        if not 0 < cutoff_hz < sample_rate / 4:
            raise AutomixError(f"crossover frequency {cutoff_hz} Hz out of range at {sample_rate} Hz")
        taps = max(3, round(length_ms * sample_rate / 1000.0)) | 1
        self.taps = design.firwin_lowpass(taps, cutoff_hz / (sample_rate / 2), _CROSSOVER_BETA)
        self.channels = channels
        self.delay = (taps - 1) // 2
        self._fft = max(1 << 14, 1 << math.ceil(math.log2(8 * taps)))
        self._rows = self._fft - taps + 1
        self._spectrum = kernels.rfft(self.taps, self._fft)
        self._buffer = np.zeros((channels, taps - 1), dtype=np.float32)  # zeros before the start
        self._to_drop = self.delay  # outputs that belong to before the start
        self._received = self._returned = 0
        self.latency_frames = self._rows + self.delay

    def process(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._received += block.shape[1]
        return self._run(block)

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        lows, highs = [], []
        while self._returned < self._received:
            low, high = self._run(np.zeros((self.channels, self._rows), dtype=np.float32))
            lows.append(low)
            highs.append(high)
        low, high = (np.concatenate(p, axis=1) if p else np.zeros((self.channels, 0), np.float32) for p in (lows, highs))
        missing = max(0, self._received - (self._returned - low.shape[1]))
        return low[:, :missing], high[:, :missing]

    def _run(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        buffer = np.concatenate((self._buffer, block), axis=1) if block.shape[1] else self._buffer
        taps, rows, size = self.taps.size, self._rows, self._fft
        lows, highs = [], []
        start = 0
        while buffer.shape[1] - start >= size:
            piece = buffer[:, start : start + size].astype(np.float64)
            low = kernels.irfft(kernels.rfft(piece, axis=-1) * self._spectrum, size, axis=-1)[:, taps - 1 :]
            delayed = piece[:, taps - 1 - self.delay : taps - 1 - self.delay + rows]
            lows.append(low.astype(np.float32))
            highs.append((delayed - low).astype(np.float32))
            start += rows
        self._buffer = buffer[:, start:].copy() if start else buffer
        if not lows:
            return np.zeros((self.channels, 0), np.float32), np.zeros((self.channels, 0), np.float32)
        low, high = np.concatenate(lows, axis=1), np.concatenate(highs, axis=1)
        drop = min(self._to_drop, low.shape[1])
        self._to_drop -= drop
        self._returned += low.shape[1] - drop
        return low[:, drop:], high[:, drop:]


class _LowBandEnvelope:
    """Per sample, the largest ``|x|`` over all channels from the previous to the next
    sample. The low band has no content above ~250 Hz (60 dB down), where the sample peak
    under-reads the true peak by at most ``1 - cos(pi 250 / fs)`` (0.0003 dB at 44.1 kHz),
    so no oversampling is needed. One frame behind."""

    def __init__(self):
        self._last_two = np.zeros(2, dtype=np.float32)
        self._started = False

    def process(self, block: np.ndarray) -> np.ndarray:
        if block.shape[1] == 0:
            return np.zeros(0, dtype=np.float32)
        rows = np.abs(block).max(axis=0)
        extended = np.concatenate((self._last_two, rows))
        envelope = np.maximum(np.maximum(extended[:-2], extended[1:-1]), extended[2:])
        self._last_two = extended[-2:]
        if not self._started:  # the first value (row -1) belongs to before the start
            self._started = True
            return envelope[1:]
        return envelope

    def flush(self) -> np.ndarray:
        if not self._started:
            return np.zeros(0, dtype=np.float32)
        return np.maximum(self._last_two[:1], self._last_two[1:])


def allocate_band_gains(envelope_low: np.ndarray, envelope_high: np.ndarray, envelope_sum: np.ndarray,
                        threshold: float, *, low_share: float = LOW_SHARE, max_low_db: float = MAX_LOW_DB,
                        envelope_bands: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Required linear gains ``(gain_low, gain_high)`` (<= 1) per envelope value.

    The sum's peak is bounded by ``gain_low * envelope_low + gain_high * envelope_high``.
    That bound over-reads when the bands' peaks do not coincide, so it is held under
    ``threshold * (envelope_low + envelope_high) / envelope_sum`` (equal gains then give
    exactly the wideband reduction ``threshold / envelope_sum``; the safety stage catches
    the rest). The reduction goes to the band over its share: only the low band if the
    high band is within its share (``1 - low_share`` of the threshold), only the high band
    if the low band is within its own, else each band down to its share; the low band
    never below ``-max_low_db`` unless both bands must go under it (then both get the
    wideband gain). ``envelope_bands``: ``envelope_low + envelope_high`` (the default),
    or, for pooled envelopes, the pooled maximum of that sum (the pooled maxima of the
    bands apart would over-state how much the bound over-reads).
    """
    low = np.asarray(envelope_low, dtype=np.float64)
    high = np.asarray(envelope_high, dtype=np.float64)
    total = np.asarray(envelope_sum, dtype=np.float64)
    tiny = 1e-30
    over = total > threshold
    gain_low = np.ones_like(low)
    gain_high = np.ones_like(low)
    if not over.any():
        return gain_low, gain_high
    low, high, total = low[over], high[over], total[over]
    bands = low + high if envelope_bands is None else np.minimum(np.asarray(envelope_bands, dtype=np.float64)[over], low + high)
    bands = np.maximum(bands, total)
    target = threshold * bands / np.maximum(total, tiny)  # where gL L + gH H is held
    part_low, part_high = low, high
    share_low = low_share * target
    share_high = target - share_low
    only_high = part_low <= share_low
    only_low = ~only_high & (part_high <= share_high)
    safe_low, safe_high = np.maximum(part_low, tiny), np.maximum(part_high, tiny)
    g_low = np.where(only_high, 1.0, np.where(only_low, (target - part_high) / safe_low, share_low / safe_low))
    g_high = np.where(only_high, (target - part_low) / safe_high, np.where(only_low, 1.0, share_high / safe_high))
    floor = 10.0 ** (-max_low_db / 20.0)
    clamped = g_low < floor
    if clamped.any():
        g_low = np.where(clamped, floor, g_low)
        g_high = np.where(clamped, np.minimum(1.0, (target - floor * part_low) / safe_high), g_high)
        wideband = clamped & (g_high < floor)  # even at the floor the high band would go lower
        g_low = np.where(wideband, threshold / np.maximum(total, tiny), g_low)
        g_high = np.where(wideband, g_low, g_high)
    gain_low[over] = np.clip(g_low, 0.0, 1.0)
    gain_high[over] = np.clip(g_high, 0.0, 1.0)
    return gain_low, gain_high



def _gain_as_envelope(gain: np.ndarray) -> np.ndarray:
    """A gain requirement as the envelope a 0 dB-threshold ``GainComputer`` turns into it."""
    return 1.0 / np.maximum(gain, 1e-12)


class _RecordingLimiter(TruePeakLimiter):
    """The safety stage: a ``TruePeakLimiter`` that also hands out its reduction per frame."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reductions: list[np.ndarray] = []

    def _emit(self, block: np.ndarray, reduction_db: np.ndarray) -> np.ndarray:
        self.reductions.append(reduction_db)
        return super()._emit(block, reduction_db)


class SplitBandLimiter:
    """Streaming split-band true-peak limiter; the same interface as ``TruePeakLimiter``.

    Parameters
    ----------
    sample_rate, channels : int
    threshold_db : float
        dBTP the output is held under (the safety stage guarantees it).
    release_ms : float
        Release of both bands' gain computers and of the safety stage.
    crossover_hz : float
        Low-pass -6 dB point of the complementary crossover.
    low_hold_ms, high_hold_ms, lookahead_ms : float
        Holds of the low band (>= a period of 40 Hz) and of the high band (>= a period of
        the crossover frequency), and the smooth attack of both.
    low_share, max_low_db : float
        How the reduction is shared (``allocate_band_gains``).
    factor, precise
        The detectors' oversampling (as ``TruePeakLimiter``).

    ``stats()`` reports, per frame, the deeper of the two bands' reductions plus the
    safety stage's (the deepest reduction any part of the spectrum got: conservative for
    "how much limiting"); ``band_stats()`` gives ``(low, high, safety)`` separately.
    """

    def __init__(self, sample_rate: int, channels: int, threshold_db: float, release_ms: float = RELEASE_MS, *,
                 crossover_hz: float = CROSSOVER_HZ, low_hold_ms: float = HOLD_MS, high_hold_ms: float = HIGH_HOLD_MS,
                 lookahead_ms: float = LOOKAHEAD_MS, low_share: float = LOW_SHARE, max_low_db: float = MAX_LOW_DB,
                 factor: int | None = None, precise: bool = True, detectors: tuple | None = None):
        if channels < 1 or sample_rate < 1:
            raise AutomixError(f"the limiter needs at least one channel and a positive rate (got {channels}, {sample_rate})")
        if not (0.0 < low_share < 1.0 and max_low_db >= 0.0):
            raise AutomixError(f"split-band settings out of range (low share {low_share}, max low {max_low_db} dB)")
        self.sample_rate, self.channels, self.threshold_db = int(sample_rate), int(channels), float(threshold_db)
        self._threshold = 10.0 ** (threshold_db / 20.0)
        self._low_share, self._max_low_db = float(low_share), float(max_low_db)
        self._crossover = _Crossover(self.sample_rate, self.channels, crossover_hz)
        self._low_envelope = _LowBandEnvelope()
        if detectors is not None:  # the high band's and the whole signal's, kept by the model pass
            self._high_detector, self._sum_detector = detectors
        else:
            refine = 0.5 * self._threshold  # below half the threshold no allocation depends on the exact value
            self._high_detector = limiter_detector(sample_rate, channels, refine, hold_ms=high_hold_ms,
                                                   lookahead_ms=lookahead_ms, precise=precise, factor=factor)
            self._sum_detector = limiter_detector(sample_rate, channels, refine, hold_ms=high_hold_ms,
                                                  lookahead_ms=lookahead_ms, precise=precise, factor=factor)
        self._gain_low = GainComputer(sample_rate, 0.0, release_ms, hold_ms=low_hold_ms, lookahead_ms=lookahead_ms)
        self._gain_high = GainComputer(sample_rate, 0.0, release_ms, hold_ms=high_hold_ms, lookahead_ms=lookahead_ms)
        self._safety = _RecordingLimiter(sample_rate, channels, threshold_db, release_ms, hold_ms=low_hold_ms,
                                         lookahead_ms=lookahead_ms, factor=factor, precise=precise)
        self._safety._detector.own_chunk_every = SAFETY_OWN_CHUNK_EVERY
        self.latency_frames = (self._crossover.latency_frames + max(self._high_detector.latency_frames,
                               self._sum_detector.latency_frames) + 1 + self._gain_low.latency_frames
                               + self._safety.latency_frames)
        empty = np.zeros((channels, 0), dtype=np.float32)
        self._bands = [empty, empty]  # band audio waiting for its gains
        self._envelopes = [np.zeros(0, np.float32) for _ in range(3)]  # low, high, sum waiting to be aligned
        self._band_reduction = np.zeros(0)  # deeper band reduction per frame sent to the safety stage
        self._stats = _StatsAccumulator(self.sample_rate)
        self._low_stats = _StatsAccumulator(self.sample_rate)
        self._high_stats = _StatsAccumulator(self.sample_rate)
        self._flushed = False
        # the whole signal's detector works beside the crossover and the high band's
        # (same blocks, same order: the same bits as in one thread)
        self._beside = Beside(self._sum_detector.process, loudness.THREADS > 1)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed ``(channels, n)`` audio; returns the limited frames that are ready (aligned
        with the input stream, up to ``latency_frames`` behind it)."""
        if self._flushed:
            raise AutomixError("the limiter was already flushed; make a new one for a new signal")
        block = _as_audio(block, self.channels)
        pending_sum = self._beside.submit(block)
        low, high = self._crossover.process(block)
        envelope_low, envelope_high = self._low_envelope.process(low), self._high_detector.process(high)
        return self._advance(low, high, envelope_low, envelope_high, pending_sum.result(), final=False)

    def flush(self) -> np.ndarray:
        """The remaining output frames (the input is over)."""
        if self._flushed:
            return np.zeros((self.channels, 0), dtype=np.float32)
        self._flushed = True
        self._beside.close()
        envelope_sum = self._sum_detector.flush()
        low, high = self._crossover.flush()
        envelope_low = np.concatenate((self._low_envelope.process(low), self._low_envelope.flush()))
        envelope_high = np.concatenate((self._high_detector.process(high), self._high_detector.flush()))
        return self._advance(low, high, envelope_low, envelope_high, envelope_sum, final=True)

    def stats(self) -> LimiterStats:
        return self._stats.stats()

    def band_stats(self) -> tuple[LimiterStats, LimiterStats, LimiterStats]:
        """``(low band, high band, safety stage)`` statistics."""
        return self._low_stats.stats(), self._high_stats.stats(), self._safety.stats()

    def _advance(self, low, high, envelope_low, envelope_high, envelope_sum, *, final: bool) -> np.ndarray:
        self._bands = [np.concatenate((self._bands[0], low), axis=1), np.concatenate((self._bands[1], high), axis=1)]
        self._envelopes = [np.concatenate((old, new)) for old, new in
                           zip(self._envelopes, (envelope_low, envelope_high, envelope_sum))]
        ready = min(e.size for e in self._envelopes)
        parts = [e[:ready] for e in self._envelopes]
        self._envelopes = [e[ready:] for e in self._envelopes]
        gain_low, gain_high = allocate_band_gains(*parts, self._threshold, low_share=self._low_share,
                                                  max_low_db=self._max_low_db)
        reduction_low = self._gain_low.process(_gain_as_envelope(gain_low))
        reduction_high = self._gain_high.process(_gain_as_envelope(gain_high))
        if final:
            reduction_low = np.concatenate((reduction_low, self._gain_low.flush()))
            reduction_high = np.concatenate((reduction_high, self._gain_high.flush()))
            frames = self._bands[0].shape[1]
            reduction_low, reduction_high = reduction_low[:frames], reduction_high[:frames]
        count = reduction_low.size
        mixed = (self._bands[0][:, :count] * np.power(10.0, reduction_low * -0.05).astype(np.float32)
                 + self._bands[1][:, :count] * np.power(10.0, reduction_high * -0.05).astype(np.float32))
        self._bands = [band[:, count:] for band in self._bands]
        self._low_stats.add(reduction_low)
        self._high_stats.add(reduction_high)
        self._band_reduction = np.concatenate((self._band_reduction, np.maximum(reduction_low, reduction_high)))
        out = self._safety.process(mixed)
        if final:
            out = np.concatenate((out, self._safety.flush()), axis=1)
        safety = np.concatenate(self._safety.reductions) if self._safety.reductions else np.zeros(0)
        self._safety.reductions.clear()
        self._stats.add(self._band_reduction[: safety.size] + safety)
        self._band_reduction = self._band_reduction[safety.size :]
        return out


# --- the split-band limiter's model for the mastering loop --------------------------------


@dataclass(frozen=True, eq=False)
class SplitBandHops:
    """Per-hop features of the signal before a ``SplitBandLimiter`` (at unit gain).

    Attributes
    ----------
    peak_low, peak_high, peak_sum : numpy.ndarray
        Per hop, the largest envelope value of the low band, the high band and the whole
        signal (the limiter's own detectors). From ``SplitBandFeatures`` these are views
        of ``candidates``' diagonal (each band's value where it peaks is its peak), not
        tables of their own.
    peak_bands : numpy.ndarray or None
        Per hop, the largest ``envelope_low + envelope_high``: only for a model without
        ``candidates`` (``SplitBandFeatures`` leaves it None: the candidates replace it).
    candidates : numpy.ndarray
        ``(hops, 3, 3)`` float32: per hop, the simultaneous ``(low, high, sum)`` envelope
        values at the frame where the low, the high and the sum envelope peak (the frames
        whose requirements bind the band gains; what the model allocates on).
    energy_low, energy_high, energy_cross : numpy.ndarray
        float32 (summed in float64), per hop, channel-weighted sums of ``K(L)^2``,
        ``K(H)^2`` and ``K(L) K(H)`` (K-weighting is linear: ``K(x) = K(L) + K(H)``), so
        the output's hop energy with band gains ``a, b`` is ``a^2 E_L + b^2 E_H + 2 a b E_LH``.
    features : automix.master.loop.LoopFeatures
        The wideband features of the same signal (``peak_sum``, and ``E_L + E_H + 2 E_LH``).

    Memory: 36 (candidates) + 12 (band energies) + 4 (the wideband energy) = 52 bytes per
    hop, 2.1 MB per minute at 44.1 kHz (``SPLIT_MODEL_BYTES_PER_HOP``); before, with the
    pooled peaks and float64 energies, 84 bytes, and twice that while the pieces were
    joined.
    """

    peak_low: np.ndarray
    peak_high: np.ndarray
    peak_sum: np.ndarray
    peak_bands: np.ndarray
    energy_low: np.ndarray
    energy_high: np.ndarray
    energy_cross: np.ndarray
    features: object
    candidates: np.ndarray | None = None


#: Bytes per hop of a ``SplitBandHops`` from ``SplitBandFeatures`` (see its docstring).
SPLIT_MODEL_BYTES_PER_HOP = 9 * 4 + 3 * 4 + 4


class SplitBandFeatures:
    """Streaming collector of ``SplitBandHops`` (``add(block)``, then ``result()``); hops
    as the mastering loop's ``FeatureCollector`` cuts them. Any block split gives the
    same features. ``frames`` (optional): the signal's length, so the tables are
    allocated once at their size (otherwise they grow in place)."""

    def __init__(self, sample_rate: int, channels: int, *, crossover_hz: float = CROSSOVER_HZ,
                 high_hold_ms: float | None = None, refine_above: float = 0.0, frames: int | None = None,
                 hops_per_granule: int | None = None, spills: tuple[EnvelopeSpill | None, EnvelopeSpill | None] | None = None,
                 sum_detector=None):

        from automix.master import loop  # here: loop imports this module

        high_hold_ms = HIGH_HOLD_MS if high_hold_ms is None else high_hold_ms
        self.sample_rate, self.channels = sample_rate, channels
        self._per_granule = int(hops_per_granule or loop.hops_per_granule(sample_rate))
        self._crossover = _Crossover(sample_rate, channels, crossover_hz)
        self._low_envelope = _LowBandEnvelope()
        self._high_detector = limiter_detector(sample_rate, channels, refine_above, hold_ms=high_hold_ms)
        # held as the SplitBandLimiter's own (which refines the rows its high-band hold can bind);
        # ``sum_detector``: that envelope already kept (a wideband model pass's, when the holds agree)
        self._sum_detector = sum_detector or limiter_detector(sample_rate, channels, refine_above, hold_ms=high_hold_ms)
        self._spills = spills  # the high band's and the whole signal's envelopes, for the renders (None: not kept)
        self._sos = loudness.k_weighting_sos(sample_rate)
        self._zi = np.zeros((2, self._sos.shape[0], channels, 2))
        self._weights = loudness.channel_weights(channels)[:, None]
        self._frames = 0
        rows = loop.hop_count(frames, sample_rate, self._per_granule) if frames else 0
        # summed in float64, kept in float32 (a relative rounding of 6e-8 per hop)
        self._energies = [loop._HopPool(sample_rate, self._per_granule, np.add, np.float64, store=np.float32, rows=rows)
                          for _ in range(3)]
        self._aligned = [np.zeros(0, np.float32) for _ in range(3)]  # low, high, sum envelopes to pair up
        self._triples = _HopTriples(sample_rate, self._per_granule, rows)
        # the whole signal's detector works beside the bands' (same bits as in one thread)
        self._beside = Beside(self._sum_detector.process, loudness.THREADS > 1)
        self._started: list | None = None  # the high band detector's work on the last block, not yet finished

    def add(self, block: np.ndarray) -> None:
        """Take the next ``(channels, n)`` block."""
        block = _as_audio(block, self.channels)
        if block.shape[1] == 0:
            return
        self._frames += block.shape[1]
        pending_sum = self._beside.submit(block)
        low, high = self._crossover.process(block)
        # this block's high band is begun before the last block's is finished: the cores
        # work on both (see PeakDetector.start); the envelopes are paired up by position
        started = self._high_detector.start(high)
        envelope_low = self._low_envelope.process(low)
        self._align(2, pending_sum.result())
        envelope_high = self._high_detector.finish(self._started) if self._started is not None else np.zeros(0, np.float32)
        self._started = started
        self._bands(low, high, envelopes=(envelope_low, envelope_high))

    def result(self) -> SplitBandHops:
        """Flush, and return the features."""
        from automix.master import loop

        self._beside.close()
        self._align(2, self._sum_detector.flush())
        if self._started is not None:
            self._align(1, self._high_detector.finish(self._started))
            self._started = None
        low, high = self._crossover.flush()
        self._bands(low, high, final=True)
        candidates = self._triples.result()
        energies = [pool.result() for pool in self._energies]
        total = np.empty(energies[0].size, dtype=np.float32)
        for lo in range(0, total.size, COMPUTER_CHUNK):  # in float64, a slice at a time
            part = slice(lo, lo + COMPUTER_CHUNK)
            total[part] = (energies[0][part].astype(np.float64) + energies[1][part]) + 2.0 * energies[2][part].astype(np.float64)
        # each envelope's value where it peaks is its hop maximum: the diagonal
        peak_low, peak_high, peak_sum = candidates[:, 0, 0], candidates[:, 1, 1], candidates[:, 2, 2]
        features = loop.LoopFeatures(self.sample_rate, self._frames, self._per_granule, peak_sum, total)
        return SplitBandHops(peak_low, peak_high, peak_sum, None, *energies, features, candidates)

    def _align(self, index: int, envelope: np.ndarray) -> None:
        if self._spills is not None and index > 0 and self._spills[index - 1] is not None:
            self._spills[index - 1].write(envelope)
        self._aligned[index] = np.concatenate((self._aligned[index], envelope))
        ready = min(a.size for a in self._aligned)
        if ready:
            self._triples.add(*(a[:ready] for a in self._aligned))
            self._aligned = [a[ready:] for a in self._aligned]

    def _bands(self, low: np.ndarray, high: np.ndarray, final: bool = False, envelopes=None) -> None:
        if envelopes is None:
            envelope_low, envelope_high = self._low_envelope.process(low), self._high_detector.process(high)
        else:
            envelope_low, envelope_high = envelopes
        if final:
            envelope_low = np.concatenate((envelope_low, self._low_envelope.flush()))
            envelope_high = np.concatenate((envelope_high, self._high_detector.flush()))
        self._align(0, envelope_low)
        self._align(1, envelope_high)
        if low.shape[1]:
            k_low, self._zi[0] = iir.sosfilt(self._sos, low, self._zi[0])
            k_high, self._zi[1] = iir.sosfilt(self._sos, high, self._zi[1])
            self._energies[0].add((self._weights * (k_low * k_low)).sum(axis=0))
            self._energies[1].add((self._weights * (k_high * k_high)).sum(axis=0))
            self._energies[2].add((self._weights * (k_low * k_high)).sum(axis=0))


class _HopTriples:
    """Per hop, the simultaneous (low, high, sum) envelope values at the frames where each
    of the three peaks first (``SplitBandHops.candidates``)."""

    def __init__(self, sample_rate: int, per_granule: int, rows: int = 0):
        from automix.master import loop

        self.sample_rate, self.per_granule = sample_rate, per_granule
        self._buffer = np.zeros((3, 0), dtype=np.float32)
        self._start = 0
        self._hop = 0
        self._out = loop._Table(np.float32, (3, 3), rows)

    def add(self, low: np.ndarray, high: np.ndarray, total: np.ndarray) -> None:
        from automix.master import loop

        self._buffer = np.concatenate((self._buffer, np.stack((low, high, total))), axis=1)
        end = self._start + self._buffer.shape[1]
        last = int(end / (self.sample_rate * loudness.GRANULE_S / self.per_granule)) + 1
        edges = loop.hop_edge(np.arange(self._hop, last + 1), self.sample_rate, self.per_granule)
        complete = int(np.flatnonzero(edges <= end)[-1])
        if complete > 0:
            self._out.append(self._gather(self._buffer[:, : edges[complete] - self._start], edges[: complete] - self._start))
            self._buffer = self._buffer[:, edges[complete] - self._start :]
            self._start, self._hop = int(edges[complete]), self._hop + complete

    def result(self) -> np.ndarray:
        if self._buffer.shape[1]:
            self._out.append(self._gather(self._buffer, np.zeros(1, dtype=np.int64)))
        self._buffer = np.zeros((3, 0), dtype=np.float32)  # not a view: the last block's memory goes
        return self._out.result()

    @staticmethod
    def _gather(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
        lengths = np.diff(np.append(starts, values.shape[1]))
        hop = np.repeat(np.arange(starts.size), lengths)
        out = np.empty((starts.size, 3, 3), dtype=np.float32)
        for key in range(3):
            peaks = np.maximum.reduceat(values[key], starts)
            where = np.flatnonzero(values[key] >= peaks[hop])
            _, first = np.unique(hop[where], return_index=True)
            out[:, key, :] = values[:, where[first]].T
        return out


def split_band_gain_reduction_db(peak_low: np.ndarray, peak_high: np.ndarray, peak_sum: np.ndarray,
                                 sample_rate: float, threshold_db: float, release_ms: float = RELEASE_MS, *,
                                 peak_bands: np.ndarray | None = None, candidates: np.ndarray | None = None,
                                 low_hold_ms: float = HOLD_MS, high_hold_ms: float | None = None,
                                 lookahead_ms: float = LOOKAHEAD_MS, low_share: float = LOW_SHARE,
                                 max_low_db: float = MAX_LOW_DB) -> tuple[np.ndarray, np.ndarray]:
    """The split-band limiter's band gain computers on envelopes at any rate (e.g. per-hop
    maxima at the hop rate): ``(low, high)`` gain reduction in dB (>= 0), aligned with the
    envelopes. An input gain of ``g`` dB is a threshold ``g`` dB lower.
    ``split_band_reduction_chunks`` gives the same values a slice at a time."""
    parts = list(split_band_reduction_chunks(peak_low, peak_high, peak_sum, sample_rate, threshold_db, release_ms,
                                             peak_bands=peak_bands, candidates=candidates, low_hold_ms=low_hold_ms,
                                             high_hold_ms=high_hold_ms, lookahead_ms=lookahead_ms,
                                             low_share=low_share, max_low_db=max_low_db))
    return tuple(np.concatenate([part[band] for part in parts]) for band in (0, 1))


def split_band_reduction_chunks(peak_low: np.ndarray, peak_high: np.ndarray, peak_sum: np.ndarray,
                                sample_rate: float, threshold_db: float, release_ms: float = RELEASE_MS, *,
                                peak_bands: np.ndarray | None = None, candidates: np.ndarray | None = None,
                                low_hold_ms: float = HOLD_MS, high_hold_ms: float | None = None,
                                lookahead_ms: float = LOOKAHEAD_MS, low_share: float = LOW_SHARE,
                                max_low_db: float = MAX_LOW_DB) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``split_band_gain_reduction_db`` in consecutive slices: ``(low, high)`` reductions
    of the next hops, each slice at most about ``COMPUTER_CHUNK`` long (the computers
    stream: the same values as in one piece, with temporaries that do not grow with the
    length)."""
    high_hold_ms = HIGH_HOLD_MS if high_hold_ms is None else high_hold_ms
    threshold = 10.0 ** (threshold_db / 20.0)

    def band_gains(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        if candidates is not None:
            # the render's band gain over a hop is the lowest per-frame requirement in it:
            # allocate on each binding frame's simultaneous values and keep the lowest
            flat = candidates[lo:hi].reshape(-1, 3)
            gain_low, gain_high = allocate_band_gains(flat[:, 0], flat[:, 1], flat[:, 2], threshold,
                                                      low_share=low_share, max_low_db=max_low_db)
            return gain_low.reshape(-1, 3).min(axis=1), gain_high.reshape(-1, 3).min(axis=1)
        return allocate_band_gains(peak_low[lo:hi], peak_high[lo:hi], peak_sum[lo:hi], threshold, low_share=low_share,
                                   max_low_db=max_low_db, envelope_bands=None if peak_bands is None else peak_bands[lo:hi])

    computers = [GainComputer(sample_rate, 0.0, release_ms, hold_ms=hold_ms, lookahead_ms=lookahead_ms)
                 for hold_ms in (low_hold_ms, high_hold_ms)]
    # the same lookahead, so the same latency: both computers return as many values per call
    count = candidates.shape[0] if candidates is not None else np.asarray(peak_low).size
    for lo in range(0, count, COMPUTER_CHUNK):
        gains = band_gains(lo, lo + COMPUTER_CHUNK)
        yield tuple(computer.process(_gain_as_envelope(gain)) for computer, gain in zip(computers, gains))
    yield tuple(computer.flush() for computer in computers)


def split_band_hop_chunks(hops: SplitBandHops, gain_db: float, threshold_db: float,
                          release_ms: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The loop's cheap model for ``SplitBandLimiter``, a slice of hops at a time: per hop,
    the K-weighted energy of the output at input gain ``gain_db`` (float64) and the
    deeper band's gain reduction (dB <= 0, as ``loop.predict`` uses it)."""
    features = hops.features
    done = 0
    for low_db, high_db in split_band_reduction_chunks(hops.peak_low, hops.peak_high, hops.peak_sum,
                                                       features.hop_rate, threshold_db - gain_db, release_ms,
                                                       peak_bands=hops.peak_bands, candidates=hops.candidates):
        part = slice(done, done + low_db.size)
        a = 10.0 ** ((gain_db - low_db) / 20.0)
        b = 10.0 ** ((gain_db - high_db) / 20.0)
        energy = a * a * hops.energy_low[part] + b * b * hops.energy_high[part] + 2.0 * a * b * hops.energy_cross[part]
        done += low_db.size
        yield energy, -np.maximum(low_db, high_db)


def split_band_hop_energy(hops: SplitBandHops, gain_db: float, threshold_db: float,
                          release_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """``split_band_hop_chunks`` in one piece: ``(energy, reduction_db)`` per hop."""
    parts = list(split_band_hop_chunks(hops, gain_db, threshold_db, release_ms))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
