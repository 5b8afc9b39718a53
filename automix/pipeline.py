"""The whole jobs, as library calls: master one file, mix one folder of stems.

The CLI is a thin layer over these functions; scripts can call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from automix.analyzer import analyze
from automix.audio import WRITABLE_FORMATS, Audio, read_audio, resample, write_audio
from automix.mastering import MasterResult, master
from automix.presets import MasterSettings


@dataclass(frozen=True)
class OutputOptions:
    """How results are written."""

    bit_depth: str = "24"
    sample_rate: int | None = None  # None: keep the input's
    format_name: str | None = None  # None: from the output's extension
    over_limit: str = "fail"
    dry_run: bool = False


def master_file(input_path: Path, output_path: Path, settings: MasterSettings, options: OutputOptions,
                protected: tuple[Path, ...] = ()) -> MasterResult:
    """Read, master and write one file. Nothing is written if the target was missed.

    Raises
    ------
    AutomixError
        If the input cannot be read or the output cannot be written.
    """
    audio = read_audio(input_path)
    input_analysis = analyze(audio)
    if options.sample_rate and options.sample_rate != audio.sample_rate:
        audio = Audio(resample(audio.samples, audio.sample_rate, options.sample_rate), options.sample_rate, audio.path)
        analysis = analyze(audio)
    else:
        analysis = input_analysis
    samples, result = master(audio, settings, bit_depth=options.bit_depth, over_limit=options.over_limit, analysis=analysis)
    if not options.dry_run and result.status != "target_missed":
        write_audio(samples, audio.sample_rate, output_path, options.bit_depth,
                    protected=protected + (input_path,), format_name=options.format_name)
    return result


def output_path_for(input_path: Path, out_dir: Path, format_name: str | None, taken: set[Path]) -> Path:
    """Where the master of ``input_path`` goes: ``out_dir/<name>.<ext>``, never a name
    already used by another input or output of the same run."""
    if format_name:
        suffix = "." + format_name.lower().lstrip(".")
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
