"""Loudness and provenance metadata in automix's outputs, and reading it back.

Every output says how loud it is and what made it:

- **WAV**: a Broadcast Wave ``bext`` chunk, version 2 (EBU Tech 3285 v2, 2011), with
  LoudnessValue, LoudnessRange, MaxTruePeakLevel, MaxMomentaryLoudness and
  MaxShortTermLoudness in hundredths (0x7FFF where a value is unknown), and the
  provenance in CodingHistory under an EBU R 98 line (``A=PCM,F=48000,W=24,M=stereo,
  T=automix 0.1.0``). The chunk is inserted just before ``data`` by rewriting the RIFF
  header in place (the audio bytes are moved, never re-encoded); RF64 files get their
  ``ds64`` sizes fixed.
- **FLAC, Ogg Vorbis, MP3, AIFF, M4A**: ReplayGain 2.0 tags (reference -18 LUFS,
  peak = linear true peak) written with mutagen, and the provenance in an
  ``AUTOMIX_PROVENANCE`` tag (Vorbis comment, ID3v2 ``TXXX`` frame, or an iTunes
  free-form atom).
- **Opus**: ``R128_TRACK_GAIN`` (and ``R128_ALBUM_GAIN``), Q7.8 dB relative to
  -23 LUFS (RFC 7845 section 5.2.1). The REPLAYGAIN_* tags are left out, as the RFC
  says they SHOULD be ("to avoid confusion with multiple normalization schemes") and
  as rsgain does by default.

Nothing here depends on the time: the same audio, loudness and provenance give the
same bytes (OriginationDate/Time stay blank, the float ``PEAK`` chunk's time stamp is
zeroed when the header is rewritten).

:func:`read_metadata` reads all of it back by its own code path (a RIFF chunk walk for
WAV, mutagen for tags) for ``automix analyze`` and for tests.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from automix import __version__
from automix.errors import AutomixError
from automix.io.paths import PROVENANCE_PREFIX, os_error_reason

#: ReplayGain 2.0 reference loudness (Hydrogenaudio ReplayGain 2.0 specification,
#: "Reference level": -18 LUFS, an ITU-R BS.1770 measurement).
REPLAYGAIN_REFERENCE_LUFS = -18.0
#: Opus R128 gain reference: EBU R 128's -23 LUFS (RFC 7845 section 5.2.1).
R128_REFERENCE_LUFS = -23.0
#: Tech 3285 v2 marks an unknown loudness field with 0x7FFF.
BEXT_UNUSED = 0x7FFF
#: bext fixed part, Tech 3285 v2 table: 256+32+32+10+8+8+2+64+10+180 bytes.
BEXT_FIXED_BYTES = 602
#: Bytes moved at a time when the audio is shifted to make room for the chunk.
COPY_BYTES = 1 << 20
#: Tag (Vorbis comment / TXXX description / MP4 free-form name) carrying the provenance.
PROVENANCE_TAG = "AUTOMIX_PROVENANCE"

#: Job options that do not change a sample of the output: left out of the provenance
#: (issue 13: "not how the job ran: -j, --quiet, --json, or the cluster and manifest
#: options of batch runs"). Names as the CLI's parameters, with or without dashes.
NON_SHAPING_OPTIONS = frozenset({
    "jobs", "j", "quiet", "q", "json", "as_json", "report", "output", "output_dir", "o",
    "dry_run", "strict", "export_stems", "cluster", "manifest", "batch", "shard", "shards",
    "resume", "retries", "keep_going", "verbose", "progress", "log", "overwrite", "force",
    "version", "preset", "preset_file",  # the preset has its own fields
})  # fmt: skip

_METERED = ("integrated_lufs", "loudness_range_lu", "true_peak_dbtp", "max_momentary_lufs", "max_short_term_lufs")
#: Below this a meter read silence (automix.measure.loudness.SILENCE_DB is -200): unknown.
_SILENT_BELOW_DB = -150.0


def _known(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) and value > _SILENT_BELOW_DB else None


@dataclass(frozen=True)
class LoudnessTags:
    """The loudness numbers written into an output; None where unknown.

    Attributes
    ----------
    integrated_lufs, loudness_range_lu, true_peak_dbtp, max_momentary_lufs, max_short_term_lufs : float or None
        As :class:`automix.measure.loudness.LoudnessMeasurement` reads them from the
        output itself (after quantisation / encoding).
    album_lufs, album_true_peak_dbtp : float or None
        The whole album's integrated loudness and highest true peak (``--album``).
    """

    integrated_lufs: float | None
    loudness_range_lu: float | None = None
    true_peak_dbtp: float | None = None
    max_momentary_lufs: float | None = None
    max_short_term_lufs: float | None = None
    album_lufs: float | None = None
    album_true_peak_dbtp: float | None = None

    def __post_init__(self) -> None:
        for name in (*_METERED, "album_lufs", "album_true_peak_dbtp"):
            value = getattr(self, name)
            cleaned = _known(value) if name != "loudness_range_lu" else (None if value is None or not math.isfinite(value) else float(value))
            object.__setattr__(self, name, cleaned)

    @classmethod
    def from_measurement(cls, measured, album=None) -> LoudnessTags:
        """Build from a ``LoudnessMeasurement`` of the output (and of the album).

        Parameters
        ----------
        measured : automix.measure.loudness.LoudnessMeasurement
        album : LoudnessMeasurement, optional
            Of all the album's tracks together; gives the album gain and peak.
        """
        measurable = getattr(measured, "is_measurable", True)
        return cls(
            integrated_lufs=measured.integrated_lufs if measurable else None,
            loudness_range_lu=measured.loudness_range_lu if measurable else None,
            true_peak_dbtp=measured.true_peak_dbtp,
            max_momentary_lufs=measured.max_momentary_lufs if measurable else None,
            max_short_term_lufs=measured.max_short_term_lufs if measurable else None,
            album_lufs=album.integrated_lufs if album is not None else None,
            album_true_peak_dbtp=album.true_peak_dbtp if album is not None else None,
        )

    @property
    def track_gain_db(self) -> float | None:
        """ReplayGain 2.0 track gain: -18 LUFS minus the integrated loudness."""
        return None if self.integrated_lufs is None else REPLAYGAIN_REFERENCE_LUFS - self.integrated_lufs

    @property
    def track_peak(self) -> float | None:
        """Linear true peak (ReplayGain 2.0 allows the true peak for the peak tag)."""
        return None if self.true_peak_dbtp is None else 10 ** (self.true_peak_dbtp / 20)

    @property
    def album_gain_db(self) -> float | None:
        return None if self.album_lufs is None else REPLAYGAIN_REFERENCE_LUFS - self.album_lufs

    @property
    def album_peak(self) -> float | None:
        return None if self.album_true_peak_dbtp is None else 10 ** (self.album_true_peak_dbtp / 20)


def input_digest(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read 1 MB at a time (any size, constant memory)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(COPY_BYTES):
                digest.update(block)
    except OSError as error:
        raise AutomixError(f"{path}: cannot read to take its digest ({os_error_reason(error)})") from None
    return digest.hexdigest()


def input_digests_beside(paths: Sequence[str | os.PathLike]) -> Callable[[str | os.PathLike], str]:
    """:func:`input_digest` of every one of ``paths``, one after another on a thread
    started now; call the result with one of them for its digest (it waits for the
    thread, and raises what that file's digest raised: a file that is never asked for
    may fail unseen).

    A job hashes its inputs for the provenance tag beside its passes and waits for the
    digests only when it writes the tags (hashlib releases the GIL). On Linux the thread
    runs at the lowest priority, so it takes only the time the passes leave idle: hashed
    at full priority, the 8 stems of a mix (0.3 s of CPU) slowed its analysis, which
    keeps both cores busy, by as much. Start it after the helper process is forked:
    :mod:`automix.io.helper` forks only while no other thread runs
    (:func:`automix.jobs.master_files.master_job` and
    :func:`automix.jobs.mix_folder.mix_folder` fork it first).
    """
    outcome: dict = {}
    paths = list(paths)

    def run() -> None:
        if sys.platform.startswith("linux"):  # where a thread's niceness is its own
            with suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        for path in paths:
            try:
                outcome[path] = input_digest(path)
            except BaseException as error:  # noqa: BLE001 - handed to the caller
                outcome[path] = error

    thread = threading.Thread(target=run, name="automix-digest", daemon=True)
    thread.start()

    def digest(path: str | os.PathLike) -> str:
        thread.join()
        value = outcome[path]
        if isinstance(value, BaseException):
            raise value
        return value

    return digest


def input_digest_beside(path: str | os.PathLike) -> Callable[[], str]:
    """:func:`input_digests_beside` of one file: call the result for its digest."""
    digests = input_digests_beside([path])
    return lambda: digests(path)


def _one_line(text: object) -> str:
    r"""Escape a value onto one printable ASCII line (bext text is ASCII, EBU Tech 3285):
    backslash, CR and LF as ``\\``, ``\r``, ``\n``, other characters as ``\uXXXX``."""
    out = []
    for char in str(text):
        if char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return "".join(out)


@dataclass(frozen=True)
class Provenance:
    """What made an output.

    Attributes
    ----------
    options : Mapping[str, str]
        The options that shape the audio (``{"target_lufs": "-14", "bit_depth": "24"}``).
        Use :meth:`build` to leave out those that do not (``NON_SHAPING_OPTIONS``).
    preset : str
        The preset's name.
    preset_sha256 : str
        Hex sha256 of the preset's source file ("" if built in code).
    changed : Mapping[str, str]
        Settings that differ from the preset (``{"master.target_lufs": "-9"}``).
    inputs : tuple of (name, sha256)
        Each input file's base name (no folders: the same files elsewhere give the same
        bytes) and digest, in the order the job read them.
    version : str
        automix's version.
    """

    options: Mapping[str, str] = field(default_factory=dict)
    preset: str = ""
    preset_sha256: str = ""
    changed: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[tuple[str, str], ...] = ()
    version: str = __version__

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", {str(k): str(v) for k, v in sorted(self.options.items())})
        object.__setattr__(self, "changed", {str(k): str(v) for k, v in sorted(self.changed.items())})
        object.__setattr__(self, "inputs", tuple((str(n), str(d)) for n, d in self.inputs))

    @classmethod
    def build(cls, options: Mapping[str, object], *, preset: str = "", preset_path: str | os.PathLike | None = None,
              changed: Mapping[str, object] | None = None, inputs: Iterable[str | os.PathLike] = ()) -> Provenance:
        """Provenance from a job's options, its preset file and its input files.

        ``options`` may hold everything the command received: options that do not
        change the audio (``NON_SHAPING_OPTIONS``) and those left unset (None) are
        dropped. Inputs and the preset file are hashed here (sha256, streamed).
        """
        kept = {}
        for key, value in options.items():
            name = str(key).lstrip("-").replace("-", "_")
            if value is None or name in NON_SHAPING_OPTIONS:
                continue
            kept[name] = value
        return cls(
            options={k: _option_text(v) for k, v in kept.items()},
            preset=preset,
            preset_sha256=input_digest(preset_path) if preset_path is not None else "",
            changed={str(k): _option_text(v) for k, v in (changed or {}).items()},
            inputs=tuple((Path(p).name, input_digest(p)) for p in inputs),
        )

    def lines(self) -> list[str]:
        """One ``key=value`` line per field; see :meth:`to_text`."""
        out = [f"automix={_one_line(self.version)}"]
        if self.preset:
            out.append(f"preset={_one_line(self.preset)}")
        if self.preset_sha256:
            out.append(f"preset_sha256={self.preset_sha256}")
        out += [f"option.{_one_line(k)}={_one_line(v)}" for k, v in self.options.items()]
        out += [f"changed.{_one_line(k)}={_one_line(v)}" for k, v in self.changed.items()]
        out += [f"input={digest} {_one_line(name)}" for name, digest in self.inputs]
        return out

    def to_text(self) -> str:
        """Compact, deterministic text, one ``key=value`` line per field::

            automix=0.1.0
            preset=pop
            preset_sha256=9f2c...
            option.bit_depth=24
            changed.master.target_lufs=-9
            input=3b1e... vocals.wav

        Options and changes are sorted by name; inputs keep their order.
        """
        return "\n".join(self.lines()) + "\n"

    @classmethod
    def from_text(cls, text: str) -> Provenance:
        """Parse :meth:`to_text` back (unknown lines are ignored)."""
        fields_: dict = {"options": {}, "changed": {}, "inputs": []}
        for raw in text.replace("\r\n", "\n").split("\n"):
            key, sep, value = raw.partition("=")
            if not sep:
                continue
            value = _unescape(value)
            if key == "automix":
                fields_["version"] = value
            elif key == "preset":
                fields_["preset"] = value
            elif key == "preset_sha256":
                fields_["preset_sha256"] = value
            elif key.startswith("option."):
                fields_["options"][_unescape(key[7:])] = value
            elif key.startswith("changed."):
                fields_["changed"][_unescape(key[8:])] = value
            elif key == "input":
                digest, _, name = value.partition(" ")
                fields_["inputs"].append((name, digest))
        fields_["inputs"] = tuple(fields_["inputs"])
        return cls(**fields_)


#: What every tag writer takes for the provenance: one, or a callable that gives one when
#: the tags are written (so the inputs' digests can still be taken beside the passes:
#: :func:`input_digests_beside`). :func:`write_metadata` calls it; nothing else does.
ProvenanceLike = Provenance | Callable[[], Provenance | None]


def _unescape(text: str) -> str:
    """Undo :func:`_one_line`."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            kind = text[i + 1]
            width = {"u": 4, "U": 8}.get(kind)
            if width is not None:
                try:
                    out.append(chr(int(text[i + 2 : i + 2 + width], 16)))
                    i += 2 + width
                    continue
                except ValueError:
                    pass
            out.append({"n": "\n", "r": "\r"}.get(kind, kind))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _option_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_option_text(v) for v in value)
    return str(value)


# ---------------------------------------------------------------------------------
# Writing


def write_metadata(path: str | os.PathLike, container: str | None, loudness: LoudnessTags | None,
                   provenance: ProvenanceLike | None = None) -> tuple[str, ...]:
    """Add loudness and provenance metadata to a finished audio file, in place.

    Call it on the temporary file, before :func:`automix.io.audio.atomic_output`
    renames it, so no reader ever sees the output without its metadata.

    Parameters
    ----------
    path : path-like
        The finished file.
    container : str or None
        "WAV", "FLAC", "AIFF", "OGG" (Vorbis or Opus, told apart by content), "OPUS",
        "MP3", "M4A"/"MP4"/"AAC"; None to tell from the first bytes.
    loudness : LoudnessTags or None
    provenance : Provenance, a callable that gives one (``ProvenanceLike``: called now),
        or None

    Returns
    -------
    tuple of str
        Warnings: what could not be written and why (an RF64-sized WAV that is not
        RF64, a container with no tag support).

    Raises
    ------
    AutomixError
        If the file cannot be read or rewritten (disk full, a file that is not what
        ``container`` says).
    """
    path = Path(path)
    if callable(provenance):
        provenance = provenance()
    if loudness is None and provenance is None:
        return ()
    kind = (container or _sniff(path) or "").upper()
    try:
        if kind in ("WAV", "WAVEX", "RF64"):
            return _write_bext(path, loudness, provenance)
        if kind in ("FLAC", "OGG", "OPUS", "VORBIS"):
            return _write_vorbis_comments(path, loudness, provenance)
        if kind in ("MP3", "MPEG", "AIFF"):
            return _write_id3(path, kind, loudness, provenance)
        if kind in ("M4A", "MP4", "AAC"):
            return _write_mp4(path, loudness, provenance)
    except AutomixError:
        raise
    except ImportError:
        raise AutomixError(f"{path}: cannot tag a {kind} file: mutagen is not installed (pip install 'mutagen>=1.47')") from None
    except OSError as error:
        raise AutomixError(f"{path}: cannot add loudness metadata ({os_error_reason(error)})") from None
    except Exception as error:  # noqa: BLE001 - mutagen's and struct's errors: a malformed file
        raise AutomixError(f"{path}: cannot add loudness metadata ({type(error).__name__}: {error})") from None
    return (f"{path.name}: no loudness metadata for a {kind or 'unknown'} file",)


def _sniff(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"FORM":
        return "AIFF"
    if head[:4] == b"OggS":
        return "OGG"
    if head[4:8] == b"ftyp":
        return "M4A"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    return None


def _hundredths(value: float | None) -> int:
    """Tech 3285 v2 loudness field: value x 100 as int16, 0x7FFF when unknown."""
    if value is None:
        return BEXT_UNUSED
    return max(-32768, min(32766, math.floor(value * 100 + 0.5)))


def _ascii(text: str) -> bytes:
    """bext text is ASCII: other characters become backslash escapes, not '?'."""
    return text.encode("ascii", "backslashreplace")


def bext_chunk_body(loudness: LoudnessTags | None, provenance: Provenance | None, *, sample_rate: int,
                    bits: int, channels: int, is_float: bool) -> bytes:
    """The body of a version-2 ``bext`` chunk (EBU Tech 3285 v2), without its header."""
    tags = loudness or LoudnessTags(None)
    description = f"{PROVENANCE_PREFIX} {__version__}"
    if provenance is not None and provenance.preset:
        description += f" preset={_one_line(provenance.preset)}"
    mode = {1: "mono", 2: "stereo"}.get(channels)
    r98 = f"A=PCM,F={sample_rate},W={bits},{f'M={mode},' if mode else ''}T={PROVENANCE_PREFIX} {__version__}{' float' if is_float else ''}"
    history = r98 + "\r\n" + "".join(line + "\r\n" for line in (provenance.lines() if provenance else ()))
    fixed = struct.pack(
        "<256s32s32s10s8sIIH64s5h180s",
        _ascii(description)[:256],
        _ascii(PROVENANCE_PREFIX)[:32],
        b"",  # OriginatorReference
        b"",  # OriginationDate: blank, so the same input gives the same bytes
        b"",  # OriginationTime
        0, 0,  # TimeReference (low, high): the output starts at sample 0
        2,  # Version
        b"",  # UMID: none
        _hundredths(tags.integrated_lufs),
        _hundredths(tags.loudness_range_lu),
        _hundredths(tags.true_peak_dbtp),
        _hundredths(tags.max_momentary_lufs),
        _hundredths(tags.max_short_term_lufs),
        b"",  # Reserved
    )
    assert len(fixed) == BEXT_FIXED_BYTES
    coded = _ascii(history)
    # An even size: RIFF allows odd chunks (plus a pad byte), but libsndfile 1.2.2's RF64
    # reader does not skip the pad and then finds no data chunk. A NUL ends the text.
    return fixed + coded + (b"\0" if len(coded) & 1 else b"")


def _chunk(chunk_id: bytes, body: bytes) -> bytes:
    """A RIFF chunk: id, little-endian size, body, and the pad byte an odd size needs."""
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def _write_bext(path: Path, loudness: LoudnessTags | None, provenance: Provenance | None) -> tuple[str, ...]:
    """Insert (or replace) the bext chunk just before ``data``, in place."""
    with open(path, "r+b") as f:
        head = f.read(12)
        if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            raise AutomixError(f"{path}: not a little-endian RIFF/RF64 WAVE file; cannot add a bext chunk")
        rf64 = head[:4] == b"RF64"
        file_size = os.fstat(f.fileno()).st_size
        kept: list[tuple[bytes, bytes]] = []  # header chunks before data (bext dropped)
        fmt = None
        data_at = None
        while True:
            chunk_at = f.tell()
            header = f.read(8)
            if len(header) < 8:
                break
            chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk_id == b"data":
                data_at = chunk_at
                break
            body = f.read(size)
            if len(body) < size or size > 1 << 26:  # header chunks are small; a huge one is corrupt
                raise AutomixError(f"{path}: the WAV header is damaged (chunk {chunk_id!r} runs past the end)")
            f.seek(size & 1, os.SEEK_CUR)
            if chunk_id == b"fmt ":
                fmt = body
            elif chunk_id == b"PEAK" and len(body) >= 8:
                body = body[:4] + b"\0\0\0\0" + body[8:]  # its time stamp would make every write differ
            if chunk_id != b"bext":
                kept.append((chunk_id, body))
        if fmt is None or data_at is None or len(fmt) < 16:
            raise AutomixError(f"{path}: no fmt or data chunk; cannot add a bext chunk")
        tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag == 0xFFFE and len(fmt) >= 40:  # WAVE_FORMAT_EXTENSIBLE: the sub-format GUID's first two bytes
            tag = struct.unpack("<H", fmt[24:26])[0]
        bext = bext_chunk_body(loudness, provenance, sample_rate=rate, bits=bits, channels=channels, is_float=tag == 3)
        chunks = [*kept, (b"bext", bext)]  # just before data, after fmt and the other header chunks
        new_header = bytearray(head + b"".join(_chunk(cid, body) for cid, body in chunks))
        shift = len(new_header) - data_at
        total = file_size + shift
        if not rf64 and total - 8 > 0xFFFFFFFF:
            return (f"{path.name}: over 4 GiB and not RF64: no room for a bext chunk; loudness metadata left out",)
        if rf64:
            _fix_ds64(new_header, path, total)
        else:
            new_header[4:8] = struct.pack("<I", total - 8)
        _shift_tail(f, data_at, file_size, shift)
        f.seek(0)
        f.write(new_header)
        if shift < 0:
            f.truncate(total)
    return ()


def zero_peak_timestamp(path: str | os.PathLike) -> bool:
    """Zero the time stamp libsndfile puts in a float WAV's ``PEAK`` chunk, in place.

    libsndfile stamps the chunk with the clock, so two writes of the same audio differ
    by those 4 bytes. Returns True if a PEAK chunk was found (before ``data``).
    """
    with open(path, "r+b") as f:
        head = f.read(12)
        if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return False
        for _ in range(64):
            header = f.read(8)
            if len(header) < 8 or header[:4] == b"data":
                return False
            size = struct.unpack("<I", header[4:])[0]
            if header[:4] == b"PEAK" and size >= 8:
                f.seek(4, os.SEEK_CUR)
                f.write(b"\0\0\0\0")
                return True
            f.seek(size + (size & 1), os.SEEK_CUR)
    return False


def _fix_ds64(header: bytearray, path: Path, total: int) -> None:
    """RF64 keeps the real RIFF size in ``ds64`` (EBU Tech 3306): update it there."""
    at = 12
    while at + 8 <= len(header):
        chunk_id, size = header[at : at + 4], struct.unpack("<I", header[at + 4 : at + 8])[0]
        if chunk_id == b"ds64":
            header[at + 8 : at + 16] = struct.pack("<Q", total - 8)
            return
        at += 8 + size + (size & 1)
    raise AutomixError(f"{path}: an RF64 file without a ds64 chunk; cannot add a bext chunk")


def _shift_tail(f, start: int, end: int, shift: int) -> None:
    """Move bytes ``[start, end)`` by ``shift`` within the open file, COPY_BYTES at a time.

    Moving up (shift > 0) goes from the end backwards, moving down from the start
    forwards, so no byte is overwritten before it is copied.
    """
    if shift == 0:
        return
    if shift > 0:
        position = end
        while position > start:
            n = min(COPY_BYTES, position - start)
            f.seek(position - n)
            block = f.read(n)
            f.seek(position - n + shift)
            f.write(block)
            position -= n
    else:
        position = start
        while position < end:
            n = min(COPY_BYTES, end - position)
            f.seek(position)
            block = f.read(n)
            f.seek(position + shift)
            f.write(block)
            position += n


def _gain_text(gain_db: float) -> str:
    return f"{gain_db:.2f} dB"


def _peak_text(peak: float) -> str:
    return f"{peak:.6f}"


def _replaygain_items(tags: LoudnessTags | None) -> dict[str, str]:
    if tags is None:
        return {}
    items = {}
    if tags.track_gain_db is not None:
        items["REPLAYGAIN_TRACK_GAIN"] = _gain_text(tags.track_gain_db)
    if tags.track_peak is not None:
        items["REPLAYGAIN_TRACK_PEAK"] = _peak_text(tags.track_peak)
    if tags.album_gain_db is not None:
        items["REPLAYGAIN_ALBUM_GAIN"] = _gain_text(tags.album_gain_db)
    if tags.album_peak is not None:
        items["REPLAYGAIN_ALBUM_PEAK"] = _peak_text(tags.album_peak)
    if items:
        items["REPLAYGAIN_REFERENCE_LOUDNESS"] = f"{REPLAYGAIN_REFERENCE_LUFS:.2f} LUFS"
    return items


def _q78(gain_db: float) -> str:
    """RFC 7845 R128 gain: a Q7.8 fixed-point dB value as a decimal integer string."""
    return str(max(-32768, min(32767, math.floor(gain_db * 256 + 0.5))))


def _write_vorbis_comments(path: Path, loudness: LoudnessTags | None, provenance: Provenance | None) -> tuple[str, ...]:
    import mutagen

    audio = mutagen.File(path)
    if audio is None:
        raise AutomixError(f"{path}: not a FLAC or Ogg file mutagen can tag")
    if audio.tags is None:
        audio.add_tags()
    is_opus = type(audio).__name__ == "OggOpus"
    for key in list(audio.tags.keys()):
        if key.upper().startswith(("REPLAYGAIN_", "R128_")) or key.upper() == PROVENANCE_TAG:
            del audio.tags[key]
    if is_opus:
        if loudness is not None and loudness.integrated_lufs is not None:
            audio.tags["R128_TRACK_GAIN"] = _q78(R128_REFERENCE_LUFS - loudness.integrated_lufs)
        if loudness is not None and loudness.album_lufs is not None:
            audio.tags["R128_ALBUM_GAIN"] = _q78(R128_REFERENCE_LUFS - loudness.album_lufs)
    else:
        for key, value in _replaygain_items(loudness).items():
            audio.tags[key] = value
    if provenance is not None:
        audio.tags[PROVENANCE_TAG] = provenance.to_text()
    audio.save()
    return ()


def _write_id3(path: Path, kind: str, loudness: LoudnessTags | None, provenance: Provenance | None) -> tuple[str, ...]:
    """ReplayGain as ID3v2 TXXX frames (MP3; AIFF through its ``ID3 `` chunk)."""
    from mutagen.id3 import ID3, TXXX, ID3NoHeaderError

    if kind == "AIFF":
        from mutagen.aiff import AIFF

        audio = AIFF(path)
        if audio.tags is None:
            audio.add_tags()
        tags = audio.tags
    else:
        try:
            tags = ID3(path)
        except ID3NoHeaderError:
            tags = ID3()
    for key in list(tags.keys()):
        if key.startswith("TXXX:") and (key[5:].upper().startswith("REPLAYGAIN_") or key[5:].upper() == PROVENANCE_TAG):
            del tags[key]
    for key, value in _replaygain_items(loudness).items():
        tags.add(TXXX(encoding=3, desc=key, text=[value]))
    if provenance is not None:
        tags.add(TXXX(encoding=3, desc=PROVENANCE_TAG, text=[provenance.to_text()]))
    if kind == "AIFF":
        audio.save()
    else:
        tags.save(path)
    return ()


def _write_mp4(path: Path, loudness: LoudnessTags | None, provenance: Provenance | None) -> tuple[str, ...]:
    """iTunes free-form atoms (``----:com.apple.iTunes:replaygain_track_gain``), the
    names foobar2000 and rsgain use for ReplayGain in MP4."""
    from mutagen.mp4 import MP4, MP4FreeForm

    audio = MP4(path)
    if audio.tags is None:
        audio.add_tags()
    for key in list(audio.tags.keys()):
        if key.lower().startswith("----:com.apple.itunes:replaygain_") or key.endswith(":" + PROVENANCE_TAG):
            del audio.tags[key]
    for key, value in _replaygain_items(loudness).items():
        audio.tags[f"----:com.apple.iTunes:{key.lower()}"] = [MP4FreeForm(value.encode("utf-8"))]
    if provenance is not None:
        audio.tags[f"----:com.apple.iTunes:{PROVENANCE_TAG}"] = [MP4FreeForm(provenance.to_text().encode("utf-8"))]
    audio.save()
    return ()


# ---------------------------------------------------------------------------------
# Reading


def read_metadata(path: str | os.PathLike) -> dict:
    """Read the loudness and provenance metadata of an audio file.

    Independent of the writer: WAV chunks are walked here, tags read with mutagen.

    Returns
    -------
    dict
        Only what the file holds, among::

            container: "WAV", "FLAC", ...
            software: the LIST/INFO ISFT or SOFTWARE tag
            bext: {"version", "description", "originator", "coding_history"}
            loudness: {"integrated_lufs", "loudness_range_lu", "true_peak_dbtp",
                       "max_momentary_lufs", "max_short_term_lufs"}  (bext, None if unused)
            replaygain: {"track_gain_db", "track_peak", "album_gain_db", "album_peak",
                         "reference_loudness_lufs"}
            r128: {"track_gain_db", "album_gain_db"}  (Opus, in dB)
            provenance: the provenance text

    Raises
    ------
    AutomixError
        If the file cannot be read.
    """
    path = Path(path)
    try:
        kind = _sniff(path)
        result: dict = {"container": kind}
        if kind == "WAV":
            result.update(_read_riff(path))
        elif kind is not None:
            result.update(_read_tags(path, kind))
    except AutomixError:
        raise
    except OSError as error:
        raise AutomixError(f"{path}: cannot read ({os_error_reason(error)})") from None
    except Exception as error:  # noqa: BLE001 - a damaged file: say so, do not crash analyze
        raise AutomixError(f"{path}: cannot read its metadata ({type(error).__name__}: {error})") from None
    return result


def _read_riff(path: Path) -> dict:
    out: dict = {}
    with open(path, "rb") as f:
        f.seek(12)
        for _ in range(1024):
            header = f.read(8)
            if len(header) < 8:
                break
            chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk_id == b"data":
                f.seek(size + (size & 1) if size != 0xFFFFFFFF else 0, os.SEEK_CUR)
                if size == 0xFFFFFFFF:
                    break  # RF64: the data runs to (near) the end; nothing of ours lies behind it
                continue
            if chunk_id == b"bext" and size >= BEXT_FIXED_BYTES:
                out.update(_parse_bext(f.read(size)))
            elif chunk_id == b"LIST" and size >= 4:
                out.update(_parse_info(f.read(size)))
            else:
                f.seek(size, os.SEEK_CUR)
            f.seek(size & 1, os.SEEK_CUR)
    return out


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()


def _parse_bext(body: bytes) -> dict:
    # Tech 3285 v2 offsets: Description 0, Originator 256, OriginatorReference 288,
    # OriginationDate 320, OriginationTime 330, TimeReference 338, Version 346,
    # UMID 348, loudness fields 412..421, Reserved 422, CodingHistory 602.
    version = struct.unpack_from("<H", body, 346)[0]
    history = body[602:].split(b"\0", 1)[0].decode("ascii", "replace")
    bext = {"version": version, "description": _text(body[:256]), "originator": _text(body[256:288]),
            "coding_history": history}
    out: dict = {"bext": bext}
    if version >= 2:
        values = struct.unpack_from("<5h", body, 412)
        out["loudness"] = {name: (None if v == BEXT_UNUSED else v / 100) for name, v in zip(_METERED, values)}
    lines = [line for line in history.replace("\r\n", "\n").split("\n") if line]
    provenance = [line for line in lines if len(line.partition("=")[0]) > 1]  # R 98 lines start "A=", "F=", ...
    if provenance:
        out["provenance"] = "\n".join(provenance) + "\n"
    return out


def _parse_info(body: bytes) -> dict:
    if body[:4] != b"INFO":
        return {}
    at = 4
    while at + 8 <= len(body):
        sub_id, size = body[at : at + 4], struct.unpack("<I", body[at + 4 : at + 8])[0]
        if sub_id == b"ISFT":
            return {"software": body[at + 8 : at + 8 + size].split(b"\0", 1)[0].decode("utf-8", "replace")}
        at += 8 + size + (size & 1)
    return {}


def _gain_value(text: str) -> float | None:
    try:
        return float(str(text).strip().split()[0])
    except (ValueError, IndexError):
        return None


def _read_tags(path: Path, kind: str) -> dict:
    import mutagen

    audio = mutagen.File(path)
    if audio is None or audio.tags is None:
        return {}
    flat: dict[str, str] = {}
    for key, value in audio.tags.items():
        text = value
        if hasattr(value, "text"):  # ID3 frame
            text = value.text
        if isinstance(text, list):
            text = text[0] if text else ""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        name = str(key)
        for prefix in ("TXXX:", "----:com.apple.iTunes:"):
            name = name.removeprefix(prefix)
        if hasattr(text, "__bytes__") and not isinstance(text, str):
            text = bytes(text).decode("utf-8", "replace")
        flat[name.upper()] = str(text)
    out: dict = {}
    if "SOFTWARE" in flat:
        out["software"] = flat["SOFTWARE"]
    rg = {}
    for tag, name, parse in (
        ("REPLAYGAIN_TRACK_GAIN", "track_gain_db", _gain_value),
        ("REPLAYGAIN_TRACK_PEAK", "track_peak", _gain_value),
        ("REPLAYGAIN_ALBUM_GAIN", "album_gain_db", _gain_value),
        ("REPLAYGAIN_ALBUM_PEAK", "album_peak", _gain_value),
        ("REPLAYGAIN_REFERENCE_LOUDNESS", "reference_loudness_lufs", _gain_value),
    ):
        if tag in flat:
            rg[name] = parse(flat[tag])
    if rg:
        out["replaygain"] = rg
    r128 = {}
    for tag, name in (("R128_TRACK_GAIN", "track_gain_db"), ("R128_ALBUM_GAIN", "album_gain_db")):
        if tag in flat:
            q = _gain_value(flat[tag])
            r128[name] = None if q is None else q / 256
    if r128:
        out["r128"] = r128
    if PROVENANCE_TAG in flat:
        out["provenance"] = flat[PROVENANCE_TAG]
    return out


def tagged_loudness(found: Mapping) -> dict:
    """The loudness a file's tags claim, in LUFS and dBTP, from :func:`read_metadata`'s
    result: the bext fields, else ReplayGain (-18 LUFS minus the gain), else Opus R128
    (-23 LUFS minus the gain). ``{}`` if the file claims nothing.

    For ``automix analyze`` to print beside its own measurement::

        {"integrated_lufs": -14.02, "true_peak_dbtp": -1.1, "source": "bext"}
    """
    bext = found.get("loudness") or {}
    if bext.get("integrated_lufs") is not None:
        return {"integrated_lufs": bext["integrated_lufs"], "true_peak_dbtp": bext.get("true_peak_dbtp"), "source": "bext"}
    rg = found.get("replaygain") or {}
    if rg.get("track_gain_db") is not None:
        reference = rg.get("reference_loudness_lufs") or REPLAYGAIN_REFERENCE_LUFS
        peak = rg.get("track_peak")
        return {"integrated_lufs": reference - rg["track_gain_db"],
                "true_peak_dbtp": 20 * math.log10(peak) if peak else None, "source": "replaygain"}
    r128 = found.get("r128") or {}
    if r128.get("track_gain_db") is not None:
        return {"integrated_lufs": R128_REFERENCE_LUFS - r128["track_gain_db"], "true_peak_dbtp": None, "source": "r128"}
    return {}
