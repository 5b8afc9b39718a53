"""Master finished mixes: one file (:func:`master_file`), or a batch of them with
per-file isolation, workers and signal handling (:func:`run_master_batch`)."""

from __future__ import annotations

import dataclasses

import numpy as np
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from automix.errors import AutomixError
from automix.io.audio import (
    READABLE_EXTENSIONS,
    WRITABLE_FORMATS,
)
from automix.io.metadata import input_digest
from automix.io.paths import check_output_paths
from automix.io.stream import file_source
from automix.measure.loudness import SILENCE_DB, LoudnessMeter, gated_loudness
from automix.jobs.checks import (
    check_writable_file,
    check_writable_folder,
    clean_stale_parts,
    is_automix_output,
    list_folder,
)
from automix.jobs.options import MIN_MEASURABLE_S, OutputOptions
from automix.jobs.safety import error_record, run_batch
from automix.master.chain import MasterResult, master_to_file
from automix.presets import MasterSettings


def master_file(input_path: Path, output_path: Path, settings: MasterSettings, options: OutputOptions,
                protected: tuple[Path, ...] = ()) -> MasterResult:
    """Master one file into another, block by block. Nothing is written if the target
    was missed; memory depends on the block size, not on the file's length.

    Raises
    ------
    AutomixError
        If the input cannot be read, is too short, or the output cannot be written (or
        would be an input).
    """
    if not options.dry_run:
        check_output_paths((input_path, *protected), (output_path,))
    source = file_source(input_path, sample_rate=options.sample_rate)
    if source.frames < MIN_MEASURABLE_S * source.sample_rate:
        raise AutomixError(f"{input_path}: {source.frames} samples ({source.frames / source.sample_rate:.3f} s) is too short "
                           f"to master (loudness needs at least {MIN_MEASURABLE_S} s)")
    provenance = None
    if options.provenance is not None and not options.dry_run:
        provenance = dataclasses.replace(options.provenance, inputs=((Path(input_path).name, input_digest(input_path)),))
    return master_to_file(source, output_path, settings, bit_depth=options.bit_depth, format_name=options.format_name,
                          over_limit=options.over_limit, dry_run=options.dry_run, codec_safe=options.codec_safe,
                          amount=options.amount, provenance=provenance, reference=options.reference)


def master_job(input_path: Path, output_path: Path, settings: MasterSettings, options: OutputOptions,
               protected: tuple[Path, ...] = ()) -> dict:
    """:func:`master_file` as a batch job: returns a record, never raises for one file.

    The record is :meth:`MasterResult.to_dict` without the settings, or
    ``{"status": "error", "error": one line}`` for any exception (bad input, disk full,
    permission denied, out of memory, a defect). ``Stopped`` (a signal) propagates.
    """
    try:
        result = master_file(input_path, output_path, settings, options, protected)
    except Exception as error:  # noqa: BLE001 - one file's failure is its record
        return error_record(error, input_path)
    data = result.to_dict()
    data.pop("settings")
    return data


def output_path_for(input_path: Path, out_dir: Path, format_name: str | None, taken: set[Path]) -> Path:
    """Where the master of ``input_path`` goes: ``out_dir/<name>.<ext>``, never a name
    already used by another input or output of the same run."""
    if format_name:
        suffix = "." + format_name.lower().lstrip(".")
        suffix = ".m4a" if suffix == ".aac" else suffix  # AAC is written in an MP4 container
    else:
        suffix = input_path.suffix.lower() if input_path.suffix.lower() in WRITABLE_FORMATS else ".wav"
    candidate = out_dir / f"{input_path.stem}{suffix}"
    if candidate.resolve() in taken:
        candidate = out_dir / f"{input_path.stem}-{input_path.suffix.lstrip('.').lower()}{suffix}"
    counter = 2
    while candidate.resolve() in taken:
        candidate = out_dir / f"{input_path.stem}-{counter}{suffix}"
        counter += 1
    taken.add(candidate.resolve())
    return candidate


# --- a batch --------------------------------------------------------------------------


@dataclass
class MasterPlan:
    """Which files ``master`` will process, where each goes, and what was left out."""

    jobs: list[tuple[Path, Path]] = field(default_factory=list)  # (input, output)
    problems: dict[int, str] = field(default_factory=dict)  # job index -> why it cannot run
    notes: list[str] = field(default_factory=list)


def expand_master_inputs(paths: list[Path], notes: list[str]) -> list[Path]:
    """Files named explicitly, as given; folders expanded to their audio files, minus the
    ones automix wrote (with a note). A file given twice (also through a link, or by
    name and in a folder) is mastered once."""
    return _unique(_expand(paths, notes), notes)


def _unique(paths: list[Path], notes: list[str]) -> list[Path]:
    seen: dict[tuple[int, int], Path] = {}
    unique = []
    for path in paths:
        try:
            st = path.stat()
            key = (st.st_dev, st.st_ino)
        except OSError:  # missing: reported by its job
            unique.append(path)
            continue
        if key in seen:
            same = "given twice" if str(path) == str(seen[key]) else f"is the same file as {seen[key]}"
            notes.append(f"{path} {same}: mastered once")
            continue
        seen[key] = path
        unique.append(path)
    return unique


def _expand(paths: list[Path], notes: list[str]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            for child in list_folder(path):
                if child.name.startswith(".") or not child.is_file() or child.suffix.lower() not in READABLE_EXTENSIONS:
                    continue
                if is_automix_output(child):
                    notes.append(f"left out {child}: written by automix; name it explicitly to master it again")
                    continue
                files.append(child)
        else:
            files.append(path)
    return files


def plan_master(inputs: list[Path], output_dir: Path, format_name: str | None, dry_run: bool = False) -> MasterPlan:
    """Check ``master``'s arguments and choose every output name, reading no audio.

    Raises
    ------
    AutomixError
        For a usage error: ``-o`` is an existing file, or a folder that cannot be
        written. Per-file problems (an output name that is a folder, a device...) are
        returned in ``problems`` so the other files still run.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise AutomixError(f"-o {output_dir}: exists and is not a folder (master writes one file per input into a folder)")
    if not dry_run:
        check_writable_folder(output_dir, f"-o {output_dir}")
    plan = MasterPlan()
    files = expand_master_inputs(list(inputs), plan.notes)
    taken = {f.resolve() for f in files}
    input_ids = set()
    for f in files:
        try:
            st = f.stat()
            input_ids.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    for src in files:
        dst = output_path_for(src, output_dir, format_name, taken)
        while _file_id(dst) in input_ids:  # a hard link or symlink to an input
            taken.add(dst.resolve())
            dst = output_path_for(src, output_dir, format_name, taken)
        index = len(plan.jobs)
        plan.jobs.append((src, dst))
        if not dry_run:
            try:
                check_writable_file(dst, "output")
            except AutomixError as error:
                plan.problems[index] = str(error)
    return plan


def _file_id(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def run_master_batch(plan: MasterPlan, output_dir: Path, settings: MasterSettings, options: OutputOptions,
                     workers: int = 1) -> Iterator[dict]:
    """Master every file of ``plan``; yield one record per file, in input order.

    Each record has ``input``, ``output`` (None if nothing was written) and the fields
    of :func:`master_job`. A file ``plan`` refused (its output name is a folder...) gets
    an error record in its place; the others still run. Temporary files that a killed
    run left in ``output_dir`` are removed before, and those of a worker that had to be
    killed after.
    """
    if not options.dry_run:
        clean_stale_parts(output_dir)
    protected = tuple(src for src, _ in plan.jobs)
    runnable = [i for i in range(len(plan.jobs)) if i not in plan.problems]
    per_file = {i: settings for i in runnable}
    if options.album:
        per_file = album_settings(plan, runnable, settings, options, workers)
        for index in [i for i in runnable if isinstance(per_file[i], str)]:
            plan.problems[index] = per_file.pop(index)
        runnable = [i for i in runnable if i in per_file]
    arguments = [(plan.jobs[i][0], plan.jobs[i][1], per_file[i], options, protected) for i in runnable]
    labels = [str(plan.jobs[i][0]) for i in runnable]

    def record(index: int, fields: dict) -> dict:
        src, dst = plan.jobs[index]
        written = not options.dry_run and fields["status"] not in ("error", "target_missed")
        return {"input": str(src), "output": str(dst) if written else None, **fields}

    def refused(index: int) -> dict:
        return record(index, {"status": "error", "error": plan.problems[index]})

    try:
        with closing(run_batch(master_job, arguments, labels, workers)) as results:
            done = 0
            for position, fields in results:
                index = runnable[position]
                yield from (refused(i) for i in range(done, index))
                yield record(index, fields)
                done = index + 1
            yield from (refused(i) for i in range(done, len(plan.jobs)))
    finally:
        if not options.dry_run:
            clean_stale_parts(output_dir)


# --- album mode -----------------------------------------------------------------------


def measure_job(input_path: Path, sample_rate: int | None) -> dict:
    """Integrated loudness of one input (streamed; no true peak needed), as a record."""
    source = file_source(input_path, sample_rate=sample_rate)
    meter = LoudnessMeter(source.sample_rate, source.channels, true_peak=False)
    for block in source.blocks():
        meter.add(block)
    measured = meter.result()
    return {"status": "ok", "integrated_lufs": measured.integrated_lufs, "momentary_lufs": measured.momentary_lufs}


def album_settings(plan: MasterPlan, runnable: list[int], settings: MasterSettings, options: OutputOptions,
                   workers: int) -> dict[int, MasterSettings | str]:
    """Per-track targets that keep the tracks' relative loudness (``--album``).

    Every track is measured first; the loudest goes to the preset's target and each
    other track to the target minus its distance from the loudest, so the differences
    the artist chose survive. Each track still gets its own closed loop under the
    ceiling, so the differences hold within the loop's +-0.03 LU. A track that cannot
    be measured fails (its message in place of settings); the rest form the album.
    """
    arguments = [(plan.jobs[i][0], options.sample_rate) for i in runnable]
    measured = dict(zip(runnable, (fields for _, fields in run_batch(measure_job, arguments,
                                                                       [str(plan.jobs[i][0]) for i in runnable], workers))))
    loudness = {i: r["integrated_lufs"] for i, r in measured.items() if r["status"] == "ok" and r["integrated_lufs"] > SILENCE_DB}
    out: dict[int, MasterSettings | str] = {
        i: (r.get("error") or f"{plan.jobs[i][0]}: silent; nothing to master") for i, r in measured.items() if i not in loudness}
    if not loudness:
        return out
    loudest = max(loudness.values())
    # the album as one programme (ReplayGain's album gain): every track's blocks gated together
    blocks = np.concatenate([measured[i]["momentary_lufs"] for i in loudness])
    album_lufs = gated_loudness(blocks)
    for index, lufs in loudness.items():
        target = settings.target_lufs + (lufs - loudest)
        out[index] = dataclasses.replace(settings, target_lufs=max(target, _lowest_target_lufs()))
    plan.notes.append(f"album: {len(loudness)} tracks measured as one programme at {album_lufs:.1f} LUFS; the loudest "
                      f"({loudest:.1f} LUFS) goes to {settings.target_lufs:g} LUFS, the others keep their distance from it")
    return out


def _lowest_target_lufs() -> float:
    """The lowest target a preset accepts (its validated range, in one place)."""
    return next(f.metadata["range"][0] for f in dataclasses.fields(MasterSettings) if f.name == "target_lufs")
