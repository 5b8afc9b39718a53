"""Reading, writing and resampling audio files.

Array convention
----------------
Everywhere in automix, audio is a C-contiguous ``float32`` numpy array shaped
``(channels, samples)``, with full scale at 1.0 -- the layout pedalboard uses. Mono is
``(1, n)``, stereo is ``(2, n)`` with left first. Files are converted to and from this
layout here, at the I/O boundary, and nowhere else.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from automix.errors import AutomixError

#: Extensions automix reads. MP3 depends on the libsndfile build (1.1+ reads it).
READABLE_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3")

#: Extension -> libsndfile container written for it.
WRITABLE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF"}

#: ``--bit-depth`` value -> libsndfile subtype.
BIT_DEPTHS = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"}

#: Fixed seed for the dither generator, so the same input gives the same bytes.
DITHER_SEED = 0x5EED
QUANTIZE_CHUNK = 1 << 18  # frames dithered at a time


@dataclass(frozen=True, eq=False)
class Audio:
    """Samples and their sample rate.

    Attributes
    ----------
    samples : numpy.ndarray
        float32, shape ``(channels, samples)``.
    sample_rate : int
        Samples per second.
    path : pathlib.Path or None
        The file it was read from, if any.
    """

    samples: np.ndarray
    sample_rate: int
    path: Path | None = None

    @property
    def channels(self) -> int:
        return self.samples.shape[0]

    @property
    def frames(self) -> int:
        return self.samples.shape[1]

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    @property
    def name(self) -> str:
        return self.path.name if self.path else "<memory>"


def read_audio(path: str | os.PathLike) -> Audio:
    """Read an audio file into the automix array convention.

    Parameters
    ----------
    path : str or path-like
        A WAV, FLAC, AIFF, OGG or MP3 file.

    Returns
    -------
    Audio

    Raises
    ------
    AutomixError
        If the file is missing, unreadable, empty, or holds NaN or infinite samples.
    """
    path = Path(path)
    if not path.exists():
        raise AutomixError(f"{path}: no such file")
    if path.is_dir():
        raise AutomixError(f"{path}: is a folder, not an audio file")
    try:
        data, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        data, sample_rate = _read_with_pedalboard(path, error)
    samples = np.ascontiguousarray(data.T)
    if samples.shape[1] == 0:
        raise AutomixError(f"{path}: the file holds no audio (zero length)")
    if not np.isfinite(samples).all():
        raise AutomixError(f"{path}: the file holds NaN or infinite samples")
    return Audio(samples, int(sample_rate), path)


def _read_with_pedalboard(path: Path, first_error: Exception) -> tuple[np.ndarray, int]:
    """Fall back to pedalboard's decoders (MP3 and others libsndfile may lack)."""
    from pedalboard.io import AudioFile

    try:
        with AudioFile(str(path)) as f:
            data = f.read(f.frames)
            return data.T, int(f.samplerate)
    except Exception:  # noqa: BLE001 - any decoder failure means "unreadable"
        reason = str(first_error).splitlines()[0] if str(first_error) else "unknown format"
        raise AutomixError(f"{path}: cannot read as audio ({reason})") from None


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample with libsoxr at its very-high-quality setting.

    soxr is used rather than ``scipy.signal.resample_poly`` because it reaches
    transparent quality (linear phase, >140 dB stop band) at any rate ratio, including
    44.1k <-> 48k, faster than a polyphase FIR of the same quality.
    """
    if from_rate == to_rate:
        return samples
    out = soxr.resample(samples.T, from_rate, to_rate, quality="VHQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def output_format(path: Path, format_name: str | None = None) -> str:
    """Return the libsndfile container for ``path`` (or for an explicit format name)."""
    if format_name:
        key = "." + format_name.lower().lstrip(".")
    else:
        key = path.suffix.lower()
    if key not in WRITABLE_FORMATS:
        allowed = ", ".join(sorted({k.lstrip(".") for k in WRITABLE_FORMATS}))
        raise AutomixError(f"{path}: cannot write '{key.lstrip('.')}' files (choose one of {allowed})")
    return WRITABLE_FORMATS[key]


def quantize(samples: np.ndarray, bit_depth: str, seed: int = DITHER_SEED) -> np.ndarray:
    """Return the samples exactly as a PCM file of ``bit_depth`` will hold them.

    Integer depths get TPDF dither of +-1 LSB (the sum of two uniform variables),
    which turns quantisation distortion into a constant, signal-independent noise
    floor. The generator is seeded, so the result is deterministic.

    Returns float32 samples on the integer grid (scaled back to full scale 1.0), so
    the true peak of what will be written can be measured before writing. Works in
    chunks, so a long file never needs a float64 copy of itself.
    """
    if bit_depth == "32f":
        return samples.astype(np.float32, copy=False)
    bits = 16 if bit_depth == "16" else 24
    scale = float(2 ** (bits - 1))
    rng = np.random.default_rng(seed)
    out = np.empty(samples.shape, dtype=np.float32)
    for start in range(0, samples.shape[1], QUANTIZE_CHUNK):
        part = samples[:, start : start + QUANTIZE_CHUNK]
        codes = rng.random(part.shape, dtype=np.float32).astype(np.float64)
        codes -= rng.random(part.shape, dtype=np.float32)  # TPDF: difference of two uniforms
        codes += part * scale
        np.rint(codes, out=codes)
        np.clip(codes, -scale, scale - 1, out=codes)
        codes /= scale
        out[:, start : start + QUANTIZE_CHUNK] = codes
    return out


def write_audio(
    samples: np.ndarray,
    sample_rate: int,
    path: str | os.PathLike,
    bit_depth: str = "24",
    *,
    protected: tuple[Path, ...] = (),
    format_name: str | None = None,
) -> Path:
    """Write audio atomically: to a temporary file beside ``path``, then rename.

    Parameters
    ----------
    samples : numpy.ndarray
        float32 ``(channels, samples)``. For PCM depths, pass the output of
        :func:`quantize` so the dither seen by the caller's meters is what is written.
    sample_rate : int
    path : path-like
        Destination; its extension picks the container unless ``format_name`` does.
    bit_depth : {"16", "24", "32f"}
    protected : tuple of Path
        Files that must never be overwritten (the inputs of the run).
    format_name : str, optional
        "wav", "flac" or "aiff", overriding the extension.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    if bit_depth not in BIT_DEPTHS:
        raise AutomixError(f"bit depth must be one of {', '.join(BIT_DEPTHS)}, not {bit_depth!r}")
    container = output_format(path, format_name)
    subtype = BIT_DEPTHS[bit_depth]
    if container == "FLAC" and subtype == "FLOAT":
        raise AutomixError(f"{path}: FLAC cannot hold 32-bit float; use --bit-depth 16 or 24, or WAV")
    for input_path in protected:
        if _same_file(path, input_path):
            raise AutomixError(f"{path}: refusing to write over an input file")
    with atomic_output(path) as temp_name:
        sf.write(temp_name, samples.T, sample_rate, subtype=subtype, format=container)
    return path


@contextmanager
def atomic_output(path: Path) -> Iterator[str]:
    """Yield a temporary name beside ``path``; on success rename it to ``path``.

    A reader never sees a half-written file, and a failed write leaves nothing behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield temp_name
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def find_audio_files(paths: list[Path]) -> list[Path]:
    """Expand folders into the audio files they hold (sorted); keep files as given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in READABLE_EXTENSIONS and not p.name.startswith("."))
            )
        else:
            found.append(path)
    return found
