"""What a batch has done, so a stopped batch resumes where it stopped.

Two parts:

* **Is an output already done?** :func:`check_existing` says whether an existing output
  is the complete master of this very input with these very settings: its provenance
  tag (BWF ``bext`` CodingHistory, or the ``AUTOMIX_PROVENANCE`` tag, as
  :mod:`automix.io.metadata` writes them) names the input's sha256 and the same
  shaping options, preset (and its file's sha256) and automix version, and the file is
  whole (:func:`incomplete_reason`: the container's own sizes add up to the file's).
  Anything else -- no output, no tag, another input or other settings, a truncated or
  unreadable file -- is redone. ``automix master --skip-existing`` leaves the done ones.
* **The manifest** (``--manifest out/manifest.jsonl``, :class:`Manifest`): one JSON
  object per line and per (input, output), appended as each file finishes, flushed and
  fsync'd, so a killed batch loses nothing it finished. A rerun first rewrites the
  file (atomically) without the lines of the files it is about to redo, and keeps the
  lines of the files it skips (adding one only if the manifest had none), so the file
  never holds two lines for the same input and output: a script reads one final line
  per input. Keys of a line::

      input, output           absolute paths (or the URLs given)
      status                  done | skipped | failed | refused
      input_sha256, output_sha256, settings_sha256
      integrated_lufs, true_peak_dbtp, loudness_range_lu, gain_db   (as written or heard;
                              a skipped file added afresh has what its tags say, gain null)
      error                   one line, for failed and refused; else null
      automix, finished_utc

  ``refused`` is a file whose target needed more limiting than allowed (exit 3,
  nothing written); ``failed`` any other error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import struct
import time
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from automix import __version__
from automix.errors import AutomixError
from automix.io.metadata import Provenance, input_digest, read_metadata, tagged_loudness
from automix.io.paths import os_error_reason

#: Manifest statuses, in the order the summary lists them.
STATUSES = ("done", "skipped", "failed", "refused")

#: How a job record's status maps onto the manifest's.
_STATUS_OF = {"ok": "done", "quieter": "done", "forced": "done", "skipped": "skipped", "error": "failed",
              "target_missed": "refused"}


def manifest_status(record_status: str) -> str:
    """``done``, ``skipped``, ``failed`` or ``refused`` for a job record's status."""
    return _STATUS_OF.get(record_status, "done")


def location_key(location) -> str:
    """How the manifest names a file: a URL as given, a path made absolute (so a rerun
    from another folder finds the same lines)."""
    text = str(location)
    from automix.io.remote import is_url

    return text if is_url(location) else os.path.abspath(text)


def settings_digest(provenance: Provenance | None) -> str:
    """sha256 of what shapes the audio -- the provenance without its inputs (options,
    preset and its file's digest, changed settings, automix's version); "" if unknown."""
    if provenance is None:
        return ""
    return hashlib.sha256(dataclasses.replace(provenance, inputs=()).to_text().encode()).hexdigest()


# --- is an output complete? -----------------------------------------------------------


def incomplete_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a whole audio file, or None if its container says it is.

    No audio is decoded: each container's own sizes must add up to the file's size.
    WAV/RF64 and AIFF: the RIFF/FORM size (RF64: the ``ds64`` size) and every chunk up
    to ``data``/``SSND``. FLAC: the last frame STREAMINFO promises can be read. Ogg
    (Opus, Vorbis): the last page is whole and ends the stream (EOS flag). MP3: the
    byte count of the LAME/Xing ``Info`` header, when there is one. MP4/M4A: the
    top-level boxes tile the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
                return _riff_reason(f, head, size)
            if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                declared = struct.unpack(">I", head[4:8])[0] + 8
                return None if declared == size else f"the AIFF header says {declared} bytes, the file has {size}"
            if head[:4] == b"OggS":
                return _ogg_reason(f, size)
            if head[4:8] == b"ftyp":
                return _mp4_reason(f, size)
            if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
                return _mp3_reason(f, head, size)
        if head[:4] == b"fLaC":
            return _flac_reason(path)
    except OSError as error:
        return f"cannot read ({os_error_reason(error)})"
    return "not a format automix writes" if size else "empty"


def _riff_reason(f, head: bytes, size: int) -> str | None:
    declared = struct.unpack("<I", head[4:8])[0] + 8
    f.seek(12)
    while True:
        header = f.read(8)
        if len(header) < 8:
            return "no data chunk"
        chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == b"ds64":
            declared = struct.unpack("<Q", f.read(8))[0] + 8
            f.seek(chunk_size - 8 + (chunk_size & 1), os.SEEK_CUR)
            continue
        if chunk_id == b"data":
            break
        f.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)
    return None if declared == size else f"the WAV header says {declared} bytes, the file has {size}"


def _flac_reason(path: Path) -> str | None:
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as audio:
            if audio.frames <= 0:
                return "a FLAC file without audio"
            if audio.frames >= 1 << 62:  # libsndfile's "unknown": the header leaves the count at 0
                return "the FLAC header does not state its length, so it cannot be checked whole"
            audio.seek(audio.frames - 1)  # a seek into a missing tail fails
            if len(audio.read(1)) != 1:
                return "the last FLAC frame is missing"
    except Exception as error:  # noqa: BLE001 - libsndfile's errors: damaged or cut short
        return f"the FLAC stream is damaged or cut short ({' '.join(str(error).split())})"
    return None


def _ogg_reason(f, size: int) -> str | None:
    tail_at = max(0, size - 65307)  # an Ogg page is at most 27 + 255 + 255 * 255 bytes
    f.seek(tail_at)
    tail = f.read()
    last = tail.rfind(b"OggS")
    if last < 0 or last + 27 > len(tail):
        return "no whole Ogg page at the end"
    segments = tail[last + 26]
    lacing = tail[last + 27 : last + 27 + segments]
    end = last + 27 + segments + sum(lacing)
    if len(lacing) < segments or end != len(tail):
        return "the last Ogg page is cut short"
    if not tail[last + 5] & 0x04:
        return "the Ogg stream has no end-of-stream page"
    return None


def _mp4_reason(f, size: int) -> str | None:
    at = 0
    while at < size:
        f.seek(at)
        header = f.read(16)
        if len(header) < 8:
            return "an MP4 box header is cut short"
        box = struct.unpack(">I", header[:4])[0]
        if box == 1 and len(header) == 16:
            box = struct.unpack(">Q", header[8:16])[0]
        elif box == 0:  # "to the end of the file"
            return None
        if box < 8:
            return "a damaged MP4 box"
        at += box
    return None if at == size else f"the MP4 boxes need {at} bytes, the file has {size}"


def _mp3_reason(f, head: bytes, size: int) -> str | None:
    start = 0
    if head[:3] == b"ID3":  # ID3v2: a syncsafe size after a 10-byte header (+10 with a footer)
        start = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F))
        start += 10 if head[5] & 0x10 else 0
    f.seek(start)
    frame = f.read(200)
    for tag in (b"Info", b"Xing"):
        at = frame.find(tag)
        if at > 0 and len(frame) >= at + 16:
            flags = struct.unpack(">I", frame[at + 4 : at + 8])[0]
            if flags & 0x2:  # the byte count is present (after the frame count, if any)
                offset = at + 8 + (4 if flags & 0x1 else 0)
                declared = struct.unpack(">I", frame[offset : offset + 4])[0]
                audio_bytes = size - start - (128 if _has_id3v1(f, size) else 0)
                return None if declared == audio_bytes else f"the MP3 Info header says {declared} bytes, the file has {audio_bytes}"
    return None  # no byte count to check against: the tag is all we can go by


def _has_id3v1(f, size: int) -> bool:
    if size < 128:
        return False
    f.seek(size - 128)
    return f.read(3) == b"TAG"


def check_existing(input_location, output_location, expected: Provenance | None,
                   recorded_output_sha256: str | None = None) -> dict:
    """Whether ``output_location`` is already the complete master of ``input_location``.

    Cheapest checks first: the output exists, carries a provenance tag with the same
    settings as ``expected`` (options, preset and its digest, automix version), is
    whole (:func:`incomplete_reason`), then the input's sha256 is the one in the tag,
    and, if the manifest recorded the output's sha256, the output still has it.

    Returns
    -------
    dict
        ``{"status": "skipped", "input_sha256", "output_sha256", "integrated_lufs",
        "true_peak_dbtp", "loudness_range_lu", "reason"}`` if it is done (loudness as its
        tags say), else ``{"status": "redo", "reason": why}``. Never raises for one
        file: anything that cannot be checked is redone.
    """
    from automix.io import remote

    if expected is None:
        return {"status": "redo", "reason": "no settings to compare the output with"}
    try:
        with remote.local_copy(output_location) as output:
            if output is None or not output.is_file():
                return {"status": "redo", "reason": "no output yet"}
            try:
                found = read_metadata(output)
            except AutomixError as error:
                return {"status": "redo", "reason": f"the output cannot be read ({error})"}
            text = found.get("provenance")
            if not text:
                return {"status": "redo", "reason": "the output has no automix provenance tag"}
            tagged = Provenance.from_text(text)
            differs = _first_difference(tagged, expected)
            if differs:
                return {"status": "redo", "reason": f"the output was made with other settings ({differs})"}
            broken = incomplete_reason(output)
            if broken:
                return {"status": "redo", "reason": f"the output is incomplete: {broken}"}
            with remote.local_copy(input_location) as source:
                if source is None:
                    return {"status": "redo", "reason": "the input is missing"}
                digest = input_digest(source)
                name = remote.basename(input_location)
            if tagged.inputs != ((name, digest),):
                return {"status": "redo", "reason": "the output was made from another input (or the input has changed)"}
            output_sha256 = input_digest(output)
            if recorded_output_sha256 and output_sha256 != recorded_output_sha256:
                return {"status": "redo", "reason": "the output has changed since the manifest recorded it"}
            loudness = tagged_loudness(found)
    except AutomixError as error:
        return {"status": "redo", "reason": str(error)}
    return {"status": "skipped", "reason": "already mastered from this input with these settings",
            "input_sha256": digest, "output_sha256": output_sha256,
            "integrated_lufs": loudness.get("integrated_lufs"), "true_peak_dbtp": loudness.get("true_peak_dbtp"),
            "loudness_range_lu": (found.get("loudness") or {}).get("loudness_range_lu")}


def _first_difference(tagged: Provenance, expected: Provenance) -> str:
    """The first shaping field that differs, worded for the user; "" if none."""
    if tagged.version != expected.version:
        return f"automix {tagged.version}, now {expected.version}"
    if tagged.preset != expected.preset or tagged.preset_sha256 != expected.preset_sha256:
        return f"preset {tagged.preset or '?'}" + (" with another preset file" if tagged.preset == expected.preset else "")
    for what, old, new in (("option", tagged.options, expected.options), ("setting", tagged.changed, expected.changed)):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return f"{what} {key}: {old.get(key, 'unset')}, now {new.get(key, 'unset')}"
    return ""


# --- the manifest file ----------------------------------------------------------------


def manifest_line(record: dict, input_location, output_location, settings_sha256: str) -> dict:
    """The manifest's line for one job record (see the module's docstring for its keys)."""
    decoded = record.get("decoded") or {}
    status = manifest_status(record["status"])

    def pick(*keys):
        for source, key in keys:
            if source.get(key) is not None:
                return source[key]
        return None

    return {
        "input": location_key(input_location),
        "output": location_key(output_location),
        "status": status,
        "input_sha256": record.get("input_sha256"),
        "output_sha256": record.get("output_sha256") if status in ("done", "skipped") else None,
        "settings_sha256": settings_sha256,
        # what a listener gets: the decoded file's reading for mp3/opus/aac, else the PCM's
        "integrated_lufs": pick((decoded, "integrated_lufs"), (record, "output_lufs"), (record, "integrated_lufs")),
        "true_peak_dbtp": pick((decoded, "true_peak_dbtp"), (record, "output_true_peak_dbtp"), (record, "true_peak_dbtp")),
        "loudness_range_lu": pick((record, "output_lra_lu"), (record, "loudness_range_lu")),
        "gain_db": record.get("gain_db"),
        "error": record.get("error") or (record.get("message") if status == "refused" else None),
        "automix": __version__,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class Manifest:
    """The batch's JSON-lines manifest: at most one line per (input, output).

    Open it with the path; :meth:`start` rewrites it for this run (without the lines of
    the files about to be redone), :meth:`append` adds a finished file's line, flushed
    and fsync'd at once.

    Parameters
    ----------
    path : Path
        A local file (created if missing; its folder must exist or be creatable).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.lines: dict[tuple[str, str], dict] = {}
        self.damaged = 0  # lines that were not JSON objects (a torn last line, an edit)
        self._fd: int | None = None
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as error:
            reason = os_error_reason(error) if isinstance(error, OSError) else "not UTF-8 text"
            raise AutomixError(f"--manifest {self.path}: cannot read ({reason})") from None
        for raw in text.splitlines():
            try:
                line = json.loads(raw)
                key = (line["input"], line["output"])
            except (ValueError, TypeError, KeyError):
                self.damaged += bool(raw.strip())
                continue
            self.lines.pop(key, None)  # the last line of a key wins, and moves to the end
            self.lines[key] = line

    def line_for(self, input_location, output_location) -> dict | None:
        return self.lines.get((location_key(input_location), location_key(output_location)))

    def start(self, redo: Iterable[tuple[object, object]], add: Iterable[dict] = ()) -> None:
        """Rewrite the file for this run, atomically: without the lines of ``redo``
        (input, output) pairs, with ``add`` lines (their key replaces an old line), and
        open it for appending."""
        for pair in redo:
            self.lines.pop((location_key(pair[0]), location_key(pair[1])), None)
        for line in add:
            key = (line["input"], line["output"])
            self.lines.pop(key, None)
            self.lines[key] = line
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the temp-name pattern of automix.io.paths, so a killed run's leftover is cleaned
        temp = self.path.with_name(f".{self.path.name[:48]}.automix-{os.getpid()}-{secrets.token_hex(4)}.part")
        try:
            with open(temp, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(line) + "\n" for line in self.lines.values())
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.path)
            _fsync_folder(self.path.parent)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
        except OSError as error:
            with suppress(OSError):
                os.unlink(temp)
            raise AutomixError(f"--manifest {self.path}: cannot write ({os_error_reason(error)})") from None

    def append(self, line: dict) -> None:
        """Add one finished file's line: one ``write`` of the whole line, then fsync, so
        a kill leaves whole lines only."""
        if self._fd is None:
            raise RuntimeError("Manifest.start() first")
        data = (json.dumps(line) + "\n").encode("utf-8")
        try:
            os.write(self._fd, data)
            os.fsync(self._fd)
        except OSError as error:
            raise AutomixError(f"--manifest {self.path}: cannot write ({os_error_reason(error)})") from None
        key = (line["input"], line["output"])
        self.lines.pop(key, None)
        self.lines[key] = line

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a power cut must not bring the old file back)."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_manifest_path(path: str | os.PathLike) -> Path:
    """Before any audio is read: ``--manifest`` is a local file we can write.

    Raises
    ------
    AutomixError
        For a URL, a folder, or a place that cannot be written.
    """
    from automix.io.remote import is_url
    from automix.jobs.checks import check_writable_folder

    if is_url(path):
        raise AutomixError(f"--manifest {path}: must be a local file (the machine running the batch writes it)")
    path = Path(path)
    if path.is_dir():
        raise AutomixError(f"--manifest {path}: is a folder; give a file name, e.g. {path / 'manifest.jsonl'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise AutomixError(f"--manifest {path}: permission denied")
    check_writable_folder(path.parent if str(path.parent) else Path("."), f"--manifest {path}")
    return path
