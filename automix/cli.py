"""Command-line interface: parse options, call the library, print.

Exit codes (the same for every command):

* 0 -- everything asked for was done;
* 1 -- at least one input failed (the others were still processed);
* 2 -- usage error (bad option, bad preset, nothing to do);
* 3 -- a loudness target could not be met within the allowed limiting (see ``--over-limit``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from automix import __version__
from automix.analyzer import analyze
from automix.audio import find_audio_files, read_audio
from automix.errors import AutomixError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TARGET_MISSED = 0, 1, 2, 3

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Automatic mixing and mastering: balance a folder of stems, master finished mixes.",
)
stdout = Console()
stderr = Console(stderr=True)


def fail(message: str) -> None:
    """One line on stderr, no traceback."""
    stderr.print(f"[bold red]automix:[/] {message}", highlight=False, soft_wrap=True)


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
    files = find_audio_files(paths)
    if not files:
        fail("no audio files found in " + ", ".join(map(str, paths)))
        raise typer.Exit(EXIT_USAGE)
    rows, failed = [], 0
    for path in files:
        try:
            analysis = analyze(read_audio(path))
        except AutomixError as error:
            failed += 1
            fail(str(error))
            if as_json:
                print(json.dumps({"input": str(path), "status": "error", "error": str(error)}), flush=True)
            continue
        if as_json:
            print(json.dumps({"input": str(path), "status": "ok", **analysis.to_dict()}), flush=True)
        else:
            rows.append((path, analysis))
    if rows:
        print_table(_analysis_table(rows))
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _analysis_table(rows) -> Table:
    table = Table(title="automix analyze", title_justify="left")
    for header in ("file", "LUFS", "LRA LU", "max S", "true peak", "PLR", "crest dB", "centroid", "width", "clipped", "length", "format"):
        table.add_column(header, justify="left" if header == "file" else "right")
    for path, a in rows:
        table.add_row(
            path.name,
            _db(a.integrated_lufs),
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
    console.print(table)


def _db(value: float) -> str:
    return "-inf" if value <= -199 else f"{value:.1f}"


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except AutomixError as error:  # errors not tied to one input file
        fail(str(error))
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
