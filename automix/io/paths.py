"""Output-path safety: what automix may write, and the leftovers of killed runs.

Every job calls :func:`check_output_paths` before it reads any audio, so a run that
would write over one of its inputs, write two outputs to one file, or replace a device
node, a FIFO or a folder stops at once with the reason (exit 2), instead of after the
whole mix has run or, worse, after the damage is done.

Temporary files are named ``.NAME.automix-<pid>-XXXXXXXX.part`` beside the
destination (see :func:`temp_name_for`), so :func:`clean_stale_parts` can tell the
leftovers of a run that was killed (its process is gone) from the files another run is
writing right now.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from automix.errors import AutomixError

#: ``.NAME.automix-<pid>-<hex>.part``: the writer's process id lets a later run tell
#: a dead run's leftover from a live run's file in progress.
TEMP_PATTERN = re.compile(r"^\..*\.automix-(?P<pid>[0-9]+)-[0-9a-f]+\.part$", re.DOTALL)

#: Characters of the destination name kept in a temp name. NAME_MAX is 255 bytes on
#: Linux and macOS; the prefix, pid, random part and suffix need about 40 of them and
#: a UTF-8 character can take 4 bytes.
_TEMP_NAME_CHARS = 48

#: The ``software`` string automix writes into its WAV, FLAC and AIFF outputs starts
#: with this, so a rerun can recognise (and leave out) its own earlier outputs.
PROVENANCE_PREFIX = "automix"

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """Describe a non-regular ``st_mode`` in words ("a folder", "a character device")."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a regular file"


def temp_name_for(path: Path) -> Path:
    """A fresh temporary name beside ``path``, carrying this process's id."""
    stem = path.name[:_TEMP_NAME_CHARS]
    return path.with_name(f".{stem}.automix-{os.getpid()}-{secrets.token_hex(4)}.part")


def existing_output_target(path: Path) -> os.stat_result | None:
    """Stat what writing ``path`` would replace; refuse anything but a regular file.

    A symbolic link is followed: a link to a regular file is that file; a link to a
    device, FIFO or folder is refused like the thing itself; a dangling link is
    refused (it is not clear whether the user means the link or its target).

    Returns
    -------
    os.stat_result or None
        The existing regular file's status, or None if nothing is there.
    """
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise AutomixError(f"{path}: cannot use as an output ({os_error_reason(error)})") from None
    try:
        target = os.stat(path)
    except FileNotFoundError:
        raise AutomixError(f"{path}: is a symbolic link to a missing file; remove it or name another output") from None
    except OSError as error:
        raise AutomixError(f"{path}: cannot use as an output ({os_error_reason(error)})") from None
    if not stat.S_ISREG(target.st_mode):
        via = " (through a symbolic link)" if stat.S_ISLNK(link.st_mode) else ""
        raise AutomixError(f"{path}: exists and is {file_kind(target.st_mode)}{via}; refusing to write over it")
    return target


def check_output_folder(folder: Path, *, create: bool = False) -> None:
    """Refuse an output folder that is not a folder or cannot be written.

    Parameters
    ----------
    folder : Path
        The folder an output will go into; missing folders are fine if the nearest
        existing ancestor is a writable folder (they will be created).
    create : bool
        Create the missing folders now.
    """
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    try:
        st = os.stat(existing)
    except OSError as error:
        raise AutomixError(f"{folder}: cannot use as an output folder ({os_error_reason(error)})") from None
    if not stat.S_ISDIR(st.st_mode):
        where = "" if existing == folder else f" ({existing} is {file_kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else 'a file'})"
        raise AutomixError(f"{folder}: cannot write there: not a folder{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only_fs(existing) else "permission denied"
        raise AutomixError(f"cannot write to folder {existing}: {reason}")
    if create and existing != folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise AutomixError(f"cannot create folder {folder}: {os_error_reason(error)}") from None


def check_output_paths(inputs: Iterable[str | os.PathLike], outputs: Iterable[str | os.PathLike]) -> None:
    """Refuse a run whose outputs would clash with its inputs, each other, or the disk.

    Call it before reading any audio, with every path the run will write (mix or
    masters, report, exported stems).

    Parameters
    ----------
    inputs : iterable of path-like
        The files the run reads (folders may be given too).
    outputs : iterable of path-like
        Every file the run will write.

    Raises
    ------
    AutomixError
        Naming the path and the reason: an output is an input (the same file by
        device and inode, so through symbolic and hard links and whatever case the
        file system folds; or the same resolved path), two outputs are the same file,
        an output exists and is not a regular file, or its folder is not a writable
        folder.
    """
    input_ids: dict[tuple[int, int], Path] = {}
    input_paths: dict[str, Path] = {}
    for item in inputs:
        p = Path(item)
        input_paths[os.path.realpath(p)] = p
        try:
            st = os.stat(p)
        except OSError:
            continue
        input_ids[(st.st_dev, st.st_ino)] = p

    seen_ids: dict[tuple[int, int], Path] = {}
    seen_paths: dict[str, Path] = {}
    for item in outputs:
        out = Path(item)
        if out.name in ("", ".", ".."):
            raise AutomixError(f"{out}: names a folder, not an output file")
        target = existing_output_target(out)
        real = _real_output_path(out)
        if target is not None:
            ident = (target.st_dev, target.st_ino)
            if ident in input_ids:
                raise AutomixError(f"{out}: is the input {input_ids[ident]}; refusing to write over an input")
            if ident in seen_ids:
                raise AutomixError(f"{out}: is the same file as the output {seen_ids[ident]}; give each output its own name")
            seen_ids[ident] = out
        if real in input_paths:
            raise AutomixError(f"{out}: is the input {input_paths[real]}; refusing to write over an input")
        if real in seen_paths:
            raise AutomixError(f"{out}: is also the output {seen_paths[real]}; give each output its own name")
        seen_paths[real] = out
        check_output_folder(out.parent if str(out.parent) else Path("."))


def clean_stale_parts(folder: str | os.PathLike, *, min_age_s: float = 0.0) -> list[Path]:
    """Delete the temporary files that killed automix runs left in ``folder``.

    A temp file is stale when the process id in its name is no longer running. Files
    of live runs (this one included) are kept, and so are files whose process cannot
    be checked (another user's). Old-style names without a process id are left alone.

    Parameters
    ----------
    folder : path-like
    min_age_s : float
        Keep files modified less than this many seconds ago (a guard for folders
        shared between machines or PID namespaces, where a live writer's pid means
        nothing here).

    Returns
    -------
    list of Path
        The files removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = TEMP_PATTERN.match(entry.name)
        if not match:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < min_age_s:
            continue
        if _process_alive(int(match["pid"])):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return sorted(removed)


def is_automix_output(path: str | os.PathLike) -> bool:
    """True if ``path`` is a WAV, FLAC or AIFF file automix wrote.

    Reads the ``software`` string automix stores in the header (no audio is decoded);
    False for anything else, including unreadable and non-regular files.
    """
    import soundfile as sf

    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(12)
        if not (head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE") and head[:4] != b"fLaC" and not (
            head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC")
        ):
            return False
        with sf.SoundFile(path) as f:
            software = f.software or ""
    except Exception:  # noqa: BLE001 - any failure to read the header means "not ours"
        return False
    return software.startswith(PROVENANCE_PREFIX + " ")


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a real writer's pid: do not guess
    if pid == os.getpid() or os.name == "nt":
        return True  # on Windows os.kill(pid, 0) would send CTRL_C_EVENT, not probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def _real_output_path(path: Path) -> str:
    """Resolved path of an output, whether or not it exists yet."""
    return os.path.join(os.path.realpath(path.parent if str(path.parent) else "."), path.name)


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def os_error_reason(error: OSError) -> str:
    """A plain reason for an OSError (no errno numbers, no repeated path)."""
    plain = {
        errno.ENOSPC: "disk full",
        errno.EDQUOT: "disk quota exceeded",
        errno.EFBIG: "file too large for this file system or the file-size limit (ulimit -f)",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "is a folder",
        errno.ENOENT: "no such file or folder",
        errno.ENAMETOOLONG: "name too long",
        errno.ELOOP: "too many levels of symbolic links",
        errno.EIO: "input/output error",
    }
    return plain.get(error.errno, error.strerror or type(error).__name__)
