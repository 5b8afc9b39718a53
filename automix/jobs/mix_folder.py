"""Mix a folder of stems: read and check them, analyse, name roles, balance, render,
master, write. The pipeline, top to bottom, in :func:`mix_folder`.

The stems stream: each is a :class:`automix.io.stream.BlockSource` (resampled on the
fly, padded with silence at the end to the longest), read once to validate, once to
analyse, and by the renderer to measure and to render; the bus goes block by block to a
temporary float32 WAV beside the output, which the mastering chain streams in turn.
Memory depends on the block size and the number of stems, not on the length of the song.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import pickle
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from automix.errors import AutomixError
from automix.io import lossy
from automix.io.audio import Audio, atomic_output, read_audio, resample
from automix.io.dither import Dither
from automix.io.helper import beside, helper
from automix.io.metadata import LoudnessTags, input_digests_beside, write_metadata
from automix.io.paths import temp_name_for
from automix.io.stream import BlockSource, BlockWriter, file_source
from automix.jobs.checks import (
    check_mix_arguments,
    check_outputs_against_inputs,
    check_writable_file,
    clean_stale_parts,
    scan_stems_folder,
)
from automix.jobs.options import MIN_MEASURABLE_S, OutputOptions
from automix.jobs.report import build_report, write_report
from automix.jobs.safety import debug_traceback, describe_error
from automix.master.chain import (
    ArraySink,
    FileSink,
    MasterResult,
    SourceMeter,
    master_stream,
    master_to_file,
)
from automix.measure import loudness
from automix.measure.analyzer import Analyzer, analyze
from automix.measure.loudness import LoudnessMeter
from automix.mix import user_plan
from automix.mix.amount import group_corrections_db, own_placements, scale_plan
from automix.mix.balancer import MixPlan, StemInfo, balance
from automix.mix.renderer import render_stream
from automix.mix.roles import detect_role, lead_features, pair_key, stereo_side
from automix.presets import Preset
from automix.report import HTML_SUFFIXES


@dataclass(frozen=True, eq=False)
class LoadedStems:
    """Stems read from a folder, aligned at the start and padded to one length."""

    names: tuple[str, ...]
    paths: tuple[Path, ...]
    samples: tuple  # numpy arrays, (channels, samples), one length, one rate
    sample_rate: int
    skipped: tuple[tuple[str, str, str], ...]  # (file name, reason, kind: "unreadable", "too short", ...)
    notes: tuple[str, ...]  # resampled, padded, clipped input ...


def load_stems(folder: Path, *, strict: bool = False, sample_rate: int | None = None,
               files: tuple[Path, ...] | None = None, skipped: tuple = ()) -> LoadedStems:
    """Read every audio file in ``folder`` (or the given ``files`` of it).

    A stem that cannot be read is skipped and reported (or, with ``strict``, the run
    fails); so is a stem shorter than 0.4 s, which has no measurable loudness.
    Subfolders, non-audio files and automix's own outputs are left out with a reason
    (see :func:`automix.jobs.checks.scan_stems_folder`). Stems at another rate are
    resampled (soxr, very high quality) to ``sample_rate`` or else the rate most stems
    share (the higher on a tie); shorter stems are padded with silence at the end.
    """
    opened, skipped, notes, rate = _usable_stems(folder, files, skipped, strict, sample_rate, read_audio)
    loaded = [audio for _, audio in opened]
    samples = []
    for audio in loaded:
        x = audio.samples
        if audio.sample_rate != rate:
            x = resample(x, audio.sample_rate, rate)
            notes.append(f"{audio.name}: resampled {audio.sample_rate} -> {rate} Hz")
        samples.append(x)
    frames = max(x.shape[1] for x in samples)
    for i, x in enumerate(samples):
        if x.shape[1] < frames:
            notes.append(f"{loaded[i].name}: {x.shape[1] / rate:.2f} s, padded with silence to {frames / rate:.2f} s")
            samples[i] = np.pad(x, ((0, 0), (0, frames - x.shape[1])))
    return LoadedStems(
        names=tuple(a.name for a in loaded), paths=tuple(a.path for a in loaded), samples=tuple(samples),
        sample_rate=rate, skipped=tuple(skipped), notes=tuple(notes),
    )  # fmt: skip


def _open_each(paths: list[Path], opener) -> list[tuple[object, Exception | None]]:
    """``opener(path)`` for every path, on a thread pool (``AUTOMIX_THREADS``), in order:
    ``(opened, None)`` or ``(None, the exception)``."""

    def attempt(path: Path):
        try:
            return opener(path), None
        except Exception as error:  # noqa: BLE001 - the caller decides per stem
            return None, error

    workers = max(1, min(len(paths), loudness.THREADS))
    if workers == 1:
        return [attempt(path) for path in paths]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="automix-open") as pool:
        return list(pool.map(attempt, paths))


def _usable_stems(folder: Path, files, skipped, strict: bool, sample_rate: int | None, opener):
    """Open every stem with ``opener`` (``read_audio`` or ``file_source``: both give
    ``channels``, ``frames``, ``sample_rate`` and ``warnings``) and set aside, with the
    reason, what cannot be mixed: unreadable, more than two channels, too short to
    measure (or, with ``strict``, fail). Returns ``(path, opened)`` pairs, the skipped
    and the notes, and the rate the mix runs at: ``sample_rate``, else the rate most
    stems share (the higher on a tie)."""
    if files is None:
        scan = scan_stems_folder(folder)
        files, skipped = scan.files, scan.skipped
    opened, skipped, notes = [], list(skipped), []

    def leave_out(path: Path, message: str, kind: str) -> None:
        if strict:
            raise AutomixError(message if message.startswith(str(path)) else f"{path}: {message}")
        skipped.append((path.name, message, kind))

    declared = {path: _declared_duration_s(path) for path in files}
    wanted = [path for path in files if declared[path] is None or declared[path] >= MIN_MEASURABLE_S]
    attempts = dict(zip(wanted, _open_each(wanted, opener)))  # each file decoded once to check it, on the cores
    for path in files:
        if path not in attempts:
            leave_out(path, f"too short to measure: {declared[path]:.3f} s; loudness needs at least {MIN_MEASURABLE_S} s",
                      "too short")
            continue
        stem, error = attempts[path]
        if error is not None:  # one stem's failure never stops the mix
            debug_traceback(error)
            if strict:
                raise AutomixError(describe_error(error, path)) from None
            skipped.append((path.name, describe_error(error, path), "unreadable"))
            continue
        if stem.channels > 2:
            leave_out(path, f"{path}: {stem.channels} channels; stems must be mono or stereo", "unreadable")
            continue
        if stem.frames < MIN_MEASURABLE_S * stem.sample_rate:
            leave_out(path, f"too short to measure: {stem.frames} samples ({stem.frames / stem.sample_rate:.3f} s); "
                            f"loudness needs at least {MIN_MEASURABLE_S} s", "too short")
            continue
        opened.append((path, stem))
        notes.extend(w if w.startswith(f"{path.name}: ") else f"{path.name}: {w}" for w in stem.warnings)
    if not opened:
        raise AutomixError(f"{folder}: none of the {len(files)} audio files could be used"
                           + "".join(f"; {name}: {reason}" for name, reason, _ in skipped[:3]))
    rates = Counter(stem.sample_rate for _, stem in opened)
    return opened, skipped, notes, sample_rate or max(rates, key=lambda r: (rates[r], r))


def _declared_duration_s(path: Path) -> float | None:
    """The length a file's header declares, without decoding (None if it cannot tell):
    a stem too short to measure is left out as such, not as unreadable."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate if 0 < info.frames < 2**62 and info.samplerate > 0 else None
    except Exception:  # noqa: BLE001 - read_audio reports what is wrong with the file
        return None


@dataclass(frozen=True, eq=False)
class MixResult:
    status: str  # as MasterResult.status, or "ok" for --no-master
    output: Path | None
    plan: MixPlan
    master: MasterResult | None
    report: dict


def mix_folder(folder: Path, output: Path, preset: Preset, options: OutputOptions, *,
               role_overrides: dict[str, str] | None = None, no_master: bool = False,
               export_stems: Path | None = None, report_path: Path | None = None,
               strict: bool = False, user=None, analyse_output: bool = True) -> MixResult:
    """Mix a folder of stems into one master. The pipeline, top to bottom.

    ``analyse_output``: the whole analysis of the mastered output for the report (its
    spectrum and width against the genre's mixes). False when nobody reads it (the CLI
    without ``--report`` or ``--json``): the report's ``final`` then holds the master's own
    measurement of what it wrote (loudness, true and sample peaks, LRA) and
    ``against_genre_average`` is None. A written report always has the whole analysis.

    Every argument is checked before any audio is read
    (:func:`automix.jobs.checks.check_mix_arguments`); every output path again, with
    the exported stems' names, before anything is written.

    Raises
    ------
    AutomixError
        For an unusable folder, a bad argument, or an unwritable output.
    """
    folder, output = Path(folder), Path(output)
    analyse_output = analyse_output or report_path is not None
    helper()  # started before anything starts threads (see automix.io.helper)
    scan = check_mix_arguments(folder, output, options.format_name, role_overrides=role_overrides,
                               export_stems=export_stems, report_path=report_path, dry_run=options.dry_run)
    stems = open_stems(folder, strict=strict, sample_rate=options.sample_rate, files=scan.files, skipped=scan.skipped)
    # the stems hashed for the provenance tag on a thread, beside the passes
    digests = input_digests_beside(stems.paths) if options.provenance is not None and not options.dry_run else None
    if user is not None:  # the user's --gain/--pan/--mute/--focus name real stems (no audio read yet)
        user_plan.check_names(user, [p.name for p in scan.files] + [name for name, *_ in scan.skipped])
    # the stems' true peaks are only ever printed in the report
    stems, analyses, features = analyse_sources(stems, strict, true_peak=report_path is not None)
    infos, kept, skipped = identify_stems(stems, analyses, role_overrides or {}, strict, features=features)
    if user is not None:
        user = user_plan.restrict(user, [i.name for i in infos], {name: reason for name, reason, _ in skipped})
    plan = balance(infos, preset, user=user)
    planned = {p.name for p in plan.stems}
    keep_index = [i for i, s in enumerate(infos) if s.name in planned]
    infos, kept = [infos[i] for i in keep_index], [kept[i] for i in keep_index]
    skipped = tuple(skipped) + tuple((m.name, m.rule, "muted") for m in plan.muted)
    by_name = {stems.names[i]: stems.sources[i] for i in kept}
    sources = [by_name[stem_plan.name] for stem_plan in plan.stems]  # the plan may leave stems out (muted)
    rate = stems.sample_rate
    if options.amount != 1.0:
        # --amount scales the mix's corrective moves too (the user's stay in full). Between
        # 0 and 1 the groups' correction, measured as at amount 1, is scaled with the
        # stems' levels (one pass over the grouped stems); at 0 every stem gets one gain.
        corrections = group_corrections_db(sources, rate, plan) if options.amount > 0 else None
        plan = scale_plan(plan, options.amount, group_gains_db=corrections, own_pans=own_placements(infos))
    writing = not options.dry_run
    exported = {}
    if export_stems is not None:
        exported = {Path(export_stems) / f"{index:02d}_{Path(stem_plan.name).stem}.wav": stem_plan.name
                    for index, stem_plan in enumerate(plan.stems, start=1)}
    if writing:
        # The exported stems' names are known only now: check every output once more.
        check_outputs_against_inputs(scan.files, {"-o": output, "--report": report_path,
                                                  **{f"exported stem {p.name}": p for p in exported}})
        for path in exported:
            check_writable_file(path, "exported stem")
        output.parent.mkdir(parents=True, exist_ok=True)  # the temporary bus lives beside the output
        for where in {output.parent, *(p.parent for p in exported), *((Path(report_path).parent,) if report_path else ())}:
            clean_stale_parts(where)  # temp files a killed run left behind
    provenance = None
    if digests is not None:
        mixed = stems.paths  # every stem read (one that could not be is not listed)

        def provenance():  # called when the tags are written
            return dataclasses.replace(options.provenance, inputs=tuple((Path(p).name, digests(p)) for p in mixed))
    html = report_path is not None and writing and Path(report_path).suffix.lower() in HTML_SUFFIXES
    # --reference: the report sets reference, the bus (the master's input) and the master side by side
    compare = report_path is not None and writing and options.reference is not None and not no_master
    keep_bus = html or compare

    master_result, written, out, bus_path = None, None, None, None
    try:
        with contextlib.ExitStack() as keep:
            # Exported stems stay temporary files until the mix succeeded (nothing is
            # written when the master misses its target).
            stem_writers = []
            if writing:
                for path in exported:
                    temp_name = keep.enter_context(atomic_output(path))
                    stem_writers.append(BlockWriter(temp_name, path, rate, 2, "32f"))
            try:
                if no_master:
                    rendered, out, written = _render_unmastered(sources, rate, plan, output, options, stem_writers,
                                                                provenance, keep_bus=html)
                    status = "ok"
                    if html:
                        rendered, bus_path = rendered
                else:
                    bus_path = temp_name_for(output.parent / f"{output.stem}.bus.wav")
                    rendered, measured_bus = _render_to_file(sources, rate, plan, bus_path, stem_writers,
                                                             with_mid_side=options.reference is not None)
                    master_result, out, written = _master_bus(bus_path, output, preset, options, provenance, measured_bus,
                                                              analyse=analyse_output)
                    status = master_result.status
                for writer in stem_writers:
                    writer.close()
                if status == "target_missed" and stem_writers:
                    raise _Abandon
            finally:
                if bus_path is not None and not keep_bus:
                    with contextlib.suppress(OSError):
                        os.unlink(bus_path)
    except _Abandon:
        pass
    try:
        final = None
        if out is None:
            # the master measured the true peak of what it wrote (PCM): not scanned again
            measured = (master_result.output_measurement if master_result is not None
                        and not lossy.is_lossy(written, options.format_name) else None)
            analysed = master_result.output_analysis if measured is not None else None
            if analyse_output or measured is None:  # else the report's "final" is the master's measurement
                final, against, out = _final_measures(written, preset, measured=measured, analysis=analysed)
        report = build_report(folder, preset, stems, analyses, infos, kept, skipped, plan, rendered, master_result,
                              out, rate, written, options)
        if final is not None:
            # build_report measured only an excerpt: put in the whole output's numbers
            report["against_genre_average"] = against
            report["final"].update(integrated_lufs=round(final.integrated_lufs, 2), true_peak_dbtp=round(final.true_peak_dbtp, 2),
                                   loudness_range_lu=round(final.loudness_range_lu, 2),
                                   sample_peak_dbfs=round(final.sample_peak_dbfs, 2),
                                   third_octave_bands_db=final.to_dict()["third_octave_bands_db"])
        if compare and master_result is not None:
            from automix.report.html import reference_comparison

            try:
                report["reference_comparison"] = reference_comparison(
                    options.reference, bus_path, written if written is not None else out, rate,
                    width_above_hz=master_result.mono_below_hz)
            except AutomixError as error:  # a lossy output this build cannot decode: the rest of the report stands
                report["notes"].append(f"reference comparison left out: {error}")
        if html and out.shape[1] < rendered_frames(rendered):
            out = read_audio(written).samples  # the plots need the whole output
        if report_path is not None and writing:
            if html:
                from automix.report.html import (  # matplotlib: only when a page is asked for
                    curves_from_audio,
                    write_html,
                )

                bus = read_audio(bus_path).samples  # the plots need the whole bus
                curves = curves_from_audio(bus, out, rate, preset.master,
                                           limiter_gain_reduction_db=master_result.limiter_timeline_db if master_result else None)
                write_html(report, curves, Path(report_path))
            else:
                write_report(report, Path(report_path))
    finally:
        if bus_path is not None and keep_bus:
            with contextlib.suppress(OSError):
                os.unlink(bus_path)
    return MixResult(status, written, plan, master_result, report)


class _Abandon(Exception):
    """Discard the exported stems' temporary files."""


def _render_to_file(sources, rate: int, plan: MixPlan, bus_path: Path, stem_writers: list, *, with_mid_side: bool):
    """Render the float bus into ``bus_path`` (32-bit float WAV), block by block, and
    measure it on the way for its master (:class:`automix.master.chain.SourceMeter`, in
    the helper process, idle during the render; it saves the master's analysis pass).

    Returns (the render, the bus's :class:`automix.master.chain.InputMeasurements`).
    """
    frames = max(source.frames for source in sources)  # shorter stems are padded with silence
    meter = beside(SourceMeter, rate, 2, frames, with_mid_side, threaded=loudness.THREADS > 1)
    writer = BlockWriter(str(bus_path), Path(bus_path).with_suffix(".wav"), rate, 2, "32f", "wav")

    def to_bus(block: np.ndarray) -> None:
        writer.write(block)
        meter.send("add", block)

    try:
        rendered = render_stream(sources, rate, plan, to_bus, stem_sinks=[w.write for w in stem_writers] or None,
                                 mastering_follows=True)
    except BaseException:
        meter.drop()
        raise
    finally:
        writer.close()
    return rendered, meter.ask("result", last=True)


def _render_unmastered(sources, rate: int, plan: MixPlan, output: Path, options: OutputOptions, stem_writers: list,
                       provenance, keep_bus: bool):
    """``--no-master``: the bus quantised (dithered block by block) straight into the output.

    Returns (rendered, samples for the report or None, written path or None); with
    ``keep_bus``, rendered is (rendered, path of a float copy of the bus) for the plots.
    """
    dither = Dither(options.bit_depth, 2)
    meter = LoudnessMeter(rate, 2)
    held = [] if options.dry_run else None
    bus_path = temp_name_for(output.parent / f"{output.stem}.bus.wav") if keep_bus else None
    bus_writer = BlockWriter(str(bus_path), Path(bus_path).with_suffix(".wav"), rate, 2, "32f", "wav") if keep_bus else None

    def run(sink):
        def emit(block):
            if bus_writer is not None:
                bus_writer.write(block)
            out = dither.process(block)
            meter.add(out)
            sink(out)

        return render_stream(sources, rate, plan, emit, stem_sinks=[w.write for w in stem_writers] or None,
                             mastering_follows=False)

    written = None
    try:
        if held is not None:
            rendered = run(held.append)
        else:
            with atomic_output(output) as temp_name:
                writer = BlockWriter(temp_name, output, rate, 2, options.bit_depth, options.format_name)
                rendered = run(writer.write)
                writer.close()
                write_metadata(temp_name, None, LoudnessTags.from_measurement(meter.result()), provenance)
            written = output
    finally:
        if bus_writer is not None:
            bus_writer.close()
    out = np.concatenate(held, axis=1) if held is not None else None
    return ((rendered, bus_path) if keep_bus else rendered), out, written


def _master_bus(bus_path: Path, output: Path, preset: Preset, options: OutputOptions, provenance, measured=None, *,
                analyse: bool = True):
    """Master the bus file into ``output`` (streaming, atomic; as
    :func:`automix.master.chain.master_to_file`, but a missed target or a dry run still
    gives the samples for the report). ``measured``: the bus's measurements, if taken
    while it was written. ``analyse``: the whole analysis of what is written, taken as
    it is written (else only its loudness and peaks)."""
    source = file_source(bus_path)
    settings = {"bit_depth": options.bit_depth, "over_limit": options.over_limit, "codec_safe": options.codec_safe,
                "amount": options.amount, "reference": options.reference, "measured": measured}
    if options.dry_run:
        sink = ArraySink(source.channels, source.frames)
        result = master_stream(source, preset.master, sink, **settings)
        return result, sink.samples, None
    if lossy.is_lossy(output, options.format_name):  # mp3/opus/aac: judged as decoded, then encoded
        missed: list = []  # the render that missed the target, for the report (nothing is written)
        result = master_to_file(source, output, preset.master, format_name=options.format_name, provenance=provenance,
                                missed=missed, **{k: v for k, v in settings.items() if k != "bit_depth"})
        return result, (missed[0] if missed else None), (output if result.status != "target_missed" else None)
    out = None
    try:
        with atomic_output(output) as temp_name:
            sink = FileSink(temp_name, output, source.sample_rate, source.channels, options.bit_depth, options.format_name)
            # the report's analysis of the output is taken as it is written, not read back
            result = master_stream(source, preset.master, sink, **settings, analyse_output=analyse)
            if result.status == "target_missed":
                out = sink.read()
                raise _Abandon
            notes = write_metadata(temp_name, None, LoudnessTags.from_measurement(result.output_measurement), provenance)
            result = dataclasses.replace(result, warnings=(*result.warnings, *notes))
    except _Abandon:
        return result, out, None
    return result, None, output


def rendered_frames(rendered) -> int:
    return getattr(rendered, "bus_frames", 0) or rendered.mix.shape[1]


#: The panning figure reads up to this many 4096-sample frames, evenly spread
#: (automix.mix.reference_levels.panning_similarity).
PANNING_FRAMES, PANNING_FFT = 400, 4096


def _final_measures(written: Path, preset: Preset, *, measured=None, analysis=None):
    """What the report measures on the output, streamed from the written file: its
    analysis, its comparison with the genre average (the panning figure from just the
    frames it reads) and a short excerpt for :func:`automix.jobs.report.build_report`,
    which analyses the samples it is given (its numbers for the whole output are then
    replaced by these).

    ``measured``: the master's own measurement of what it wrote
    (:class:`automix.measure.loudness.LoudnessMeasurement`); its true peak is then used,
    not scanned for again. ``analysis``: the master's analysis of what it wrote (see
    ``analyse_output`` in :func:`automix.master.chain.master_stream`); the file is then
    not read for it.

    Returns (AudioAnalysis, comparison dict, excerpt samples).
    """
    from automix.mix.balancer import compare_to_reference

    final = analysis
    if final is None:  # not analysed as it was written: read it back
        source = file_source(written)
        analyzer = Analyzer(source.sample_rate, source.channels, total_frames=source.frames, true_peak=measured is None)
        for block in source.blocks():
            analyzer.add(block)
        final = analyzer.result()
    if measured is not None:
        peak = max(measured.true_peak_dbtp, final.sample_peak_dbfs)  # never under the written samples
        final = dataclasses.replace(final, true_peak_dbtp=peak,
                                    plr_db=0.0 if final.integrated_lufs <= loudness.SILENCE_DB else peak - final.integrated_lufs)
    with sf.SoundFile(str(written)) as f:  # a file just written whole: its header's count is exact
        frames, rate = f.frames, f.samplerate
        hop = PANNING_FFT // 2
        count = (frames - PANNING_FFT) // hop + 1 if frames >= PANNING_FFT else 0
        if count < PANNING_FRAMES:  # a short output: read it whole (under 19 s at 44.1 kHz)
            panning = np.ascontiguousarray(f.read(dtype="float32", always_2d=True).T)
        else:
            # panning_similarity of these frames laid end to end reads exactly them
            starts = np.linspace(0, frames - PANNING_FFT, PANNING_FRAMES).astype(np.int64)
            parts = []
            for start in starts.tolist():
                f.seek(start)
                parts.append(f.read(PANNING_FFT, dtype="float32", always_2d=True))
            panning = np.ascontiguousarray(np.concatenate(parts).T)
    against = compare_to_reference(final, preset, panning)
    excerpt = panning[:, :rate]
    return final, against, excerpt


@dataclass(frozen=True, eq=False)
class StemSources:
    """Stems of a folder as block sources: one rate, one length (shorter ones padded with
    silence at the end), nothing held in memory."""

    names: tuple[str, ...]
    paths: tuple[Path, ...]
    sources: tuple[BlockSource, ...]
    sample_rate: int
    frames: int
    skipped: tuple[tuple[str, str, str], ...]
    notes: tuple[str, ...]


def open_stems(folder: Path, *, strict: bool = False, sample_rate: int | None = None,
               files: tuple[Path, ...] | None = None, skipped: tuple = ()) -> StemSources:
    """:func:`load_stems`, streaming: the same checks, skips and notes, but each stem is a
    :class:`automix.io.stream.BlockSource` (decoded once here to validate it)."""
    opened, skipped, notes, rate = _usable_stems(folder, files, skipped, strict, sample_rate, file_source)
    sources = []
    for path, source in opened:
        if source.sample_rate != rate:
            notes.append(f"{path.name}: resampled {source.sample_rate} -> {rate} Hz")
            source = _resampled(source, rate)
        sources.append(source)
    frames = max(s.frames for s in sources)
    for i, (path, _) in enumerate(opened):
        if sources[i].frames < frames:
            notes.append(f"{path.name}: {sources[i].frames / rate:.2f} s, padded with silence to {frames / rate:.2f} s")
        sources[i] = _fitted(sources[i], frames)
    return StemSources(tuple(p.name for p, _ in opened), tuple(p for p, _ in opened), tuple(sources), rate, frames,
                       tuple(skipped), tuple(notes))


def _resampled(source: BlockSource, rate: int) -> BlockSource:
    """``source`` resampled on the fly (soxr, very high quality, as the whole-file reader)."""
    frames = int(source.frames * rate / source.sample_rate + 0.5)  # soxr's output length
    return BlockSource(rate, source.channels, frames, source.name, _ResampledBlocks(source, rate), source.warnings)


@dataclass(frozen=True)
class _ResampledBlocks:
    """``blocks()`` of :func:`_resampled` (an object, not a closure: picklable, so a
    stem can be analysed in the helper process)."""

    source: BlockSource
    rate: int

    def __call__(self):
        import soxr

        source = self.source
        stream = soxr.ResampleStream(source.sample_rate, self.rate, source.channels, dtype="float32", quality="VHQ")
        iterator = iter(source.blocks())
        block = next(iterator, None)
        while block is not None:
            following = next(iterator, None)
            out = stream.resample_chunk(np.ascontiguousarray(block.T), last=following is None)
            if out.shape[0]:
                yield np.ascontiguousarray(out.T)
            block = following


def _fitted(source: BlockSource, frames: int) -> BlockSource:
    """Exactly ``frames`` frames: padded with silence at the end (or cut, should a
    resampler give a sample more than announced)."""
    return BlockSource(source.sample_rate, source.channels, frames, source.name, _FittedBlocks(source, frames),
                       source.warnings)


@dataclass(frozen=True)
class _FittedBlocks:
    """``blocks()`` of :func:`_fitted` (an object, not a closure: picklable, so a stem
    can be analysed in the helper process)."""

    source: BlockSource
    frames: int

    def __call__(self):
        source, frames, done = self.source, self.frames, 0
        for block in source.blocks():
            block = block[:, : frames - done]
            if block.shape[1]:
                done += block.shape[1]
                yield block
            if done >= frames:
                return
        while done < frames:
            n = min(BLOCK_PAD_FRAMES, frames - done)
            done += n
            yield np.zeros((source.channels, n), dtype=np.float32)


BLOCK_PAD_FRAMES = 1 << 16


@dataclass(frozen=True, eq=False)
class RoleInputs:
    """What role detection and the lead score read from a stem, measured in its analysis
    pass (a few floats per 10 ms) plus up to 200 short frames gathered afterwards: the
    stem itself is never held."""

    powers_10ms: np.ndarray
    powers_100ms: np.ndarray
    melodic_frames: np.ndarray  # (1, n) mono: the frames lead_features measures pitch on
    has_frames: bool


def _lead_frame_size(rate: int) -> int:
    return 1 << round(math.log2(max(64, rate * 0.046)))  # as automix.mix.roles.lead_features


def _measure_stem(source: BlockSource, path: Path | None = None, *, true_peak: bool = True) -> tuple:
    """One pass: the streaming analyzer, and the energy of every pitch frame of the mono
    sum; then the chosen pitch frames only, read from ``path`` where they are (if the
    source is that file as it is: see :func:`_seekable`), else one more pass.
    ``true_peak``: see :class:`automix.measure.analyzer.Analyzer`."""
    rate = source.sample_rate
    analyzer = Analyzer(rate, source.channels, total_frames=source.frames, true_peak=true_peak)
    size = _lead_frame_size(rate)
    energies, carry = [], np.zeros(0, dtype=np.float32)
    for block in source.blocks():
        analyzer.add(block)
        mono = np.concatenate([carry, block.mean(axis=0)])
        whole = mono.size // size
        frames = mono[: whole * size].reshape(whole, size).astype(np.float64)
        energies.append(np.einsum("ij,ij->i", frames, frames))
        carry = mono[whole * size :]
    analysis = analyzer.result()
    energy = np.concatenate(energies) if energies else np.zeros(0)
    chosen = np.zeros(0, dtype=np.int64)
    if energy.size:
        chosen = np.nonzero(energy >= energy.max() * 1e-2)[0]
        chosen = chosen[np.linspace(0, chosen.size - 1, min(200, chosen.size)).astype(np.int64)]
    if path is not None and _seekable(path, source):
        gathered = _read_frames(path, source.channels, chosen, size)
    else:
        gathered = _gather_frames(source, chosen, size)
    hop = max(1, int(rate * 0.1))
    pad = -(-max(0, hop - gathered.size) // size) * size  # lead_features needs one 100 ms frame
    melodic = np.pad(gathered, (0, pad))[None, :]
    return analysis, RoleInputs(analyzer.frame_powers(10), analyzer.frame_powers(100), melodic, bool(energy.size))


def _seekable(path: Path, source: BlockSource) -> bool:
    """``source`` reads ``path`` as it is (a WAV, AIFF or FLAC at the source's rate, the
    same channels, any padding after its end), so its samples can be read in place."""
    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - then read the source again
        return False
    return (info.format in ("WAV", "WAVEX", "AIFF", "FLAC") and info.samplerate == source.sample_rate
            and info.channels == source.channels)


def _read_frames(path: Path, channels: int, chosen: np.ndarray, size: int) -> np.ndarray:
    """:func:`_gather_frames` by seeking: the same float32 samples, the same mono sum
    (past the file's end, the padding's silence)."""
    if chosen.size == 0:
        return np.zeros(0, dtype=np.float32)
    parts = []
    with sf.SoundFile(str(path)) as f:
        for k in chosen.tolist():
            block = np.zeros((channels, size), dtype=np.float32)
            if k * size < f.frames:
                f.seek(k * size)
                data = f.read(size, dtype="float32", always_2d=True)
                block[:, : data.shape[0]] = data.T
            parts.append(block.mean(axis=0))
    return np.concatenate(parts)


def _gather_frames(source: BlockSource, chosen: np.ndarray, size: int) -> np.ndarray:
    """The mono frames ``chosen`` (frame indices of ``size`` samples), concatenated."""
    if chosen.size == 0:
        return np.zeros(0, dtype=np.float32)
    wanted = {int(k): None for k in chosen}
    last = int(chosen.max())
    position, carry = 0, np.zeros(0, dtype=np.float32)
    for block in source.blocks():
        mono = np.concatenate([carry, block.mean(axis=0)])
        whole = mono.size // size
        first = position
        for k in range(first, first + whole):
            if k in wanted:
                wanted[k] = mono[(k - first) * size : (k - first + 1) * size].copy()
        position += whole
        carry = mono[whole * size :]
        if position > last:
            break
    return np.concatenate([wanted[int(k)] for k in chosen])


def role_and_lead(file_stem: str, inputs: RoleInputs, sample_rate: int, analysis, override: str | None):
    """:func:`automix.mix.roles.detect_role` and :func:`automix.mix.roles.lead_features`
    of a stem from its :class:`RoleInputs`, equal to the whole-signal calls.

    The roles functions take samples; they are given stand-ins that measure the same:
    the 10 ms RMS envelope at a 100 Hz "rate" (one sample per frame: the syllable rate is
    read from it alone), the 100 ms RMS repeated at 100 Hz for the continuity, and the
    gathered pitch frames at the real rate for the melodic score (the frames
    lead_features would pick, since only they pass its energy gate).
    """
    guess = detect_role(file_stem, np.sqrt(inputs.powers_10ms)[None, :], 100, analysis, override)
    continuity = lead_features(np.repeat(np.sqrt(inputs.powers_100ms), 10)[None, :], 100, analysis)
    if inputs.powers_100ms.size == 0 or inputs.powers_100ms.max() <= 0 or not inputs.has_frames:
        return guess, dataclasses.replace(continuity, melodic=0.0)
    pitch = lead_features(inputs.melodic_frames, sample_rate, analysis)
    return guess, dataclasses.replace(continuity, melodic=pitch.melodic)


def analyse_sources(stems: StemSources, strict: bool, *, true_peak: bool = True) -> tuple[StemSources, list, list]:
    """:func:`_analyse_stems` for stem sources: per stem one streaming pass (analysis and
    role inputs), stems on a thread pool; a stem whose analysis fails is set aside.
    ``true_peak=False`` leaves out the 4x true-peak scan (a third of the analysis): the
    stems' ``true_peak_dbtp`` then read their sample peaks. Only the report prints it."""
    measure = functools.partial(_measure_stem, true_peak=true_peak)
    remote = helper()
    if remote is None:
        keep, results, skipped = _each_stem(stems, lambda index: measure(stems.sources[index], stems.paths[index]), strict)
    else:
        # every other stem in the helper process, the rest here one after another
        away = {}
        for index in range(1, len(stems.names), 2):
            try:
                away[index] = remote.submit(measure, stems.sources[index], stems.paths[index])
            except pickle.PicklingError:  # a source that reads an array in memory: analysed here
                pass

        def measure_or_collect(index: int) -> tuple:
            return away[index].result() if index in away else measure(stems.sources[index], stems.paths[index])

        keep, results, skipped = _each_stem(stems, measure_or_collect, strict, workers=1)
    if skipped:
        stems = dataclasses.replace(stems, names=tuple(stems.names[i] for i in keep), paths=tuple(stems.paths[i] for i in keep),
                                    sources=tuple(stems.sources[i] for i in keep), skipped=stems.skipped + skipped)
    return stems, [r[0] for r in results], [r[1] for r in results]


def _analyse_stems(stems: LoadedStems, strict: bool) -> tuple[LoadedStems, list]:
    """Analyse the stems on a thread pool (they are independent); a stem whose analysis
    fails is set aside with the reason, the others go on."""
    keep, results, skipped = _each_stem(
        stems, lambda index: analyze(Audio(stems.samples[index], stems.sample_rate, stems.paths[index])), strict)
    if skipped:
        stems = LoadedStems(
            names=tuple(stems.names[i] for i in keep), paths=tuple(stems.paths[i] for i in keep),
            samples=tuple(stems.samples[i] for i in keep), sample_rate=stems.sample_rate,
            skipped=stems.skipped + skipped, notes=stems.notes,
        )  # fmt: skip
    return stems, results


def _each_stem(stems, measure, strict: bool, *, workers: int | None = None) -> tuple[list[int], list, tuple]:
    """``measure(index)`` for every stem on a thread pool (``workers``, default
    AUTOMIX_THREADS); a stem whose measurement fails is set aside with the reason
    (``--strict``: fatal), the others go on. Returns the kept indices, their results, and
    the skipped stems' rows."""
    def one(index):
        try:
            return measure(index)
        except Exception as error:  # noqa: BLE001 - one stem's failure never stops the mix
            return error

    pool = ThreadPoolExecutor(max_workers=max(1, min(len(stems.names), workers or loudness.THREADS)))
    try:
        results = list(pool.map(one, range(len(stems.names))))
    finally:  # on a signal, do not analyse the stems still queued
        pool.shutdown(wait=True, cancel_futures=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    for i in failed:
        debug_traceback(results[i])
    if failed and strict:
        raise AutomixError(describe_error(results[failed[0]], stems.paths[failed[0]]))
    keep = [i for i in range(len(results)) if i not in failed]
    if failed and not keep:
        raise AutomixError("no stem could be analysed: " + describe_error(results[failed[0]], stems.paths[failed[0]]))
    skipped = tuple((stems.names[i], describe_error(results[i], stems.paths[i]), "unreadable") for i in failed)
    return keep, [results[i] for i in keep], skipped


#: A stem this far below the loudest stem holds only bleed or noise: raising it to its
#: role's level would raise that noise by as much. Relative, so gain-invariant.
NEAR_SILENT_LU = 50.0


def identify_stems(stems, analyses: list, role_overrides: dict[str, str], strict: bool, *, features=None):
    """Roles for the stems that hold sound; silent and near-silent stems are set aside
    and reported. ``stems`` is :class:`LoadedStems`, or :class:`StemSources` with the
    ``features`` (:class:`RoleInputs` per stem) of :func:`analyse_sources`."""
    known = [*stems.names, *(name for name, _, _ in stems.skipped)]  # a skipped stem's override is moot
    unknown = set(role_overrides) - set(known) - {Path(n).stem for n in known}
    if unknown:
        raise AutomixError(f"--role names no stem in the folder: {', '.join(sorted(unknown))}")
    infos, kept, skipped = [], [], list(stems.skipped)
    loudest = max(a.active_lufs for a in analyses)
    for index, (name, analysis) in enumerate(zip(stems.names, analyses)):
        reason = None
        if analysis.is_silent:
            reason = "silent: nothing to mix"
        elif analysis.active_lufs < loudest - NEAR_SILENT_LU:
            reason = (f"near-silent: {loudest - analysis.active_lufs:.0f} dB below the loudest stem "
                      f"(bleed or noise only; raising it to its role's level would raise the noise)")
        if reason:
            if strict:
                raise AutomixError(f"{name}: {reason}")
            skipped.append((name, reason, "silent"))
            continue
        stem = Path(name).stem
        override = role_overrides.get(name) or role_overrides.get(stem)
        if features is not None:
            guess, lead = role_and_lead(stem, features[index], stems.sample_rate, analysis, override)
        else:
            guess = detect_role(stem, stems.samples[index], stems.sample_rate, analysis, override)
            lead = lead_features(stems.samples[index], stems.sample_rate, analysis)
        infos.append(StemInfo(name, guess.role, guess.reason, analysis, stereo_side(stem), pair_key(stem), lead))
        kept.append(index)
    if not infos:
        raise AutomixError("every stem is silent or unreadable: nothing to mix")
    return infos, kept, tuple(skipped)
