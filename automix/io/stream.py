"""Audio as a stream of blocks: read, and write atomically, without holding a whole file.

A :class:`BlockSource` can be read from the start as often as needed (the mastering
chain reads its input a few times: analysis, the loop's model, the renders), each time
yielding float32 ``(channels, n)`` blocks, resampled on the fly if asked. Memory depends
on the block size, not on the length of the file.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf
import soxr

from automix.errors import AutomixError
from automix.io.audio import (  # private helpers: validate and word failures as read/write_audio do
    BIT_DEPTHS,
    MAX_DURATION_S,
    MAX_FILE_PEAK,
    SOFTWARE,
    Audio,
    _check_header,
    _check_input_file,
    _container_of,
    _describe,
    _sndfile_error_detail,
    _sndfile_reader,
    _too_long,
    _write_failure,
    claimed_frames,
    output_format,
    read_audio,
    resample,
    truncation_warnings,
)  # fmt: skip

#: Frames per block: 1.5 s at 44.1 kHz. Large enough that per-block overheads vanish,
#: small enough that a block of every intermediate signal stays a few MB.
BLOCK_FRAMES = 1 << 16
#: Containers read block by block through libsndfile; others (MP3) are decoded whole.
STREAMED_CONTAINERS = ("WAV", "FLAC", "AIFF", "OGG")


@dataclass(frozen=True, eq=False)
class BlockSource:
    """A re-readable stream of blocks.

    Attributes
    ----------
    sample_rate : int
        The rate of the blocks (after resampling, if any).
    channels, frames : int
        ``frames`` is the number of frames the blocks add up to.
    name : str
    blocks : callable
        ``blocks()`` starts again from the beginning and yields float32 blocks.
    warnings : tuple of str
    """

    sample_rate: int
    channels: int
    frames: int
    name: str
    blocks: Callable[[], Iterator[np.ndarray]]
    warnings: tuple[str, ...] = ()


def array_source(audio: Audio, block_frames: int = BLOCK_FRAMES) -> BlockSource:
    """Blocks of audio already in memory (views, no copies)."""
    samples = audio.samples

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, samples.shape[1], block_frames):
            yield samples[:, start : start + block_frames]

    return BlockSource(audio.sample_rate, audio.channels, audio.frames, audio.name, blocks, audio.warnings if hasattr(audio, "warnings") else ())


def file_source(path: Path, *, sample_rate: int | None = None, block_frames: int = BLOCK_FRAMES) -> BlockSource:
    """Blocks of an audio file, validated as :func:`automix.io.audio.read_audio` does.

    WAV, FLAC, AIFF and OGG are decoded block by block; MP3 (rare for a master's input)
    is decoded whole. The file is decoded once here to validate it -- every sample
    finite and sane, the frame count as found, not as the header claims -- so a later
    pass never meets a surprise half-way through a render. An integer-PCM WAV or AIFF
    is not decoded: nothing in it could fail those checks (see :func:`_counted`).
    """
    path = Path(path)
    _check_input_file(path)
    container, warnings = _container_of(path)
    if container not in STREAMED_CONTAINERS:
        audio = read_audio(path)
        if sample_rate and sample_rate != audio.sample_rate:
            audio = Audio(resample(audio.samples, audio.sample_rate, sample_rate), sample_rate, audio.path, audio.warnings)
        return array_source(audio, block_frames)
    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - the whole-file reader words the precise reason
        read_audio(path)
        raise AutomixError(f"{path}: cannot read as audio") from None
    _check_header(path, info.samplerate, info.channels, info.subtype)
    rate, channels = int(info.samplerate), int(info.channels)
    if container in ("WAV", "AIFF") and info.subtype in INTEGER_SUBTYPES:
        frames = _counted(path, rate, channels, int(info.frames))
    else:
        frames = _scan(path, rate, channels, block_frames)
    warnings.extend(truncation_warnings(path, claimed_frames(path, container, info.subtype, info.frames), frames))
    out_rate = sample_rate or rate
    blocks = _FileBlocks(path, rate, out_rate, channels, frames, block_frames)
    out_frames = frames if out_rate == rate else int(frames * out_rate / rate + 0.5)  # soxr's output length
    return BlockSource(out_rate, channels, out_frames, path.name, blocks, tuple(warnings))


@dataclass(frozen=True)
class _FileBlocks:
    """``blocks()`` of a validated file: its first ``frames`` frames, resampled to
    ``out_rate`` on the fly if that differs. A plain object rather than a closure, so a
    source can be pickled across to the helper process (:mod:`automix.io.helper`)."""

    path: Path
    rate: int
    out_rate: int
    channels: int
    frames: int
    block_frames: int

    def __call__(self) -> Iterator[np.ndarray]:
        rate, out_rate = self.rate, self.out_rate
        stream = soxr.ResampleStream(rate, out_rate, self.channels, dtype="float32", quality="VHQ") if out_rate != rate else None
        buffer = np.empty((self.block_frames, self.channels), dtype=np.float32)
        with sf.SoundFile(str(self.path)) as f:
            read_into = _sndfile_reader(f, self.path)  # reads until the data ends, whatever the header says
            remaining = self.frames
            while remaining > 0:
                data = buffer[: read_into(buffer[: min(self.block_frames, remaining)])]
                if data.shape[0] == 0:
                    break
                remaining -= data.shape[0]
                if stream is not None:
                    data = stream.resample_chunk(data, last=remaining <= 0)
                    if data.shape[0] == 0:
                        continue
                yield data.T.copy()  # a copy, always: the buffer is read into again


#: Integer PCM: every byte pattern is a finite sample within full scale, so an
#: uncompressed file of these holds nothing a decode could refuse.
INTEGER_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32"})


def _counted(path: Path, rate: int, channels: int, frames: int) -> int:
    """``frames``, once it passes the length checks (the cap, more frames than channels).

    For an integer-PCM WAV or AIFF this is libsndfile's count, taken without decoding:
    libsndfile clips an uncompressed file's count to what its size holds, and every
    sample in it is finite and within full scale, so :func:`_scan` would count the same
    and find nothing (``tests/test_io_safety.py`` checks that on truncated and corrupted
    files). :func:`_scan` ends here too."""
    if frames > int(MAX_DURATION_S * rate):
        raise AutomixError(_too_long(path, frames / rate))
    if frames <= channels:
        raise AutomixError(f"{path}: only {frames} sample(s) per channel; too short to be audio")
    return frames


def _scan(path: Path, rate: int, channels: int, block_frames: int) -> int:
    """Decode the whole file once, block by block: count its real frames and check every
    block as the whole-file reader checks a file (finite, sane peak, not too long)."""
    frames, cap = 0, int(MAX_DURATION_S * rate)
    buffer = np.empty((block_frames, channels), dtype=np.float32)
    try:
        with sf.SoundFile(str(path)) as f:
            # libsndfile's own reads until the data ends: soundfile's trust the header's
            # frame count and seek, which fails on a FLAC whose count is 0 ("unknown") or a lie
            read_into = _sndfile_reader(f, path)
            while (data := buffer[: read_into(buffer)]).shape[0]:
                if not np.isfinite(data).all():
                    raise AutomixError(f"{path}: the file holds NaN or infinite samples")
                peak = float(np.abs(data).max()) if data.size else 0.0
                if peak > MAX_FILE_PEAK:
                    raise AutomixError(f"{path}: peaks at {20 * np.log10(peak):+.0f} dBFS, more than "
                                       f"{20 * np.log10(MAX_FILE_PEAK):+.0f}: not audio, or a corrupt float file")
                frames += data.shape[0]
                if frames > cap:
                    raise AutomixError(f"{path}: longer than {MAX_DURATION_S / 3600:g} hours; automix stops there")
    except AutomixError:
        raise
    except Exception as error:  # noqa: BLE001
        if frames == 0:
            read_audio(path)  # the precise reason
        raise AutomixError(f"{path}: cannot read as audio ({_describe(error)})") from None
    return _counted(path, rate, channels, frames)  # the same length checks


class BlockWriter:
    """Write blocks to a (temporary) file as they come: libsndfile, no whole-file array.

    Use inside :func:`automix.io.audio.atomic_output`, which gives the temporary name and
    renames it into place only when everything was written. Failures (disk full,
    permission denied) are AutomixErrors worded as :func:`automix.io.audio.write_audio`
    words them.
    """

    def __init__(self, temp_name: str, destination: Path, sample_rate: int, channels: int, bit_depth: str,
                 format_name: str | None = None) -> None:
        self.destination = destination
        container = output_format(destination, format_name)
        subtype = BIT_DEPTHS[bit_depth]
        if container == "FLAC" and subtype == "FLOAT":
            raise AutomixError(f"{destination}: FLAC cannot hold 32-bit float; use --bit-depth 16 or 24, or WAV")
        try:
            self._file = sf.SoundFile(temp_name, "w", samplerate=sample_rate, channels=channels, subtype=subtype,
                                      format=container)
            self._file.software = SOFTWARE  # before the data: FLAC writes its tags with the header
        except Exception as error:  # noqa: BLE001
            raise AutomixError(_write_failure(destination, _describe(error))) from None

    def write(self, block: np.ndarray) -> None:
        try:
            self._file.write(np.ascontiguousarray(block.T))
        except Exception as error:  # noqa: BLE001
            detail = _sndfile_error_detail(self._file) or _describe(error)
            with suppress(Exception):
                self._file.close()
            raise AutomixError(_write_failure(self.destination, detail)) from None

    def close(self) -> None:
        try:
            self._file.close()  # rewrites the header: can fail on a full disk too
        except Exception as error:  # noqa: BLE001
            raise AutomixError(_write_failure(self.destination, _sndfile_error_detail(self._file) or _describe(error))) from None


class Spill:
    """float32 frames of ``channels`` channels kept in temporary files (4 bytes per
    sample on disk, nothing in memory), to be read back as often as needed: what one pass
    computed, so later passes read it instead of computing it again.

    One file per channel: a block's rows are written as they lie in memory and read
    straight into the rows of the block returned, with no interleaving copy either way
    (interleaving cost more than the writing itself: 0.21 of 0.35 s for an 8-stem mix).

    ``write(block)`` appends ``(channels, n)`` in stream order; if a file cannot be
    written (a full disk) ``usable`` turns False, nothing more is written, and the caller
    computes the signal again. ``read(start, count)`` gives ``(channels, <= count)``
    frames (fewer where the files end early). ``close()`` deletes the files.
    """

    def __init__(self, channels: int, prefix: str = "automix-spill-") -> None:
        import tempfile

        self.channels = int(channels)
        self._files = []
        try:
            for _ in range(self.channels):
                self._files.append(tempfile.TemporaryFile(prefix=prefix))  # noqa: SIM115 - closed by close()
        except BaseException:
            self.close()
            raise
        self.frames = 0
        self.usable = True

    def write(self, block: np.ndarray) -> None:
        if not self.usable or block.shape[1] == 0:
            return
        if block.shape[0] != self.channels:
            raise AutomixError(f"internal error: a {block.shape[0]}-channel block for a {self.channels}-channel spill")
        try:
            for file, row in zip(self._files, np.asarray(block, dtype=np.float32)):
                file.write(np.ascontiguousarray(row))
            self.frames += block.shape[1]
        except OSError:
            self.usable = False

    def holds(self, frames: int) -> bool:
        """Whether it was written whole: ``frames`` frames, none lost to a failed write."""
        return self.usable and self.frames == frames

    def read(self, start: int, count: int) -> np.ndarray:
        """Frames ``start .. start + count`` (fewer if the files end before), ``(channels, n)``."""
        out = np.empty((self.channels, max(0, count)), dtype=np.float32)
        got = out.shape[1] * 4
        for file, row in zip(self._files, out):
            file.flush()
            file.seek(start * 4)
            got = min(got, file.readinto(row) or 0)
        frames = got // 4
        return out if frames == out.shape[1] else out[:, :frames].copy()

    def close(self) -> None:
        for file in self._files:
            file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SignalSpill(Spill):
    """A :class:`Spill` of audio, read back as a :class:`BlockSource`.

    The mastering chain's model pass keeps what its EQ, stereo and glue stages made of
    the input here, so the renders and a second model pass read it instead of running
    those stages again: the same samples, at the cost of a file copy.
    """

    def __init__(self, sample_rate: int, channels: int, name: str = "", block_frames: int = BLOCK_FRAMES) -> None:
        super().__init__(channels, prefix="automix-signal-")
        self.sample_rate, self.name = int(sample_rate), name
        self.block_frames = int(block_frames)

    def source(self) -> BlockSource:
        """What was written, as a re-readable source (read it only after the writing)."""

        def blocks() -> Iterator[np.ndarray]:
            for at in range(0, self.frames, self.block_frames):
                count = min(self.block_frames, self.frames - at)
                block = self.read(at, count)
                if block.shape[1] < count:
                    raise AutomixError(f"the kept signal ended early ({at + block.shape[1]} of {self.frames} frames)")
                yield block

        return BlockSource(self.sample_rate, self.channels, self.frames, self.name, blocks)
