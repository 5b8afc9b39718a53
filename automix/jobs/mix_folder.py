"""Mix a folder of stems: read and check them, analyse, name roles, balance, render,
master, write. The pipeline, top to bottom, in :func:`mix_folder`."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from automix.errors import AutomixError
from automix.io.audio import Audio, quantize, read_audio, resample, write_audio
from automix.io.metadata import LoudnessTags, input_digest
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
from automix.master.chain import MasterResult, master
from automix.measure.analyzer import analyze
from automix.measure.loudness import measure
from automix.mix.balancer import MixPlan, StemInfo, balance
from automix.mix.renderer import render
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
    if files is None:
        scan = scan_stems_folder(folder)
        files, skipped = scan.files, scan.skipped
    loaded, skipped, notes = [], list(skipped), []
    for path in files:
        declared = _declared_duration_s(path)
        if declared is not None and declared < MIN_MEASURABLE_S:
            message = f"too short to measure: {declared:.3f} s; loudness needs at least {MIN_MEASURABLE_S} s"
            if strict:
                raise AutomixError(f"{path}: {message}")
            skipped.append((path.name, message, "too short"))
            continue
        try:
            audio = read_audio(path)
        except Exception as error:  # noqa: BLE001 - one stem's failure never stops the mix
            debug_traceback(error)
            if strict:
                raise AutomixError(describe_error(error, path)) from None
            skipped.append((path.name, describe_error(error, path), "unreadable"))
            continue
        if audio.channels > 2:
            message = f"{path}: {audio.channels} channels; stems must be mono or stereo"
            if strict:
                raise AutomixError(message)
            skipped.append((path.name, message, "unreadable"))
            continue
        if audio.frames < MIN_MEASURABLE_S * audio.sample_rate:
            message = (f"too short to measure: {audio.frames} samples ({audio.duration_s:.3f} s); "
                       f"loudness needs at least {MIN_MEASURABLE_S} s")
            if strict:
                raise AutomixError(f"{path}: {message}")
            skipped.append((path.name, message, "too short"))
            continue
        loaded.append(audio)
        notes.extend(f"{path.name}: {warning}" for warning in audio.warnings)
    if not loaded:
        raise AutomixError(f"{folder}: none of the {len(files)} audio files could be used"
                           + "".join(f"; {name}: {reason}" for name, reason, _ in skipped[:3]))
    rates = Counter(a.sample_rate for a in loaded)
    rate = sample_rate or max(rates, key=lambda r: (rates[r], r))
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
               strict: bool = False) -> MixResult:
    """Mix a folder of stems into one master. The pipeline, top to bottom.

    Every argument is checked before any audio is read
    (:func:`automix.jobs.checks.check_mix_arguments`); every output path again, with
    the exported stems' names, before anything is written.

    Raises
    ------
    AutomixError
        For an unusable folder, a bad argument, or an unwritable output.
    """
    folder, output = Path(folder), Path(output)
    scan = check_mix_arguments(folder, output, options.format_name, role_overrides=role_overrides,
                               export_stems=export_stems, report_path=report_path, dry_run=options.dry_run)
    stems = load_stems(folder, strict=strict, sample_rate=options.sample_rate, files=scan.files, skipped=scan.skipped)
    stems, analyses = _analyse_stems(stems, strict)
    infos, kept, skipped = identify_stems(stems, analyses, role_overrides or {}, strict)
    plan = balance(infos, preset)
    rendered = render([stems.samples[i] for i in kept], stems.sample_rate, plan, keep_stems=export_stems is not None,
                      mastering_follows=not no_master)

    master_result = None
    if no_master:
        out, status = quantize(rendered.mix, options.bit_depth), "ok"
    else:
        bus = Audio(rendered.mix, stems.sample_rate, output)
        out, master_result = master(bus, preset.master, bit_depth=options.bit_depth, over_limit=options.over_limit,
                                    codec_safe=options.codec_safe, amount=options.amount)
        status = master_result.status
    protected = tuple(scan.files)
    exported = {}
    if export_stems is not None:
        exported = {Path(export_stems) / f"{index:02d}_{Path(stem_plan.name).stem}.wav": stem
                    for index, (stem_plan, stem) in enumerate(zip(plan.stems, rendered.stems), start=1)}
    written = None
    if not options.dry_run and status != "target_missed":
        # The exported stems' names are known only now: check every output once more.
        check_outputs_against_inputs(scan.files, {"-o": output, "--report": report_path,
                                                  **{f"exported stem {p.name}": p for p in exported}})
        for path in exported:
            check_writable_file(path, "exported stem")
        for where in {output.parent, *(p.parent for p in exported), *((Path(report_path).parent,) if report_path else ())}:
            clean_stale_parts(where)  # temp files a killed run left behind
        measured = master_result.output_measurement if master_result else measure(out, stems.sample_rate)
        provenance = None
        if options.provenance is not None:
            provenance = dataclasses.replace(options.provenance,
                                             inputs=tuple((Path(p).name, input_digest(p)) for p in stems.paths))
        written = write_audio(out, stems.sample_rate, output, options.bit_depth, protected=protected, format_name=options.format_name,
                              loudness=LoudnessTags.from_measurement(measured), provenance=provenance)
        for path, stem in exported.items():
            write_audio(stem.samples, stems.sample_rate, path, "32f", protected=protected)
    report = build_report(folder, preset, stems, analyses, infos, kept, skipped, plan, rendered, master_result,
                          out, stems.sample_rate, written, options)
    if report_path is not None and not options.dry_run:
        if Path(report_path).suffix.lower() in HTML_SUFFIXES:
            from automix.report.html import (  # matplotlib: only when a page is asked for
                curves_from_audio,
                write_html,
            )

            curves = curves_from_audio(rendered.mix, out, stems.sample_rate, preset.master,
                                       limiter_gain_reduction_db=master_result.limiter_timeline_db if master_result else None)
            write_html(report, curves, Path(report_path))
        else:
            write_report(report, Path(report_path))
    return MixResult(status, written, plan, master_result, report)


def _analyse_stems(stems: LoadedStems, strict: bool) -> tuple[LoadedStems, list]:
    """Analyse the stems on a thread pool (they are independent); a stem whose analysis
    fails is set aside with the reason, the others go on."""
    def one(index):
        try:
            return analyze(Audio(stems.samples[index], stems.sample_rate, stems.paths[index]))
        except Exception as error:  # noqa: BLE001 - one stem's failure never stops the mix
            return error

    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    try:
        results = list(pool.map(one, range(len(stems.names))))
    finally:  # on a signal, do not analyse the stems still queued
        pool.shutdown(wait=True, cancel_futures=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    for i in failed:
        debug_traceback(results[i])
    if not failed:
        return stems, results
    if strict:
        raise AutomixError(describe_error(results[failed[0]], stems.paths[failed[0]]))
    keep = [i for i in range(len(results)) if i not in failed]
    if not keep:
        raise AutomixError("no stem could be analysed: " + describe_error(results[failed[0]], stems.paths[failed[0]]))
    skipped = stems.skipped + tuple((stems.names[i], describe_error(results[i], stems.paths[i]), "unreadable") for i in failed)
    stems = LoadedStems(
        names=tuple(stems.names[i] for i in keep), paths=tuple(stems.paths[i] for i in keep),
        samples=tuple(stems.samples[i] for i in keep), sample_rate=stems.sample_rate, skipped=skipped, notes=stems.notes,
    )  # fmt: skip
    return stems, [results[i] for i in keep]


#: A stem this far below the loudest stem holds only bleed or noise: raising it to its
#: role's level would raise that noise by as much. Relative, so gain-invariant.
NEAR_SILENT_LU = 50.0


def identify_stems(stems: LoadedStems, analyses: list, role_overrides: dict[str, str], strict: bool):
    """Roles for the stems that hold sound; silent and near-silent stems are set aside
    and reported."""
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
        guess = detect_role(stem, stems.samples[index], stems.sample_rate, analysis, override)
        features = lead_features(stems.samples[index], stems.sample_rate, analysis)
        infos.append(StemInfo(name, guess.role, guess.reason, analysis, stereo_side(stem), pair_key(stem), features))
        kept.append(index)
    if not infos:
        raise AutomixError("every stem is silent or unreadable: nothing to mix")
    return infos, kept, tuple(skipped)
