"""Stage 4 of the pipeline: the mastering chain.

:func:`master` runs, in order:

1. tonal balance -- a gentle linear-phase EQ toward the preset's target spectrum,
   smoothed over about an octave and capped per band;
2. stereo -- low end made mono below a preset frequency, side level scaled to the
   preset's width;
3. glue -- a linked bus compressor whose threshold is set relative to the mix's own
   loudness, so it treats a quiet and a loud upload the same;
4. loudness -- gain to the target with a true-peak lookahead limiter, in a closed loop
   that measures the result *as it will be written* (after dither) and corrects until
   integrated loudness is within +-0.03 LU of the target and the true peak is at or
   below the ceiling.

Every stage is a function of the signal's shape, not its level: the same mix uploaded
6 dB quieter gives the same master.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import signal

from automix import dynamics, loudness
from automix.analyzer import ACTIVE_GATE_LUFS, THIRD_OCTAVE_CENTRES_HZ, AudioAnalysis, analyze
from automix.audio import Audio, quantize
from automix.errors import AutomixError
from automix.presets import MasterSettings

LOUDNESS_TOLERANCE_LU = 0.03  # the loop aims inside +-0.03 LU; the promise is +-0.1
#: The loop's own true-peak reading must sit this far under the ceiling: our meter can
#: under-read a tone near Nyquist by up to ~0.05 dB, and other meters must agree too.
PEAK_MARGIN_DB = 0.02
MAX_ITERATIONS = 24
#: The limiter starts with a smooth release; dense material that cannot get louder with
#: it gets faster ones (halved each time), down to this.
LIMITER_RELEASE_MS, LIMITER_HOLD_MS, FASTEST_RELEASE_MS = 60.0, 5.0, 5.0
#: Ways to handle a target that needs more limiting than ``max_limiting_db`` allows.
OVER_LIMIT_CHOICES = ("fail", "quieter", "force")

#: Streaming and broadcast loudness targets (integrated LUFS, true-peak ceiling dBTP),
#: as the platforms document them.
PLATFORMS = {
    "spotify": (-14.0, -1.0),
    "apple": (-16.0, -1.0),
    "youtube": (-14.0, -1.0),
    "tidal": (-14.0, -1.0),
    "amazon": (-14.0, -2.0),
    "deezer": (-15.0, -1.0),
    "soundcloud": (-14.0, -1.0),
    "ebu-r128": (-23.0, -1.0),
    "atsc-a85": (-24.0, -2.0),
    "podcast": (-16.0, -1.0),
}


@dataclass(frozen=True)
class TonalMove:
    """The tonal-balance EQ: gain per third-octave band centre."""

    centres_hz: tuple[float, ...]
    gains_db: tuple[float, ...]

    def to_dict(self) -> dict:
        return {f"{c:.0f}": round(g, 2) for c, g in zip(self.centres_hz, self.gains_db) if abs(g) >= 0.05}


@dataclass(frozen=True)
class MasterResult:
    """What the mastering chain did and what it measured."""

    status: str  # "ok", "quieter", "forced", or "target_missed"
    message: str
    input_lufs: float
    input_true_peak_dbtp: float
    output_lufs: float
    output_true_peak_dbtp: float
    output_lra_lu: float
    gain_db: float
    limiter_max_gain_reduction_db: float
    limiter_mean_gain_reduction_db: float
    limiter_release_ms: float
    glue_threshold_db: float
    glue_max_gain_reduction_db: float
    tonal_eq: TonalMove
    iterations: int
    warnings: tuple[str, ...]
    settings: MasterSettings

    def to_dict(self) -> dict:
        data = {key: value for key, value in asdict(self).items() if key not in ("tonal_eq", "settings")}
        data = {key: (round(value, 3) if isinstance(value, float) else value) for key, value in data.items()}
        data["tonal_eq_db"] = self.tonal_eq.to_dict()
        data["warnings"] = list(self.warnings)
        data["settings"] = asdict(self.settings)
        return data


def master(audio: Audio, settings: MasterSettings, *, bit_depth: str = "24", over_limit: str = "fail",
           analysis: AudioAnalysis | None = None) -> tuple[np.ndarray, MasterResult]:
    """Master ``audio`` to ``settings``.

    Parameters
    ----------
    audio : Audio
        The mix, at the sample rate the master will have.
    settings : MasterSettings
    bit_depth : {"16", "24", "32f"}
        The output's depth: the loop measures the dithered, quantised result.
    over_limit : {"fail", "quieter", "force"}
        When the target needs more than ``settings.max_limiting_db`` of limiting: report
        it without a usable master (``fail``), stop at that much limiting and accept a
        quieter master (``quieter``), or reach the target anyway (``force``).
    analysis : AudioAnalysis, optional
        The input's analysis, if already measured.

    Returns
    -------
    samples : numpy.ndarray
        The master, float32 ``(channels, samples)``, already on the output's grid.
    MasterResult
    """
    if over_limit not in OVER_LIMIT_CHOICES:
        raise AutomixError(f"--over-limit must be one of {', '.join(OVER_LIMIT_CHOICES)}")
    analysis = analysis or analyze(audio)
    if analysis.is_silent:
        raise AutomixError(f"{audio.name}: the audio is silent; there is nothing to master")
    if analysis.duration_s < 0.4:
        raise AutomixError(f"{audio.name}: {analysis.duration_s:.2f} s is too short to master (loudness needs at least 0.4 s)")
    warnings = input_warnings(analysis)
    sample_rate = audio.sample_rate

    tonal = tonal_balance(analysis, settings)
    samples = apply_eq(audio.samples, sample_rate, tonal)
    samples = shape_stereo(samples, sample_rate, settings.mono_below_hz, settings.stereo_width)
    # Active loudness (relative gate only), so a very quiet upload is glued the same way.
    bus_lufs = loudness.integrated_loudness(samples, sample_rate, absolute_gate_lufs=ACTIVE_GATE_LUFS)
    glue_threshold_db = bus_lufs + settings.glue_threshold_lu
    glued = dynamics.compress(
        samples, sample_rate, threshold_db=glue_threshold_db, ratio=settings.glue_ratio,
        attack_ms=settings.glue_attack_ms, release_ms=settings.glue_release_ms,
    )  # fmt: skip
    out, loop = normalize(glued.samples, sample_rate, settings, bit_depth, over_limit)
    measured = loop.measured
    result = MasterResult(
        status=loop.status,
        message=loop.message,
        input_lufs=analysis.integrated_lufs,
        input_true_peak_dbtp=analysis.true_peak_dbtp,
        output_lufs=measured.integrated_lufs,
        output_true_peak_dbtp=measured.true_peak_dbtp,
        output_lra_lu=measured.loudness_range_lu,
        gain_db=loop.gain_db,
        limiter_max_gain_reduction_db=loop.limiter.max_gain_reduction_db,
        limiter_mean_gain_reduction_db=loop.limiter.mean_gain_reduction_db,
        limiter_release_ms=loop.release_ms,
        glue_threshold_db=glue_threshold_db,
        glue_max_gain_reduction_db=glued.max_gain_reduction_db,
        tonal_eq=tonal,
        iterations=loop.iterations,
        warnings=warnings,
        settings=settings,
    )
    return out, result


def input_warnings(analysis: AudioAnalysis) -> tuple[str, ...]:
    """Problems in the input that mastering cannot undo, worth telling the user."""
    warnings = []
    if analysis.clipped_samples:
        warnings.append(f"the input is clipped ({analysis.clipped_samples} samples at full scale); mastering cannot undo that")
    if analysis.dc_offset > 0.01:
        warnings.append(f"the input has a DC offset of {analysis.dc_offset:.3f}")
    return tuple(warnings)


# --- 1. tonal balance ----------------------------------------------------------------


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


# --- 2. stereo -----------------------------------------------------------------------


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


# --- 4. loudness and true peak ------------------------------------------------------


@dataclass(frozen=True)
class _Loop:
    status: str
    message: str
    gain_db: float
    limiter: dynamics.LimiterResult
    iterations: int
    measured: loudness.LoudnessMeasurement
    release_ms: float


def normalize(samples: np.ndarray, sample_rate: int, settings: MasterSettings, bit_depth: str,
              over_limit: str) -> tuple[np.ndarray, _Loop]:
    """Gain plus true-peak limiting, corrected until loudness and ceiling both hold.

    Each pass measures the quantised output: its integrated loudness corrects the gain
    (a secant step, since limiting makes loudness grow slower than gain) and any true
    peak over the ceiling lowers the limiter's own threshold by the excess. When more
    gain no longer makes the output louder -- dense material pinned under the ceiling,
    the limiter never recovering between peaks -- the release is made faster instead
    (program-dependent release, as mastering limiters do).
    """
    target, ceiling_db = settings.target_lufs, settings.ceiling_dbtp
    gain_db = target - loudness.integrated_loudness(samples, sample_rate, absolute_gate_lufs=ACTIVE_GATE_LUFS)
    threshold_db = ceiling_db - 0.05  # head-room for the dither and the gain modulation
    previous: tuple[float, float] | None = None
    status, message = "ok", ""
    max_gain_db = math.inf
    release_ms, hold_ms = LIMITER_RELEASE_MS, LIMITER_HOLD_MS
    for iteration in range(1, MAX_ITERATIONS + 1):
        gain_db = min(gain_db, max_gain_db)
        limited = dynamics.limit(samples * np.float32(10 ** (gain_db / 20)), sample_rate, 10 ** (threshold_db / 20),
                                 release_ms=release_ms, hold_ms=hold_ms)
        out = quantize(limited.samples, bit_depth)
        measured = loudness.measure(out, sample_rate)
        out_lufs, out_peak = measured.integrated_lufs, measured.true_peak_dbtp
        loud_ok = abs(out_lufs - target) <= LOUDNESS_TOLERANCE_LU
        peak_ok = out_peak <= ceiling_db - PEAK_MARGIN_DB
        too_much = limited.max_gain_reduction_db > settings.max_limiting_db + 0.05
        if too_much and over_limit != "force":
            # Back the gain off by the excess limiting: peaks fall dB for dB.
            max_gain_db = gain_db - (limited.max_gain_reduction_db - settings.max_limiting_db)
            previous = None
            if over_limit == "fail":
                message = (f"reaching {target:g} LUFS needs {limited.max_gain_reduction_db:.1f} dB of limiting, more than "
                           f"the allowed {settings.max_limiting_db:g} dB (use --over-limit quieter or force, or raise --max-limiting-db)")
                return out, _Loop("target_missed", message, gain_db, limited, iteration, measured, release_ms)
            gain_db = max_gain_db
            continue
        if peak_ok and (loud_ok or (over_limit == "quieter" and gain_db >= max_gain_db - 0.01 and out_lufs < target)):
            if not loud_ok:
                status = "quieter"
                message = f"stopped at {settings.max_limiting_db:g} dB of limiting: {out_lufs:.1f} LUFS instead of {target:g}"
            elif limited.max_gain_reduction_db > settings.max_limiting_db + 0.05:
                status = "forced"
                message = f"target reached with {limited.max_gain_reduction_db:.1f} dB of limiting (allowed {settings.max_limiting_db:g})"
            return out, _Loop(status, message, gain_db, limited, iteration, measured, release_ms)
        if not peak_ok:
            threshold_db -= out_peak - (ceiling_db - PEAK_MARGIN_DB) + 0.01
        if not loud_ok:
            slope = 1.0
            if previous is not None and abs(gain_db - previous[0]) > 1e-6:
                slope = (out_lufs - previous[1]) / (gain_db - previous[0])
            if slope < 0.3 and out_lufs < target and release_ms > FASTEST_RELEASE_MS:
                release_ms = max(FASTEST_RELEASE_MS, release_ms / 2)
                hold_ms /= 2
                previous = None  # a new limiter curve: measure its slope afresh
                continue
            if slope < 0.02 and out_lufs < target and previous is not None:
                # Saturated even at the fastest release: only clipping the waveform could
                # make it louder. Say so, and keep the gain that first got this loud.
                gain_db = previous[0]
                limited = dynamics.limit(samples * np.float32(10 ** (gain_db / 20)), sample_rate, 10 ** (threshold_db / 20),
                                         release_ms=release_ms, hold_ms=hold_ms)
                out = quantize(limited.samples, bit_depth)
                measured = loudness.measure(out, sample_rate)
                message = (f"{target:g} LUFS is out of reach under {ceiling_db:g} dBTP: this audio saturates at "
                           f"{measured.integrated_lufs:.2f} LUFS (more gain would only clip it)")
                status = "target_missed" if over_limit == "fail" else "quieter"
                return out, _Loop(status, message, gain_db, limited, iteration, measured, release_ms)
            previous = (gain_db, out_lufs)
            gain_db += (target - out_lufs) / float(np.clip(slope, 0.1, 1.0))
    raise AutomixError(f"the loudness loop did not converge in {MAX_ITERATIONS} passes "
                       f"(last: {out_lufs:.2f} LUFS, {out_peak:.2f} dBTP); please report this input")


def resolve_targets(settings: MasterSettings, platform: str | None) -> MasterSettings:
    """Apply a platform shortcut's loudness and ceiling to ``settings``."""
    if not platform:
        return settings
    if platform not in PLATFORMS:
        raise AutomixError(f"unknown platform '{platform}' (choose from {', '.join(PLATFORMS)})")
    target, ceiling = PLATFORMS[platform]
    return replace(settings, target_lufs=target, ceiling_dbtp=ceiling)
