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

from dataclasses import asdict, dataclass

import numpy as np

from automix.dsp import dynamics
from automix.errors import AutomixError
from automix.io.audio import Audio
from automix.master.loop import OVER_LIMIT_CHOICES, normalize
from automix.master.stereo import shape_stereo
from automix.master.tonal import TonalMove, apply_eq, tonal_balance
from automix.measure import loudness
from automix.measure.analyzer import ACTIVE_GATE_LUFS, AudioAnalysis, analyze
from automix.presets import MasterSettings


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
