"""Mastering stage 1: tonal balance -- EQ only where the mix is clearly off the target.

The target is the long-term spectrum of finished music (:mod:`automix.master.tonal_targets`:
the MUSDB18 average, moved by the genre's documented deviations). The EQ corrects only
what a mastering engineer would call a fault:

1. The broad level and tilt of the mix's difference from the target are fitted (robust,
   weighted least squares over the bands, in octaves). The tilt is left alone up to
   ``TILT_TOLERANCE_DB_PER_OCTAVE``: records differ most by their slope, legitimately.
2. What remains is smoothed over about 2/3 octave and corrected only beyond a dead-band
   (``DEAD_BAND_DB``, wider where the average record rolls off).
3. A band far below what the target expects there is taken to be empty (the instrument
   is absent) and never boosted.
4. Every move is scaled by how sure the measurement is: a short file, a band whose level
   swings a lot over time (sparse or very dynamic material) or a very dynamic programme
   get smaller moves. Then ``tonal_amount`` scales and ``tonal_max_db`` caps
   (``FINISHED_MAX_DB`` on already mastered material). A signal with content in under
   half the bands (a solo instrument, a test tone) is not compared with a full mix.

The EQ itself is a linear-phase FIR (no phase shift between bands); :class:`StreamingEQ`
applies it block by block, :func:`apply_eq` to a whole signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from automix.dsp import design
from automix.dsp.fir import StreamingFIR, filter_whole
from automix.master import tonal_targets as targets
from automix.master.glue import DENSE_PLR_DB
from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ, AudioAnalysis
from automix.presets import MasterSettings

#: A long-term spectrum estimated from less than this is not fully trusted: an excerpt
#: shorter than two 4/4 phrases of 4 bars at 100 bpm (~10 s) may show one part's balance
#: only (a drum break, an intro). Confidence grows as sqrt(duration / this) -- the
#: standard error of a mean falls as 1/sqrt of the material -- and is 1 from here on.
FULL_CONFIDENCE_S = 10.0

#: Successive spectra of music are correlated over about a bar (2 s at 120 bpm): the
#: number of independent looks at a band's level is the duration over this, at most.
DECORRELATION_S = 2.0

#: A band whose long-term level is uncertain by this much (standard error, dB) gets half
#: the move: the same size as the dead-band, the smallest difference the EQ acts on.
UNCERTAINTY_HALF_DB = 1.5

#: Fewer spectrum frames than this cannot show how a band varies over time; the bands'
#: uncertainty is then taken as ``UNKNOWN_UNCERTAINTY_DB`` (a fifth of the move).
MIN_FRAMES_FOR_SPREAD = 4
UNKNOWN_UNCERTAINTY_DB = 3.0

#: The target describes full mixes. If fewer than this share of the judged bands hold
#: content (the rest empty, see ``ABSENT_BELOW_TARGET_DB``), the signal is a solo
#: instrument, a sparse arrangement or a test tone, not comparable with it: no EQ.
MIN_PRESENT_SHARE = 0.5

#: Loudness range (EBU Tech 3342) above which a programme counts as very dynamic and its
#: average spectrum as less representative of any moment of it: commercial pop and rock
#: masters mostly measure 3-10 LU, orchestral and film music 15-25 LU. Confidence falls
#: as LRA_FULL_CONFIDENCE_LU / LRA above it.
LRA_FULL_CONFIDENCE_LU = 12.0

#: Largest move on material that is already mastered (peak-to-loudness at or under
#: :data:`automix.master.glue.DENSE_PLR_DB`, the density of commercial masters): its
#: balance was chosen by a mastering engineer, so the EQ may nudge it, not re-master it.
#: 1.5 dB is the issue's bound for finished commercial tracks (issue 10).
FINISHED_MAX_DB = 1.5


@dataclass(frozen=True)
class TonalMove:
    """The tonal-balance EQ: gain per third-octave band centre.

    ``reason`` says in one sentence why the EQ moved (or did not) for the report;
    ``to_dict`` keeps its old form (the gains only).
    """

    centres_hz: tuple[float, ...]
    gains_db: tuple[float, ...]
    reason: str = ""

    def to_dict(self) -> dict:
        return {f"{c:.0f}": round(g, 2) for c, g in zip(self.centres_hz, self.gains_db) if abs(g) >= 0.05}

    @property
    def max_abs_db(self) -> float:
        """The largest boost or cut of any band, dB."""
        return float(np.max(np.abs(self.gains_db))) if self.gains_db else 0.0


def target_curve_db(centres_hz: np.ndarray, settings: MasterSettings) -> np.ndarray:
    """The preset's target third-octave spectrum (shape only; the level is arbitrary).

    The measured MUSDB18 average moved by the preset's deviations from pop; see
    :func:`automix.master.tonal_targets.genre_curve_db`.
    """
    return targets.genre_curve_db(centres_hz, settings.tilt_db_per_octave, settings.bass_db, settings.air_db)


def tolerance_db(centres_hz: np.ndarray) -> np.ndarray:
    """The dead-band per band: ``DEAD_BAND_DB`` plus the roll-off allowance at the edges."""
    return targets.DEAD_BAND_DB + targets.rolloff_allowance_db(centres_hz)


def band_uncertainty_db(samples: np.ndarray, sample_rate: int, band_count: int) -> np.ndarray:
    """Standard error (dB) of each third-octave band's long-term level, from the samples.

    The level of every band is measured in up to 256 Hann-windowed 8192-sample frames
    spread evenly over the signal (frames more than 40 dB under the loudest are rests
    and skipped); its spread over time, divided by the square root of the number of
    independent looks (``duration / DECORRELATION_S``, at most the frames), is how far
    the long-term average may be off. Sparse bands (a snare's low end: loud on the hits,
    empty between) and short signals come out uncertain. Cost: at most 256 FFTs.

    Returns
    -------
    numpy.ndarray
        One value per band (``band_count`` first analyzer bands); ``inf`` where a band
        was never measured.
    """
    _channels, frames = samples.shape
    segment = min(8192, frames)
    if segment < 64:
        return np.full(band_count, np.inf)
    available = max(1, (frames - segment) // (segment // 2) + 1)
    starts = np.linspace(0, frames - segment, min(available, 256)).astype(np.int64)
    window = design.hann(segment).astype(np.float32)
    membership = _band_membership(sample_rate, segment, band_count)
    band_power = np.zeros((starts.size, band_count))
    for batch in np.array_split(np.arange(starts.size), -(-starts.size // 32)):
        block = samples[:, starts[batch][:, None] + np.arange(segment)[None, :]] * window  # (ch, n, segment)
        spectrum = (np.abs(np.fft.rfft(block, axis=-1)) ** 2).sum(axis=0)  # summed over channels
        band_power[batch] = spectrum.astype(np.float64) @ membership.T
    return _uncertainty_from_frames(band_power, frames / sample_rate, membership.sum(axis=1) > 0)


def _band_membership(sample_rate: int, segment: int, band_count: int) -> np.ndarray:
    frequencies = np.fft.rfftfreq(segment, 1.0 / sample_rate)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[:band_count])
    return np.stack([(frequencies >= c / 2 ** (1 / 6)) & (frequencies < c * 2 ** (1 / 6)) for c in centres]).astype(np.float64)


def _uncertainty_from_frames(band_power: np.ndarray, duration_s: float, measured: np.ndarray) -> np.ndarray:
    """Standard error per band from per-frame band powers ``(frames, bands)``."""
    if band_power.shape[0] == 0:
        return np.where(measured, UNKNOWN_UNCERTAINTY_DB, np.inf)
    total = band_power.sum(axis=1)
    active = total >= total.max() * 1e-4 if total.max() > 0 else np.zeros(total.size, bool)
    if active.sum() < MIN_FRAMES_FOR_SPREAD:  # one or two looks say nothing about variation
        return np.where(measured, UNKNOWN_UNCERTAINTY_DB, np.inf)
    power = band_power[active]
    floor = max(power.max(), 1e-30) * 1e-12  # 120 dB under the loudest: "empty" stays finite
    levels_db = 10 * np.log10(power + floor)
    spread_db = levels_db.std(axis=0)
    looks = max(1.0, min(float(active.sum()), duration_s / DECORRELATION_S))
    return np.where(measured, spread_db / math.sqrt(looks), np.inf)


class BandSpreadMeter:
    """:func:`band_uncertainty_db` from a stream, for ``tonal_balance(uncertainty_db=)``.

    ``add(block)`` for every ``(channels, samples)`` block; every ``stride``-th
    8192-sample frame of a grid fixed from the stream's start is measured (Hann window,
    power summed over channels, per third-octave band). Memory: one frame of tail and
    the bands' powers per measured frame (2 MB for an hour); cost: an FFT of every
    other frame. Frames differ from :func:`band_uncertainty_db`'s (which spreads up to
    256 half-overlapping frames over a signal in memory), so the values differ slightly.
    """

    SEGMENT = 8192

    def __init__(self, sample_rate: int, channels: int, band_count: int | None = None, stride: int = 2):
        self.sample_rate, self.channels, self.stride = sample_rate, channels, max(1, int(stride))
        if band_count is None:
            band_count = sum(1 for c in THIRD_OCTAVE_CENTRES_HZ if c * 2 ** (1 / 6) <= sample_rate / 2)
        self.band_count = band_count
        self._membership = _band_membership(sample_rate, self.SEGMENT, band_count)
        self._window = design.hann(self.SEGMENT).astype(np.float32)
        self._tail = np.zeros((channels, 0), dtype=np.float32)
        self._frame_index = 0
        self._rows: list[np.ndarray] = []
        self.frames = 0

    def add(self, block: np.ndarray) -> None:
        """Feed the next block (any length)."""
        block = np.asarray(block, dtype=np.float32)
        self.frames += block.shape[1]
        buffer = np.concatenate([self._tail, block], axis=1) if self._tail.shape[1] else block
        count = buffer.shape[1] // self.SEGMENT
        if count:
            frames = buffer[:, : count * self.SEGMENT].reshape(self.channels, count, self.SEGMENT)
            keep = (self._frame_index + np.arange(count)) % self.stride == 0
            if keep.any():
                chosen = frames[:, keep] * self._window
                spectrum = (np.abs(np.fft.rfft(chosen, axis=-1)) ** 2).sum(axis=0)
                self._rows.append(spectrum.astype(np.float64) @ self._membership.T)
            self._frame_index += count
        self._tail = buffer[:, count * self.SEGMENT :].copy()

    def uncertainty_db(self) -> np.ndarray:
        """Standard error (dB) of each band's long-term level, as :func:`band_uncertainty_db`."""
        rows = np.concatenate(self._rows) if self._rows else np.zeros((0, self.band_count))
        return _uncertainty_from_frames(rows, self.frames / self.sample_rate, self._membership.sum(axis=1) > 0)


def confidence(analysis: AudioAnalysis, band_count: int, uncertainty_db: np.ndarray | None = None) -> np.ndarray:
    """How much of a wanted move each band gets (0-1), from how sure the measurement is.

    The product of: duration (``FULL_CONFIDENCE_S``), loudness range
    (``LRA_FULL_CONFIDENCE_LU``) and, when known, each band's standard error
    (``UNCERTAINTY_HALF_DB``).
    """
    duration = min(1.0, math.sqrt(max(analysis.duration_s, 0.0) / FULL_CONFIDENCE_S))
    lra = analysis.loudness_range_lu
    dynamics = 1.0 if not math.isfinite(lra) or lra <= LRA_FULL_CONFIDENCE_LU else LRA_FULL_CONFIDENCE_LU / lra
    result = np.full(band_count, duration * dynamics)
    if uncertainty_db is not None:
        result = result / (1.0 + (np.asarray(uncertainty_db, dtype=np.float64) / UNCERTAINTY_HALF_DB) ** 2)
    return np.nan_to_num(result, nan=0.0)


@dataclass(frozen=True)
class TonalRules:
    """How strict the EQ is: the genre target's tolerances or a reference's.

    Attributes
    ----------
    tilt_tolerance_db_per_octave, dead_band_db : float
        Broad tilt and smoothed local difference left alone.
    rolloff_allowance : bool
        Widen the dead-band at the spectrum's edges (the average record's roll-off).
    max_db : float or None
        Cap per band; None: the preset's ``tonal_max_db`` (and ``FINISHED_MAX_DB`` on
        already mastered material).
    use_preset_amount : bool
        Scale the moves by the preset's ``tonal_amount``.
    name : str
        What the target is, for the reason ("the target", "the reference").
    shrink_by_snr : bool
        How a band's measurement uncertainty ``u`` scales its move ``c``: False, by
        ``1 / (1 + (u / UNCERTAINTY_HALF_DB)**2)`` (the genre EQ: the prior size of a real
        fault is the dead-band's, so a move no larger than the noise is mostly noise);
        True, by ``c**2 / (c**2 + u**2)`` (a reference: the user chose a record of
        another tone, so the move's own size is the prior -- a 5 dB shelf measured to
        +-2 dB is almost surely real, a 1 dB wiggle measured to +-2 dB is not).
    """

    tilt_tolerance_db_per_octave: float
    dead_band_db: float
    rolloff_allowance: bool
    max_db: float | None
    use_preset_amount: bool
    name: str
    shrink_by_snr: bool = False


#: The genre target's rules (the module docstring).
GENRE_RULES = TonalRules(targets.TILT_TOLERANCE_DB_PER_OCTAVE, targets.DEAD_BAND_DB, True, None, True, "the target")

#: A reference recording's rules: the user asked for that balance, so only what is
#: barely audible is left alone, the edges are matched too (the reference shows how deep
#: its roll-off is), the preset's ``tonal_amount`` does not apply (``--amount`` does)
#: and the cap is :data:`automix.master.tonal_targets.REFERENCE_MAX_DB` (see there).
REFERENCE_RULES = TonalRules(targets.REFERENCE_TILT_TOLERANCE_DB_PER_OCTAVE, targets.REFERENCE_DEAD_BAND_DB, False,
                             targets.REFERENCE_MAX_DB, False, "the reference", shrink_by_snr=True)


def tonal_balance(analysis: AudioAnalysis, settings: MasterSettings, *, samples: np.ndarray | None = None,
                  uncertainty_db: np.ndarray | None = None, target_db: np.ndarray | None = None,
                  target_trust: np.ndarray | None = None, rules: TonalRules | None = None) -> TonalMove:
    """EQ gains per third-octave band that correct only where the mix is clearly off target.

    Parameters
    ----------
    analysis : AudioAnalysis
        The mix's analysis (its ``band_levels_db``, duration and loudness range are used).
    settings : MasterSettings
        ``tilt_db_per_octave``, ``bass_db``, ``air_db`` (the genre's deviations from the
        measured curve), ``tonal_amount`` (0-1, share of the correction applied; 0 = off)
        and ``tonal_max_db`` (cap per band).
    samples : numpy.ndarray, optional
        The analysed audio. If given, each band's measurement uncertainty is computed
        from it (:func:`band_uncertainty_db`) and weights the moves; without it, the
        analysis's ``band_spread_db`` (per-band standard deviation of the level over its
        spectrum frames) if it has one, else only the duration and loudness range do.
    uncertainty_db : numpy.ndarray, optional
        Precomputed per-band uncertainty (overrides ``samples``), e.g. from a
        :class:`BandSpreadMeter` fed during a streaming analysis pass.
    target_db : numpy.ndarray, optional
        A target spectrum (dB per analyzer band, shape only; NaN where unknown) replacing
        the preset's, e.g. a reference recording's
        (:func:`automix.master.reference.reference_tonal_move`). Bands past its end or
        NaN are left alone.
    target_trust : numpy.ndarray, optional
        0-1 per band: how sure the target is (multiplies the mix's confidence). A
        target's own measurement uncertainty belongs in ``uncertainty_db`` instead
        (combined with the mix's in quadrature: the difference's standard error).
    rules : TonalRules, optional
        Tolerances and cap; default :data:`GENRE_RULES`, or :data:`REFERENCE_RULES` when
        ``target_db`` is given.

    Returns
    -------
    TonalMove
        Gains for every analyzer band (0 outside 31.5 Hz-16 kHz), each within
        ``+-tonal_max_db`` (and ``+-FINISHED_MAX_DB`` on already mastered material),
        never positive in a band judged empty, and a reason.
    """
    levels = np.asarray(analysis.band_levels_db, dtype=np.float64)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: levels.size], dtype=np.float64)
    flat = tuple(0.0 for _ in centres)
    if rules is None:
        rules = GENRE_RULES if target_db is None else REFERENCE_RULES
    amount = settings.tonal_amount if rules.use_preset_amount else 1.0
    if amount <= 0 or levels.size == 0:
        return TonalMove(tuple(float(c) for c in centres), flat, "tonal EQ off in the preset")
    if target_db is None:
        target = target_curve_db(centres, settings)
    else:
        given = np.asarray(target_db, dtype=np.float64)[: levels.size]
        target = np.concatenate([given, np.full(levels.size - given.size, np.nan)])
    used = (centres >= targets.LOWEST_BAND_HZ * 0.99) & (centres <= targets.HIGHEST_BAND_HZ * 1.01)
    used &= np.isfinite(levels) & (levels > levels.max() - 100.0) & np.isfinite(target)
    if used.sum() < 8:
        return TonalMove(tuple(float(c) for c in centres), flat, "too few bands with content to judge the balance")
    if uncertainty_db is None and samples is not None:
        uncertainty_db = band_uncertainty_db(samples, analysis.sample_rate, levels.size)
    if uncertainty_db is None and getattr(analysis, "band_spread_db", None) is not None:
        # the analyzer's per-band spread over its frames, if it provides one
        spread = np.asarray(analysis.band_spread_db, dtype=np.float64)[: levels.size]
        uncertainty_db = spread / math.sqrt(max(1.0, analysis.duration_s / DECORRELATION_S))
    snr_uncertainty = None
    if rules.shrink_by_snr:
        snr_uncertainty = np.zeros(levels.size) if uncertainty_db is None else np.nan_to_num(
            np.asarray(uncertainty_db, dtype=np.float64)[: levels.size], nan=np.inf)
        uncertainty_db = None  # the duration and loudness-range factors stay; the bands' below
    trust = confidence(analysis, levels.size, uncertainty_db)
    if target_trust is not None:
        given = np.nan_to_num(np.asarray(target_trust, dtype=np.float64)[: levels.size], nan=0.0)
        trust = trust * np.concatenate([np.clip(given, 0.0, 1.0), np.zeros(levels.size - given.size)])

    octaves = np.log2(centres / 1000.0)
    difference = np.where(used, levels - np.nan_to_num(target), 0.0)
    tolerance = rules.dead_band_db + (targets.rolloff_allowance_db(centres) if rules.rolloff_allowance else 0.0)
    # Robust fit (iteratively reweighted, Cauchy weights on the dead-band's scale): a
    # boomy hump or a dull top is a fault to correct, so it must not drag the fitted
    # level and tilt toward itself. Bands far under the fit are empty: not fitted, and
    # never boosted.
    present = used.copy()
    robust = np.ones_like(difference)
    for _ in range(6):
        weights = np.where(present, np.maximum(trust, 1e-3) * robust / tolerance**2, 0.0)
        level, tilt, centre = _fit_line(octaves, difference, weights)
        residual = difference - (level + tilt * (octaves - centre))
        present = used & (residual > -targets.ABSENT_BELOW_TARGET_DB)
        robust = 1.0 / (1.0 + (residual / tolerance) ** 2)
    # Empty also: far under what the target expects at the mix's overall level (tilt
    # aside), so a bright instrument alone (a snare, white noise) gets no sub boost from
    # the tilt correction below.
    absent = used & (~present | (difference - level < -targets.ABSENT_BELOW_TARGET_DB))

    if present.sum() < MIN_PRESENT_SHARE * used.sum():
        return TonalMove(tuple(float(c) for c in centres), flat,
                         f"no EQ: only {int(present.sum())} of {int(used.sum())} bands hold content, "
                         "too sparse to compare with a full mix")  # fmt: skip

    # The broad tilt beyond the tolerance, as a straight line through the fit's centre,
    # held flat outside the body (the edges are the roll-off allowance's business).
    excess_tilt = math.copysign(max(abs(tilt) - rules.tilt_tolerance_db_per_octave, 0.0), tilt)
    body_octaves = octaves
    if rules.rolloff_allowance:
        body_octaves = np.clip(octaves, math.log2(targets.EDGE_LOW_HZ / 1000.0), math.log2(targets.EDGE_HIGH_HZ / 1000.0))
    # Local differences, smoothed over 2/3 octave (a 1-2-1 kernel); empty bands count 0.
    local = _smooth(np.where(present, residual, 0.0), used)
    excess_local = np.sign(local) * np.maximum(np.abs(local) - tolerance, 0.0)
    correction = -(excess_local + excess_tilt * (body_octaves - centre))
    reported_trust = trust  # the report states the measurement's confidence, not the SNR shrinkage
    if snr_uncertainty is not None:
        with np.errstate(invalid="ignore", over="ignore"):
            snr = np.nan_to_num(correction**2 / (correction**2 + snr_uncertainty**2), nan=0.0)
        trust = trust * np.where(np.abs(correction) > 0, snr, 1.0)
    gains = correction * amount * trust
    cap = settings.tonal_max_db if rules.max_db is None else rules.max_db
    finished = rules.max_db is None and 0.0 < analysis.plr_db <= DENSE_PLR_DB
    if finished:
        cap = min(cap, FINISHED_MAX_DB)
    gains = np.clip(gains, -cap, cap)
    gains = np.where(absent & (gains > 0), 0.0, gains)
    gains = np.where(used, gains, 0.0)
    gains = np.where(np.abs(gains) < 0.05, 0.0, gains)  # below audibility: keep the signal untouched
    reason = _reason(tilt, excess_tilt, excess_local, gains, absent, centres, reported_trust, used, rules)
    if finished:
        reason += f"; already mastered (peak-to-loudness {analysis.plr_db:.1f} dB): moves capped at {cap:g} dB"
    return TonalMove(tuple(float(c) for c in centres), tuple(float(g) for g in gains), reason)


def _fit_line(octaves: np.ndarray, values: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
    """Weighted least-squares ``values ~ level + tilt * (octaves - centre)``."""
    total = weights.sum()
    centre = float((weights * octaves).sum() / total)
    x = octaves - centre
    level = float((weights * values).sum() / total)
    spread = float((weights * x * x).sum())
    tilt = float((weights * x * (values - level)).sum() / spread) if spread > 0 else 0.0
    return level, tilt, centre


def _smooth(values: np.ndarray, used: np.ndarray) -> np.ndarray:
    """A 1-2-1 kernel over the used bands (about 2/3 octave: narrower than the
    resonances and shelves the EQ should see, wide enough to average the +-1 dB ripple of
    a single band), edges held."""
    inside = values[used]
    inside = np.convolve(np.pad(inside, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    out = np.zeros_like(values)
    out[used] = inside
    return out


def _reason(tilt: float, excess_tilt: float, excess_local: np.ndarray, gains: np.ndarray, absent: np.ndarray,
            centres: np.ndarray, trust: np.ndarray, used: np.ndarray, rules: TonalRules = GENRE_RULES) -> str:
    parts = []
    if not np.any(gains):
        parts.append(f"within tolerance of {rules.name}: no EQ")
    else:
        k = int(np.argmax(np.abs(gains)))
        parts.append(f"largest move {gains[k]:+.1f} dB at {centres[k]:.0f} Hz")
    parts.append(f"tilt {tilt:+.1f} dB/oct from {rules.name} ({'beyond' if excess_tilt else 'within'} "
                 f"+-{rules.tilt_tolerance_db_per_octave:g} tolerated)")
    if absent.any():
        parts.append(f"{int(absent.sum())} empty band(s) not boosted ({centres[absent].min():.0f}-{centres[absent].max():.0f} Hz)")
    parts.append(f"measurement confidence {float(np.median(trust[used])):.2f}")
    return "; ".join(parts)


def eq_taps(sample_rate: int, move: TonalMove) -> np.ndarray | None:
    """The EQ's linear-phase FIR (float32, odd length), or ``None`` if the move is flat."""
    gains = np.asarray(move.gains_db)
    if not np.any(np.abs(gains) >= 0.05):
        return None
    return _eq_fir(sample_rate, move.centres_hz, move.gains_db).astype(np.float32)


class StreamingEQ:
    """:func:`apply_eq` block by block: ``process(block)`` then ``flush()``.

    Output is aligned with the input (the FIR's 50 ms latency is hidden) and the
    concatenated output equals :func:`apply_eq` within float rounding. A flat move
    passes blocks through untouched (``latency`` 0).
    """

    def __init__(self, sample_rate: int, move: TonalMove, channels: int):
        taps = eq_taps(sample_rate, move)
        self.channels = channels
        self._fir = StreamingFIR(taps, channels) if taps is not None else None
        self.latency = self._fir.latency if self._fir else 0

    def process(self, block: np.ndarray) -> np.ndarray:
        """Equalise one ``(channels, samples)`` block; returns the aligned output ready so far."""
        return self._fir.process(block) if self._fir else block

    def flush(self) -> np.ndarray:
        """The output still owed at the end of the stream."""
        return self._fir.flush() if self._fir else np.zeros((self.channels, 0), dtype=np.float32)


def apply_eq(samples: np.ndarray, sample_rate: int, move: TonalMove) -> np.ndarray:
    """Apply the band gains to a whole signal with the linear-phase FIR.

    Returns the input object itself when the move is flat; otherwise float32, same shape,
    aligned (the FIR's delay removed).
    """
    taps = eq_taps(sample_rate, move)
    if taps is None:
        return samples
    return filter_whole(samples, taps)


def _eq_fir(sample_rate: int, centres_hz: tuple[float, ...], gains_db: tuple[float, ...]) -> np.ndarray:
    """Linear-phase FIR through the band gains, interpolated on a log-frequency axis."""
    numtaps = _odd_taps(sample_rate * 0.1)  # 100 ms: resolves the 25 Hz band
    nyquist = sample_rate / 2
    grid = np.geomspace(10.0, nyquist, 512)
    curve_db = np.interp(np.log(grid), np.log(centres_hz), gains_db)  # flat beyond the ends
    freqs = np.concatenate(([0.0], grid / nyquist))
    gains = 10 ** (np.concatenate(([curve_db[0]], curve_db)) / 20)
    freqs[-1] = 1.0
    return design.firwin2(numtaps, freqs, gains, 6.0)


def _odd_taps(n: float) -> int:
    n = int(n)
    return n if n % 2 else n + 1
