"""Fault injection on real files: bad inputs, hostile outputs, full and read-only disks.

Every case checks the outcome a user sees (an AutomixError naming the path and the
reason) and what is on disk afterwards: inputs byte-identical, no temp file left, an
existing destination untouched, permission bits as the umask gives.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from signals import sine

from automix.errors import AutomixError
from automix.io import audio as audio_module
from automix.io.audio import Audio, atomic_output, read_audio, write_audio
from automix.io.paths import (
    TEMP_PATTERN,
    check_output_paths,
    clean_stale_parts,
    is_automix_output,
)
from automix.io.validate import validate_audio

RATE = 44100
FRAMES = 8820  # 0.2 s


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pcm16_wav(path: Path, frames: int = FRAMES, channels: int = 2) -> np.ndarray:
    """Write a 16-bit WAV with a plain 44-byte header (fields at fixed offsets)."""
    x = sine(-6, frames / RATE, RATE, 440.0, channels=channels)
    sf.write(path, x.T, RATE, subtype="PCM_16")
    assert Path(path).read_bytes()[36:40] == b"data"  # the offsets below rely on it
    return x


def patch_bytes(path: Path, offset: int, fmt: str, value: int) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))


def parts_in(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


# --- validate_audio -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "rate", "message"),
    [
        ([[0.0] * 100], RATE, "numpy array"),
        (np.zeros(100, np.float32), RATE, r"\(1, samples\)"),
        (np.zeros((2, 100), np.int16), RATE, "floating-point"),
        (np.zeros((RATE, 2), np.float32), RATE, "looks transposed"),
        (np.zeros((2, 2), np.float32), RATE, "more samples than channels"),
        (np.zeros((40, 1000), np.float32), RATE, "at most 32"),
        (np.zeros((2, 0), np.float32), RATE, "no audio"),
        (np.zeros((2, 1000), np.float32), 1, "BS.1770"),
        (np.zeros((2, 1000), np.float32), 100, "outside 8000"),
        (np.zeros((2, 1000), np.float32), 4000, "outside 8000"),
        (np.zeros((2, 1000), np.float32), 1_000_000, "outside 8000"),
        (np.zeros((2, 1000), np.float32), 44100.0, "whole number"),
        (np.zeros((2, 1000), np.float32), True, "whole number"),
    ],
)
def test_validate_audio_refuses_with_what_was_expected(samples, rate, message):
    with pytest.raises(AutomixError, match=message):
        validate_audio(samples, rate, name="stem 'x'")


def test_validate_audio_finds_nan_and_inf():
    x = np.zeros((2, 1000), np.float32)
    x[1, 7] = np.inf
    with pytest.raises(AutomixError, match="channel 1, sample 7"):
        validate_audio(x, RATE)
    x[1, 7] = np.nan
    with pytest.raises(AutomixError, match="NaN"):
        validate_audio(x, RATE)


def test_validate_audio_accepts_the_convention():
    validate_audio(np.zeros((1, 10), np.float32), 8000)
    validate_audio(np.zeros((2, 1000), np.float64), np.int64(768000))
    validate_audio(np.full((32, 100), 1e30, np.float32), 48000)  # loud but finite


# --- reading hostile files ---------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "missing"), [(".wav", "no WAVE header"), (".flac", "no fLaC header"), (".aiff", "no FORM/AIFF header"), (".mp3", "no ID3 tag or MPEG")])
def test_random_bytes_are_not_audio(tmp_path, suffix, missing):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 100_000, dtype=np.uint8).tobytes()[4:])
    with pytest.raises(AutomixError, match=re.escape(f"not an audio file ({missing}")):
        read_audio(path)


def test_flac_named_wav_is_read_by_its_content_with_a_warning(tmp_path):
    x = sine(-6, 0.2, RATE)
    sf.write(tmp_path / "a.flac", x.T, RATE, subtype="PCM_24")
    (tmp_path / "a.flac").rename(tmp_path / "really_flac.wav")
    audio = read_audio(tmp_path / "really_flac.wav")
    assert np.abs(audio.samples - x).max() < 2**-22
    assert any("FLAC" in w and ".wav" in w for w in audio.warnings)


@pytest.mark.parametrize("rate", [1, 100, 4000, 7999, 800_000])
def test_exotic_sample_rates_are_refused_before_decoding(tmp_path, rate):
    path = tmp_path / "odd.wav"
    pcm16_wav(path)
    patch_bytes(path, 24, "<I", rate)
    patch_bytes(path, 28, "<I", rate * 4)  # byte rate consistent, so only the rate is odd
    before = digest(path)
    start = time.perf_counter()
    with pytest.raises(AutomixError, match=f"odd.wav: sample rate {rate} Hz .*BS.1770"):
        read_audio(path)
    assert time.perf_counter() - start < 2.0
    assert digest(path) == before


def test_too_many_channels_in_the_header(tmp_path):
    path = tmp_path / "many.wav"
    pcm16_wav(path)
    patch_bytes(path, 22, "<H", 40)
    patch_bytes(path, 32, "<H", 80)
    with pytest.raises(AutomixError, match="many.wav.*40 channels"):
        read_audio(path)


def test_truncated_wav_is_read_with_a_warning(tmp_path):
    full = tmp_path / "full.wav"
    x = pcm16_wav(full)
    cut = tmp_path / "cut.wav"
    data = full.read_bytes()
    cut.write_bytes(data[: 44 + 4 * 3000 + 2])  # 3000 whole frames and half of one
    audio = read_audio(cut)
    assert audio.frames == 3000
    assert np.abs(audio.samples - x[:, :3000]).max() <= 1 / 32768
    assert audio.warnings == (f"cut.wav: truncated: header claims {FRAMES} frames, file holds 3000",)
    assert read_audio(full).warnings == ()


def _flac_with_total_samples(path: Path, total: int) -> None:
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    # STREAMINFO body at 8: 2+2+3+3 bytes, then 20-bit rate, 3+5 bits, 36-bit total
    word = int.from_bytes(data[18:26], "big")
    word = (word & ~((1 << 36) - 1)) | total
    data[18:26] = word.to_bytes(8, "big")
    path.write_bytes(bytes(data))


def test_flac_claiming_2_to_the_36_frames_reads_what_is_there(tmp_path):
    path = tmp_path / "liar.flac"
    x = sine(-6, 0.2, RATE)
    sf.write(path, x.T, RATE, subtype="PCM_16")
    _flac_with_total_samples(path, 2**36 - 1)
    assert sf.info(path).frames == 2**36 - 1  # what libsndfile believes
    audio = read_audio(path)
    assert audio.samples.shape == (2, FRAMES)
    assert np.abs(audio.samples - x).max() <= 1 / 32768
    assert any(f"header claims {2**36 - 1} frames, file holds {FRAMES}" in w for w in audio.warnings)
    _flac_with_total_samples(path, 0)  # "length unknown" is legal FLAC: no warning
    unknown = read_audio(path)
    assert unknown.samples.shape == (2, FRAMES) and unknown.warnings == ()


@pytest.mark.parametrize("total", [0, 2**36 - 1, FRAMES + 1000])
def test_a_flac_whose_header_count_is_unknown_or_a_lie_streams_as_it_reads(tmp_path, total):
    """The streamed reader (file_source) reads a FLAC until its data ends, as the
    whole-file reader does, whatever STREAMINFO claims: 0 ("unknown", legal) or more
    frames than there are. It once trusted the count and failed ("psf_fseek() failed")."""
    from automix.io.stream import file_source

    path = tmp_path / "liar.flac"
    x = sine(-6, 0.2, RATE)
    sf.write(path, x.T, RATE, subtype="PCM_16")
    _flac_with_total_samples(path, total)
    whole = read_audio(path)
    source = file_source(path)
    streamed = np.concatenate(list(source.blocks()), axis=1)
    assert source.frames == whole.frames == FRAMES
    assert np.array_equal(streamed, whole.samples)
    assert np.abs(streamed - x).max() <= 1 / 32768
    assert source.warnings == whole.warnings
    assert (source.warnings != ()) == (total != 0)  # a count that is a lie is called one


def test_reading_stops_at_the_duration_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(audio_module, "MAX_DURATION_S", 0.1)
    sf.write(tmp_path / "long.flac", sine(-6, 0.5, RATE).T, RATE, subtype="PCM_16")
    with pytest.raises(AutomixError, match="long.flac: stopped reading past .* at most"):
        read_audio(tmp_path / "long.flac")
    sf.write(tmp_path / "long.wav", sine(-6, 0.5, RATE).T, RATE, subtype="PCM_16")
    with pytest.raises(AutomixError, match="long.wav: lasts .* at most"):
        read_audio(tmp_path / "long.wav")


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("boom"), ValueError("bad"), OSError(5, "Input/output error"), EOFError()])
def test_any_decoder_exception_becomes_an_automix_error(tmp_path, monkeypatch, error):
    path = tmp_path / "x.wav"
    pcm16_wav(path)

    def explode(*args, **kwargs):
        raise error

    monkeypatch.setattr(audio_module.sf, "SoundFile", explode)
    with pytest.raises(AutomixError, match="x.wav: cannot read"):
        read_audio(path)


def test_special_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(AutomixError, match="pipe.wav: is a named pipe"):
        read_audio(fifo)  # opening it would wait for a writer forever
    with pytest.raises(AutomixError, match="character device"):
        read_audio("/dev/zero")
    with pytest.raises(AutomixError, match="empty"):
        (tmp_path / "empty.wav").write_bytes(b"")
        read_audio(tmp_path / "empty.wav")


def test_one_frame_file_is_refused_as_too_short(tmp_path):
    sf.write(tmp_path / "one.wav", np.full((1, 2), 0.5, np.float32), RATE, subtype="FLOAT")
    with pytest.raises(AutomixError, match="one.wav: only 1 sample"):
        read_audio(tmp_path / "one.wav")


def test_old_positional_audio_still_works():
    a = Audio(np.zeros((1, 10), np.float32), RATE, None)
    assert a.warnings == () and a.frames == 10


# --- writing: permissions, provenance, temp names --------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_outputs_follow_the_umask_like_cp(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = write_audio(sine(-6, 0.1, RATE), RATE, tmp_path / "m.wav", "16")
        with atomic_output(tmp_path / "r.json") as temp, open(temp, "w") as f:
            f.write("{}")
        (tmp_path / "cp_reference").write_bytes(b"")  # what open() itself gives
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "cp_reference").stat().st_mode) == mode


def test_replacing_a_file_keeps_its_mode(tmp_path):
    out = write_audio(sine(-6, 0.1, RATE), RATE, tmp_path / "m.flac", "16")
    out.chmod(0o640)
    write_audio(sine(-12, 0.1, RATE), RATE, out, "24")
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert sf.info(out).subtype == "PCM_24"


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".aiff"])
def test_outputs_carry_the_provenance_tag(tmp_path, suffix):
    ours = write_audio(sine(-6, 0.1, RATE), RATE, tmp_path / f"ours{suffix}", "16")
    theirs = tmp_path / f"theirs{suffix}"
    sf.write(theirs, sine(-6, 0.1, RATE).T, RATE, subtype="PCM_16")
    with sf.SoundFile(ours) as f:
        assert f.software.startswith("automix ")
    assert is_automix_output(ours)
    assert not is_automix_output(theirs)
    noise = tmp_path / f"noise{suffix}"
    noise.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    assert not is_automix_output(noise)
    assert not is_automix_output(tmp_path / "missing.wav")
    os.mkfifo(tmp_path / "fifo.wav")
    assert not is_automix_output(tmp_path / "fifo.wav")  # returns, does not block


def test_temp_names_carry_the_pid(tmp_path):
    with atomic_output(tmp_path / "song.wav") as temp:
        name = Path(temp).name
        match = TEMP_PATTERN.match(name)
        assert match and int(match["pid"]) == os.getpid() and name.startswith(".song.wav.automix-")
        Path(temp).write_bytes(b"x")
    assert parts_in(tmp_path) == []


def test_long_names_still_get_a_valid_temp_name(tmp_path):
    name = "é" * 120 + ".wav"  # 244 bytes in UTF-8: a longer temp name would not fit
    out = write_audio(sine(-6, 0.05, RATE), RATE, tmp_path / name, "16")
    assert out.exists() and parts_in(tmp_path) == []


def test_clean_stale_parts_keeps_live_runs(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        names = {
            "dead": f".a.wav.automix-{dead.pid}-0badc0de.part",
            "live": f".b.wav.automix-{live.pid}-0badc0de.part",
            "self": f".c.wav.automix-{os.getpid()}-0badc0de.part",
            "other": ".d.wav.k2j3h4.part",  # not ours (old mkstemp style): left alone
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"x")
        removed = clean_stale_parts(tmp_path)
    finally:
        live.kill()
        live.wait()
    assert removed == [tmp_path / names["dead"]]
    assert sorted(parts_in(tmp_path)) == sorted(names[k] for k in ("live", "self", "other"))
    assert clean_stale_parts(tmp_path / "missing") == []


def test_a_killed_writer_leaves_a_part_the_next_run_cleans(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from automix.io.audio import atomic_output
        with atomic_output(Path({str(tmp_path / "m.wav")!r})) as temp:
            Path(temp).write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert result.returncode == -signal.SIGKILL
    assert len(parts_in(tmp_path)) == 1 and not (tmp_path / "m.wav").exists()
    clean_stale_parts(tmp_path)
    assert parts_in(tmp_path) == []


# --- writing: refused destinations ------------------------------------------------------


def test_dev_null_as_output_is_refused_and_untouched(tmp_path):
    before = os.stat("/dev/null")
    with pytest.raises(AutomixError, match="/dev/null: exists and is a character device"):
        write_audio(sine(-6, 0.1, RATE), RATE, "/dev/null", "16", format_name="wav")
    with pytest.raises(AutomixError, match="character device"):
        check_output_paths([], ["/dev/null"])
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    assert not [n for n in os.listdir("/dev") if n.startswith(".null.")]


def test_fifo_folder_socket_and_links_to_them_are_refused(tmp_path):
    import socket

    os.mkfifo(tmp_path / "fifo.wav")
    (tmp_path / "folder.wav").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.wav"))
    os.symlink("/dev/null", tmp_path / "to_null.wav")
    os.symlink(tmp_path / "folder.wav", tmp_path / "to_folder.wav")
    os.symlink(tmp_path / "nowhere.wav", tmp_path / "dangling.wav")
    try:
        for name, kind in [("fifo.wav", "named pipe"), ("folder.wav", "folder"), ("sock.wav", "socket"), ("to_null.wav", "character device"), ("to_folder.wav", "folder"), ("dangling.wav", "missing file")]:
            with pytest.raises(AutomixError, match=f"{name}: .*{kind}"):
                write_audio(sine(-6, 0.05, RATE), RATE, tmp_path / name, "16", format_name="wav")
            with pytest.raises(AutomixError, match=kind):
                check_output_paths([], [tmp_path / name])
    finally:
        sock.close()
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo.wav").st_mode)
    assert os.path.islink(tmp_path / "to_null.wav") and not (tmp_path / "nowhere.wav").exists()
    assert parts_in(tmp_path) == []


def test_a_link_to_a_regular_file_is_written_through(tmp_path):
    target = write_audio(sine(-6, 0.05, RATE), RATE, tmp_path / "real.wav", "16")
    os.symlink("real.wav", tmp_path / "link.wav")
    write_audio(sine(-6, 0.1, RATE), RATE, tmp_path / "link.wav", "16")
    assert os.path.islink(tmp_path / "link.wav")
    assert sf.info(target).frames == int(0.1 * RATE)


def test_missing_parent_behind_a_file(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(AutomixError, match="file"):
        write_audio(sine(-6, 0.05, RATE), RATE, tmp_path / "file" / "sub" / "m.wav", "16")
    with pytest.raises(AutomixError, match="not a folder"):
        check_output_paths([], [tmp_path / "file" / "sub" / "m.wav"])
    assert (tmp_path / "file").read_bytes() == b"x"
    check_output_paths([], [tmp_path / "new" / "deeper" / "m.wav"])  # creatable: fine
    assert not (tmp_path / "new").exists()  # ...and checking creates nothing


# --- check_output_paths: outputs versus inputs -----------------------------------------


@pytest.fixture
def stems(tmp_path):
    folder = tmp_path / "S"
    folder.mkdir()
    kick = folder / "kick.flac"
    sf.write(kick, sine(-6, 0.1, RATE).T, RATE, subtype="PCM_16")
    return folder, kick


def test_report_over_a_stem_is_refused_before_anything_is_written(stems, tmp_path):
    folder, kick = stems
    before = digest(kick)
    with pytest.raises(AutomixError, match="kick.flac: is the input"):
        check_output_paths([kick], [tmp_path / "m.wav", kick])
    os.symlink(kick, tmp_path / "alias.json")
    os.link(kick, tmp_path / "hard.json")
    for alias in ("alias.json", "hard.json"):
        with pytest.raises(AutomixError, match=f"{alias}: is the input"):
            check_output_paths([kick], [tmp_path / alias])
    with pytest.raises(AutomixError, match="is the input"):
        check_output_paths([kick], [folder / ".." / "S" / "kick.flac"])
    with pytest.raises(AutomixError, match="refusing to write over an input"):
        write_audio(sine(-6, 0.1, RATE), RATE, tmp_path / "hard.json", "16", protected=(kick,), format_name="wav")
    assert digest(kick) == before


def test_two_outputs_on_one_file_are_refused(tmp_path):
    with pytest.raises(AutomixError, match="also the output"):
        check_output_paths([], [tmp_path / "m.wav", tmp_path / "x" / ".." / "m.wav"])
    (tmp_path / "m.wav").write_bytes(b"old")
    os.link(tmp_path / "m.wav", tmp_path / "n.json")
    with pytest.raises(AutomixError, match="same file as the output"):
        check_output_paths([], [tmp_path / "m.wav", tmp_path / "n.json"])
    check_output_paths([tmp_path / "in.wav"], [tmp_path / "m.wav", tmp_path / "m.json"])


def test_read_only_folder_by_mode(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running with permission to write anywhere (root): see the tmpfs test")
        with pytest.raises(AutomixError, match="cannot write to folder .*ro: permission denied"):
            check_output_paths([], [folder / "m.wav"])
        with pytest.raises(AutomixError, match="cannot write to folder .*ro: permission denied"):
            write_audio(sine(-6, 0.05, RATE), RATE, folder / "m.wav", "16")
    finally:
        folder.chmod(0o755)


# --- full and read-only disks in a private tmpfs, and RLIMIT_FSIZE ------------------


def _private_mount_works() -> bool:
    if not sys.platform.startswith("linux") or not shutil.which("unshare"):
        return False
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs \"$d\" && umount \"$d\"; r=$?; rmdir \"$d\"; exit $r"
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", probe], check=False, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


needs_private_mount = pytest.mark.skipif(not _private_mount_works(), reason="cannot mount a private tmpfs (unshare -rm)")

TMPFS_SCRIPT = """
import hashlib, os, sys
from pathlib import Path
import numpy as np
from automix.errors import AutomixError
from automix.io.audio import atomic_output, write_audio
from automix.io.paths import check_output_paths
folder = Path(sys.argv[1])
x = np.zeros((2, 44100), np.float32)
{body}
"""


def _run_in_tmpfs(tmp_path: Path, options: str, body: str) -> str:
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    script = TMPFS_SCRIPT.format(body=textwrap.dedent(body))
    command = f'mount -t tmpfs -o {options} tmpfs "$1" && exec "$2" -c "$3" "$1"'
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", command, "sh", str(mount_point), sys.executable, script],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_private_mount
def test_disk_full_is_a_plain_error_and_keeps_the_old_file(tmp_path):
    out = _run_in_tmpfs(
        tmp_path,
        "size=128k,mode=0777",
        """
        old = write_audio(x[:, :2000], 44100, folder / "m.wav", "16")
        before = hashlib.sha256(old.read_bytes()).hexdigest()
        for name, depth in (("m.wav", "32f"), ("m.flac", "24")):
            noise = np.random.default_rng(0).uniform(-1, 1, (2, 44100)).astype(np.float32)
            try:
                write_audio(noise, 44100, folder / name, depth)
                print("written", name)
            except AutomixError as error:
                print("error:", error)
        try:
            with atomic_output(folder / "report.json") as temp, open(temp, "w") as f:
                f.write("x" * 1_000_000)
        except AutomixError as error:
            print("error:", error)
        print("same" if hashlib.sha256(old.read_bytes()).hexdigest() == before else "changed")
        print("left:", sorted(os.listdir(folder)))
        """,
    )
    lines = out.splitlines()
    assert lines[0] == f"error: disk full while writing {tmp_path / 'mnt' / 'm.wav'}"
    assert lines[1] == f"error: disk full while writing {tmp_path / 'mnt' / 'm.flac'}"
    assert lines[2] == f"error: disk full while writing {tmp_path / 'mnt' / 'report.json'}"
    assert lines[3:] == ["same", "left: ['m.wav']"]


@needs_private_mount
def test_read_only_file_system_is_a_plain_error(tmp_path):
    out = _run_in_tmpfs(
        tmp_path,
        "ro",
        """
        for attempt in (lambda: check_output_paths([], [folder / "m.wav"]), lambda: write_audio(x, 44100, folder / "m.wav", "16"), lambda: write_audio(x, 44100, folder / "new" / "m.wav", "16")):
            try:
                attempt()
                print("no error")
            except AutomixError as error:
                print("error:", error)
        """,
    )
    mnt = tmp_path / "mnt"
    assert out.splitlines() == [
        f"error: cannot write to folder {mnt}: read-only file system",
        f"error: cannot write to folder {mnt}: read-only file system",
        f"error: cannot create folder {mnt / 'new'}: read-only file system",
    ]


def test_file_size_limit_is_a_plain_error(tmp_path):
    """RLIMIT_FSIZE (``ulimit -f``) makes writes fail with EFBIG: works without mounts."""
    old = tmp_path / "m.wav"
    write_audio(sine(-6, 0.01, RATE), RATE, old, "16")
    before = digest(old)
    script = textwrap.dedent(
        f"""
        import resource
        import numpy as np
        from automix.errors import AutomixError
        from automix.io.audio import write_audio
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            write_audio(np.zeros((2, 44100), np.float32), 44100, {str(old)!r}, "32f")
        except AutomixError as error:
            print(error)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"file too large for this file system or the file-size limit (ulimit -f) while writing {old}"
    assert digest(old) == before and parts_in(tmp_path) == []


# --- MP3 sniffing, memory ----------------------------------------------------------------


def test_mp3_is_recognised_by_two_frame_headers(tmp_path):
    from pedalboard.io import AudioFile

    path = tmp_path / "song.mp3"
    with AudioFile(str(path), "w", RATE, 2) as f:
        f.write(sine(-6, 0.5, RATE))
    audio = read_audio(path)
    assert audio.channels == 2 and audio.sample_rate == RATE and audio.frames >= int(0.5 * RATE)
    # One plausible frame header followed by junk is not an MP3 (random bytes hit one
    # header about once in 3000 files); 0xFFFB9064 is a 128 kbit/s 44.1 kHz header.
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\xff\xfb\x90\x64" + bytes(range(256)) * 8)
    with pytest.raises(AutomixError, match="not an audio file"):
        read_audio(junk)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_reading_needs_no_second_copy_of_the_signal(tmp_path, suffix):
    import tracemalloc

    path = tmp_path / f"noise{suffix}"
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 10 * RATE)).astype(np.float32)
    sf.write(path, x.T, RATE, subtype="PCM_16")
    tracemalloc.start()
    try:
        audio = read_audio(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert audio.samples.nbytes == x.nbytes
    assert peak < 1.2 * x.nbytes  # sf.read + transpose peaked at 2x


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another owner")
def test_replacing_a_file_keeps_its_owner(tmp_path):
    out = write_audio(sine(-6, 0.05, RATE), RATE, tmp_path / "m.wav", "16")
    os.chown(out, 12345, 23456)
    write_audio(sine(-6, 0.1, RATE), RATE, out, "16")
    assert (out.stat().st_uid, out.stat().st_gid) == (12345, 23456)


def test_truncated_aiff_is_read_with_a_warning(tmp_path):
    full = tmp_path / "full.aiff"
    sf.write(full, sine(-6, 0.2, RATE).T, RATE, subtype="PCM_16")
    data = full.read_bytes()
    sound_data = data.index(b"SSND") + 16  # chunk id, size, offset, block size
    (tmp_path / "cut.aiff").write_bytes(data[: sound_data + 4 * 1000])
    audio = read_audio(tmp_path / "cut.aiff")
    assert audio.frames == 1000
    assert audio.warnings == (f"cut.aiff: truncated: header claims {FRAMES} frames, file holds 1000",)


def _corrupted_copies(base: bytes, seed: int, count: int):
    """``count`` damaged copies of a file: cut short, bytes of its header overwritten, or both."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        data = bytearray(base)
        kind = int(rng.integers(3))
        if kind != 0:  # header bytes overwritten (the chunk sizes, the format fields)
            for position in rng.integers(0, 120, size=int(rng.integers(1, 4))).tolist():
                data[position] = int(rng.integers(256))
        if kind != 1:
            data = data[: int(rng.integers(8, len(data)))]
        yield bytes(data)


@pytest.mark.parametrize(("container", "subtype"), [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_U8"),
                                                    ("AIFF", "PCM_24"), ("AIFF", "PCM_S8")])
def test_an_integer_file_counted_without_decoding_reads_as_the_decoder_reads_it(tmp_path, container, subtype):
    """file_source counts an integer WAV/AIFF's frames from its header, without the
    validating decode (stream._counted); on damaged files it must still agree with the
    whole-file reader, which decodes every block: the same refusal, or the same samples
    and the same warnings."""
    from automix.io.stream import file_source

    suffix = ".wav" if container == "WAV" else ".aiff"
    x = sine(-3, 0.1, RATE, 997.0, channels=2)
    clean = tmp_path / f"clean{suffix}"
    sf.write(clean, x.T, RATE, format=container, subtype=subtype)
    path, compared = tmp_path / f"damaged{suffix}", 0
    for data in _corrupted_copies(clean.read_bytes(), seed=len(subtype) + len(container), count=150):
        path.write_bytes(data)
        try:
            whole = read_audio(path)
        except AutomixError:
            with pytest.raises(AutomixError):
                file_source(path)
            continue
        source = file_source(path)
        streamed = np.concatenate(list(source.blocks()), axis=1)
        assert source.frames == whole.frames == streamed.shape[1]
        assert np.array_equal(streamed, whole.samples)
        assert source.warnings == whole.warnings
        compared += 1
    assert compared >= 40  # most damage still leaves a readable file: the comparison ran


def test_a_truncated_file_streamed_is_called_truncated(tmp_path):
    from automix.io.stream import file_source

    full = tmp_path / "full.wav"
    pcm16_wav(full)
    (tmp_path / "cut.wav").write_bytes(full.read_bytes()[: 44 + 4 * 3000 + 2])
    assert file_source(tmp_path / "cut.wav").warnings == (f"cut.wav: truncated: header claims {FRAMES} frames, file holds 3000",)
    assert file_source(full).warnings == ()


@pytest.mark.parametrize("subtype", ["IMA_ADPCM", "MS_ADPCM", "ULAW"])
def test_compressed_wav_subtypes_are_not_called_truncated(tmp_path, subtype):
    sf.write(tmp_path / "c.wav", sine(-6, 0.2, RATE, channels=1).T, RATE, subtype=subtype)
    audio = read_audio(tmp_path / "c.wav")
    assert audio.warnings == () and audio.frames >= FRAMES


def test_absurd_float_levels_are_refused_but_overs_are_read(tmp_path):
    x = sine(-6, 0.2, RATE)
    x[0, 100] = 3e38  # near float32's largest value: any gain turns it into infinity
    sf.write(tmp_path / "corrupt.wav", x.T, RATE, subtype="FLOAT")
    with pytest.raises(AutomixError, match=r"corrupt.wav: peaks at \+770 dBFS"):
        read_audio(tmp_path / "corrupt.wav")
    overs = sine(20, 0.2, RATE)  # +20 dBFS: a float export with overs is still audio
    sf.write(tmp_path / "overs.wav", overs.T, RATE, subtype="FLOAT")
    assert np.array_equal(read_audio(tmp_path / "overs.wav").samples, overs)


@pytest.mark.parametrize("block_frames", [300, 4096])
def test_a_file_source_gives_its_first_frames_and_no_more(tmp_path, block_frames):
    """_FileBlocks reads the first ``frames`` frames of its file, whatever the block size:
    1000 of a 5000-frame file are the file's first 1000 samples, in blocks of at most
    ``block_frames``, and nothing past them."""
    from automix.io.stream import _FileBlocks

    x = sine(-6, 5000 / RATE, RATE, 997.0)
    path = tmp_path / "x.wav"
    sf.write(path, x.T, RATE, subtype="FLOAT")
    blocks = list(_FileBlocks(path, RATE, RATE, 2, 1000, block_frames)())
    assert all(b.shape[1] <= block_frames for b in blocks)
    assert np.array_equal(np.concatenate(blocks, axis=1), x[:, :1000])
