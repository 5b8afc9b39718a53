"""Mastering stage 3: glue -- gentle bus compression, only when the material needs it.

:func:`decide_glue` reads the mix's dynamics and chooses either nothing (the material is
already as dense as a finished master, or its wide dynamics are the point) or a gentle
linked compressor that takes 1-3 dB off the loud passages, its threshold calibrated on
the signal's own gain envelope. :func:`apply_glue` runs it on
a whole signal; :meth:`GlueDecision.compressor` gives the streaming form.

The compressor is built not to pump with a kick
(:class:`automix.dsp.dynamics.StreamingCompressor`):

* its detector is high-passed (``SIDECHAIN_HIGHPASS_HZ``), so the kick's and bass's low
  end, which carry most of a mix's peak energy but little of its loudness, do not drive
  the gain;
* RMS detection with a 10-30 ms attack lets transients through (the snare's crack keeps
  its edge: the gain moves after it);
* program-dependent timing: the reduction, after the preset's release, is averaged over
  ``GAIN_SMOOTHING_MS`` -- a single hit's brief reduction is averaged away, a loud
  passage's sustained one is applied in full -- so the gain does not swing with the beat;
* stereo-linked: one gain for all channels, the image never moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from automix.dsp import design, iir
from automix.dsp.dynamics import (
    CompressorResult,
    StreamingCompressor,
    compress_in_blocks,
    static_curve_db,
)
from automix.measure import loudness
from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ, AudioAnalysis
from automix.presets import MasterSettings

#: Peak-to-loudness ratio (true peak - integrated loudness) at or under which the
#: material is taken to be as dense as a finished master and left alone. Mastered pop
#: and rock since the 1990s sit at about 8-11 dB (the DR database's album means fell from
#: ~13 dB in 1985 to 8-9 dB in the 2000s: analysis of the Pleasurize Music DR database,
#: themindgap.nl/?p=114; DR, peak over the loudest 20% RMS, reads a dB or two under
#: PLR), while a balanced but unmastered mix peaks 14-20 dB over its loudness (automix's
#: own mixes of sample_stems/: 13.7 and 14.5 dB). Glue starts 2 dB above this (``MIN_DEPTH_DB / DEPTH_PER_PLR_DB``).
DENSE_PLR_DB = 12.0

#: Loudness range (EBU Tech 3342) above which the dynamics are the music's intent
#: (orchestral, film, some jazz: 15-25 LU) rather than a lack of control: no glue.
#: Mastered pop and rock measure mostly 3-10 LU.
WIDE_LRA_LU = 15.0

#: Gain reduction aimed at on the loud passages (the 95th percentile of the gain
#: envelope): half of the PLR above ``DENSE_PLR_DB`` -- the limiter after the glue takes
#: the rest -- from 1 dB (less is not audible as glue, so not worth the risk) to 3 dB
#: (bus-compression practice: glue is 1-3 dB).
DEPTH_PER_PLR_DB = 0.5
MIN_DEPTH_DB = 1.0
MAX_DEPTH_DB = 3.0

#: Gentle ratio: glue, not control. A preset may ask for less, never more.
MAX_RATIO = 2.0

#: Detector (RMS) attack kept between these: at 10 ms a snare's first 5-10 ms pass
#: before the gain moves; past 30 ms the detector no longer sees a loud passage begin.
MIN_ATTACK_MS = 10.0
MAX_ATTACK_MS = 30.0

#: Sidechain high-pass: 2nd-order Butterworth. A kick's fundamental (45-80 Hz) is down
#: 11-18 dB in the detector; pads, vocals and guitars (above ~200 Hz) are not.
SIDECHAIN_HIGHPASS_HZ = 150.0

#: Averaging of the gain reduction (one pole, both directions), in series with the
#: preset's release. At 500 ms a hit the detector sees for ~50 ms moves the gain by about
#: a tenth of its own reduction, while a passage that stays louder for a bar (2 s at
#: 120 bpm) gets the full reduction within about a second. Measured (tests/test_glue.py):
#: a pad's added level swing under a kick and snare at 2 hits/s stays under 0.6 dB at
#: 3 dB of glue (0.35-0.55 dB; without the averaging 1.6-2.4 dB, and 5 dB without the
#: sidechain high-pass too).
GAIN_SMOOTHING_MS = 500.0

#: Longest stretch of the signal the threshold calibration runs over whole; longer
#: signals are sampled in ``CALIBRATION_EXCERPTS`` excerpts of ``CALIBRATION_EXCERPT_S``
#: (the first ``CALIBRATION_SETTLE_S`` of each lets the filters settle and is not
#: counted), so the cost stops growing with length.
CALIBRATION_WHOLE_S = 120.0
CALIBRATION_EXCERPTS = 30
CALIBRATION_EXCERPT_S = 4.0
CALIBRATION_SETTLE_S = 1.0
#: The glue's control path (attack, curve, release, smoothing) runs once per this many
#: samples, on the detector's mean power over them (see ``control_decimation`` of
#: :class:`automix.dsp.dynamics.StreamingCompressor`): its gain is smoothed over 500 ms,
#: so 0.7 ms steps at 44.1 kHz are far finer than it moves. The calibration runs the
#: same path at the same rate.
CONTROL_DECIMATION = 32


@dataclass(frozen=True)
class GlueDecision:
    """What the glue will do and why.

    Attributes
    ----------
    act : bool
        False: the signal passes untouched.
    threshold_db : float
        On the detector's scale: dB of the mean square over channels of the high-passed
        sidechain, at the level of the signal as analysed (see :meth:`at_gain`).
    ratio, attack_ms, release_ms, gain_smoothing_ms, sidechain_highpass_hz : float
    depth_db : float
        Gain reduction aimed at on the loud passages (95th percentile of the gain
        envelope over the active part).
    reason : str
        One sentence for the report.
    initial_reduction_db : float
        The reduction the gain smoothing starts from: what the programme's first second
        settles to (measured in the calibration), so the start is not left uncompressed.
    """

    act: bool
    threshold_db: float
    ratio: float
    attack_ms: float
    release_ms: float
    gain_smoothing_ms: float
    sidechain_highpass_hz: float
    depth_db: float
    reason: str
    initial_reduction_db: float = 0.0

    def at_gain(self, gain_db: float) -> GlueDecision:
        """The same decision for the signal after a gain change of ``gain_db`` (a decision
        not to act is returned as it is)."""
        return replace(self, threshold_db=self.threshold_db + gain_db) if self.act else self

    def compressor(self, sample_rate: int, channels: int) -> StreamingCompressor | None:
        """The streaming compressor (``process(block)``/``flush()``, no latency), or None."""
        if not self.act:
            return None
        return StreamingCompressor(
            sample_rate, channels, threshold_db=self.threshold_db, ratio=self.ratio, attack_ms=self.attack_ms,
            release_ms=self.release_ms, sidechain_highpass_hz=self.sidechain_highpass_hz,
            gain_smoothing_ms=self.gain_smoothing_ms, initial_gain_reduction_db=self.initial_reduction_db,
            control_decimation=CONTROL_DECIMATION,
        )  # fmt: skip


def decide_glue(analysis: AudioAnalysis, settings: MasterSettings, *, samples: np.ndarray | None = None,
                detector: GlueDetectorMeter | None = None) -> GlueDecision:
    """Choose the glue from the material's dynamics.

    Parameters
    ----------
    analysis : AudioAnalysis
        Of the signal the glue will process (at its level): PLR and loudness range decide
        whether and how much; loud RMS and band spectrum place the threshold when
        ``samples`` is not given.
    settings : MasterSettings
        ``glue_ratio`` (1 = never glue; capped at ``MAX_RATIO``), ``glue_attack_ms``
        (kept within 10-30 ms) and ``glue_release_ms``.
    samples : numpy.ndarray, optional
        The signal the glue will process. If given (recommended), the threshold is
        calibrated so that the compressor's own gain envelope on it takes ``depth_db``
        off the loud passages (:func:`calibrate_threshold_db`; cost bounded, whatever the
        length). Without it, the threshold is estimated from the analysis alone
        (:func:`estimated_loud_detector_db` less the depth over the slope): within about
        1.5 dB of the calibrated threshold on the test material, so within ~0.7 dB of
        the aimed reduction at 2:1.
    detector : GlueDetectorMeter, optional
        The same calibration from a meter fed the signal block by block (the streaming
        chain's analysis pass), when the samples are not held in memory.

    Returns
    -------
    GlueDecision
        ``act`` is False for a preset without glue (``glue_ratio`` 1), material whose PLR
        is under ``DENSE_PLR_DB`` + 2 dB (already dense), a loudness range over
        ``WIDE_LRA_LU`` (dynamics as intent), or silence.
    """
    ratio = min(settings.glue_ratio, MAX_RATIO)
    attack_ms = float(np.clip(settings.glue_attack_ms, MIN_ATTACK_MS, MAX_ATTACK_MS))
    release_ms = settings.glue_release_ms
    plr, lra = analysis.plr_db, analysis.loudness_range_lu
    depth = float(np.clip(DEPTH_PER_PLR_DB * (plr - DENSE_PLR_DB), 0.0, MAX_DEPTH_DB))

    def decision(act: bool, threshold_db: float, reason: str, initial_db: float = 0.0) -> GlueDecision:
        return GlueDecision(act, threshold_db, ratio if act else 1.0, attack_ms, release_ms, GAIN_SMOOTHING_MS,
                            SIDECHAIN_HIGHPASS_HZ, depth if act else 0.0, reason, initial_db)  # fmt: skip

    if settings.glue_ratio <= 1.0:
        return decision(False, 0.0, "no glue: the preset turns bus compression off")
    if analysis.is_silent or not math.isfinite(analysis.loud_rms_dbfs):
        return decision(False, 0.0, "no glue: nothing to compress")
    if getattr(analysis, "too_short", False) or analysis.duration_s < 0.4 or plr <= 0.0:
        return decision(False, 0.0, "no glue: too short to measure its dynamics (under one 400 ms loudness block)")
    if lra > WIDE_LRA_LU:
        return decision(False, 0.0, f"no glue: loudness range {lra:.1f} LU is over {WIDE_LRA_LU:.0f} LU, the dynamics are the music's")
    if depth < MIN_DEPTH_DB:
        dense_limit = DENSE_PLR_DB + MIN_DEPTH_DB / DEPTH_PER_PLR_DB
        return decision(False, 0.0, f"no glue: already dense (peak-to-loudness {plr:.1f} dB, glue starts over {dense_limit:.0f} dB)")
    slope = 1.0 - 1.0 / ratio
    initial = 0.0
    groups = None
    if detector is not None and detector.frames >= sample_rate_floor(analysis.sample_rate):
        groups = detector.groups()
    elif samples is not None and samples.shape[1] >= sample_rate_floor(analysis.sample_rate):
        groups = _excerpt_group_powers(samples, analysis.sample_rate)
    if groups is not None:
        threshold, initial = _calibrate_groups(groups, analysis.sample_rate, depth, ratio=ratio, attack_ms=attack_ms,
                                               release_ms=release_ms)  # fmt: skip
        how = "calibrated on its gain envelope"
    else:
        threshold = estimated_loud_detector_db(analysis) - depth / slope
        how = "estimated from the analysis"
    if not math.isfinite(threshold):
        return decision(False, 0.0, "no glue: nothing above the sidechain high-pass to compress")
    return decision(True, threshold,
                    f"glue {ratio:g}:1, about {depth:.1f} dB off the loud passages ({how}): peak-to-loudness "
                    f"{plr:.1f} dB is over {DENSE_PLR_DB + MIN_DEPTH_DB / DEPTH_PER_PLR_DB:.0f} dB, a dynamic mix",
                    initial)  # fmt: skip


def sample_rate_floor(sample_rate: int) -> int:
    """Shortest signal the calibration runs on (0.4 s, the loudness block); shorter
    ones use the estimate."""
    return max(int(0.4 * sample_rate), 4 * CONTROL_DECIMATION)


def calibrate_threshold_db(samples: np.ndarray, sample_rate: int, depth_db: float, *, ratio: float, attack_ms: float,
                           release_ms: float, knee_db: float = 6.0) -> float:
    """The threshold of :func:`calibrate` alone."""
    return calibrate(samples, sample_rate, depth_db, ratio=ratio, attack_ms=attack_ms, release_ms=release_ms,
                     knee_db=knee_db)[0]  # fmt: skip


def calibrate(samples: np.ndarray, sample_rate: int, depth_db: float, *, ratio: float, attack_ms: float,
              release_ms: float, knee_db: float = 6.0) -> tuple[float, float]:
    """The threshold at which the glue's gain envelope takes ``depth_db`` off the loud passages.

    Runs the compressor's control path (sidechain high-pass, RMS attack, static curve,
    release, gain smoothing -- the same stages as
    :class:`automix.dsp.dynamics.StreamingCompressor`) on the signal, or on excerpts of
    a long one, and bisects the threshold until the 95th percentile of the gain
    reduction over the active part (detector within 40 dB of its loudest) equals
    ``depth_db`` within 0.05 dB. The detector runs once (:func:`_detector_db`); each
    bisection step runs the rest at the group rate only.

    Returns
    -------
    threshold_db : float
        ``-inf`` for a signal with nothing above the sidechain high-pass.
    initial_reduction_db : float
        The median unsmoothed reduction over the signal's first ``2 * GAIN_SMOOTHING_MS``
        at that threshold: where the gain smoothing should start.
    """
    return _calibrate_groups(_excerpt_group_powers(samples, sample_rate), sample_rate, depth_db, ratio=ratio,
                             attack_ms=attack_ms, release_ms=release_ms, knee_db=knee_db)  # fmt: skip


def _calibrate_groups(groups: list[tuple[np.ndarray, int]], sample_rate: int, depth_db: float, *, ratio: float,
                      attack_ms: float, release_ms: float, knee_db: float = 6.0) -> tuple[float, float]:
    """:func:`calibrate` on the detector's group powers (``(powers, settling groups)``
    per excerpt)."""
    detector_db, counted = _detector_db(groups, sample_rate, attack_ms)
    if detector_db.size == 0 or detector_db.max() <= -200.0:
        return -math.inf, 0.0
    rate = sample_rate / CONTROL_DECIMATION
    first = max(1, int(2 * GAIN_SMOOTHING_MS / 1000.0 * rate))
    # The signal's first second is the smoothing settling from its start value: not
    # counted (unless that is all there is).
    counted = counted.copy()
    if counted.sum() > 2 * first:
        counted[:first] = False
    active = counted & (detector_db >= detector_db.max() - 40.0)
    low, high = float(detector_db.max()) - 60.0, float(detector_db.max())
    for _ in range(40):
        middle = 0.5 * (low + high)
        held = _held_reduction(detector_db, middle, ratio, knee_db, release_ms, rate)
        initial = float(np.median(held[:first]))  # the median: a first hit must not set it
        smoothed = _one_pole(held, GAIN_SMOOTHING_MS, rate, start=initial)  # as the compressor starts
        reduction = float(np.percentile(smoothed[active], 95)) if active.any() else 0.0
        if abs(reduction - depth_db) < 0.05:
            break
        if reduction > depth_db:
            low = middle  # too much: raise the threshold
        else:
            high = middle
    return middle, initial


def _excerpts(frames: int, sample_rate: int) -> list[tuple[int, int, int]]:
    """(start, stop, settle) of the stretches the calibration runs over."""
    if frames <= CALIBRATION_WHOLE_S * sample_rate:
        return [(0, frames, 0)]
    length, settle = int(CALIBRATION_EXCERPT_S * sample_rate), int(CALIBRATION_SETTLE_S * sample_rate)
    starts = np.linspace(0, frames - length, CALIBRATION_EXCERPTS).astype(np.int64)
    return [(int(s), int(s) + length, settle) for s in starts]


def _excerpt_group_powers(samples: np.ndarray, sample_rate: int) -> list[tuple[np.ndarray, int]]:
    """The glue detector's power per group of ``CONTROL_DECIMATION`` samples, per excerpt.

    High-passed sidechain (float32), power averaged over channels and over each group,
    as its compressor computes it. Each excerpt is read in 2^16-sample blocks with the
    filter state carried (never a copy of the whole signal). Returns ``(powers,
    settling groups)`` per excerpt.
    """
    parts = []
    for start, stop, settle in _excerpts(samples.shape[1], sample_rate):
        meter = GlueDetectorMeter(sample_rate, samples.shape[0])
        for block_start in range(start, stop, 1 << 16):
            meter.add(samples[:, block_start : min(stop, block_start + (1 << 16))])
        parts.append((meter.group_power(), settle // CONTROL_DECIMATION))
    return parts


def _detector_db(groups: list[tuple[np.ndarray, int]], sample_rate: int, attack_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """The attack-smoothed detector (dB) at the group rate, excerpts joined, and which
    values count (not an excerpt's settling stretch)."""
    rate = sample_rate / CONTROL_DECIMATION
    parts, counted = [], []
    for group_power, settle in groups:
        if group_power.size == 0:
            continue
        smoothed = _one_pole(group_power.astype(np.float64), attack_ms, rate)
        parts.append(10.0 * np.log10(np.maximum(smoothed, 1e-20)))
        mask = np.ones(group_power.size, dtype=bool)
        mask[:settle] = False
        counted.append(mask)
    if not parts:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(parts), np.concatenate(counted)


class GlueDetectorMeter:
    """Collects the glue detector's group powers from a stream, for :func:`decide_glue`.

    ``add(block)`` for every ``(channels, samples)`` block of the signal the glue will
    process; cost one float32 2nd-order high-pass over the signal. Memory is 4 bytes per
    ``CONTROL_DECIMATION`` samples, or, given ``total_frames`` of a signal longer than
    ``CALIBRATION_WHOLE_S``, only the excerpts the calibration reads
    (:func:`_excerpts`: each its own meter from its start, as
    :func:`_excerpt_group_powers` reads them), whatever the length.
    ``groups()`` gives what :func:`_calibrate_groups` takes.
    """

    def __init__(self, sample_rate: int, channels: int, total_frames: int | None = None):
        self._sos = design.butter_sos(2, SIDECHAIN_HIGHPASS_HZ, "highpass", sample_rate).astype(np.float32)
        self._zi = np.zeros((self._sos.shape[0], channels, 2), dtype=np.float32)
        self._partial = np.zeros(0, dtype=np.float32)
        self._groups: list[np.ndarray] = []
        self.frames = 0
        self._excerpts = None  # (start, stop, settle, meter) of a long signal's excerpts
        if total_frames is not None and total_frames > CALIBRATION_WHOLE_S * sample_rate:
            self._excerpts = [(start, stop, settle, GlueDetectorMeter(sample_rate, channels))
                              for start, stop, settle in _excerpts(total_frames, sample_rate)]

    def groups(self) -> list[tuple[np.ndarray, int]]:
        """``(group powers, settling groups)`` per excerpt (one: the whole signal)."""
        if self._excerpts is None:
            return [(self.group_power(), 0)]
        return [(meter.group_power(), settle // CONTROL_DECIMATION) for _, _, settle, meter in self._excerpts]

    def add(self, block: np.ndarray) -> None:
        """Feed the next block (any length)."""
        block = np.asarray(block, dtype=np.float32)
        if block.shape[1] == 0:
            return
        position = self.frames
        self.frames += block.shape[1]
        if self._excerpts is not None:
            for start, stop, _, meter in self._excerpts:
                first, last = max(start, position), min(stop, self.frames)
                if first < last:
                    meter.add(block[:, first - position : last - position])
            return
        filtered, self._zi = iir.sosfilt(self._sos, block, self._zi)
        power = np.mean(np.square(filtered), axis=0, dtype=np.float32)
        if self._partial.size:
            power = np.concatenate([self._partial, power])
        whole = power.size // CONTROL_DECIMATION
        self._partial = power[whole * CONTROL_DECIMATION :].copy()
        if whole:
            self._groups.append(power[: whole * CONTROL_DECIMATION].reshape(whole, -1).mean(axis=1, dtype=np.float64).astype(np.float32))

    def group_power(self) -> np.ndarray:
        """Mean detector power of every complete group so far (float32)."""
        return np.concatenate(self._groups) if self._groups else np.zeros(0, dtype=np.float32)


def _held_reduction(detector_db: np.ndarray, threshold_db: float, ratio: float, knee_db: float, release_ms: float,
                    rate: float) -> np.ndarray:
    """Static curve and release of the control path (before the gain smoothing)."""
    reduction = static_curve_db(detector_db - threshold_db, ratio, knee_db)
    return np.maximum(reduction, _one_pole(reduction, release_ms, rate))


def _one_pole(x: np.ndarray, time_ms: float, rate: float, start: float | None = None) -> np.ndarray:
    """One-pole low-pass started at ``start`` (default: the first value), as the compressor's."""
    coefficient = math.exp(-1000.0 / (time_ms * rate))
    initial = x[0] if start is None else start
    return iir.lfilter([1.0 - coefficient], [1.0, -coefficient], x, [coefficient * initial])[0]


def estimated_loud_detector_db(analysis: AudioAnalysis) -> float:
    """The glue detector's level over the loudest 3 s, estimated from the analysis alone.

    The gain smoothing makes the glue respond to passages, not hits, so the loudest
    short-term loudness (3 s, BS.1770) is the right "loud" level. It is moved onto the
    detector's scale: + 0.691 dB (the BS.1770 offset), - 10 log10(channels) (a mean over
    channels, not a sum), - the K-weighting's and + the sidechain high-pass's effect on
    this mix's power (both from its third-octave spectrum).
    """
    loud_lufs = analysis.max_short_term_lufs
    if not math.isfinite(loud_lufs) or loud_lufs <= loudness.SILENCE_DB:  # under 3 s: no short-term value
        loud_lufs = analysis.integrated_lufs
    levels = np.asarray(analysis.band_levels_db, dtype=np.float64)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: levels.size])
    power = 10 ** (levels / 10)
    response = loudness.k_response(centres, analysis.sample_rate)
    k_gain_db = 10 * np.log10(max(float((power * np.abs(response) ** 2).sum()), 1e-30) / max(float(power.sum()), 1e-30))
    return (loud_lufs + 0.691 - 10 * math.log10(max(analysis.channels, 1)) - k_gain_db
            + sidechain_loss_db(analysis, SIDECHAIN_HIGHPASS_HZ))  # fmt: skip


def sidechain_loss_db(analysis: AudioAnalysis, highpass_hz: float) -> float:
    """How much lower the high-passed detector reads than the full band, for this mix.

    From the mix's own third-octave spectrum and the 2nd-order Butterworth's power
    response ``f^4 / (f^4 + fc^4)`` at the band centres. dB, <= 0.
    """
    levels = np.asarray(analysis.band_levels_db, dtype=np.float64)
    if highpass_hz <= 0 or levels.size == 0:
        return 0.0
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: levels.size])
    power = 10 ** (levels / 10)
    response = centres**4 / (centres**4 + highpass_hz**4)
    total = power.sum()
    return float(10 * np.log10(max((power * response).sum(), 1e-30) / total)) if total > 0 else 0.0


def apply_glue(samples: np.ndarray, sample_rate: int, decision: GlueDecision, *, block_size: int = 1 << 16) -> CompressorResult:
    """Run the glue over a whole signal (block by block inside; one float32 output array).

    Returns the input object untouched (0 dB reduction) when ``decision.act`` is False.
    """
    compressor = decision.compressor(sample_rate, samples.shape[0])
    if compressor is None:
        return CompressorResult(samples, 0.0, 0.0)
    return compress_in_blocks(samples, compressor, block_size)
