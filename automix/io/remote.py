"""Inputs and outputs named by URL (``s3://``, ``gs://``, ``file://``...), through fsspec.

automix's readers and writers work on local files (libsndfile, PyAV and mutagen seek
freely). A URL input is therefore copied to a private local folder first, under its
own base name (the provenance tag names the input's base name, so a URL input gives
the same bytes as the same file on a local disk); a URL output is written locally,
uploaded to a temporary name beside its destination and then moved into place, so a
reader never sees half a master and a worker lost mid-upload leaves only a hidden
``.NAME.automix-<pid>-<hex>.part`` (the name :func:`automix.io.paths.clean_stale_parts`
knows). On a local file system (``file://``) the move is a rename, atomic as for local
paths; object stores (S3, GCS) have no rename, but they publish an object only once its
upload is complete, which gives a reader the same guarantee.

fsspec is an optional dependency (``pip install "automix[cluster]"``); it is imported
only when a URL is used, and its absence is one clear error before any audio is read.
The protocol's own package (``s3fs``, ``gcsfs``) is named the same way when missing.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath

from automix.errors import AutomixError

#: What to install for URLs and ``--cluster``.
INSTALL_HINT = 'pip install "automix[cluster]"'

#: ``scheme://`` at the start of a location. Two characters at least, so a Windows drive
#: (``C:\\``) is never taken for a URL.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://")

#: Bytes copied at a time when a file is hashed or copied.
_COPY_BYTES = 1 << 20


def is_url(location: object) -> bool:
    """True for ``scheme://...`` (a string; a ``Path`` has lost its double slash)."""
    return isinstance(location, str) and _URL.match(location) is not None


def require_fsspec(what: str):
    """Import fsspec, or raise the one-line error that says how to get it.

    Parameters
    ----------
    what : str
        What needs it, for the message (``"s3://bucket/in.wav"``).
    """
    try:
        import fsspec
    except ImportError:
        raise AutomixError(f"{what}: URLs need fsspec, which is not installed: {INSTALL_HINT}") from None
    return fsspec


def filesystem(url: str):
    """``(fs, path)`` for ``url``; a protocol fsspec does not know, or whose package is
    missing (``s3://`` without s3fs), is an :class:`AutomixError`."""
    fsspec = require_fsspec(url)
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as error:  # fsspec says which package: "Install s3fs to access S3"
        raise AutomixError(f"{url}: {error}") from None
    except ValueError as error:  # "Protocol not known: zzz"
        raise AutomixError(f"{url}: {error}") from None


def is_local_fs(fs) -> bool:
    """True for fsspec's local file system (``file://``): its paths are this machine's."""
    return "file" in _protocols(fs)


def _protocols(fs) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def local_path(url: str) -> Path | None:
    """The local path a ``file://`` URL names, else None (for clean-ups done locally)."""
    if not is_url(url):
        return Path(url)
    fs, path = filesystem(url)
    return Path(path) if is_local_fs(fs) else None


def basename(location: str | os.PathLike) -> str:
    """The last part of a path or URL (``s3://b/album/a.wav`` -> ``a.wav``)."""
    if is_url(location):
        return PurePosixPath(str(location).rstrip("/").split("://", 1)[1]).name
    return Path(location).name


def join(folder_url: str, name: str) -> str:
    """``folder_url`` + ``/`` + ``name``, with exactly one slash between them."""
    return folder_url.rstrip("/") + "/" + name


def _unstrip(path: str, like: str) -> str:
    """A path of a file system as a URL with the scheme the user wrote in ``like``
    (``/tmp/a.wav`` -> ``file:///tmp/a.wav``, ``bucket/a.wav`` -> ``s3://bucket/a.wav``)."""
    return like.split("://", 1)[0] + "://" + path


def expand_url(url: str, extensions: Iterable[str]) -> list[str]:
    """The audio files a URL names: itself (a file), a folder's files whose extension is
    in ``extensions`` (hidden ones left out, sorted), or a glob's matches (sorted).

    A URL that names nothing is returned as it is: its job then fails alone, with the
    reason, as a missing local file does.
    """
    fs, path = filesystem(url)
    wanted = {e.lower() for e in extensions}
    try:
        if any(char in path for char in "*?["):
            found = fs.glob(path)
        elif fs.isdir(path):
            found = [p for p in fs.ls(path, detail=False)]
        else:
            return [url]
        files = [p for p in found if not PurePosixPath(p).name.startswith(".")
                 and PurePosixPath(p).suffix.lower() in wanted and fs.isfile(p)]
    except OSError as error:
        raise AutomixError(f"{url}: cannot list ({error})") from None
    return [_unstrip(p, url) for p in sorted(files)]


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    try:
        return fs.isfile(path)
    except OSError:
        return False


def is_automix_output_url(url: str) -> bool:
    """:func:`automix.io.paths.is_automix_output` for a URL: reads the header's software
    string through fsspec (a few kilobytes, no audio decoded)."""
    import soundfile as sf

    from automix.io.paths import PROVENANCE_PREFIX

    if PurePosixPath(url).suffix.lower() not in (".wav", ".flac", ".aif", ".aiff"):
        return False
    fs, path = filesystem(url)
    try:
        with fs.open(path, "rb") as f, sf.SoundFile(f) as audio:
            software = audio.software or ""
    except Exception:  # noqa: BLE001 - any failure to read the header means "not ours"
        return False
    return software.startswith(PROVENANCE_PREFIX + " ")


def check_output_folder_url(url: str) -> None:
    """Before any audio is read: the output folder URL's protocol is usable, and it is
    not an existing file. (Whether it can be written shows at the first upload.)"""
    fs, path = filesystem(url)
    try:
        if fs.isfile(path):
            raise AutomixError(f"-o {url}: exists and is not a folder (master writes one file per input into a folder)")
    except OSError as error:
        raise AutomixError(f"-o {url}: cannot reach ({error})") from None


# --- staging: local copies of remote files --------------------------------------------


#: ``automix-stage-<pid>-<random>``: a staging folder names its process, so one that a
#: killed worker left behind (SIGKILL runs no clean-up) is found and removed later.
_STAGE = re.compile(r"^automix-stage-(?P<pid>[0-9]+)-")


@contextmanager
def staging_folder() -> Iterator[Path]:
    """A private temporary folder, removed with everything in it on the way out.

    Folders of dead processes (a worker killed mid-file) are removed first, so a
    worker's temp space does not fill up with copies of inputs over a long catalogue.
    """
    _remove_dead_stages()
    folder = Path(tempfile.mkdtemp(prefix=f"automix-stage-{os.getpid()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_dead_stages() -> None:
    with suppress(OSError):
        for entry in os.scandir(tempfile.gettempdir()):
            match = _STAGE.match(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not _alive(int(match["pid"])):
                shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no way to tell: keep its folder
        return True
    return True


def download(url: str, folder: Path) -> Path:
    """Copy ``url`` into ``folder`` under its own base name; the local path.

    Raises
    ------
    AutomixError
        If it cannot be read (missing, permission denied, network...).
    """
    fs, path = filesystem(url)
    local = folder / basename(url)
    try:
        fs.get_file(path, str(local))
    except FileNotFoundError:
        raise AutomixError(f"{url}: no such file") from None
    except (OSError, ValueError) as error:
        raise AutomixError(f"{url}: cannot read ({type(error).__name__}: {error})") from None
    return local


def upload_atomic(local: Path, url: str) -> None:
    """Upload ``local`` to a temporary name beside ``url``, then move it into place.

    Raises
    ------
    AutomixError
        If the upload or the move fails; the temporary upload is removed then.
    """
    fs, path = filesystem(url)
    parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
    # the same pattern as automix.io.paths.temp_name_for, so clean_stale_parts knows it
    temp = f"{parent}/.{name[:48]}.automix-{os.getpid()}-{secrets.token_hex(4)}.part" if parent else \
        f".{name[:48]}.automix-{os.getpid()}-{secrets.token_hex(4)}.part"
    try:
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.put_file(str(local), temp)
        if is_local_fs(fs):  # on disk before the rename makes it the output (as atomic_output does)
            _fsync(temp)
        fs.mv(temp, path)
    except BaseException as error:
        with suppress(Exception):
            fs.rm_file(temp)
        if isinstance(error, (OSError, ValueError)):
            raise AutomixError(f"{url}: cannot write ({type(error).__name__}: {error})") from None
        raise


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def local_copies(input_location, output_location) -> Iterator[tuple[Path, Path | None]]:
    """Local paths for one job's input and output, whatever they are.

    A local path is yielded as it is. A URL input is downloaded first; a URL output is
    a path in a private folder, uploaded atomically on a normal exit if the job wrote
    it (nothing is uploaded after an exception, or when the job wrote nothing: a missed
    target, a dry run). The private folder is removed either way.

    Parameters
    ----------
    input_location : Path or str
    output_location : Path, str or None
    """
    if not is_url(input_location) and not is_url(output_location):
        yield Path(input_location), None if output_location is None else Path(output_location)
        return
    with staging_folder() as folder:
        local_in = download(input_location, folder) if is_url(input_location) else Path(input_location)
        local_out = None if output_location is None else Path(output_location)
        if is_url(output_location):
            (folder / "out").mkdir()
            local_out = folder / "out" / basename(output_location)
        yield local_in, local_out
        if is_url(output_location) and local_out.exists():
            upload_atomic(local_out, output_location)


@contextmanager
def local_copy(location) -> Iterator[Path | None]:
    """A local path holding ``location``'s bytes (downloaded if a URL), or None if a URL
    names no file; removed on the way out if it was downloaded."""
    if not is_url(location):
        yield Path(location)
        return
    if not exists(location):
        yield None
        return
    with staging_folder() as folder:
        yield download(location, folder)
