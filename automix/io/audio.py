"""Reading, writing and resampling audio files.

Array convention
----------------
Everywhere in automix, audio is a C-contiguous ``float32`` numpy array shaped
``(channels, samples)``, with full scale at 1.0 -- the layout pedalboard uses. Mono is
``(1, n)``, stereo is ``(2, n)`` with left first. Files are converted to and from this
layout here, at the I/O boundary, and nowhere else.

Reading is defensive: a file's first bytes must match what its extension promises,
its header (rate, channels, sample format) is checked before anything is decoded, and
decoding runs block by block until the real end of the data, so a header that lies
about its length can neither allocate gigabytes nor go unnoticed.

Writing is atomic (a temp file beside the destination, then a rename), refuses to
replace anything but a regular file, follows the umask like ``cp``, and marks each
file with automix's name in the ``software`` tag.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from automix import __version__
from automix.errors import AutomixError
from automix.io.formats import (  # noqa: F401 - re-exported
    BIT_DEPTHS,
    EXTENSION_CONTAINERS,
    READABLE_EXTENSIONS,
    WRITABLE_FORMATS,
)
from automix.io.metadata import (
    LoudnessTags,
    Provenance,
    write_metadata,
    zero_peak_timestamp,
)
from automix.io.paths import (
    PROVENANCE_PREFIX,
    existing_output_target,
    file_kind,
    os_error_reason,
    temp_name_for,
)
from automix.io.validate import MAX_CHANNELS, validate_audio, validate_sample_rate

#: What is missing from a file whose first bytes are no audio container at all.
_MISSING_HEADER = {
    "WAV": "no WAVE header",
    "FLAC": "no fLaC header",
    "AIFF": "no FORM/AIFF header",
    "OGG": "no OggS header",
    "MP3": "no ID3 tag or MPEG audio frame header",
    None: "not a WAV, FLAC, AIFF, OGG or MP3 file",
}

#: libsndfile major formats acceptable for each sniffed container.
_SNDFILE_FORMATS = {"WAV": {"WAV", "WAVEX", "RF64"}, "FLAC": {"FLAC"}, "AIFF": {"AIFF"}, "OGG": {"OGG"}, "MP3": {"MP3", "MPEG"}}

#: Fixed seed for the dither generator, so the same input gives the same bytes.
DITHER_SEED = 0x5EED
QUANTIZE_CHUNK = 1 << 18  # frames dithered at a time

#: Longest file read: 6 hours, past any album, live set or DJ mix automix is meant
#: for. A longer stream is a corrupt or hostile header (a FLAC can claim 2**36
#: frames); reading stops there with an error instead of filling the memory.
MAX_DURATION_S = 6 * 3600

#: Frames decoded (or encoded) per block: 64 k frames is 0.5 MB of stereo float32,
#: small next to any file, large enough that the per-block overhead is nil.
READ_BLOCK_FRAMES = 1 << 16

#: A compressed file's header frame count is trusted for the first allocation up to
#: this many bytes of float32 (256 MiB, 25 minutes of 44.1 kHz stereo); beyond it the
#: buffer starts at what the file size makes plausible and grows as data arrives.
TRUSTED_HEADER_BYTES = 256 << 20

#: Bytes per sample of the uncompressed subtypes: bound the frames a file can hold.
_PCM_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8, "ULAW": 1, "ALAW": 1}

#: libsndfile's "length unknown" frame count.
_UNKNOWN_FRAMES = 2**63 - 1

#: Largest sample magnitude a file may hold: +120 dBFS. No recording or mix peaks
#: that far over full scale (DAW float exports with overs reach tens of dB; integer PCM
#: mistakenly stored as float, +90 dBFS, still passes and is simply loud). Beyond it a
#: float file is corrupt, and the meters' float32 squared sums overflow (|x| ~ 1.8e19)
#: or any gain above 0 dB turns samples near 3.4e38 into infinity.
MAX_FILE_PEAK = 1e6

#: Written into the ``software`` tag of every WAV, FLAC and AIFF output.
SOFTWARE = f"{PROVENANCE_PREFIX} {__version__}"


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
    warnings : tuple of str
        What reading noticed but could live with (a truncated file, a FLAC named
        ``.wav``), worded for people, to print or put in a report.
    """

    samples: np.ndarray
    sample_rate: int
    path: Path | None = None
    warnings: tuple[str, ...] = ()

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


# ---------------------------------------------------------------------------------
# Reading


def read_audio(path: str | os.PathLike) -> Audio:
    """Read an audio file into the automix array convention.

    Parameters
    ----------
    path : str or path-like
        A WAV, FLAC, AIFF, OGG or MP3 file.

    Returns
    -------
    Audio
        With ``warnings`` set when the file is truncated or its content is not what
        its extension says.

    Raises
    ------
    AutomixError
        If the file is missing, not a regular file, not audio (its first bytes are no
        WAVE, fLaC, FORM/AIFF, OggS or MPEG header), has a sample rate outside
        8 kHz..768 kHz or more than 32 channels, is longer than ``MAX_DURATION_S``,
        empty, too short, holds NaN or infinite samples, or cannot be decoded. Never
        any other exception.
    """
    path = Path(path)
    size = _check_input_file(path)
    container, warnings = _container_of(path)
    try:
        if container == "MP3" and "MP3" not in sf.available_formats():
            samples, rate = _decode_pedalboard(path, warnings)
        elif container == "MP3":
            try:
                samples, rate = _decode_sndfile(path, container, size, warnings)
            except AutomixError as first:
                try:
                    samples, rate = _decode_pedalboard(path, warnings)
                except AutomixError:
                    if "does not exist" in str(first):  # libsndfile's word for an MPEG stream it cannot open
                        raise AutomixError(f"{path}: cannot read as MP3 (no decodable MPEG audio)") from None
                    raise first from None
        else:
            samples, rate = _decode_sndfile(path, container, size, warnings)
    except AutomixError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever a decoder raises, the file is unreadable
        raise AutomixError(f"{path}: cannot read as audio ({_describe(error)})") from None
    channels, frames = samples.shape
    if frames == 0:
        raise AutomixError(f"{path}: the file holds no audio (zero length)")
    if frames <= channels:
        raise AutomixError(f"{path}: only {frames} sample(s) per channel; too short to be audio")
    validate_audio(samples, rate, name=str(path))
    peak = max(float(samples.max()), -float(samples.min()))  # two passes, no |x| copy
    if peak > MAX_FILE_PEAK:
        raise AutomixError(
            f"{path}: peaks at {20 * np.log10(peak):+.0f} dBFS, more than {20 * np.log10(MAX_FILE_PEAK):+.0f}: "
            "not audio (a corrupt or mis-scaled float file)"
        )
    return Audio(samples, rate, path, tuple(warnings))


def sniff_container(path: str | os.PathLike) -> str | None:
    """Name the container a file's first bytes announce: "WAV", "FLAC", "AIFF",
    "OGG", "MP3", or None if they announce none of them."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)  # room for an MPEG frame and the next header
            if head[:3] == b"ID3" and len(head) >= 10:
                # ID3v2 (an MP3 tag, sometimes put before FLAC too): skip it and look behind
                size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
                f.seek(10 + size + (10 if head[5] & 0x10 else 0))
                behind = f.read(4)
                return "FLAC" if behind == b"fLaC" else "MP3"
    except OSError:
        return None
    return _container_from_head(head)


def _container_from_head(head: bytes) -> str | None:
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] == b"OggS":
        return "OGG"
    if _is_mpeg_stream(head):
        return "MP3"
    return None


#: MPEG audio bitrates in kbit/s by (MPEG-1?, layer) and the 4-bit index (0 = free
#: format, refused: no frame length to check), ISO/IEC 11172-3 and 13818-3.
_MPEG_KBPS = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
#: Sample rates by the 2-bit version field (0 = MPEG-2.5, 2 = MPEG-2, 3 = MPEG-1).
_MPEG_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}


def _mpeg_frame_length(h: bytes) -> int | None:
    """Length in bytes of the MPEG audio frame whose 4-byte header is ``h``, or None if
    ``h`` is not a valid header (11-bit sync, no reserved or free-format field)."""
    if len(h) < 4 or h[0] != 0xFF or (h[1] & 0xE0) != 0xE0:
        return None
    version, layer_bits = (h[1] >> 3) & 3, (h[1] >> 1) & 3
    bitrate_index, rate_index, padding = h[2] >> 4, (h[2] >> 2) & 3, (h[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer = 4 - layer_bits
    mpeg1 = version == 3
    bitrate = _MPEG_KBPS[(mpeg1, layer)][bitrate_index] * 1000
    rate = _MPEG_RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    return (144 if layer == 2 or mpeg1 else 72) * bitrate // rate + padding


def _is_mpeg_stream(head: bytes) -> bool:
    """Two consecutive valid MPEG audio frame headers at the start: one alone matches
    random bytes far too often (1 in ~3000)."""
    length = _mpeg_frame_length(head[:4])
    if length is None:
        return False
    return _mpeg_frame_length(head[length : length + 4]) is not None


def _check_input_file(path: Path) -> int:
    """Refuse missing, unreadable and non-regular inputs; return the size in bytes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AutomixError(f"{path}: no such file") from None
    except OSError as error:
        raise AutomixError(f"{path}: cannot read ({os_error_reason(error)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AutomixError(f"{path}: is a folder, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO would block, /dev/zero would never end: only regular files.
        raise AutomixError(f"{path}: is {file_kind(st.st_mode)}, not an audio file")
    if st.st_size == 0:
        raise AutomixError(f"{path}: the file is empty (0 bytes)")
    return st.st_size


def _container_of(path: Path) -> tuple[str, list[str]]:
    """The container to decode ``path`` as, from its content, checked against its name."""
    expected = EXTENSION_CONTAINERS.get(path.suffix.lower())
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise AutomixError(f"{path}: cannot read ({os_error_reason(error)})") from None
    found = sniff_container(path)
    if found is None:
        raise AutomixError(f"{path}: not an audio file ({_MISSING_HEADER[expected]})")
    warnings = []
    if expected is not None and found != expected:
        warnings.append(f"{path.name}: the content is {found} although the name ends in {path.suffix}; read as {found}")
    return found, warnings


def _check_header(path: Path, rate: object, channels: int, subtype: str | None) -> None:
    validate_sample_rate(rate, name=str(path))
    if not 1 <= channels <= MAX_CHANNELS:
        raise AutomixError(f"{path}: the header says {channels} channels; automix reads 1 to {MAX_CHANNELS}")
    if subtype is not None and subtype not in sf.available_subtypes():
        raise AutomixError(f"{path}: unsupported sample format {subtype!r}")


def _decode_sndfile(path: Path, container: str, size: int, warnings: list[str]) -> tuple[np.ndarray, int]:
    """Decode with libsndfile, block by block, never trusting the header's length."""
    try:
        with sf.SoundFile(path) as f:
            if f.format not in _SNDFILE_FORMATS[container]:
                raise AutomixError(f"{path}: not a valid {container} file (its header reads as {f.format})")
            rate, channels, header_frames, subtype = f.samplerate, f.channels, f.frames, f.subtype
            _check_header(path, rate, channels, subtype)
            cap_frames = int(MAX_DURATION_S * rate)
            # libsndfile clips an uncompressed file's frame count to what its size can
            # hold, so past the cap it is a real, too long file: refuse before decoding.
            if subtype in _PCM_BYTES and container in ("WAV", "AIFF") and header_frames > cap_frames:
                raise AutomixError(_too_long(path, header_frames / rate))
            claimed = claimed_frames(path, container, subtype, header_frames)
            capacity = _initial_capacity(header_frames, cap_frames, size, channels, subtype if container in ("WAV", "AIFF") else None)
            samples = _read_blocks(_sndfile_reader(f, path), channels, capacity, cap_frames, path, rate)
    except AutomixError:
        raise
    except Exception as error:  # noqa: BLE001 - LibsndfileError, MemoryError, OSError, ...
        raise AutomixError(f"{path}: cannot read as {container} ({_describe(error)})") from None
    warnings.extend(truncation_warnings(path, claimed, samples.shape[1]))
    return samples, int(rate)


def claimed_frames(path: Path, container: str, subtype: str | None, header_frames: int) -> int | None:
    """The frame count a file's header claims, where it says something exact: a WAV's or
    AIFF's chunk sizes for PCM and float data (ADPCM/GSM block sizes say nothing exact
    about frames) and a FLAC's STREAMINFO total (0 is "unknown"; an MP3's count is an
    estimate); None otherwise."""
    if container == "FLAC" and 0 < header_frames < _UNKNOWN_FRAMES:
        return int(header_frames)
    return _declared_frames(path, container) if subtype in _PCM_BYTES else None


def truncation_warnings(path: Path, claimed: int | None, frames: int) -> list[str]:
    """The warning for a file that holds fewer frames than its header claims (none if not)."""
    if claimed is not None and claimed > frames > 0:
        return [f"{path.name}: truncated: header claims {claimed} frames, file holds {frames}"]
    return []


def _sndfile_reader(f: sf.SoundFile, path: Path) -> Callable[[np.ndarray], int]:
    """A function filling an interleaved float32 block from ``f``; returns frames read.

    soundfile's own ``read`` clips every request to the header's frame count and seeks
    after each block, which fails for a FLAC whose header lies; libsndfile's
    ``sf_readf_float`` simply reads until the data ends.
    """
    try:
        from soundfile import _ffi, _snd

        handle = f._file
    except (ImportError, AttributeError):  # pragma: no cover - soundfile internals moved
        return lambda block: int(f.read(out=block).shape[0]) if f.tell() < f.frames else 0

    def read_into(block: np.ndarray) -> int:
        frames = int(_snd.sf_readf_float(handle, _ffi.cast("float *", _ffi.from_buffer(block)), block.shape[0]))
        if _snd.sf_error(handle):
            detail = _ffi.string(_snd.sf_strerror(handle)).decode("utf-8", "replace")
            raise AutomixError(f"{path}: cannot decode ({detail})")
        return max(frames, 0)

    return read_into


def _decode_pedalboard(path: Path, warnings: list[str]) -> tuple[np.ndarray, int]:
    """Decode an MP3 with pedalboard (when libsndfile lacks MPEG or fails on it)."""
    from pedalboard.io import AudioFile

    try:
        with AudioFile(str(path)) as f:
            rate, channels, header_frames = f.samplerate, f.num_channels, int(f.frames)
            if float(rate) != int(rate):
                raise AutomixError(f"{path}: sample rate {rate} Hz is not a whole number")
            rate = int(rate)
            _check_header(path, rate, channels, None)
            cap_frames = int(MAX_DURATION_S * rate)

            def read_into(block: np.ndarray) -> int:
                data = f.read(block.shape[0])
                n = data.shape[1]
                block[:n] = data.T
                return n

            capacity = max(1, min(header_frames, cap_frames + 1, TRUSTED_HEADER_BYTES // (4 * channels)))
            samples = _read_blocks(read_into, channels, capacity, cap_frames, path, rate)
    except AutomixError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoder failure means "unreadable"
        raise AutomixError(f"{path}: cannot read as MP3 ({_describe(error)})") from None
    return samples, rate


def _initial_capacity(header_frames: int, cap_frames: int, size: int, channels: int, subtype: str | None) -> int:
    """Frames to allocate before decoding: the header's count where it is plausible.

    ``subtype`` is given for uncompressed containers only (WAV, AIFF), whose size
    bounds the frames; a FLAC's "PCM_16" says nothing about its compressed size.
    """
    if subtype in _PCM_BYTES:
        plausible = size // (channels * _PCM_BYTES[subtype]) + 1
    else:
        plausible = max(size * 4 // channels + READ_BLOCK_FRAMES, TRUSTED_HEADER_BYTES // (4 * channels))
    known = header_frames if 0 < header_frames < _UNKNOWN_FRAMES else plausible
    return max(1, min(known, plausible, cap_frames + 1))


def _read_blocks(
    read_into: Callable[[np.ndarray], int], channels: int, capacity: int, cap_frames: int, path: Path, rate: int
) -> np.ndarray:
    """Decode until the data ends into a ``(channels, frames)`` float32 array.

    The buffer starts at ``capacity`` frames (one allocation when the header is right)
    and grows by half when the data goes on; each block is de-interleaved into it, so
    the peak memory is the result plus one block, not twice the result.
    """
    block = np.empty((READ_BLOCK_FRAMES, channels), np.float32)
    out = np.empty((channels, capacity), np.float32)
    filled = 0
    while True:
        n = read_into(block)
        if n <= 0:
            break
        if filled + n > cap_frames:
            raise AutomixError(_too_long(path, (filled + n) / rate, stopped=True))
        if filled + n > out.shape[1]:
            grown = np.empty((channels, min(max(filled + n, out.shape[1] * 3 // 2), cap_frames)), np.float32)
            grown[:, :filled] = out[:, :filled]
            out = grown
        out[:, filled : filled + n] = block[:n].T
        filled += n
        if n < block.shape[0]:
            break  # a short block is the end of the data
    if filled == out.shape[1]:
        return out
    return out[:, :filled].copy()  # a copy, so the oversized buffer is freed


def _declared_frames(path: Path, container: str) -> int | None:
    """The frame count a WAV or AIFF header declares, read from the raw chunks.

    libsndfile quietly clips a too-large data size to the file, so a truncated WAV
    would pass unnoticed; this reads what the header itself claims.
    """
    if container not in ("WAV", "AIFF"):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            big_endian = head[:4] in (b"RIFX", b"FORM")
            size_format = ">I" if big_endian else "<I"
            block_align = data_size = comm_frames = None
            for _ in range(256):  # enough for any real chunk list
                chunk = f.read(8)
                if len(chunk) < 8:
                    break
                chunk_id, chunk_size = chunk[:4], struct.unpack(size_format, chunk[4:])[0]
                body_at = f.tell()
                if chunk_id == b"fmt " and chunk_size >= 14:
                    block_align = struct.unpack(">H" if big_endian else "<H", f.read(14)[12:14])[0]
                elif chunk_id == b"ds64" and chunk_size >= 16:
                    data_size = struct.unpack("<Q", f.read(16)[8:16])[0]
                elif chunk_id == b"data":
                    if head[:4] != b"RF64" or data_size is None:
                        data_size = chunk_size
                    break
                elif chunk_id == b"COMM" and chunk_size >= 6:
                    comm_frames = struct.unpack(">I", f.read(6)[2:6])[0]
                    break
                f.seek(body_at + chunk_size + (chunk_size & 1))
    except (OSError, struct.error):
        return None
    if container == "AIFF":
        return comm_frames or None
    if data_size in (None, 0, 0xFFFFFFFF) or not block_align:
        return None  # streaming writers leave the size unset: nothing is claimed
    return data_size // block_align


def _too_long(path: Path, seconds: float, stopped: bool = False) -> str:
    what = "stopped reading past" if stopped else "lasts"
    return (
        f"{path}: {what} {seconds / 3600:.1f} hours; automix reads at most {MAX_DURATION_S / 3600:g} hours "
        "(a longer length is usually a corrupt header)"
    )


def _describe(error: BaseException) -> str:
    """One plain line for a decoder's exception."""
    if isinstance(error, MemoryError):
        return "not enough memory to decode it"
    if isinstance(error, sf.LibsndfileError):
        text = error.error_string
    elif isinstance(error, OSError) and error.errno is not None:
        text = os_error_reason(error)
    else:
        text = str(error)
    text = (text.strip().splitlines() or [""])[0].rstrip(".")
    return text or type(error).__name__


# ---------------------------------------------------------------------------------
# Resampling and dither


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


# ---------------------------------------------------------------------------------
# Writing


def write_audio(
    samples: np.ndarray,
    sample_rate: int,
    path: str | os.PathLike,
    bit_depth: str = "24",
    *,
    protected: tuple[Path, ...] = (),
    format_name: str | None = None,
    loudness: LoudnessTags | None = None,
    provenance: Provenance | None = None,
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
        An existing regular file is replaced and keeps its permission bits; a new file
        gets the umask's (0644 under 022), like ``cp``.
    bit_depth : {"16", "24", "32f"}
    protected : tuple of Path
        Files that must never be overwritten (the inputs of the run).
    format_name : str, optional
        "wav", "flac" or "aiff", overriding the extension.
    loudness : LoudnessTags, optional
        The loudness of ``samples`` as written (measure the quantised samples): a BWF
        ``bext`` chunk for WAV, ReplayGain 2.0 tags for FLAC and AIFF
        (:func:`automix.io.metadata.write_metadata`).
    provenance : Provenance, optional
        What made the file: in the bext CodingHistory (WAV) or an
        ``AUTOMIX_PROVENANCE`` tag. Both are added to the temporary file before the
        rename, so the output never appears without them.

    Returns
    -------
    pathlib.Path
        The written file, tagged ``software = "automix <version>"``.

    Raises
    ------
    AutomixError
        For a bad array or option, a destination that is an input or not a regular
        file, or a failed write (disk full, permission denied...); the temp file is
        removed and an existing destination is left untouched.
    """
    path = Path(path)
    if bit_depth not in BIT_DEPTHS:
        raise AutomixError(f"bit depth must be one of {', '.join(BIT_DEPTHS)}, not {bit_depth!r}")
    container = output_format(path, format_name)
    subtype = BIT_DEPTHS[bit_depth]
    if container == "FLAC" and subtype == "FLOAT":
        raise AutomixError(f"{path}: FLAC cannot hold 32-bit float; use --bit-depth 16 or 24, or WAV")
    _check_writable_array(samples, sample_rate, path)
    for input_path in protected:
        if _same_file(path, input_path):
            raise AutomixError(f"{path}: refusing to write over an input file")
    with atomic_output(path) as temp_name:
        _write_sndfile(temp_name, samples, int(sample_rate), subtype, container, path)
        if loudness is not None or provenance is not None:
            _write_metadata_or_fail(temp_name, container, loudness, provenance, path)
        elif container == "WAV" and subtype == "FLOAT":
            zero_peak_timestamp(temp_name)  # same input, same bytes (the rewrite above does it too)
    return path


def _write_metadata_or_fail(temp_name: str, container: str, loudness: LoudnessTags | None,
                            provenance: Provenance | None, path: Path) -> tuple[str, ...]:
    """Add the metadata to the temp file; word a failure (disk full...) for ``path``."""
    try:
        return write_metadata(temp_name, container, loudness, provenance)
    except AutomixError as error:
        # the temp name means nothing to the user: name the destination
        raise AutomixError(str(error).replace(str(temp_name), str(path))) from None


def _check_writable_array(samples: np.ndarray, sample_rate: int, path: Path) -> None:
    # Lighter than validate_audio: tests and tools may write short or odd-rate files
    # on purpose; what must not happen is writing a transposed array as 44100 channels.
    if not isinstance(samples, np.ndarray) or samples.ndim != 2 or not np.issubdtype(samples.dtype, np.floating):
        raise AutomixError(f"{path}: expected float samples shaped (channels, samples) to write")
    if not 1 <= samples.shape[0] <= MAX_CHANNELS:
        hint = "; looks transposed" if samples.shape[1] <= MAX_CHANNELS else ""
        raise AutomixError(f"{path}: cannot write {samples.shape[0]} channels (shape {samples.shape}){hint}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AutomixError(f"{path}: sample rate must be a positive whole number of Hz, not {sample_rate!r}")


def _write_sndfile(temp_name: str, samples: np.ndarray, sample_rate: int, subtype: str, container: str, path: Path) -> None:
    """Encode into ``temp_name`` block by block (no interleaved copy of the whole signal)."""
    try:
        f = sf.SoundFile(temp_name, "w", sample_rate, samples.shape[0], subtype, format=container)
    except Exception as error:  # noqa: BLE001
        raise AutomixError(_write_failure(path, _describe(error))) from None
    try:
        f.software = SOFTWARE  # before the data: FLAC writes its tags with the header
        for start in range(0, samples.shape[1], READ_BLOCK_FRAMES):
            f.write(np.ascontiguousarray(samples[:, start : start + READ_BLOCK_FRAMES].T, dtype=np.float32))
    except Exception as error:  # noqa: BLE001
        detail = _sndfile_error_detail(f) or _describe(error)
        with suppress(Exception):
            f.close()
        raise AutomixError(_write_failure(path, detail)) from None
    try:
        f.close()  # rewrites the header: can fail on a full disk too
    except Exception as error:  # noqa: BLE001
        raise AutomixError(_write_failure(path, _sndfile_error_detail(f) or _describe(error))) from None


def _sndfile_error_detail(f: sf.SoundFile) -> str | None:
    """libsndfile's detailed message ("System error : No space left on device.") as a
    plain reason; soundfile's exception says only "System error."."""
    try:
        from soundfile import _ffi, _snd

        text = _ffi.string(_snd.sf_strerror(f._file)).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - internals moved, or the file is closed
        return None
    text = text.split(":", 1)[-1].strip().rstrip(".")
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EROFS, errno.EIO):
        if text == os.strerror(code):
            return os_error_reason(OSError(code, text))
    return text or None


_FULL = ("disk full", "disk quota exceeded", "file too large for this file system or the file-size limit (ulimit -f)")
_DENIED = ("permission denied", "read-only file system")


def _write_failure(path: Path, reason: str) -> str:
    if reason in _FULL:
        return f"{reason} while writing {path}"
    if reason in _DENIED:
        return f"cannot write to folder {path.parent}: {reason}"
    return f"{path}: cannot write ({reason})"


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary name beside ``path``; on success rename it to ``path``.

    A reader never sees a half-written file, and a failed write leaves nothing behind
    and the old destination untouched. Before anything is created, an existing
    destination that is not a regular file (device, FIFO, folder, socket, or a link to
    one) is refused. A symbolic link to a regular file is written through, like
    ``cp``. The new file gets the umask's permission bits; a replaced file keeps its
    own. The temp name carries this process's id (see
    :func:`automix.io.paths.clean_stale_parts`).

    Raises
    ------
    AutomixError
        For a refused destination, a folder that cannot be created or written, or an
        ``OSError`` while writing or renaming (disk full, permission denied...).
    """
    path = Path(path)
    existing = existing_output_target(path)
    destination = Path(os.path.realpath(path)) if existing is not None and os.path.islink(path) else path
    folder = destination.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise AutomixError(f"cannot create folder {folder}: a file is in the way") from None
    except OSError as error:
        raise AutomixError(f"cannot create folder {folder}: {os_error_reason(error)}") from None
    temp = temp_name_for(destination)
    try:
        # 0o666 minus the umask, as cp and sox give; mkstemp would force 0600.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as error:
        raise AutomixError(_write_failure(destination, os_error_reason(error))) from None
    try:
        if existing is not None and hasattr(os, "fchmod"):
            if hasattr(os, "fchown") and (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
                with suppress(OSError):  # keep the owner where allowed (root, or our own group)
                    os.fchown(fd, existing.st_uid, existing.st_gid)
            os.fchmod(fd, stat.S_IMODE(existing.st_mode) & 0o777)
    finally:
        os.close(fd)
    try:
        yield str(temp)
        _fsync(temp)
        os.replace(temp, destination)
    except BaseException as error:
        with suppress(OSError):
            os.unlink(temp)
        if isinstance(error, OSError):
            raise AutomixError(_write_failure(destination, os_error_reason(error))) from None
        raise


def _fsync(path: Path) -> None:
    """Flush the finished temp file to disk before the rename makes it the output, so a
    power cut cannot leave an empty file where the old one was."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
