"""Command-line interface: parse options, call the library, print.

Exit codes (the same for every command):

* 0 -- everything asked for was done;
* 1 -- at least one input failed (the others were still processed);
* 2 -- usage error (bad option, bad preset, nothing to do);
* 3 -- a loudness target could not be met within the allowed limiting (see ``--over-limit``);
* 130, 143, 129 -- stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP (the terminal closed):
  workers stopped, no temporary file left;
* 141 -- stopped because standard output's reader left (as SIGPIPE stops a command).

An unexpected internal error prints one line and exits 1; ``AUTOMIX_DEBUG=1`` in the
environment adds the traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from contextlib import closing, suppress
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from automix import __version__
from automix.errors import AutomixError
from automix.io.formats import LOSSY_FORMAT_NAMES
from automix.jobs.checks import check_mix_arguments
from automix.jobs.options import OutputOptions
from automix.jobs.safety import (
    BUG_NOTE,
    Stopped,
    cap_jobs,
    debug_traceback,
    describe_error,
    error_record,
    install_stop_handlers,
)
from automix.master.platforms import OVER_LIMIT_CHOICES, PLATFORMS, resolve_targets
from automix.presets import (
    ROLES,
    GroupSettings,
    MasterSettings,
    MixSettings,
    Preset,
    RoleRules,
    available_presets,
    describe_settings,
    load_preset,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TARGET_MISSED = 0, 1, 2, 3

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Automatic mixing and mastering: balance a folder of stems, master finished mixes.",
)


class _Messages:
    """stderr for people. A message that cannot be written (``2>>log`` on a full disk, a
    reader of ``2>&1`` that left, ``2>&-``: no stderr at all) is lost, never the batch
    that was writing it. The stream is looked up at each write, so a harness that swaps
    ``sys.stderr`` (typer's CliRunner) still gets every message."""

    def write(self, text: str) -> int:
        with suppress(OSError, ValueError, AttributeError):  # ValueError: closed; AttributeError: None
            sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        with suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()

    def isatty(self) -> bool:
        try:
            return sys.stderr.isatty()
        except (OSError, ValueError, AttributeError):
            return False

    def fileno(self) -> int:
        if sys.stderr is None:
            raise OSError("no standard error stream")
        return sys.stderr.fileno()

    @property
    def encoding(self) -> str:
        return getattr(sys.stderr, "encoding", None) or "utf-8"


stdout = Console()
stderr = Console(file=_Messages())


def fail(message: str) -> None:
    """One line on stderr, no traceback."""
    stderr.print(f"[bold red]automix:[/] {escape(message)}", highlight=False, soft_wrap=True)


def emit(line: str) -> None:
    """One line on standard output, for whatever reads it (see :func:`_reader_gone`)."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        raise _reader_gone() from None


def _reader_gone() -> Stopped:
    """Standard output's reader has gone (``automix master *.wav --json | head -1``): the
    run stops as SIGPIPE stops a shell command, through a signal's clean-up (workers
    stopped, temporary files removed) and with its exit code, 141. Not typer's silent
    exit 1, which reads as "a file failed", and not a batch that goes on for nobody:
    what is written is whole, and ``--skip-existing`` goes on from there."""
    with suppress(OSError):  # what is still buffered, and any later write, go nowhere
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    return Stopped(signal.SIGPIPE)


def version_callback(value: bool) -> None:
    if value:
        print(f"automix {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """Automatic mixing and mastering from the command line."""


@app.command("analyze")
def analyze_command(
    paths: list[Path] = typer.Argument(..., help="Audio files, or folders of audio files."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file and line, for scripts."),
) -> None:
    """Measure loudness (BS.1770), peaks, dynamics, spectrum and stereo image."""
    try:
        # heavy imports only where they are used, so --help and --version start fast
        from automix.io.audio import find_audio_files, read_audio
        from automix.measure.analyzer import analyze

        files = find_audio_files(paths)
    except OSError as error:
        fail(describe_error(error))
        raise typer.Exit(EXIT_USAGE) from None
    if not files:
        fail("no audio files found in " + ", ".join(map(str, paths)))
        raise typer.Exit(EXIT_USAGE)
    rows, failed = [], 0
    for path in files:
        try:
            analysis = analyze(read_audio(path))
        except Exception as error:  # noqa: BLE001 - one bad file never stops the others
            failed += 1
            record = error_record(error, path)
            fail(record["error"])
            if as_json:
                emit(json.dumps({"input": str(path), **record}))
            continue
        tagged = _tagged_loudness(path)
        if as_json:
            emit(json.dumps({"input": str(path), "status": "ok", **analysis.to_dict(), "tagged": tagged}))
        else:
            rows.append((path, analysis, tagged))
    if rows:
        print_table(_analysis_table(rows))
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _tagged_loudness(path: Path) -> dict:
    """What the file's own metadata claims (BWF bext, ReplayGain, R128), to show beside
    the measurement; ``{}`` if nothing, or if the metadata cannot be read."""
    from automix.io.metadata import read_metadata, tagged_loudness

    try:
        return tagged_loudness(read_metadata(path))
    except Exception:  # noqa: BLE001 - damaged tags never stop the measurement
        return {}


# --- options shared by master and mix -------------------------------------------------

PresetOption = typer.Option("pop", "--preset", "-p", help="Genre preset (see `automix presets`).")
PresetFileOption = typer.Option(None, "--preset-file", help="Your own preset TOML (may `extends` a shipped one).")
TargetOption = typer.Option(None, "--target-lufs", help="Integrated loudness of the master [default: from the preset].")
CeilingOption = typer.Option(None, "--ceiling-dbtp", help="Highest true peak [default: from the preset].")
MaxLimitingOption = typer.Option(None, "--max-limiting-db", help="Most limiter gain reduction allowed [default: from the preset].")
PlatformOption = typer.Option(None, "--platform", help="Loudness target of a platform: " + ", ".join(PLATFORMS) + ".")
OverLimitOption = typer.Option("fail", "--over-limit", help="If the target needs more limiting than allowed: fail (exit 3, nothing written), quieter, or force.")
BitDepthOption = typer.Option("24", "--bit-depth", help="16 (dithered), 24 or 32f.")
SampleRateOption = typer.Option(None, "--sample-rate", help="Output sample rate [default: the input's].")
FormatOption = typer.Option(None, "--format", help="wav, flac, aiff, or mp3, opus, aac (judged as decoded) [default: from the output name].")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress output.")
JsonOption = typer.Option(False, "--json", help="One JSON object per result and line on stdout.")
CodecSafeOption = typer.Option(None, "--codec-safe", help="Lossy codecs (e.g. mp3,aac,opus or aac:128) whose decoded true peak must also stay under the ceiling.")
ReferenceOption = typer.Option(None, "--reference", help="A finished track to sound like: its tonal balance, width and density (and loudness, unless a target is given).")
AmountOption = typer.Option(1.0, "--amount", min=0.0, max=1.0, help="0..1: how much of automix's corrections to apply (master: tonal EQ, width, glue; mix: also each stem's level, high-pass, cuts, compression, pan); 0 = loudness only, the stems at their own levels. Your --gain/--pan/--mute/--focus apply in full.")


def resolve_preset(preset: str, preset_file: Path | None, platform: str | None, target_lufs: float | None,
                   ceiling_dbtp: float | None, max_limiting_db: float | None) -> Preset:
    """Preset, then platform, then explicit flags: later ones win, and the report says which."""
    if preset_file is not None:
        if not preset_file.exists():
            raise AutomixError(f"--preset-file {preset_file}: no such file")
        if not preset_file.is_file():
            raise AutomixError(f"--preset-file {preset_file}: not a file")
        if preset_file.suffix.lower() != ".toml":
            raise AutomixError(f"--preset-file {preset_file}: expected a .toml file")
    resolved = read_preset(preset_file if preset_file else preset)
    if platform:
        platform_settings = resolve_targets(resolved.master, platform)
        resolved = resolved.with_overrides(
            {"target_lufs": platform_settings.target_lufs, "ceiling_dbtp": platform_settings.ceiling_dbtp}, f"--platform {platform}")
    flags = {key: value for key, value in (("target_lufs", target_lufs), ("ceiling_dbtp", ceiling_dbtp), ("max_limiting_db", max_limiting_db)) if value is not None}
    return resolved.with_overrides(flags, "command line")


def read_preset(name_or_path) -> Preset:
    """``load_preset``, with every way a preset file can be unreadable worded as an error."""
    if str(name_or_path).lower().endswith(".toml") and not Path(name_or_path).exists():
        raise AutomixError(f"{name_or_path}: no such file")
    try:
        return load_preset(name_or_path)
    except UnicodeDecodeError as error:
        raise AutomixError(f"{name_or_path}: not UTF-8 text (byte {error.start}); a TOML preset must be UTF-8") from None
    except OSError as error:
        raise AutomixError(describe_error(error, name_or_path)) from None


@dataclasses.dataclass(frozen=True)
class _Matched:
    reference: object
    target: float | None


def load_reference(path: Path, sets_target: bool):
    """Measure ``--reference`` once for the whole run; its loudness becomes the target
    when the user gave none. A reference that cannot be used is a usage error (exit 2)."""
    from automix.master.reference import analyze_reference, reference_target_lufs

    try:
        reference = analyze_reference(path)
    except AutomixError as error:
        fail(f"--reference: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    for warning in reference.warnings:
        stderr.print(f"[yellow]warning[/] --reference {escape(str(path))}: {escape(warning)}", highlight=False)
    if not sets_target:
        return _Matched(reference, None), ""
    target, note = reference_target_lufs(reference)
    return _Matched(reference, target), note


def provenance_for(resolved: Preset, preset_file: Path | None, options: dict):
    """What made the output, for its metadata: the options that shape the audio, the
    preset and the digest of its file, and the settings that differ from the preset."""
    from automix.io.metadata import Provenance

    path = preset_file if preset_file is not None else available_presets().get(resolved.name)
    changed = {key: origin for key, origin in resolved.origins.items() if not str(origin).endswith(".toml")}
    changed = {key: getattr(getattr(resolved, key.split(".")[0]), key.split(".")[1]) for key in changed if "." in key
               and hasattr(resolved, key.split(".")[0])}
    return Provenance.build(options, preset=resolved.name, preset_path=path, changed=changed)


def check_output_options(bit_depth: str, over_limit: str, format_name: str | None, sample_rate: int | None,
                         codec_safe: str | None = None) -> None:
    if bit_depth not in ("16", "24", "32f"):
        raise AutomixError(f"--bit-depth must be 16, 24 or 32f, not {bit_depth!r}")
    if over_limit not in OVER_LIMIT_CHOICES:
        raise AutomixError(f"--over-limit must be one of {', '.join(OVER_LIMIT_CHOICES)}, not {over_limit!r}")
    if format_name and format_name.lower().lstrip(".") in LOSSY_FORMAT_NAMES:
        from automix.io.lossy import (
            lossy_target,  # the encoder must exist before any audio is read
        )

        lossy_target(None, format_name)
    elif format_name and format_name.lower().lstrip(".") not in ("wav", "flac", "aif", "aiff"):
        raise AutomixError(f"--format must be wav, flac, aiff, mp3, opus or aac, not {format_name!r}")
    if format_name and format_name.lower() == "flac" and bit_depth == "32f":
        raise AutomixError("FLAC cannot hold 32-bit float; use --bit-depth 16 or 24, or --format wav")
    if sample_rate is not None and not 8000 <= sample_rate <= 384000:
        raise AutomixError(f"--sample-rate must be between 8000 and 384000 Hz, not {sample_rate}")
    if codec_safe is not None:
        from automix.master.codecs import parse_codecs

        try:
            parse_codecs(codec_safe)
        except AutomixError as error:
            raise AutomixError(f"--codec-safe {codec_safe}: {error}") from None


@app.command("master")
def master_command(
    inputs: list[str] = typer.Argument(..., help="Mixes to master: files, folders, shell globs, or URLs (s3://, file://...)."),
    output_dir: str = typer.Option(..., "--output-dir", "-o", help="Folder for the masters (created if needed); may be a URL."),
    preset: str = PresetOption,
    preset_file: Path | None = PresetFileOption,
    target_lufs: float | None = TargetOption,
    ceiling_dbtp: float | None = CeilingOption,
    max_limiting_db: float | None = MaxLimitingOption,
    platform: str | None = PlatformOption,
    over_limit: str = OverLimitOption,
    bit_depth: str = BitDepthOption,
    sample_rate: int | None = SampleRateOption,
    format_name: str | None = FormatOption,
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Files mastered in parallel."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Measure and report; write nothing."),
    codec_safe: str | None = CodecSafeOption,
    amount: float = AmountOption,
    album: bool = typer.Option(False, "--album", help="Keep the tracks' relative loudness: the loudest at the target, the others as far below it as they were."),
    reference: Path | None = ReferenceOption,
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Leave a file whose output is already its complete master with these settings (its provenance tag says so)."),
    manifest: str | None = typer.Option(None, "--manifest", help="Append one JSON line per finished file here (a rerun keeps one line per file)."),
    cluster: str | None = typer.Option(None, "--cluster", help="Run the files on a Dask scheduler at this address (or $AUTOMIX_CLUSTER); needs automix[cluster]."),
    report: Path | None = typer.Option(None, "--report", help="Report of every decision, with plots: a .html (or .json) file for one input, or a folder getting <name>.html per input."),
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Master finished mixes to a loudness target under a true-peak ceiling."""
    from automix.io.remote import is_url

    # a URL stays a string (a Path would fold its "//"); the rest are paths
    input_locations = [text if is_url(text) else Path(text) for text in inputs]
    output_location = output_dir if is_url(output_dir) else Path(output_dir)
    runner = None
    try:
        check_output_options(bit_depth, over_limit, format_name, sample_rate, codec_safe)
        resolved = resolve_preset(preset, preset_file, platform, target_lufs, ceiling_dbtp, max_limiting_db)
        from automix.jobs.master_files import plan_master

        if manifest is not None:
            if dry_run:
                raise AutomixError("--manifest records what was written; --dry-run writes nothing")
            from automix.jobs.manifest import check_manifest_path

            manifest = check_manifest_path(manifest)
        address = _cluster_option(cluster)
        if address is not None:  # the workers' working folder is not ours: they get absolute paths
            input_locations = [p.absolute() if isinstance(p, Path) else p for p in input_locations]
            output_location = output_location.absolute() if isinstance(output_location, Path) else output_location
        plan = plan_master(input_locations, output_location, format_name, dry_run)
        if reference is not None:
            from automix.master.reference import check_reference_path

            check_reference_path(reference, inputs=[p for p in input_locations if isinstance(p, Path)],
                                 outputs=[dst for _, dst in plan.jobs if isinstance(dst, Path)])
        if report is not None:
            from automix.jobs.checks import check_master_report

            report = check_master_report(report, plan.jobs)
        if manifest is not None:
            from automix.jobs.manifest import Manifest

            _check_manifest_is_no_output(manifest, plan)
            manifest = Manifest(manifest)  # read now: an unreadable one is a usage error too
        if address is not None and plan.jobs:
            from automix.jobs.cluster import connect

            runner = connect(address)  # last: the cheap checks first, and it may take seconds
    except (AutomixError, OSError) as error:  # OSError: a path the system refuses (name too long...)
        fail(describe_error(error))
        raise typer.Exit(EXIT_USAGE)
    try:
        options = {"preset_file": preset_file, "target_lufs": target_lufs, "ceiling_dbtp": ceiling_dbtp,
                   "max_limiting_db": max_limiting_db, "platform": platform, "over_limit": over_limit, "bit_depth": bit_depth,
                   "sample_rate": sample_rate, "format_name": format_name, "codec_safe": codec_safe, "amount": amount,
                   "album": album, "dry_run": dry_run, "reference": reference, "report": report}
        _master_batch(plan, inputs, output_location, resolved, options, jobs=jobs, runner=runner, skip_existing=skip_existing,
                      manifest=manifest, quiet=quiet, as_json=as_json)
    finally:
        if runner is not None:
            runner.close()


def _cluster_option(cluster: str | None) -> str | None:
    """``--cluster``, else ``$AUTOMIX_CLUSTER``; checked here so that a bad value is a
    usage error before any audio is read."""
    from automix.jobs.cluster import cluster_address, require_distributed

    address = cluster_address(cluster)
    if address is not None:
        require_distributed(f"--cluster {address}" if cluster else f"AUTOMIX_CLUSTER={address}")
    return address


def _check_manifest_is_no_output(manifest: Path, plan) -> None:
    from automix.jobs.checks import same_path

    for src, dst in plan.jobs:
        for what, other in (("input", src), ("output", dst)):
            if isinstance(other, Path) and same_path(manifest, other):
                raise AutomixError(f"--manifest {manifest}: is the {what} {other}; give the manifest its own name")


def _master_batch(plan, inputs, output_location, resolved: Preset, options: dict, jobs: int, runner,
                  skip_existing: bool, manifest, quiet: bool, as_json: bool) -> None:
    """Run ``master``'s batch, print one line per file and the summary; exits."""
    from automix.jobs.master_files import LocalRunner, master_batch, summarise

    for note in plan.notes:
        _note(note, quiet)
    if not plan.jobs:
        fail("no audio files to master in " + ", ".join(map(str, inputs)))
        raise typer.Exit(EXIT_USAGE)
    if runner is None:
        workers, capped = cap_jobs(jobs, len(plan.jobs) - len(plan.problems))
        if capped:
            _note(capped, quiet)
        runner = LocalRunner(workers)
        if workers == 1:
            from automix.io.helper import helper

            helper()  # forked now, before the progress display starts a thread
    elif jobs > 1:
        _note(f"--jobs {jobs} is ignored with --cluster: each worker's threads set how many files it masters at once", quiet)
    if getattr(runner, "client", None) is not None and not runner.workers:
        _note("no worker is connected to the cluster yet: the files wait for the first one", quiet)
    reference = options["reference"]
    shaping = {"target_lufs": options["target_lufs"], "ceiling_dbtp": options["ceiling_dbtp"],
               "max_limiting_db": options["max_limiting_db"], "platform": options["platform"],
               "over_limit": options["over_limit"], "bit_depth": options["bit_depth"], "sample_rate": options["sample_rate"],
               "format": options["format_name"], "codec_safe": options["codec_safe"], "amount": options["amount"],
               "album": options["album"] or None}
    if reference is not None:  # the reference shapes the audio: a master made against another one is not this one
        from automix.io.metadata import input_digest

        shaping["reference_sha256"] = input_digest(reference)
    output_options = OutputOptions(options["bit_depth"], options["sample_rate"], options["format_name"], options["over_limit"],
                                   options["dry_run"], options["codec_safe"], options["amount"],
                                   provenance_for(resolved, options["preset_file"], shaping), options["album"],
                                   report=options["report"])
    if reference is not None:
        matched, note = load_reference(reference, options["target_lufs"] is None and options["platform"] is None)
        if note:
            _note(note, quiet)
            resolved = resolved.with_overrides({"target_lufs": matched.target}, "--reference")
        output_options = dataclasses.replace(output_options, reference=matched.reference)
    batch_options = skip_existing or manifest is not None or getattr(runner, "client", None) is not None
    if manifest is not None and manifest.damaged:
        _note(f"--manifest {manifest.path}: {manifest.damaged} damaged line(s) left out (a run killed mid-line?)", quiet)
    notes_shown = len(plan.notes)
    records = []
    try:
        with _progress(len(plan.jobs), quiet, "mastering") as progress, \
                closing(master_batch(plan, output_location, resolved.master, output_options, runner=runner,
                                     skip_existing=skip_existing, manifest=manifest)) as results:
            for record in results:
                records.append({"input": record["input"], "status": record["status"],
                                "error": record.get("error") or record.get("message")})
                if as_json:
                    emit(json.dumps(record))
                for note in plan.notes[notes_shown:]:  # what the batch found on the way (--album)
                    _note(note, quiet)
                notes_shown = len(plan.notes)
                _report_line(record, quiet, progress)
                progress.advance()
    finally:
        if manifest is not None:
            manifest.close()
    summary = summarise(records)
    if as_json and batch_options:  # a script gets the summary as the last line (not by default: one line per file)
        emit(json.dumps({"summary": summary.to_dict()}))
    if not quiet:
        skipped = f", {summary.skipped} skipped (already done)" if skip_existing else ""
        stderr.print(f"{summary.done} mastered{skipped}, {summary.refused} missed the target, {summary.failed} failed", highlight=False)
        if batch_options and summary.failed_files:
            stderr.print("not mastered:\n" + "\n".join(f"  {escape(line)}" for line in summary.failed_files), highlight=False,
                         soft_wrap=True)
    raise typer.Exit(EXIT_FAILED if summary.failed else EXIT_TARGET_MISSED if summary.refused else EXIT_OK)


def _note(text: str, quiet: bool) -> None:
    if not quiet:
        stderr.print(f"note: {escape(text)}", highlight=False, soft_wrap=True)


class _Progress:
    """A rich progress bar on a terminal; nothing otherwise (plain lines are printed instead)."""

    def __init__(self, total: int, enabled: bool, label: str) -> None:
        self.bar = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TimeElapsedColumn,
            )

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=stderr, transient=True)
            self.task = self.bar.add_task(label, total=total)

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.__exit__(*exc)

    def advance(self) -> None:
        if self.bar:
            self.bar.advance(self.task)

    def print(self, text: str) -> None:
        (self.bar.console if self.bar else stderr).print(text, highlight=False, soft_wrap=True)


def _progress(total: int, quiet: bool, label: str) -> _Progress:
    return _Progress(total, enabled=not quiet and stderr.is_terminal, label=label)


def _heard(record: dict, decoded_key: str, key: str) -> float:
    """What a listener gets: the decoded file's reading for mp3/opus/aac, else the PCM's."""
    return record["decoded"][decoded_key] if record.get("decoded") else record[key]


def _report_line(record: dict, quiet: bool, progress: _Progress) -> None:
    """One human line per file on stderr: errors always, results unless --quiet."""
    name = Path(record["input"]).name
    if record["status"] == "skipped":
        if not quiet:
            progress.print(f"skipped {escape(name)}: {escape(str(record['output']))} is already done")
        return
    if record["status"] == "error":
        progress.print(f"[bold red]automix:[/] {escape(record['error'])}")
        return
    if record["status"] == "target_missed":
        progress.print(f"[yellow]missed[/] {escape(name)}: {escape(record['message'])}")
        return
    for warning in record.get("warnings", []):
        progress.print(f"[yellow]warning[/] {escape(name)}: {escape(warning)}")
    if record.get("report_error"):
        progress.print(f"[yellow]warning[/] {escape(name)}: no report: {escape(record['report_error'])}")
    if quiet:
        return
    where = f" -> {record['output']}" if record.get("output") else " (dry run)"
    note = escape(f"  [{record['status']}: {record['message']}]") if record["status"] != "ok" else ""
    progress.print(
        f"ok {escape(name)}{escape(where)}  {record['input_lufs']:.1f} -> {_heard(record, 'integrated_lufs', 'output_lufs'):.2f} LUFS, "
        f"{_heard(record, 'true_peak_dbtp', 'output_true_peak_dbtp'):.2f} dBTP{' decoded' if record.get('decoded') else ''}, limiter {record['limiter_max_gain_reduction_db']:.1f} dB{note}"
    )


@app.command("mix")
def mix_command(
    folder: Path = typer.Argument(..., help="Folder of stems (WAV, FLAC, AIFF, OGG, MP3)."),
    output: Path = typer.Option(..., "--output", "-o", help="The mixed and mastered file (.wav, .flac, .aiff)."),
    preset: str = PresetOption,
    preset_file: Path | None = PresetFileOption,
    roles: list[str] = typer.Option([], "--role", help="Set a stem's role: FILE=ROLE (repeatable), e.g. --role take3=bass."),
    target_lufs: float | None = TargetOption,
    ceiling_dbtp: float | None = CeilingOption,
    max_limiting_db: float | None = MaxLimitingOption,
    platform: str | None = PlatformOption,
    over_limit: str = OverLimitOption,
    bit_depth: str = BitDepthOption,
    sample_rate: int | None = SampleRateOption,
    format_name: str | None = FormatOption,
    no_master: bool = typer.Option(False, "--no-master", help="Write the balanced mix without the mastering chain."),
    export_stems: Path | None = typer.Option(None, "--export-stems", help="Folder for the processed stems (32-bit float); their sum is the unmastered mix."),
    report: Path | None = typer.Option(None, "--report", help="Write the report of every decision here: .html (a page with plots) or .json."),
    strict: bool = typer.Option(False, "--strict", help="Fail on an unreadable or silent stem instead of skipping it."),
    codec_safe: str | None = CodecSafeOption,
    amount: float = AmountOption,
    gains: list[str] = typer.Option([], "--gain", help="STEM=DB on top of automix's level, -24..+24 (repeatable), e.g. --gain vox=+1.5."),
    pans: list[str] = typer.Option([], "--pan", help="STEM=POSITION, -1 (left) .. 1 (right), replacing automix's (repeatable)."),
    mutes: list[str] = typer.Option([], "--mute", help="Leave a stem out of the mix (repeatable)."),
    focus: str | None = typer.Option(None, "--focus", help="A stem, role, group or 'lead' brought forward (default 3 LU; e.g. --focus vocal=+4)."),
    plan_file: Path | None = typer.Option(None, "--plan-file", help="Your per-stem decisions in a TOML file beside the stems (the command line wins)."),
    reference: Path | None = ReferenceOption,
    quiet: bool = QuietOption,
    as_json: bool = JsonOption,
) -> None:
    """Balance, process and master a folder of stems into one track."""
    try:
        check_output_options(bit_depth, over_limit, format_name, sample_rate, codec_safe)
        resolved = resolve_preset(preset, preset_file, platform, target_lufs, ceiling_dbtp, max_limiting_db)
        overrides = parse_role_overrides(roles)
        from automix.mix import user_plan

        user = user_plan.build(gains, pans, mutes, focus, plan_file) if (gains or pans or mutes or focus or plan_file) else None
        scan = check_mix_arguments(folder, output, format_name, role_overrides=overrides, export_stems=export_stems, report_path=report)
        if user is not None:  # every name the user gave is a stem in the folder: a usage error otherwise
            user_plan.check_names(user, [p.name for p in scan.files] + [name for name, *_ in scan.skipped])
        if reference is not None:
            from automix.master.reference import check_reference_path

            check_reference_path(reference, inputs=[folder], outputs=[p for p in (output, report, export_stems) if p is not None])
    except (AutomixError, OSError) as error:  # OSError: a path the system refuses (name too long...)
        fail(describe_error(error))
        raise typer.Exit(EXIT_USAGE)
    shaping = {"target_lufs": target_lufs, "ceiling_dbtp": ceiling_dbtp, "max_limiting_db": max_limiting_db, "platform": platform,
               "over_limit": over_limit, "bit_depth": bit_depth, "sample_rate": sample_rate, "format": format_name,
               "codec_safe": codec_safe, "amount": amount, "role": ",".join(sorted(roles)) or None, "no_master": no_master or None,
               "gain": ",".join(gains) or None, "pan": ",".join(pans) or None, "mute": ",".join(mutes) or None, "focus": focus,
               "plan_file": str(plan_file) if plan_file else None}
    options = OutputOptions(bit_depth, sample_rate, format_name, over_limit, dry_run=False, codec_safe=codec_safe, amount=amount,
                            provenance=provenance_for(resolved, preset_file, shaping))
    if reference is not None:  # measured once; its loudness is the target unless one was given
        matched, note = load_reference(reference, target_lufs is None and platform is None)
        if note:
            _note(note, quiet)
            resolved = resolved.with_overrides({"target_lufs": matched.target}, "--reference")
        options = dataclasses.replace(options, reference=matched.reference)
    from automix.jobs.mix_folder import mix_folder

    from automix.io.helper import helper

    helper()  # forked now, before the progress display starts a thread
    with _progress(1, quiet, f"mixing {folder.name}") as progress:
        try:
            # the output's whole analysis only for those who read it: the report, or --json's "final"
            result = mix_folder(folder, output, resolved, options, role_overrides=overrides, no_master=no_master,
                                export_stems=export_stems, report_path=report, strict=strict, user=user,
                                analyse_output=as_json)
        except Exception as error:  # noqa: BLE001 - AutomixError, disk full, out of memory...: one line
            debug_traceback(error)
            message = describe_error(error)
            if as_json:
                emit(json.dumps({"input": str(folder), "status": "error", "error": message}))
            fail(message)
            raise typer.Exit(EXIT_FAILED)
        progress.advance()
    data = result.report
    unreadable = [s for s in data["skipped"] if s["kind"] == "unreadable"]
    for skipped in data["skipped"]:
        if skipped["kind"] == "unreadable":
            fail(f"skipped {skipped['file']}: {skipped['reason']}")
        else:
            _note(f"left out {skipped['file']}: {skipped['reason']}", quiet)
    if as_json:
        emit(json.dumps({"input": str(folder), "output": data["output"], "status": result.status,
                         "stems": len(data["stems"]), "skipped": len(data["skipped"]), **data["final"],
                         "master": data["master"]}))
    if not quiet:
        if not as_json:  # stdout stays pure JSON for scripts
            print_table(_mix_table(data))
        final = data["final"]
        message = f" ({result.master.message})" if result.master and result.master.message else ""
        stderr.print(f"{result.status}: {data['output'] or 'nothing written'}  {final['integrated_lufs']:.2f} LUFS, "
                     f"{final['true_peak_dbtp']:.2f} dBTP, LRA {final['loudness_range_lu']:.1f} LU{escape(message)}", highlight=False)
    if result.status == "target_missed":
        fail(result.master.message)
        raise typer.Exit(EXIT_TARGET_MISSED)
    raise typer.Exit(EXIT_FAILED if unreadable else EXIT_OK)


def parse_role_overrides(values: list[str]) -> dict[str, str]:
    overrides = {}
    for value in values:
        name, sep, role = value.partition("=")
        if not sep or not name or role not in ROLES:
            raise AutomixError(f"--role {value!r}: expected FILE=ROLE with ROLE one of {', '.join(ROLES)}")
        overrides[name] = role
    return overrides


def _mix_table(report: dict) -> Table:
    table = Table(title=f"automix mix -- preset {report['preset']['name']}", title_justify="left")
    for header in ("stem", "role", "in LUFS", "gain dB", "high-pass", "cuts", "comp", "pan", "in mix LUFS"):
        table.add_column(header, justify="left" if header in ("stem", "role") else "right")
    for stem in report["stems"]:
        plan = stem["plan"]
        cuts = ", ".join(f"{c['gain_db']:.1f}@{c['frequency_hz']:.0f}" for c in plan["eq_cuts"]) or "-"
        comp = f"{plan['compressor']['ratio']:.1f}:1, {stem['rendered']['compressor_max_gain_reduction_db']:.1f} dB" if plan["compressor"] else "-"
        pan_value = plan["pan"]
        pan_text = "C" if abs(pan_value) < 0.005 else f"{'L' if pan_value < 0 else 'R'}{abs(pan_value) * 100:.0f}"
        table.add_row(stem["file"], stem["role"], f"{stem['measured']['active_lufs']:.1f}", f"{plan['gain_db'] + stem['rendered']['makeup_db']:+.1f}",
                      f"{plan['highpass_hz']:.0f} Hz" if plan["highpass_hz"] else "-", cuts, comp, pan_text,
                      f"{stem['rendered']['loudness_in_mix_lufs']:.1f}")
    return table


presets_app = typer.Typer(help="List the genre presets, or show one's resolved values.", invoke_without_command=True, no_args_is_help=False)
app.add_typer(presets_app, name="presets")


@presets_app.callback()
def presets_list(ctx: typer.Context) -> None:
    """List the shipped presets with a one-line description."""
    if ctx.invoked_subcommand:
        return
    table = Table(title="automix presets", title_justify="left")
    for header in ("preset", "target", "ceiling", "description"):
        table.add_column(header)
    for name in available_presets():
        p = load_preset(name)
        table.add_row(name, f"{p.master.target_lufs:g} LUFS", f"{p.master.ceiling_dbtp:g} dBTP", p.description)
    print_table(table)


@presets_app.command("show")
def presets_show(
    name: str = typer.Argument(..., help="A preset name or a .toml file."),
    as_json: bool = JsonOption,
) -> None:
    """Print a preset's resolved values and the file each one comes from."""
    preset = read_preset(Path(name) if name.endswith(".toml") else name)
    if as_json:
        from dataclasses import asdict

        emit(json.dumps({"name": preset.name, "description": preset.description, "master": asdict(preset.master),
                         "mix": asdict(preset.mix), "roles": {r: asdict(v) for r, v in preset.roles.items()},
                         "origins": dict(preset.origins)}, indent=2))
        return
    stdout.print(f"[bold]{escape(preset.name)}[/]: {escape(preset.description)}", highlight=False)
    for section, cls, values in (("master", MasterSettings, preset.master), ("mix", MixSettings, preset.mix),
                                 ("groups", GroupSettings, preset.groups)):
        table = Table(title=f"[{section}]", title_justify="left")
        for header in ("key", "value", "allowed", "meaning", "from"):
            table.add_column(header)
        for key, allowed, doc in describe_settings(cls):
            table.add_row(key, f"{getattr(values, key):g}", allowed, doc, Path(preset.origins.get(f"{section}.{key}", "?")).name)
        print_table(table)
    table = Table(title="[roles]", title_justify="left")
    table.add_column("role")
    keys = [key for key, _, _ in describe_settings(RoleRules)]
    for key in keys:
        table.add_column(key.replace("_", " "), justify="right")
    for role in ROLES:
        table.add_row(role, *(f"{getattr(preset.roles[role], key):g}" for key in keys))
    print_table(table)


def _analysis_table(rows) -> Table:
    table = Table(title="automix analyze", title_justify="left")
    for header in ("file", "LUFS", "tagged", "LRA LU", "max S", "true peak", "PLR", "crest dB", "centroid", "width", "clipped", "length", "format"):
        table.add_column(header, justify="left" if header == "file" else "right")
    for path, a, tagged in rows:
        table.add_row(
            path.name,
            _db(a.integrated_lufs),
            f"{tagged['integrated_lufs']:.1f} ({tagged['source']})" if tagged.get("integrated_lufs") is not None else "-",
            f"{a.loudness_range_lu:.1f}",
            _db(a.max_short_term_lufs),
            _db(a.true_peak_dbtp) + " dBTP",
            f"{a.plr_db:.1f}",
            f"{a.crest_factor_db:.1f}",
            f"{a.spectral_centroid_hz:.0f} Hz",
            f"{a.stereo_width:.2f}",
            str(a.clipped_samples),
            f"{a.duration_s:.1f} s",
            f"{a.sample_rate / 1000:g} kHz/{a.channels}ch",
        )
    return table


def print_table(table: Table) -> None:
    """Print a table; when piped, wide enough that no column is cut."""
    console = stdout if stdout.is_terminal else Console(width=200)
    try:
        console.print(table)
    except BrokenPipeError:
        raise _reader_gone() from None


def _db(value: float) -> str:
    return "-inf" if value <= -199 else f"{value:.1f}"


def main() -> None:
    """Console-script entry point."""
    from automix.jobs.allocator import keep_freed_memory

    keep_freed_memory()
    install_stop_handlers()
    try:
        app()
    except Stopped as stop:  # the job has stopped its workers and removed its temp files
        fail("stopped: standard output was closed" if stop.signum == signal.SIGPIPE else f"stopped by {stop.signal_name}")
        # Leave now, without the interpreter's exit: a signal that landed while a thread
        # pool was starting a worker leaves a thread the pool never registered, and the
        # exit would wait for it forever (with further signals ignored).
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError, AttributeError):  # a closed stream, or none (2>&-)
                stream.flush()
        os._exit(stop.exit_code)
    except AutomixError as error:  # errors not tied to one input file
        fail(str(error))
        sys.exit(EXIT_USAGE)
    except Exception as error:  # noqa: BLE001 - a defect: one line, not a traceback
        debug_traceback(error)
        message = describe_error(error)
        fail(message if BUG_NOTE in message else f"{message}; {BUG_NOTE}")
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
