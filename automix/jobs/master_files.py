"""Master finished mixes: one file (:func:`master_file`), or a batch of them with
per-file isolation, workers and signal handling (:func:`run_master_batch`), that can
skip what an earlier run finished and keep a manifest (:func:`master_batch`).

Inputs and outputs are local paths or, with fsspec installed, URLs (``s3://``,
``file://``...): a job copies a URL input to a private local folder and uploads its
output atomically (:mod:`automix.io.remote`). Where the files run -- this process,
``-j`` worker processes, a Dask cluster -- is a *runner* (:class:`LocalRunner`,
:class:`automix.jobs.cluster.ClusterRunner`); the results are the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automix.errors import AutomixError
from automix.io import remote
from automix.io.audio import (
    READABLE_EXTENSIONS,
    WRITABLE_FORMATS,
)
from automix.io.helper import helper
from automix.io.metadata import input_digest, input_digest_beside
from automix.io.paths import check_output_paths
from automix.io.stream import file_source
from automix.jobs.checks import (
    check_writable_file,
    check_writable_folder,
    clean_stale_parts,
    is_automix_output,
    list_folder,
    master_report_path,
)
from automix.jobs.manifest import (
    STATUSES,
    Manifest,
    check_existing,
    manifest_line,
    manifest_status,
    settings_digest,
)
from automix.jobs.options import MIN_MEASURABLE_S, OutputOptions
from automix.jobs.safety import error_record, run_batch
from automix.master.chain import MasterResult, master_to_file
from automix.measure.loudness import SILENCE_DB, LoudnessMeter, gated_loudness
from automix.presets import MasterSettings


def master_file(input_path: Path, output_path: Path, settings: MasterSettings, options: OutputOptions,
                protected: tuple[Path, ...] = (), *, input_sha256: str | Callable[[], str] | None = None) -> MasterResult:
    """Master one file into another, block by block. Nothing is written if the target
    was missed; memory depends on the block size, not on the file's length.

    ``input_sha256``, if the caller already hashed the input (or is hashing it: a
    callable from :func:`automix.io.metadata.input_digest_beside`, waited for only when
    the provenance tag is written, so the hash runs beside the passes), saves reading it
    again for the tag.

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
        def provenance():  # called when the tags are written
            digest = (input_sha256() if callable(input_sha256) else input_sha256) or input_digest(input_path)
            return dataclasses.replace(options.provenance, inputs=((Path(input_path).name, digest),))
    return master_to_file(source, output_path, settings, bit_depth=options.bit_depth, format_name=options.format_name,
                          over_limit=options.over_limit, dry_run=options.dry_run, codec_safe=options.codec_safe,
                          amount=options.amount, provenance=provenance, reference=options.reference)


def master_job(input_path: Path | str, output_path: Path | str, settings: MasterSettings, options: OutputOptions,
               protected: tuple[Path, ...] = ()) -> dict:
    """:func:`master_file` as a batch job: returns a record, never raises for one file.

    The record is :meth:`MasterResult.to_dict` without the settings, plus the sha256 of
    the input and of the written output (``input_sha256``, ``output_sha256``), or
    ``{"status": "error", "error": one line}`` for any exception (bad input, disk full,
    permission denied, out of memory, a defect). ``Stopped`` (a signal) propagates.
    Either path may be a URL (see :func:`automix.io.remote.local_copies`).
    """
    digests = {}
    try:
        with remote.local_copies(input_path, output_path) as (local_in, local_out):
            # hashed once, beside the passes: for the provenance tag and the record. The
            # helper process is forked first (it forks only while no other thread runs).
            helper()
            hashing = input_digest_beside(local_in) if not options.dry_run else None
            result = master_file(local_in, local_out, settings, options, tuple(p for p in protected if not remote.is_url(p)),
                                 input_sha256=hashing)
            if hashing is not None:
                digests["input_sha256"] = hashing()
            if not options.dry_run and result.status != "target_missed":
                digests["output_sha256"] = input_digest(local_out)
            if options.report is not None:
                digests.update(_write_report(result, options, local_in, local_out, output_path))
    except Exception as error:  # noqa: BLE001 - one file's failure is its record
        return error_record(error, input_path)
    data = result.to_dict()
    data.pop("settings")
    return {**data, **digests}


def _write_report(result: MasterResult, options: OutputOptions, local_in: Path, local_out: Path,
                  output_path: Path | str) -> dict:
    """``--report``: the file's report page (or JSON). The master stands if the report
    cannot be written: the record says why instead."""
    from automix.report.html import write_master_report

    path = master_report_path(options.report, output_path)
    written = not options.dry_run and result.status != "target_missed"
    preset = options.provenance.preset if options.provenance is not None else None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_master_report(result, path, input_path=local_in, output_path=local_out if written else None,
                            reference=options.reference, extra={"preset": {"name": preset}} if preset else None)
    except (AutomixError, OSError) as error:
        return {"report_error": f"{path}: {error}"}
    return {"report": str(path)}


def output_path_for(input_path: Path, out_dir: Path, format_name: str | None, taken: set[Path]) -> Path:
    """Where the master of ``input_path`` goes: ``out_dir/<name>.<ext>``, never a name
    already used by another input or output of the same run."""
    names = _output_names(Path(input_path).name, format_name)
    candidate = out_dir / next(names)
    while candidate.resolve() in taken:
        candidate = out_dir / next(names)
    taken.add(candidate.resolve())
    return candidate


def output_url_for(input_name: str, out_url: str, format_name: str | None, taken: set[str]) -> str:
    """:func:`output_path_for` for an output folder given as a URL: the same names."""
    names = _output_names(input_name, format_name)
    candidate = remote.join(out_url, next(names))
    while candidate in taken:
        candidate = remote.join(out_url, next(names))
    taken.add(candidate)
    return candidate


def _output_names(input_name: str, format_name: str | None) -> Iterator[str]:
    """``<stem>.<ext>``, then ``<stem>-<input ext>.<ext>``, then ``<stem>-2.<ext>``, ..."""
    stem, input_suffix = Path(input_name).stem, Path(input_name).suffix
    if format_name:
        suffix = "." + format_name.lower().lstrip(".")
        suffix = ".m4a" if suffix == ".aac" else suffix  # AAC is written in an MP4 container
    else:
        suffix = input_suffix.lower() if input_suffix.lower() in WRITABLE_FORMATS else ".wav"
    yield f"{stem}{suffix}"
    yield f"{stem}-{input_suffix.lstrip('.').lower()}{suffix}"
    counter = 2
    while True:
        yield f"{stem}-{counter}{suffix}"
        counter += 1


# --- a batch --------------------------------------------------------------------------


@dataclass
class MasterPlan:
    """Which files ``master`` will process, where each goes, and what was left out."""

    jobs: list[tuple[Path | str, Path | str]] = field(default_factory=list)  # (input, output); str: a URL
    problems: dict[int, str] = field(default_factory=dict)  # job index -> why it cannot run
    notes: list[str] = field(default_factory=list)


def expand_master_inputs(paths: list[Path | str], notes: list[str]) -> list[Path | str]:
    """Files named explicitly, as given; folders expanded to their audio files, minus the
    ones automix wrote (with a note). A file given twice (also through a link, or by
    name and in a folder) is mastered once."""
    return _unique(_expand(paths, notes), notes)


def _unique(paths: list[Path | str], notes: list[str]) -> list[Path | str]:
    seen: dict[object, Path | str] = {}
    unique = []
    for path in paths:
        if remote.is_url(path):
            key = path
        else:
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


def _expand(paths: list[Path | str], notes: list[str]) -> list[Path | str]:
    files: list[Path | str] = []
    for path in paths:
        if remote.is_url(path):
            found = remote.expand_url(path, READABLE_EXTENSIONS)
            if found == [path]:  # named explicitly: as given
                files.append(path)
                continue
            for url in found:
                if remote.is_automix_output_url(url):
                    notes.append(f"left out {url}: written by automix; name it explicitly to master it again")
                    continue
                files.append(url)
            continue
        path = Path(path)
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


def plan_master(inputs: list[Path | str], output_dir: Path | str, format_name: str | None, dry_run: bool = False) -> MasterPlan:
    """Check ``master``'s arguments and choose every output name, reading no audio.

    Inputs and ``output_dir`` may be URLs (strings: ``s3://bucket/album/``,
    ``file:///mnt/catalogue/a.wav``); a URL folder or glob is listed through fsspec.

    Raises
    ------
    AutomixError
        For a usage error: ``-o`` is an existing file, or a folder that cannot be
        written; a URL whose protocol is unknown or whose package is missing.
        Per-file problems (an output name that is a folder, a device...) are
        returned in ``problems`` so the other files still run.
    """
    url_out = remote.is_url(output_dir)
    if url_out:
        remote.check_output_folder_url(output_dir)
    # a file:// folder is still this machine's: its names are checked against the inputs
    local_out = remote.local_path(output_dir) if url_out else Path(output_dir)
    if local_out is not None:
        if local_out.exists() and not local_out.is_dir():
            raise AutomixError(f"-o {output_dir}: exists and is not a folder (master writes one file per input into a folder)")
        if not dry_run:
            check_writable_folder(local_out, f"-o {output_dir}")
    plan = MasterPlan()
    files = expand_master_inputs(list(inputs), plan.notes)
    local_inputs = [remote.local_path(f) if remote.is_url(f) else f for f in files]
    taken = {f.resolve() for f in local_inputs if f is not None}
    taken_urls = {f for f in files if remote.is_url(f)}
    input_ids = set()
    for f in local_inputs:
        try:
            st = f.stat()
            input_ids.add((st.st_dev, st.st_ino))
        except (OSError, AttributeError):
            pass
    for src in files:
        name = Path(remote.basename(src))
        dst_path = None
        if local_out is not None:
            dst_path = output_path_for(name, local_out, format_name, taken)
            while _file_id(dst_path) in input_ids:  # a hard link or symlink to an input
                taken.add(dst_path.resolve())
                dst_path = output_path_for(name, local_out, format_name, taken)
            dst = remote.join(output_dir, dst_path.name) if url_out else dst_path
        else:
            dst = output_url_for(name.name, output_dir, format_name, taken_urls)
        index = len(plan.jobs)
        plan.jobs.append((src, dst))
        if not dry_run and dst_path is not None:
            try:
                check_writable_file(dst_path, "output")
            except AutomixError as error:
                plan.problems[index] = str(error)
    return plan


def _file_id(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


#: Runs ``fn(*arguments[i])`` for every i and yields ``(i, record)``, in any order.
Runner = Callable[[Callable[..., dict], Sequence[tuple], Sequence[str]], Iterator[tuple[int, dict]]]


@dataclass(frozen=True)
class LocalRunner:
    """Files run in this process (``workers=1``) or in worker processes
    (:func:`automix.jobs.safety.run_batch`); results come in input order."""

    workers: int = 1
    #: A temp file left in the output folder counts as stale only once its writer's
    #: process is gone and it is this old (0: the process alone decides; on this machine
    #: the process ids are ours to check).
    stale_part_age_s: float = 0.0

    def __call__(self, fn: Callable[..., dict], arguments: Sequence[tuple], labels: Sequence[str]) -> Iterator[tuple[int, dict]]:
        return run_batch(fn, arguments, labels, self.workers)


def _clean_output_folder(output_dir, runner) -> None:
    """Remove dead runs' temp files from the output folder (a local or file:// one)."""
    folder = remote.local_path(output_dir) if remote.is_url(output_dir) else Path(output_dir)
    if folder is not None:
        clean_stale_parts(folder, min_age_s=getattr(runner, "stale_part_age_s", 0.0))


def run_master_batch(plan: MasterPlan, output_dir: Path | str, settings: MasterSettings, options: OutputOptions,
                     workers: int = 1, runner: Runner | None = None, only: Sequence[int] | None = None) -> Iterator[dict]:
    """Master every file of ``plan``; yield one record per file.

    Each record has ``input``, ``output`` (None if nothing was written) and the fields
    of :func:`master_job`. A file ``plan`` refused (its output name is a folder...) gets
    an error record in its place; the others still run. Temporary files that a killed
    run left in ``output_dir`` are removed before, and those of a worker that had to be
    killed after.

    Parameters
    ----------
    workers : int
        Worker processes, when no ``runner`` is given.
    runner : Runner, optional
        Where the files run (default ``LocalRunner(workers)``, in input order; a
        cluster's runner yields them as they finish, and so does this then).
    only : sequence of int, optional
        The indices of ``plan.jobs`` to run (default: all); the others get no record.
    """
    runner = runner or LocalRunner(workers)
    if not options.dry_run:
        _clean_output_folder(output_dir, runner)
    protected = tuple(src for src, _ in plan.jobs if not remote.is_url(src))
    chosen = range(len(plan.jobs)) if only is None else sorted(only)
    runnable = [i for i in chosen if i not in plan.problems]
    per_file = {i: settings for i in runnable}
    if options.album:
        per_file = album_settings(plan, runnable, settings, options, workers, runner=runner)
        for index in [i for i in runnable if isinstance(per_file[i], str)]:
            plan.problems[index] = per_file.pop(index)
        runnable = [i for i in runnable if i in per_file]
    arguments = [(plan.jobs[i][0], plan.jobs[i][1], per_file[i], options, protected) for i in runnable]
    labels = [str(plan.jobs[i][0]) for i in runnable]
    refused_left = [i for i in chosen if i in plan.problems]  # in input order

    def record(index: int, fields: dict) -> dict:
        src, dst = plan.jobs[index]
        written = not options.dry_run and fields["status"] not in ("error", "target_missed")
        return {"input": str(src), "output": str(dst) if written else None, **fields}

    def refused_before(index: int) -> Iterator[dict]:
        # a refused file is reported where it would have run (input order, locally)
        while refused_left and refused_left[0] < index:
            refused = refused_left.pop(0)
            yield record(refused, {"status": "error", "error": plan.problems[refused]})

    try:
        with closing(runner(master_job, arguments, labels)) as results:
            for position, fields in results:
                index = runnable[position]
                yield from refused_before(index)
                yield record(index, fields)
            yield from refused_before(len(plan.jobs))
    finally:
        if not options.dry_run:
            _clean_output_folder(output_dir, runner)


# --- resumable batches ----------------------------------------------------------------


@dataclass(frozen=True)
class BatchSummary:
    """How a batch ended: files per manifest status, and the ones that failed."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    refused: int = 0
    failed_files: tuple[str, ...] = ()  # "input: error" lines, failed and refused

    def to_dict(self) -> dict:
        return {"done": self.done, "skipped": self.skipped, "failed": self.failed, "refused": self.refused,
                "failed_files": list(self.failed_files)}


def summarise(records: Sequence[dict]) -> BatchSummary:
    """Count ``records`` (job records, or manifest lines) per manifest status."""
    counts = dict.fromkeys(STATUSES, 0)
    failed = []
    for record in records:
        status = manifest_status(record["status"]) if record["status"] not in STATUSES else record["status"]
        counts[status] += 1
        if status in ("failed", "refused"):
            failed.append(f"{record['input']}: {record.get('error') or record.get('message') or status}")
    return BatchSummary(**counts, failed_files=tuple(failed))


def master_batch(plan: MasterPlan, output_dir: Path | str, settings: MasterSettings, options: OutputOptions, *,
                 runner: Runner | None = None, skip_existing: bool = False, manifest: Manifest | None = None) -> Iterator[dict]:
    """:func:`run_master_batch` that resumes: skip finished files, keep a manifest.

    With ``skip_existing``, every output that is already the complete master of its
    input with these settings (:func:`automix.jobs.manifest.check_existing`) gets a
    ``{"status": "skipped"}`` record and is not mastered again; the checks run where
    the files run (``runner``), before any file is mastered. With ``--album`` every
    track's target depends on the others, so either all tracks are skipped or none.

    With a ``manifest``, it is rewritten first without the lines of the files about to
    be mastered (and with a line for each skipped file it had no line for), then each
    finished file's line is appended as its record arrives, before the record is
    yielded. See :mod:`automix.jobs.manifest`.

    Yields
    ------
    dict
        One record per file of ``plan``: the skipped ones first, as they are found
        (their manifest lines are written once all are checked), then the others as
        they finish.
    """
    runner = runner or LocalRunner()
    settings_sha256 = settings_digest(options.provenance)
    skipped: dict[int, dict] = {}
    if skip_existing:  # read-only: a dry run shows what a real one would leave alone
        for index, record in _find_finished(plan, options, runner, manifest, settings_sha256):
            skipped[index] = record
            if not options.album:  # an album is skipped whole or not at all: known at the end
                yield record
    redo = [i for i in range(len(plan.jobs)) if i not in skipped]
    if options.album and redo and skipped:
        plan.notes.append(f"album: {len(redo)} of {len(plan.jobs)} tracks need mastering; all are mastered again, as each "
                          "track's target depends on every other track")
        skipped, redo = {}, list(range(len(plan.jobs)))
    if manifest is not None and not options.dry_run:
        fresh = []
        for index, record in skipped.items():
            old = manifest.line_for(*plan.jobs[index])
            if not (old and old.get("status") in ("done", "skipped") and old.get("output_sha256") == record["output_sha256"]
                    and old.get("settings_sha256") == settings_sha256):
                fresh.append(manifest_line(record, *plan.jobs[index], settings_sha256))
        manifest.start([plan.jobs[i] for i in redo], fresh)
    if options.album:
        yield from (skipped[index] for index in sorted(skipped))
    if not redo:
        return
    position_of = {str(src): i for i, (src, _) in enumerate(plan.jobs)}  # inputs are unique (expand_master_inputs)
    for record in run_master_batch(plan, output_dir, settings, options, runner=runner, only=redo):
        if manifest is not None and not options.dry_run:
            manifest.append(manifest_line(record, *plan.jobs[position_of[record["input"]]], settings_sha256))
        yield record


def _find_finished(plan: MasterPlan, options: OutputOptions, runner: Runner, manifest: Manifest | None,
                   settings_sha256: str) -> Iterator[tuple[int, dict]]:
    """The files of ``plan`` whose outputs are already done: ``(index, skipped record)``
    as each check ends."""
    candidates = [i for i in range(len(plan.jobs)) if i not in plan.problems]
    arguments = []
    for i in candidates:
        src, dst = plan.jobs[i]
        old = manifest.line_for(src, dst) if manifest is not None else None
        recorded = old.get("output_sha256") if old and old.get("status") in ("done", "skipped") \
            and old.get("settings_sha256") == settings_sha256 else None
        arguments.append((src, dst, options.provenance, recorded))
    with closing(runner(check_existing, arguments, [str(plan.jobs[i][0]) for i in candidates])) as results:
        for position, result in results:
            if result.get("status") == "skipped":
                index = candidates[position]
                src, dst = plan.jobs[index]
                yield index, {"input": str(src), "output": str(dst), **result}


# --- album mode -----------------------------------------------------------------------


def measure_job(input_path: Path | str, sample_rate: int | None) -> dict:
    """Integrated loudness of one input (streamed; no true peak needed), as a record."""
    with remote.local_copies(input_path, None) as (local_in, _):
        source = file_source(local_in, sample_rate=sample_rate)
        meter = LoudnessMeter(source.sample_rate, source.channels, true_peak=False)
        for block in source.blocks():
            meter.add(block)
        measured = meter.result()
    return {"status": "ok", "integrated_lufs": measured.integrated_lufs, "momentary_lufs": measured.momentary_lufs}


def album_settings(plan: MasterPlan, runnable: list[int], settings: MasterSettings, options: OutputOptions,
                   workers: int, runner: Runner | None = None) -> dict[int, MasterSettings | str]:
    """Per-track targets that keep the tracks' relative loudness (``--album``).

    Every track is measured first; the loudest goes to the preset's target and each
    other track to the target minus its distance from the loudest, so the differences
    the artist chose survive. Each track still gets its own closed loop under the
    ceiling, so the differences hold within the loop's +-0.03 LU. A track that cannot
    be measured fails (its message in place of settings); the rest form the album.
    """
    arguments = [(plan.jobs[i][0], options.sample_rate) for i in runnable]
    runner = runner or LocalRunner(workers)
    measured = {runnable[position]: fields
                for position, fields in runner(measure_job, arguments, [str(plan.jobs[i][0]) for i in runnable])}
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
