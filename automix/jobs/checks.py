"""Everything a job can check before reading any audio.

A bad argument found after a five-minute mix is a five-minute loss, and a wrong output
path can destroy an input. So every path and name is checked here, up front, without
decoding anything: the CLI turns these :class:`AutomixError`\\ s into exit code 2.

Policy for automix's own outputs (recognised by ``is_automix_output``):

* ``master``: a file named explicitly is mastered whatever wrote it; files found by
  expanding a folder are left out with a note when automix wrote them, so
  ``master D -o D`` run twice does not master its own masters.
* ``mix``: automix outputs in the stems folder are always left out with a note, so a
  mix written into the stems folder is never mixed in by the next run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from automix.errors import AutomixError
from automix.io.formats import (
    LOSSY_FORMAT_NAMES,
    LOSSY_FORMATS,
    READABLE_EXTENSIONS,
    WRITABLE_FORMATS,
)
from automix.io.paths import (
    check_output_folder,
    check_output_paths,
    clean_stale_parts,
    existing_output_target,
    is_automix_output,
    os_error_reason,
)

__all__ = ["check_mix_arguments", "clean_stale_parts", "is_automix_output", "list_folder", "scan_stems_folder"]


#: Exported stems are named ``NN_<stem>.wav`` (see ``mix_folder``).
EXPORTED_STEM = re.compile(r"^\d{2,}_.*\.wav$", re.IGNORECASE)

#: What ``--report`` can write: a page with plots, or the JSON it is drawn from.
REPORT_SUFFIXES = (".json", ".html", ".htm")


def same_path(a: Path, b: Path) -> bool:
    """True if ``a`` and ``b`` name one file: through symlinks and hard links."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they resolve
        return os.path.realpath(a) == os.path.realpath(b)


def inside(path: Path, folder: Path) -> bool:
    """True if ``path`` is ``folder`` or anywhere below it (symlinks resolved)."""
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


def check_writable_file(path: Path, what: str) -> None:
    """An output file: nothing but a regular file may exist there, and its folder must
    be writable (or creatable)."""
    try:
        existing_output_target(Path(path))
        check_output_folder(Path(path).parent)
    except AutomixError as error:
        raise AutomixError(f"{what} {error}") from None


def check_writable_folder(folder: Path, what: str) -> None:
    """A folder automix will write into: existing and writable, or creatable."""
    try:
        check_output_folder(Path(folder))
    except AutomixError as error:
        raise AutomixError(f"{what}: {error}") from None


def check_audio_output_name(path: Path, format_name: str | None, what: str = "-o") -> None:
    """The container comes from ``--format`` or the extension: one of them must name a
    format automix writes."""
    if format_name:
        if format_name.strip().lower().lstrip(".") in LOSSY_FORMAT_NAMES:
            from automix.io.lossy import lossy_target

            lossy_target(path, format_name)
            suffix = LOSSY_FORMAT_NAMES[format_name.strip().lower().lstrip(".")][1]
            if path.suffix.lower() in (*WRITABLE_FORMATS, *LOSSY_FORMATS) and LOSSY_FORMATS.get(path.suffix.lower()) != LOSSY_FORMATS[suffix]:
                raise AutomixError(f"{what} {path}: the name says {path.suffix.lstrip('.')} but --format says {format_name}; "
                                   f"name it {path.stem}{suffix}")
        return  # the rest is checked with the other options
    allowed = ", ".join(sorted({k.lstrip(".") for k in (*WRITABLE_FORMATS, *LOSSY_FORMATS)}))
    if not path.suffix:
        raise AutomixError(f"{what} {path}: no extension; name the file .wav, .flac, .aiff, .mp3, .opus or .m4a, or pass --format ({allowed})")
    if path.suffix.lower() in LOSSY_FORMATS:
        from automix.io.lossy import (
            lossy_target,  # is the encoder there? (PyAV: no audio read)
        )

        lossy_target(path)
        return
    if path.suffix.lower() not in WRITABLE_FORMATS:
        raise AutomixError(f"{what} {path}: automix cannot write '{path.suffix.lstrip('.')}' files; use one of {allowed} (or --format)")


def check_outputs_against_inputs(inputs, outputs: dict[str, Path]) -> None:
    """No output may be an input or another output of the same run.

    ``outputs`` maps a description (``"-o"``, ``"--report"``) to a path.
    """
    items = [(what, Path(path)) for what, path in outputs.items() if path is not None]
    for what, path in items:
        for source in inputs:
            if same_path(path, Path(source)):
                raise AutomixError(f"{what} {path} is the input {source}; refusing to overwrite an input")
    for i, (what_a, a) in enumerate(items):
        for what_b, b in items[i + 1:]:
            if same_path(a, b):
                raise AutomixError(f"{what_a} and {what_b} name the same file ({a}); give each its own name")
    check_output_paths(list(map(Path, inputs)), [path for _, path in items])


# --- mix -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StemScan:
    """What a stems folder holds: the stems to mix and what was left out, and why."""

    files: tuple[Path, ...]
    skipped: tuple[tuple[str, str, str], ...]  # (name, reason, kind)


def scan_stems_folder(folder: Path) -> StemScan:
    """List the stems in ``folder`` without decoding them.

    Left out, each with a reason: subfolders (automix does not mix recursively), files
    that are not audio by their extension, and files automix wrote (a previous mix,
    exported stems). Hidden files (``.DS_Store``, temporary ``.part`` files) are ignored
    silently.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AutomixError(f"{folder}: not a folder of stems")
    files, skipped = [], []
    for child in list_folder(folder):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            skipped.append((child.name, "a subfolder; automix mixes the files directly in the stems folder", "subfolder"))
        elif child.suffix.lower() not in READABLE_EXTENSIONS:
            skipped.append((child.name, f"not an audio file (automix reads {', '.join(e.lstrip('.') for e in READABLE_EXTENSIONS)})", "not audio"))
        elif not child.is_file():
            skipped.append((child.name, "not a regular file", "not audio"))
        elif is_automix_output(child):
            skipped.append((child.name, "written by automix (an earlier mix or exported stem); automix never mixes its own outputs back in", "automix output"))
        else:
            files.append(child)
    if not files:
        if any(kind == "automix output" for _, _, kind in skipped):
            raise AutomixError(f"{folder}: no audio files besides automix's own outputs")
        raise AutomixError(f"{folder}: no audio files in the folder")
    return StemScan(tuple(files), tuple(skipped))


def list_folder(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as error:
        raise AutomixError(f"{folder}: cannot list the folder ({os_error_reason(error)})") from None


def check_role_overrides(role_overrides: dict[str, str], stems: tuple[Path, ...]) -> None:
    names = {p.name for p in stems} | {p.stem for p in stems}
    unknown = sorted(set(role_overrides) - names)
    if unknown:
        raise AutomixError(f"--role names no stem in the folder: {', '.join(unknown)} (stems: {', '.join(p.name for p in stems)})")


def check_mix_arguments(folder: Path, output: Path, format_name: str | None, *, role_overrides: dict[str, str] | None = None,
                        export_stems: Path | None = None, report_path: Path | None = None, dry_run: bool = False) -> StemScan:
    """Check every argument of ``mix`` against the folder's file names; read no audio.

    Returns
    -------
    StemScan
        The stems to read and what was left out.

    Raises
    ------
    AutomixError
        For any usage error.
    """
    scan = scan_stems_folder(folder)
    output = Path(output)
    if output.is_dir():
        raise AutomixError(f"-o {output}: is a folder; name the mix file, e.g. {output / 'mix.wav'}")
    check_audio_output_name(output, format_name)
    check_role_overrides(role_overrides or {}, scan.files)
    if export_stems is not None:
        export_stems = Path(export_stems)
        if inside(export_stems, folder):
            raise AutomixError(f"--export-stems {export_stems}: inside the stems folder {folder}; the next mix would mix them in. Choose another folder")
        if same_path(export_stems, output) or (report_path is not None and same_path(export_stems, Path(report_path))):
            raise AutomixError(f"--export-stems {export_stems}: is also the output file; give a folder of its own")
        if export_stems.exists() and not export_stems.is_dir():
            raise AutomixError(f"--export-stems {export_stems}: exists and is not a folder")
        for what, path in (("-o", output), ("--report", report_path)):
            if path is not None and Path(path).parent.resolve() == export_stems.resolve() and EXPORTED_STEM.match(Path(path).name):
                raise AutomixError(f"{what} {path}: an exported stem may get that name; choose another name or folder")
    check_outputs_against_inputs(scan.files, {"-o": output, "--report": report_path})
    if report_path is not None and Path(report_path).suffix.lower() not in REPORT_SUFFIXES:
        raise AutomixError(f"--report {report_path}: name the report .html (a page with plots) or .json")
    if not dry_run:
        check_writable_file(output, "-o")
        if report_path is not None:
            check_writable_file(Path(report_path), "--report")
        if export_stems is not None:
            check_writable_folder(export_stems, f"--export-stems {export_stems}")
    return scan


#: ``--report`` names a file with one of these suffixes; anything else is a folder.
REPORT_SUFFIXES = (".html", ".htm", ".json")


def check_master_report(report: Path, jobs: list[tuple]) -> Path:
    """``master --report``: a ``.html``/``.json`` file for one input, else a folder that
    gets one ``<output name>.html`` per input. Never an input or an output of the run,
    checked before any audio is read.

    Returns the path as it will be used (absolute: workers of a cluster get it too).
    """
    report = Path(report).absolute()
    if report.suffix.lower() in REPORT_SUFFIXES:
        if len(jobs) > 1:
            raise AutomixError(f"--report {report}: one report file for {len(jobs)} inputs; give a folder "
                               "(each input gets <name>.html in it)")
        check_writable_file(report, "--report")
        targets = [report]
    else:
        if report.exists() and not report.is_dir():
            raise AutomixError(f"--report {report}: exists and is not a folder; name a folder, or a .html/.json file")
        check_writable_folder(report, "--report")
        targets = [report / (Path(str(dst)).stem + ".html") for _, dst in jobs]
    for target in targets:
        for src, dst in jobs:
            for what, other in (("input", src), ("output", dst)):
                if isinstance(other, Path) and same_path(target, other):
                    raise AutomixError(f"--report {target}: is the {what} {other}; give the report its own name")
    return report


def master_report_path(report: Path, output: Path | str) -> Path:
    """Where ``master --report`` writes the report of the master written to ``output``."""
    if report.suffix.lower() in REPORT_SUFFIXES:
        return report
    return report / (Path(str(output)).stem + ".html")
