"""Stage 4 of the pipeline: the mastering chain, block by block.

:func:`master_stream` runs, in order:

1. tonal balance -- a linear-phase EQ toward the preset's measured target spectrum,
   only where the mix is clearly off it (:mod:`automix.master.tonal`);
2. stereo -- low end made mono below a preset frequency, side level scaled to the
   preset's width (:mod:`automix.master.stereo`);
3. glue -- a linked bus compressor, only on material dynamic enough to need it
   (:mod:`automix.master.glue`);
4. loudness -- gain and a true-peak limiter in a closed loop that measures the result
   *as it will be written* (after dither) until integrated loudness is within +-0.03 LU
   of the target and the true peak is at or below the ceiling
   (:mod:`automix.master.loop`, :mod:`automix.master.limiter`).

Every stage is a streaming processor (``process(block)``, ``flush()``, output aligned
with the input) with its state carried across blocks, so the chain's memory depends on
the block size, not on the length of the audio: a one-hour DJ set masters in the same
memory as a single. The input is read a few times (analysis, the loop's model, one or
two renders) rather than held.

Every stage is a function of the signal's shape, not its level: the same mix uploaded
6 dB quieter gives the same master.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from automix.errors import AutomixError
from automix.io.audio import Audio, atomic_output
from automix.io.dither import Dither
from automix.io.helper import beside, helper
from automix.io.metadata import LoudnessTags, ProvenanceLike, write_metadata
from automix.io.overlap import ahead
from automix.io.stream import (
    BLOCK_FRAMES,
    BlockSource,
    BlockWriter,
    SignalSpill,
    array_source,
)
from automix.io.validate import validate_audio
from automix.master import glue as glue_stage
from automix.master.limiter import (
    EnvelopeSpill,
    LimiterStats,
    SplitBandFeatures,
    SplitBandLimiter,
    TruePeakLimiter,
    wideband_envelope_serves_split_band,
)
from automix.master.loop import (
    SPLIT_BAND_FROM_DB,
    FeatureCollector,
    LoopFeatures,
    LoopResult,
    choose,
    run_loop,
)
from automix.master.platforms import OVER_LIMIT_CHOICES
from automix.master.reference import (
    MidSideSpectrumMeter,
    Reference,
    SideEQ,
    reference_glue,
    reference_side_move,
    reference_tonal_move,
    reference_width,
    side_to_mid_after,
)  # fmt: skip
from automix.master.stereo import StereoShaper
from automix.master.tonal import BandSpreadMeter, StreamingEQ, TonalMove, tonal_balance
from automix.measure import loudness
from automix.measure.analyzer import Analyzer, AudioAnalysis
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
    output_precise_true_peak_dbtp: float  # on a near-ideal (8x, long filter) reconstruction
    output_lra_lu: float
    gain_db: float
    limiter_threshold_db: float
    limiter_programme_gain_reduction_db: float  # exceeded in 10% of the loud 100 ms granules
    limiter_max_gain_reduction_db: float
    limiter_deepest_at_s: float
    limiter_mean_gain_reduction_db: float
    limiter_release_ms: float
    glue: glue_stage.GlueDecision
    tonal_eq: TonalMove
    stereo_width: float
    mono_below_hz: float
    amount: float
    renders: int
    warnings: tuple[str, ...]
    settings: MasterSettings
    codec_true_peaks_dbtp: dict = field(default_factory=dict)  # decoded, of the final master
    codec_attenuation_db: float = 0.0  # how much lower the limiter sat for --codec-safe
    #: Lossy output: the written file as decoded ({"codec", "kbps", "integrated_lufs",
    #: "true_peak_dbtp", "loudness_offset_lu"}); empty for PCM.
    decoded: dict = field(default_factory=dict)
    #: The limiter's deepest gain reduction per 100 ms, for the report's plot (not in JSON).
    limiter_timeline_db: np.ndarray | None = field(default=None, repr=False, compare=False)
    limiter_design: str = "wideband"  # or "split-band": bass peaks limited in the bass alone
    side_eq: TonalMove | None = None  # with a reference: the side's own EQ
    width_reason: str = ""
    reference: dict | None = None  # what the reference measured, when one was matched
    #: The meter's reading of the written master (for the file's loudness metadata).
    output_measurement: loudness.LoudnessMeasurement | None = field(default=None, repr=False, compare=False)
    #: The written master's whole analysis, taken as it was written (``analyse_output``).
    output_analysis: AudioAnalysis | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        data = {key: value for key, value in asdict(self).items()
                if key not in ("tonal_eq", "settings", "glue", "limiter_timeline_db", "output_measurement", "output_analysis",
                               "side_eq")}
        data = {key: (round(value, 3) if isinstance(value, float) else value) for key, value in data.items()}
        data["tonal_eq_db"] = self.tonal_eq.to_dict()
        data["tonal_eq_reason"] = self.tonal_eq.reason
        if self.side_eq is not None:
            data["side_eq_db"] = self.side_eq.to_dict()
        data["glue"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self.glue).items()}
        data["warnings"] = list(self.warnings)
        data["codec_true_peaks_dbtp"] = {k: round(v, 3) for k, v in self.codec_true_peaks_dbtp.items()}
        data["settings"] = asdict(self.settings)
        return data


@dataclass(frozen=True)
class ChainPlan:
    """What the chain will do before the limiter, decided from the input's analysis."""

    tonal: TonalMove
    mono_below_hz: float
    stereo_width: float
    glue: glue_stage.GlueDecision
    amount: float = 1.0
    side_eq: TonalMove | None = None  # with a reference: the side's own shape toward the reference's
    width_reason: str = ""


def _scaled(move: TonalMove, amount: float) -> TonalMove:
    return replace(move, gains_db=tuple(g * amount for g in move.gains_db),
                   reason=move.reason if amount == 1.0 else f"{move.reason} (at amount {amount:g})")


def plan_chain(measured: InputMeasurements, settings: MasterSettings, amount: float = 1.0,
               reference: Reference | None = None) -> ChainPlan:
    """Decide the tonal EQ, stereo shaping and glue from the analysis alone.

    ``amount`` (0..1) scales every corrective move between none (0: the loudness stage
    alone, gain and limiter) and the full correction (1): each tonal band's gain, the
    width's distance from 1, the mono-bass frequency, and the glue's ratio above 1:1.
    With a ``reference``, its measured sound replaces the preset's tonal target (mid and
    side shapes), width and density; the preset still sets the rest.
    """
    if not 0.0 <= amount <= 1.0:
        raise AutomixError(f"--amount must be between 0 and 1, not {amount:g}")
    analysis = measured.analysis
    side_eq, width_setting, width_reason = None, settings.stereo_width, ""
    mono = settings.mono_below_hz * amount
    if reference is None:
        tonal = _scaled(tonal_balance(analysis, settings, uncertainty_db=measured.band_uncertainty_db), amount)
        glue = glue_stage.decide_glue(analysis, settings, detector=measured.glue_detector)
    else:
        mid_db, side_db = measured.mid_side.spectra_db()
        full = reference_tonal_move(analysis, reference, settings, mix_mid_db=mid_db, uncertainty_db=measured.band_uncertainty_db)
        tonal = _scaled(full, amount)
        if analysis.channels == 2:
            side_eq = _scaled(reference_side_move(analysis, reference, full, mid_db, side_db, settings), amount)
            width_setting, width_reason = reference_width(
                analysis.stereo_width, reference, mono_below_hz=mono,
                side_to_mid=side_to_mid_after(mid_db, side_db, mid_gains_db=tonal.gains_db, side_gains_db=side_eq.gains_db,
                                              mono_below_hz=mono))
        glue = reference_glue(analysis, settings, reference, detector=measured.glue_detector)
    # The glue is decided on the input's analysis and follows the EQ's change of level.
    glue = glue.at_gain(tonal_loudness_change_db(analysis, tonal))
    if glue.act and amount < 1.0:
        glue = replace(glue, ratio=1.0 + (glue.ratio - 1.0) * amount, act=amount > 0,
                       reason=f"{glue.reason} (at amount {amount:g})" if amount > 0 else "no glue: --amount 0")
    width = 1.0 + (width_setting - 1.0) * amount
    return ChainPlan(tonal, mono, width, glue, amount, side_eq, width_reason)


def tonal_loudness_change_db(analysis: AudioAnalysis, tonal: TonalMove) -> float:
    """How much the tonal EQ changes the mix's K-weighted loudness (from the band powers).

    Lets the glue's threshold follow the equalised mix without measuring it again.
    """
    levels = np.asarray(analysis.band_levels_db)
    gains = np.asarray(tonal.gains_db[: levels.size])
    centres = np.asarray(tonal.centres_hz[: levels.size])
    weighting = np.abs(_k_response(centres, analysis.sample_rate)) ** 2
    before = np.sum(10 ** (levels / 10) * weighting)
    after = np.sum(10 ** ((levels + gains) / 10) * weighting)
    return float(10 * np.log10(after / before)) if before > 0 else 0.0


def _k_response(frequencies_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    return loudness.k_response(frequencies_hz, sample_rate)


class Processor(Protocol):
    """A streaming stage: output aligned with the input, as long as it in the end."""

    def process(self, block: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...


class Series:
    """Stages in series, each stage's tail pushed through the later ones at the end."""

    def __init__(self, stages: list[Processor]) -> None:
        self.stages = stages

    def process(self, block: np.ndarray) -> np.ndarray:
        for stage in self.stages:
            block = stage.process(block)
        return block

    def flush(self) -> np.ndarray:
        tails = []
        for index, stage in enumerate(self.stages):
            tail = stage.flush()
            for later in self.stages[index + 1 :]:
                tail = later.process(tail)
            tails.append(tail)
        return np.concatenate(tails, axis=1)


def pre_limiter(plan: ChainPlan, sample_rate: int, channels: int) -> Series:
    """EQ, stereo and glue as one streaming processor."""
    stages: list[Processor] = [StreamingEQ(sample_rate, plan.tonal, channels)]
    if plan.side_eq is not None and channels == 2:
        stages.append(SideEQ(sample_rate, plan.side_eq, channels))
    stages.append(StereoShaper(sample_rate, plan.mono_below_hz, plan.stereo_width, channels))
    compressor = plan.glue.compressor(sample_rate, channels)
    if compressor is not None:
        stages.append(compressor)
    return Series(stages)


class Sink(Protocol):
    """Where a render's output goes: started afresh for each render."""

    def start(self) -> None: ...

    def write(self, block: np.ndarray) -> None: ...

    def finish(self) -> None: ...

    def read(self) -> np.ndarray:
        """The last render, whole (only for ``--codec-safe``, which encodes it)."""
        ...


class ArraySink:
    """Keep the output in memory (the library's :func:`master` and the mix bus)."""

    def __init__(self, channels: int, frames: int) -> None:
        self.samples = np.zeros((channels, frames), dtype=np.float32)
        self._at = 0

    def start(self) -> None:
        self._at = 0

    def write(self, block: np.ndarray) -> None:
        self.samples[:, self._at : self._at + block.shape[1]] = block
        self._at += block.shape[1]

    def finish(self) -> None:
        if self._at != self.samples.shape[1]:
            raise AutomixError(f"internal error: the chain wrote {self._at} of {self.samples.shape[1]} frames")

    def read(self) -> np.ndarray:
        return self.samples


class FileSink:
    """Write each render to a temporary file (see :func:`master_to_file`)."""

    def __init__(self, temp_name: str, destination: Path, sample_rate: int, channels: int, bit_depth: str,
                 format_name: str | None = None) -> None:
        self._args = (temp_name, destination, sample_rate, channels, bit_depth, format_name)
        self._writer: BlockWriter | None = None

    def start(self) -> None:
        self._writer = BlockWriter(*self._args)  # truncates the previous render

    def write(self, block: np.ndarray) -> None:
        self._writer.write(block)

    def finish(self) -> None:
        self._writer.close()

    def read(self) -> np.ndarray:
        import soundfile as sf

        data, _ = sf.read(self._args[0], dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T)


class NullSink:
    """Measure only (``--dry-run``)."""

    def start(self) -> None: ...

    def write(self, block: np.ndarray) -> None: ...

    def finish(self) -> None: ...

    def read(self) -> np.ndarray:
        raise AutomixError("--codec-safe needs the master written: it cannot be checked in a dry run")


class _TargetMissed(Exception):
    """Abandon the temporary output: nothing is written when the target was missed."""


def master_to_file(source: BlockSource, output_path: Path, settings: MasterSettings, *, bit_depth: str = "24",
                   format_name: str | None = None, over_limit: str = "fail", codec_safe: str | None = None,
                   dry_run: bool = False, amount: float = 1.0,
                   provenance: ProvenanceLike | None = None,
                   reference: Reference | None = None, measured: InputMeasurements | None = None,
                   missed: list | None = None) -> MasterResult:
    """Master ``source`` straight into ``output_path``, block by block, atomically.

    Each render writes a temporary file beside the output; the last one gets its
    loudness metadata (BWF ``bext`` or ReplayGain tags) and ``provenance`` and is renamed
    into place (or removed, if the target was missed, or with ``dry_run``). Memory
    depends on the block size, not on the length of the audio. The caller checks that
    the output is no input (:func:`automix.io.paths.check_output_paths`). ``measured``:
    as :func:`master_stream`'s. ``provenance`` may be a callable, called when the tags
    are written (the input's digest can then be taken on a thread beside the passes).
    ``missed``: a list that receives the last render's samples when the target was
    missed (a caller that reports on it; a lossy output's render is not kept otherwise).
    """
    from automix.io import lossy

    if not dry_run and lossy.is_lossy(output_path, format_name):
        return _master_to_lossy(source, Path(output_path), settings, lossy.lossy_target(output_path, format_name),
                                over_limit=over_limit, codec_safe=codec_safe, amount=amount, provenance=provenance,
                                reference=reference, measured=measured, missed=missed)
    if dry_run:
        return master_stream(source, settings, NullSink(), bit_depth=bit_depth, over_limit=over_limit, amount=amount,
                             reference=reference, measured=measured)
    result = None
    try:
        with atomic_output(output_path) as temp_name:
            sink = FileSink(temp_name, Path(output_path), source.sample_rate, source.channels, bit_depth, format_name)
            result = master_stream(source, settings, sink, bit_depth=bit_depth, over_limit=over_limit, codec_safe=codec_safe,
                                   amount=amount, reference=reference, measured=measured)
            if result.status == "target_missed":
                raise _TargetMissed
            notes = write_metadata(temp_name, None, LoudnessTags.from_measurement(result.output_measurement), provenance)
            result = replace(result, warnings=(*result.warnings, *notes))
    except _TargetMissed:
        pass
    return result


def _master_to_lossy(source: BlockSource, output_path: Path, settings: MasterSettings, target, *, over_limit: str,
                     codec_safe: str | None, amount: float, provenance: ProvenanceLike | None,
                     reference: Reference | None = None, measured: InputMeasurements | None = None,
                     missed: list | None = None) -> MasterResult:
    """Each render goes to a float WAV scratch file beside the output; the loop encodes
    it into a second scratch file and judges that as decoded (both streamed: memory does
    not grow with the length); the chosen encoding is tagged with its decoded loudness
    and renamed into place. Scratch files have ``.part`` names (a killed run's leftovers
    are cleaned like any other)."""
    import os

    from automix.io import lossy
    from automix.io.paths import temp_name_for

    check = lossy.decoded_check(target.codec, target.bitrate_kbps)
    output_path.parent.mkdir(parents=True, exist_ok=True)  # the scratch files live beside the output
    render_path, encoded_path = temp_name_for(output_path), temp_name_for(output_path)
    try:
        sink = FileSink(str(render_path), render_path.with_suffix(".wav"), source.sample_rate, source.channels, "32f", "wav")
        result = master_stream(source, settings, sink, bit_depth="32f", over_limit=over_limit, codec_safe=codec_safe,
                               amount=amount, reference=reference, lossy_check=check,
                               lossy_files=(render_path, encoded_path), measured=measured)
        if result.status == "target_missed":
            if missed is not None:
                missed.append(sink.read())  # the render itself, before its scratch file goes
            return result
        if check.last is None:  # never judged (e.g. no loudness aim): judge the final render now
            check.verdict_file(render_path, encoded_path, settings.target_lufs, settings.ceiling_dbtp,
                               rendered_lufs=result.output_lufs)
        chosen = check.chosen()  # the last if it met the aim, else the best that kept the promise
        written = check.write(output_path, provenance=provenance)
        decoded = {"codec": check.codec, "kbps": check.bitrate_kbps, "integrated_lufs": chosen.decoded.integrated_lufs,
                   "true_peak_dbtp": chosen.decoded.true_peak_dbtp, "loudness_offset_lu": chosen.loudness_offset_lu}
        return replace(result, decoded=decoded, warnings=(*result.warnings, *written.warnings))
    finally:
        for scratch in (render_path, encoded_path):
            try:
                os.unlink(scratch)
            except OSError:
                pass


@dataclass(frozen=True, eq=False)
class Render:
    """One full-rate render, measured as written."""

    measured: loudness.LoudnessMeasurement
    limiter: LimiterStats
    precise_true_peak_dbtp: float
    analysis: AudioAnalysis | None = None  # the whole analysis of what was written, if asked for

    @property
    def max_gain_reduction_db(self) -> float:
        return self.limiter.max_gain_reduction_db

    @property
    def mean_gain_reduction_db(self) -> float:
        return self.limiter.mean_gain_reduction_db


def render(source: BlockSource, plan: ChainPlan, gain_db: float, threshold_db: float, release_ms: float,
           bit_depth: str, sink: Sink, *, split_band: bool = False, envelope: EnvelopeSpill | None = None,
           kept: SignalSpill | None = None, band_envelopes: tuple[EnvelopeSpill, EnvelopeSpill] | None = None,
           analyse: bool = False) -> Render:
    """Run the whole chain once over ``source`` into ``sink`` and measure what was written.

    ``envelope``: the wideband limiter's detector envelope of the signal before the
    limiter, kept by the model pass (:func:`collect_loop_features`): read instead of
    detected again. ``band_envelopes``: the same for the split-band limiter, its high
    band's and its whole signal's envelopes (its safety stage still detects its own
    input). ``kept``: the signal before the limiter itself, kept by the model pass: read
    instead of running the EQ, stereo and glue stages again. ``analyse``: also the whole
    :class:`automix.measure.analyzer.AudioAnalysis` of what was written (a PCM file
    decodes to exactly the samples written, so this is what reading it back would give).
    """
    sample_rate, channels = source.sample_rate, source.channels
    gain = np.float32(10 ** (gain_db / 20))
    if split_band:
        detectors = None
        if band_envelopes is not None and all(e.holds(source.frames) for e in band_envelopes):
            detectors = tuple(e.detector(gain) for e in band_envelopes)
        peak_limiter = SplitBandLimiter(sample_rate, channels, threshold_db, release_ms, detectors=detectors)
    else:
        detector = envelope.detector(gain) if envelope is not None and envelope.holds(source.frames) else None
        peak_limiter = TruePeakLimiter(sample_rate, channels, threshold_db, release_ms, detector=detector)
    dither = Dither(bit_depth, channels)
    sink.start()
    threaded = loudness.THREADS > 1
    # The peaks of what is written are measured in the helper process (or on a thread),
    # the rest here: its loudness too, unless this process also analyses it. Measured
    # on a 3.5-min master, CPU of the helper / this process: 0.82 / 0.58 s with the
    # loudness there, 0.71 / 0.78 with it here (a mix's analysis adds 0.3 s here).
    meter = loudness.LoudnessMeter(sample_rate, channels, true_peak=False) if not analyse else None
    meters = beside(OutputMeters, sample_rate, channels, meter is None, threaded=threaded)  # (.., loudness_too)
    # the rest of the analysis here, where the render leaves a core idle part of the time;
    # its loudness is the output meters'
    analyzer = Analyzer(sample_rate, channels, total_frames=source.frames, loudness_meter=False) if analyse else None
    try:
        def emit(block: np.ndarray) -> None:
            if block.shape[1]:
                out = dither.process(block)
                meters.send("add", out)
                for here in (meter, analyzer):
                    if here is not None:
                        here.add(out)
                sink.write(out)

        for block in ahead(pre_limited(source, plan, kept), threaded):
            emit(peak_limiter.process(block * gain))
        emit(peak_limiter.flush())
    except BaseException:
        meters.drop()
        raise
    measured, true_peak, peak = meters.ask("result", last=True)
    if meter is not None:
        measured = replace(meter.result(), true_peak_dbtp=loudness.amplitude_to_db(true_peak))
    sink.finish()
    analysis = analyzer.result(measured=measured) if analyzer is not None else None
    return Render(measured, peak_limiter.stats(), loudness.amplitude_to_db(peak), analysis)


class OutputMeters:
    """A render's output meters, fed the blocks as written: the BS.1770 4x true peak and
    the near-ideal peak that checks the ceiling, and (``loudness_too``) the loudness."""

    def __init__(self, sample_rate: int, channels: int, loudness_too: bool = True) -> None:
        self.meter = loudness.LoudnessMeter(sample_rate, channels, peaks_only=not loudness_too)
        self.precise = loudness.PreciseTruePeakMeter(sample_rate, channels)

    def add(self, block: np.ndarray) -> None:
        self.meter.add(block)
        self.precise.add(block)

    def result(self) -> tuple[loudness.LoudnessMeasurement | None, float, float]:
        """The loudness measurement (None if not asked for), the 4x true peak and the
        near-ideal peak (both linear)."""
        measured = None if self.meter.peaks_only else self.meter.result()
        return measured, self.meter.true_peak(), self.precise.peak()


def pre_limited(source: BlockSource, plan: ChainPlan, kept: SignalSpill | None = None) -> Iterator[np.ndarray]:
    """The signal before the limiter, block by block: read back from ``kept`` when it
    holds all of it, else made by the chain (EQ, stereo, glue) from ``source`` -- and
    written to ``kept`` as it goes, if ``kept`` is given and still empty."""
    if kept is not None and kept.holds(source.frames):
        yield from kept.source().blocks()
        return
    keep = kept is not None and kept.frames == 0
    chain = pre_limiter(plan, source.sample_rate, source.channels)
    for block in source.blocks():
        block = chain.process(block)
        if keep:
            kept.write(block)
        yield block
    block = chain.flush()
    if keep:
        kept.write(block)
    yield block


def collect_loop_features(source: BlockSource, plan: ChainPlan, *, split_band: bool = True,
                          spill: EnvelopeSpill | None = None, kept: SignalSpill | None = None,
                          band_spills: tuple[EnvelopeSpill, EnvelopeSpill] | None = None) -> LoopFeatures:
    """The loop's model of the signal before the limiter (one pass of the chain): the
    split-band limiter's hops, which also hold the wideband model's, or (``split_band``
    False) the wideband model's alone, at a third of the cost, its full-rate envelope
    kept in ``spill`` for the renders (the split-band model: its high band's and whole
    signal's envelopes in ``band_spills``). ``kept``: see :func:`pre_limited`."""
    # the length known, the model's per-hop tables are allocated once
    if split_band:
        # the whole signal's envelope: read where an earlier pass kept it whole, else kept now
        high, whole = band_spills if band_spills is not None else (None, None)
        kept_whole = whole.detector(1.0) if whole is not None and whole.holds(source.frames) else None
        collector = SplitBandFeatures(source.sample_rate, source.channels, frames=source.frames,
                                      spills=(high, whole if kept_whole is None else None), sum_detector=kept_whole)
    else:
        collector = FeatureCollector(source.sample_rate, source.channels, spill, frames=source.frames)

    # reading and the chain in one thread, the model's detectors in this one
    for block in ahead(pre_limited(source, plan, kept), loudness.THREADS > 1):
        collector.add(block)
    if not split_band:
        return collector.result()
    hops = collector.result()
    return replace(hops.features, split=hops)


def master_stream(source: BlockSource, settings: MasterSettings, sink: Sink, *, bit_depth: str = "24",
                  over_limit: str = "fail", analysis: AudioAnalysis | None = None,
                  codec_safe: str | None = None, amount: float = 1.0, lossy_check=None,
                  lossy_files: tuple[Path, Path] | None = None, reference: Reference | None = None,
                  measured: InputMeasurements | None = None, analyse_output: bool = False) -> MasterResult:
    """Master a stream of blocks into ``sink`` (see the module docstring).

    Parameters
    ----------
    source : BlockSource
        The mix, at the rate the master will have; read several times.
    settings : MasterSettings
    sink : Sink
        Receives the master, on the output's grid (dithered), once per render; the last
        render is the result.
    bit_depth : {"16", "24", "32f"}
    over_limit : {"fail", "quieter", "force"}
        When the target needs more than ``settings.max_limiting_db`` of limiting over
        the programme: report it without a usable master (``fail``), stop at that much
        limiting and accept a quieter master (``quieter``), or reach the target anyway
        (``force``; bounded: never past the point where more limiting stops adding
        loudness).
    analysis : AudioAnalysis, optional
        The input's analysis, if already measured.
    codec_safe : str, optional
        Lossy codecs (e.g. ``"mp3,aac"``, see :mod:`automix.master.codecs`) whose decoded
        true peak must also hold the ceiling: the final render is encoded and decoded
        with each, and the limiter lowered until every decoded peak is under it.
    amount : float
        0..1: how much of the corrective moves (tonal EQ, width, glue) to apply; the
        loudness target and ceiling hold at any amount (see :func:`plan_chain`).
    reference : Reference, optional
        A finished track to sound like (:func:`automix.master.reference.analyze_reference`):
        its tonal balance, width and density replace the preset's; the loudness target
        and ceiling still hold exactly.
    measured : InputMeasurements, optional
        What the analysis pass would measure on ``source``, if a :class:`SourceMeter`
        measured the signal as it was written (the mix measures its bus while rendering
        it); the pass is then skipped. It must hold the mid/side spectra when
        ``reference`` is given.
    analyse_output : bool
        Also analyse the master as it is written (``MasterResult.output_analysis``), for
        a caller that reports on it: cheaper than reading the written file back.
    """
    if over_limit not in OVER_LIMIT_CHOICES:
        raise AutomixError(f"--over-limit must be one of {', '.join(OVER_LIMIT_CHOICES)}")
    helper()  # started before this pass starts threads (see automix.io.helper)
    if measured is None:
        measured = measure_source(source, analysis, with_mid_side=reference is not None)
    elif reference is not None and measured.mid_side is None:
        raise AutomixError("internal error: a reference match needs the mid/side spectra of the measured source")
    analysis = measured.analysis
    if analysis.is_silent:
        raise AutomixError(f"{source.name}: the audio is silent; there is nothing to master")
    if analysis.duration_s < 0.4:
        raise AutomixError(f"{source.name}: {analysis.duration_s:.2f} s is too short to master (loudness needs at least 0.4 s)")
    plan = plan_chain(measured, settings, amount, reference)
    # The model pass keeps the signal before the limiter and the wideband detector's
    # envelope of it on disk: later passes read them instead of computing them again.
    with EnvelopeSpill() as spill, SignalSpill(source.sample_rate, source.channels, source.name) as kept, \
            EnvelopeSpill() as high_band, EnvelopeSpill() as whole_band:
        # the wideband model's envelope is also the split-band limiter's whole-signal one
        whole = spill if wideband_envelope_serves_split_band(source.sample_rate, source.channels) else whole_band
        features = collect_loop_features(source, plan, split_band=False, spill=spill, kept=kept)
        # The split-band limiter takes a bass peak's reduction from the bass alone, so a kick
        # does not duck the rest of the music. It is used where the wideband limiter would
        # work hard enough to pump (SPLIT_BAND_FROM_DB), and where it reaches the target: on
        # dense material it tops out a little lower (~0.3 LU on pink noise), and there the
        # wideband limiter does the job.
        choice = choose(features, settings, over_limit)
        split_band = False
        if choice.prediction.programme_gain_reduction_db > SPLIT_BAND_FROM_DB:
            split_features = collect_loop_features(source, plan, kept=kept, band_spills=(high_band, whole))
            split_choice = choose(split_features, settings, over_limit)
            split_band = split_choice.status == "ok"
            if split_band:
                features, choice = split_features, split_choice

        def render_with(gain_db: float, threshold_db: float, release_ms: float) -> Render:
            return render(source, plan, gain_db, threshold_db, release_ms, bit_depth, sink, split_band=split_band,
                          envelope=spill, kept=kept, band_envelopes=(high_band, whole), analyse=analyse_output)

        codec_check = None
        if codec_safe:
            from automix.master import codecs

            codecs.parse_codecs(codec_safe)  # a bad name fails before any rendering

            def codec_check(rendered: Render, ceiling_dbtp: float) -> tuple[float, dict]:
                checked = codecs.codec_safe_gain_db(sink.read(), source.sample_rate, ceiling_dbtp, codec_safe, verify=False)
                return checked.attenuation_db, dict(checked.peaks_before_dbtp)

        decoded_check = None
        if lossy_check is not None:  # an automix.io.lossy.DecodedCheck: the file is judged as decoded

            def decoded_check(rendered: Render, target_lufs: float, ceiling_dbtp: float):
                if lossy_files is not None:  # (render on disk, encoded file): constant memory
                    verdict = lossy_check.verdict_file(*lossy_files, target_lufs, ceiling_dbtp,
                                                       rendered_lufs=rendered.measured.integrated_lufs)
                else:
                    verdict = lossy_check.verdict(sink.read(), source.sample_rate, target_lufs, ceiling_dbtp,
                                                  rendered_lufs=rendered.measured.integrated_lufs)
                return verdict.extra_threshold_db, verdict.loudness_offset_lu, verdict.decoded

        loop = run_loop(features, settings, over_limit, render_with, precise_peak=lambda r: r.precise_true_peak_dbtp,
                        codec_attenuation=codec_check,
                        decoded_check=decoded_check, choice=choice)
        result = _result(analysis, plan, loop, settings, source.warnings, reference)
        return replace(result, limiter_design="split-band" if split_band else "wideband")


@dataclass(frozen=True, eq=False)
class InputMeasurements:
    """What the analysis pass measured: the analysis, plus what the tonal EQ and the glue
    need from the signal itself (per-band spread over time, the glue detector's powers)."""

    analysis: AudioAnalysis
    band_uncertainty_db: np.ndarray
    glue_detector: glue_stage.GlueDetectorMeter
    mid_side: MidSideSpectrumMeter | None = None  # mid and side spectra, for a reference match


def measure_source(source: BlockSource, analysis: AudioAnalysis | None = None, with_mid_side: bool = False) -> InputMeasurements:
    """One pass over ``source``: the streaming analyzer (unless ``analysis`` is given) and
    the tonal and glue meters, fed the same blocks."""
    threaded = loudness.THREADS > 1
    # The analyzer in this process; the tonal and glue meters in the helper process, with
    # the analyzer's 4x true-peak scan (a meter of its own: the same chunks, the same
    # reading), or else in a thread beside it; reading ahead in a thread.
    peak_there = helper() is not None and analysis is None
    analyzer = None if analysis is not None else Analyzer(source.sample_rate, source.channels, total_frames=source.frames,
                                                          true_peak=not peak_there)
    meters = beside(InputMeters, source.sample_rate, source.channels, source.frames, with_mid_side, peak_there,
                    threaded=threaded)
    try:
        for block in ahead(source.blocks(), threaded):
            if analyzer is not None:
                analyzer.add(block)
            meters.send("add", block)
    except BaseException:
        meters.drop()
        raise
    spread, detector, mid_side, true_peak = meters.ask("result", last=True)
    return InputMeasurements(analysis or analyzer.result(true_peak), spread, detector, mid_side)


class InputMeters:
    """What the tonal EQ and the glue need from the input beyond its analysis, fed the
    same blocks: the per-band spread over time, the glue detector's powers, (for a
    reference match) the mid and side spectra, and (``true_peak``) the analyzer's 4x
    true peak, from a loudness meter fed the same blocks, so its chunks and its reading
    are the analyzer's own."""

    def __init__(self, sample_rate: int, channels: int, frames: int, with_mid_side: bool, true_peak: bool = False) -> None:
        self.spread = BandSpreadMeter(sample_rate, channels)
        self.detector = glue_stage.GlueDetectorMeter(sample_rate, channels, total_frames=frames)
        self.mid_side = MidSideSpectrumMeter(sample_rate, channels) if with_mid_side else None
        self.peak = loudness.LoudnessMeter(sample_rate, channels, peaks_only=True) if true_peak else None

    def add(self, block: np.ndarray) -> None:
        self.spread.add(block)
        self.detector.add(block)
        for meter in (self.mid_side, self.peak):
            if meter is not None:
                meter.add(block)

    def result(self) -> tuple[np.ndarray, glue_stage.GlueDetectorMeter, MidSideSpectrumMeter | None, float | None]:
        """The band spread (dB per band), the glue meter, the mid/side meter, and the
        linear true peak (None unless asked for)."""
        return (self.spread.uncertainty_db(), self.detector, self.mid_side,
                self.peak.true_peak() if self.peak is not None else None)


class SourceMeter:
    """:func:`measure_source` for a signal fed as it is made, so a stage that writes a
    signal to be mastered can measure it on the way instead of reading it back: the mix
    measures its bus in the helper process while it renders it, which saves the bus
    master's analysis pass.

    The blocks are regrouped into the ``BLOCK_FRAMES`` blocks a
    :func:`automix.io.stream.file_source` of the written file gives, so the result is
    what ``measure_source`` reads from that file (a float file holds the samples exactly).

    Parameters
    ----------
    sample_rate, channels : int
    frames : int
        The signal's length; :meth:`result` refuses to measure a different one.
    with_mid_side : bool
        Also the mid and side spectra (a reference match needs them).
    """

    def __init__(self, sample_rate: int, channels: int, frames: int, with_mid_side: bool = False) -> None:
        self.frames = int(frames)
        self.analyzer = Analyzer(sample_rate, channels, total_frames=self.frames)
        self.meters = InputMeters(sample_rate, channels, self.frames, with_mid_side)
        self._pending: list[np.ndarray] = []  # the start of the next block
        self._pending_frames = self._measured_frames = 0

    def add(self, block: np.ndarray) -> None:
        self._pending.append(block)
        self._pending_frames += block.shape[1]
        if self._pending_frames < BLOCK_FRAMES:
            return
        joined = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else block
        whole = joined.shape[1] - joined.shape[1] % BLOCK_FRAMES
        for start in range(0, whole, BLOCK_FRAMES):
            self._measure(joined[:, start : start + BLOCK_FRAMES])
        self._pending = [joined[:, whole:]]
        self._pending_frames = joined.shape[1] - whole

    def _measure(self, block: np.ndarray) -> None:
        self.analyzer.add(block)
        self.meters.add(block)
        self._measured_frames += block.shape[1]

    def result(self) -> InputMeasurements:
        if self._pending_frames:
            self._measure(np.concatenate(self._pending, axis=1))
            self._pending, self._pending_frames = [], 0
        if self._measured_frames != self.frames:
            raise AutomixError(f"internal error: measured {self._measured_frames} frames of a {self.frames}-frame signal")
        spread, detector, mid_side, _ = self.meters.result()
        return InputMeasurements(self.analyzer.result(), spread, detector, mid_side)


def master(audio: Audio, settings: MasterSettings, *, bit_depth: str = "24", over_limit: str = "fail",
           analysis: AudioAnalysis | None = None, codec_safe: str | None = None,
           amount: float = 1.0, reference: Reference | None = None) -> tuple[np.ndarray, MasterResult]:
    """Master ``audio`` held in memory (:func:`master_stream` over its blocks).

    Returns
    -------
    samples : numpy.ndarray
        The master, float32 ``(channels, samples)``, already on the output's grid.
    MasterResult
    """
    validate_audio(audio.samples, audio.sample_rate, name=audio.name)
    sink = ArraySink(audio.channels, audio.frames)
    result = master_stream(array_source(audio), settings, sink, bit_depth=bit_depth, over_limit=over_limit,
                           analysis=analysis, codec_safe=codec_safe, amount=amount, reference=reference)
    return sink.samples, result


def _result(analysis: AudioAnalysis, plan: ChainPlan, loop: LoopResult, settings: MasterSettings,
            source_warnings: tuple[str, ...], reference: Reference | None = None) -> MasterResult:
    measured, limited = loop.rendered.measured, loop.rendered.limiter
    return MasterResult(
        status=loop.status,
        message=loop.message,
        input_lufs=analysis.integrated_lufs,
        input_true_peak_dbtp=analysis.true_peak_dbtp,
        output_lufs=measured.integrated_lufs,
        output_true_peak_dbtp=measured.true_peak_dbtp,
        output_precise_true_peak_dbtp=loop.precise_true_peak_dbtp,
        output_lra_lu=measured.loudness_range_lu,
        gain_db=loop.gain_db,
        limiter_threshold_db=loop.threshold_db,
        limiter_programme_gain_reduction_db=loop.programme_gain_reduction_db,
        limiter_max_gain_reduction_db=limited.max_gain_reduction_db,
        limiter_deepest_at_s=loop.deepest_at_s,
        limiter_mean_gain_reduction_db=limited.mean_gain_reduction_db,
        limiter_release_ms=loop.release_ms,
        glue=plan.glue,
        tonal_eq=plan.tonal,
        stereo_width=plan.stereo_width,
        mono_below_hz=plan.mono_below_hz,
        amount=plan.amount,
        side_eq=plan.side_eq,
        width_reason=plan.width_reason,
        reference=reference.to_dict() if reference is not None else None,
        renders=loop.renders,
        warnings=tuple(source_warnings) + input_warnings(analysis) + (tuple(reference.warnings) if reference else ()),
        settings=settings,
        codec_true_peaks_dbtp=loop.codec_true_peaks_dbtp,
        codec_attenuation_db=loop.codec_attenuation_db,
        limiter_timeline_db=limited.timeline_db,
        output_measurement=measured,
        output_analysis=loop.rendered.analysis,
    )


def input_warnings(analysis: AudioAnalysis) -> tuple[str, ...]:
    """Problems in the input that mastering cannot undo, worth telling the user."""
    warnings = []
    if analysis.clipped_samples:
        warnings.append(f"the input is clipped ({analysis.clipped_samples} samples at full scale); mastering cannot undo that")
    if analysis.dc_offset > 0.01:
        warnings.append(f"the input has a DC offset of {analysis.dc_offset:.3f}")
    return tuple(warnings)
