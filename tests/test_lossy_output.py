"""Streaming formats out (automix.io.lossy): MP3, Opus and AAC files that decode on target.

The mastering loop is emulated here with the limiter (automix.master.limiter.limit) and
driven by :func:`automix.io.lossy.decoded_check`'s verdicts; the written file is then
judged independently of automix: decoded by PyAV directly from disk, loudness and true
peak by libebur128 (pyebur128), true peak also by 8x scipy polyphase resampling with a
long Kaiser filter, tags by mutagen.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from automix.errors import AutomixError

av = pytest.importorskip("av", reason="PyAV (pip install av) is needed to write MP3/Opus/AAC")
pyebur128 = pytest.importorskip("pyebur128")
mutagen = pytest.importorskip("mutagen")

from automix.io import lossy
from automix.io.metadata import Provenance
from automix.master import codecs, limiter

SR = 44100
TARGET_LUFS = -14.0
CEILING_DBTP = -1.0
FORMATS = {".mp3": "mp3", ".opus": "opus", ".m4a": "aac"}


def master_like(seconds: float = 4.0, seed: int = 7) -> np.ndarray:
    """A dense stereo programme: pink-ish noise bed, a 55 Hz kick every 0.5 s, a bass
    line, bright hats. It starts at full level on the first sample: the worst case for
    FFmpeg's AAC encoder (its first frame decoded up to 5 dB over before codecs.py gave
    it a hidden pre-roll)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    white = rng.standard_normal((2, n))
    bed = signal.sosfilt(signal.butter(1, 800, fs=SR, output="sos"), white, axis=-1) * 0.15
    beat = (t * 2.0) % 1.0
    kick = 0.9 * np.sin(2 * np.pi * 55 * t) * np.exp(-beat * 14)
    bass = 0.25 * np.sin(2 * np.pi * 110 * t + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    hats = signal.sosfilt(signal.butter(4, 7000, btype="high", fs=SR, output="sos"), white, axis=-1)
    hats *= 0.3 * np.exp(-((t * 4.0) % 1.0) * 30)
    return (bed + kick + bass + hats).astype(np.float32)


def ebur128(samples: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """libebur128's integrated loudness and true peak (dBTP)."""
    mode = pyebur128.MeasurementMode
    state = pyebur128.R128State(samples.shape[0], sample_rate, mode.MODE_I | mode.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(samples.T).ravel().astype(np.float64), samples.shape[1])
    peak = max(pyebur128.get_true_peak(state, c) for c in range(samples.shape[0]))
    return pyebur128.get_loudness_global(state), 20 * np.log10(peak)


def scipy_true_peak_dbtp(samples: np.ndarray) -> float:
    """8x oversampled peak through a long interpolator (scipy, not automix): a Kaiser
    (beta 10) lowpass with 128 zero crossings each side. resample_poly's default (10)
    under-reads decoded AAC by 0.15 dB: its content reaches close to Nyquist."""
    taps = signal.firwin(2 * 128 * 8 + 1, 1 / 8, window=("kaiser", 10.0))
    up = signal.resample_poly(samples.astype(np.float64), 8, 1, axis=-1, window=taps)
    return float(20 * np.log10(np.abs(up).max()))


def decode_file(path) -> tuple[np.ndarray, int]:
    """Decode a file from disk with PyAV directly (not automix's decoder)."""
    chunks = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            if not frame.format.is_planar:
                array = array.reshape(-1, stream.codec_context.channels).T
            chunks.append(array.astype(np.float64))
    return np.concatenate(chunks, axis=1), rate


def render_to(x: np.ndarray, aim_lufs: float, threshold_db: float, gain_db: float) -> tuple[np.ndarray, float]:
    """The loop's PCM part: limit at ``threshold_db`` and move the gain (secant on
    libebur128's reading) until the render is within 0.01 LU of ``aim_lufs``."""
    points = []
    for _ in range(10):
        y = limiter.limit(x * np.float32(10 ** (gain_db / 20)), SR, threshold_db=threshold_db).samples
        lufs = ebur128(y, SR)[0]
        if abs(lufs - aim_lufs) <= 0.01:
            break
        points.append((gain_db, lufs))
        slope = 1.0
        if len(points) >= 2 and abs(points[-1][0] - points[-2][0]) > 1e-6:
            slope = float(np.clip((points[-1][1] - points[-2][1]) / (points[-1][0] - points[-2][0]), 0.2, 1.0))
        gain_db += (aim_lufs - lufs) / slope
    return y, gain_db


def closed_loop(x: np.ndarray, codec: str) -> tuple[np.ndarray, lossy.DecodedCheck, list[lossy.DecodedVerdict]]:
    """What the lead's run_loop does with a DecodedCheck: render to the target, check the
    decoded version, lower the threshold by extra_threshold_db and aim the render at
    target - loudness_offset_lu, until the verdict is ok."""
    check = lossy.decoded_check(codec)
    threshold, aim = CEILING_DBTP - 0.05, TARGET_LUFS
    gain = TARGET_LUFS - ebur128(x, SR)[0]
    verdicts = []
    for _ in range(6):
        y, gain = render_to(x, aim, threshold, gain)
        verdict = check.verdict(y, SR, TARGET_LUFS, CEILING_DBTP)
        verdicts.append(verdict)
        if verdict.ok:
            break
        threshold -= verdict.extra_threshold_db
        aim = TARGET_LUFS - verdict.loudness_offset_lu
    return y, check, verdicts


@pytest.fixture(scope="module")
def programme() -> np.ndarray:
    return master_like()


@pytest.fixture(scope="module")
def loops(programme) -> dict:
    """closed_loop per codec, run once for the module."""
    cache: dict = {}

    def run(codec: str):
        if codec not in cache:
            cache[codec] = closed_loop(programme, codec)
        return cache[codec]

    return run


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_decoded_file_holds_target_and_ceiling(tmp_path, loops, suffix):
    codec = FORMATS[suffix]
    y, check, verdicts = loops(codec)
    assert verdicts[-1].ok, [(v.loudness_error_lu, v.decoded.true_peak_dbtp) for v in verdicts]
    provenance = Provenance(options={"target_lufs": "-14"}, preset="pop", inputs=(("mix.wav", "ab" * 32),))
    path = tmp_path / f"song{suffix}"
    out = lossy.write_lossy(y, SR, path, provenance=provenance, encoded=check.last.data)
    assert out.codec == codec and out.bitrate_kbps == codecs.CODECS[codec].default_kbps
    assert path.read_bytes() != check.last.data  # tagged: more than the bare encode

    decoded, rate = decode_file(path)
    assert rate == (48000 if codec == "opus" else SR)
    lufs, tp_ebur = ebur128(decoded, rate)
    assert abs(lufs - TARGET_LUFS) <= 0.1, lufs
    assert abs(lufs - TARGET_LUFS) <= 0.05, lufs  # the loop aims at +-0.03 (its own meter)
    assert tp_ebur <= CEILING_DBTP, tp_ebur
    assert scipy_true_peak_dbtp(decoded) <= CEILING_DBTP
    if codec != "opus":  # the file (after tagging) still decodes aligned: edit list / LAME header kept
        lags = np.arange(-64, 65)
        middle = y[0, 4096:-4096].astype(np.float64)
        scores = [np.dot(decoded[0, 4096 + lag : 4096 + lag + middle.size], middle) for lag in lags]
        assert lags[int(np.argmax(scores))] == 0

    tags = mutagen.File(path)
    flat = {str(k).upper().removeprefix("TXXX:").removeprefix("----:COM.APPLE.ITUNES:"): v for k, v in tags.tags.items()}

    def text(key: str) -> str:
        value = flat[key]
        value = getattr(value, "text", value)
        value = value[0] if isinstance(value, list) else value
        return bytes(value).decode() if not isinstance(value, str) else value

    if codec == "opus":  # RFC 7845: Q7.8 dB relative to -23 LUFS
        assert abs(int(text("R128_TRACK_GAIN")) / 256 - (-23.0 - lufs)) <= 0.1
        assert "REPLAYGAIN_TRACK_GAIN" not in flat
    else:  # ReplayGain 2.0: -18 LUFS reference, peak = linear true peak
        assert abs(float(text("REPLAYGAIN_TRACK_GAIN").split()[0]) - (-18.0 - lufs)) <= 0.1
        assert abs(20 * np.log10(float(text("REPLAYGAIN_TRACK_PEAK"))) - scipy_true_peak_dbtp(decoded)) <= 0.1
    assert "input=" + "ab" * 32 + " mix.wav" in text("AUTOMIX_PROVENANCE")


def test_the_loop_corrects_what_the_codec_moved(loops):
    """Mastered for PCM only, the decoded AAC misses the target by more than the loop's
    aim and goes over the ceiling on this programme; the decoded loop fixes both."""
    _, _, verdicts = loops("aac")
    first, last = verdicts[0], verdicts[-1]
    assert abs(first.loudness_error_lu) > 0.03 or not first.peak_ok
    assert len(verdicts) >= 2 and last.ok


def test_measure_decoded_agrees_with_libebur128(programme):
    data = codecs.encode(programme * np.float32(0.5), SR, "mp3")
    measured, peak_dbtp = lossy.measure_decoded(data)
    decoded, rate = codecs.decode(data)
    lufs, tp = ebur128(decoded, rate)
    assert abs(measured.integrated_lufs - lufs) <= 0.02
    # automix's precise meter refines between its 8x grid points: never lower than a grid
    assert scipy_true_peak_dbtp(decoded) - 0.01 <= peak_dbtp <= scipy_true_peak_dbtp(decoded) + 0.1
    assert peak_dbtp >= tp - 0.05  # the precise peak never reads under libebur128's 4x


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_same_input_same_bytes(tmp_path, programme, suffix):
    short = programme[:, : 2 * SR]
    provenance = Provenance(options={"target_lufs": "-14"})
    first = lossy.write_lossy(short, SR, tmp_path / f"a{suffix}", provenance=provenance)
    lossy.write_lossy(short, SR, tmp_path / f"b{suffix}", provenance=provenance)
    assert first.bytes_written > 1000
    assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()


@pytest.mark.parametrize(("name", "format_name", "needle"), [
    ("song.wma", None, "not a lossy format"),
    ("song.ogg", None, "not a lossy format"),  # FFmpeg's native Vorbis encoder is left out
    ("song", None, "no extension"),
    ("song.mp3", "wma", "unknown lossy format"),
    ("song.mp3", "opus", "--format opus writes opus"),
])
def test_bad_format_refused_before_encoding(tmp_path, programme, monkeypatch, name, format_name, needle):
    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded before the format was checked")

    monkeypatch.setattr(codecs, "encode", no_encoding)
    with pytest.raises(AutomixError, match=needle):
        lossy.lossy_target(tmp_path / name, format_name)
    with pytest.raises(AutomixError, match=needle):
        lossy.write_lossy(programme, SR, tmp_path / name, format_name)
    assert list(tmp_path.iterdir()) == []


def test_format_names_and_bitrates(tmp_path):
    assert lossy.lossy_target(tmp_path / "x.m4a") == lossy.LossyTarget("aac", 256, ".m4a")
    assert lossy.lossy_target(tmp_path / "x", "aac") == lossy.LossyTarget("aac", 256, ".m4a")
    assert lossy.lossy_target(tmp_path / "x.opus", platform="youtube").bitrate_kbps == 160
    assert lossy.lossy_target(tmp_path / "x.m4a", platform="youtube").bitrate_kbps == 128
    assert lossy.lossy_target(tmp_path / "x.mp3", bitrate_kbps=192).bitrate_kbps == 192
    with pytest.raises(AutomixError, match="out of range"):
        lossy.lossy_target(tmp_path / "x.mp3", bitrate_kbps=2000)
    assert lossy.is_lossy("a.MP3") and lossy.is_lossy(format_name="opus") and not lossy.is_lossy("a.flac")


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_file_path_matches_memory_path(tmp_path, programme, suffix):
    """The constant-memory path (render on disk -> encode_stream -> streaming meters)
    gives the same bytes and numbers as the in-memory one, and write_lossy_file moves
    the encoded file into place tagged."""
    import soundfile as sf

    codec = FORMATS[suffix]
    short = programme[:, : int(2.5 * SR)] * np.float32(0.5)
    wav = tmp_path / "render.wav"
    sf.write(wav, short.T, SR, subtype="FLOAT")
    lufs = ebur128(short, SR)[0]
    check = lossy.decoded_check(codec)
    in_memory = check.verdict(short, SR, TARGET_LUFS, CEILING_DBTP, rendered_lufs=lufs)
    encoded = tmp_path / "encoded.part"
    on_disk = check.verdict_file(wav, encoded, TARGET_LUFS, CEILING_DBTP, rendered_lufs=lufs)
    assert encoded.read_bytes() == in_memory.data
    assert on_disk.decoded.integrated_lufs == pytest.approx(in_memory.decoded.integrated_lufs, abs=1e-6)
    assert on_disk.decoded.true_peak_dbtp == pytest.approx(in_memory.decoded.true_peak_dbtp, abs=1e-6)
    assert on_disk.extra_threshold_db == pytest.approx(in_memory.extra_threshold_db, abs=1e-6)
    out = lossy.write_lossy_file(encoded, tmp_path / f"song{suffix}", loudness=on_disk.decoded)
    assert not encoded.exists() and out.bytes_written > len(in_memory.data)
    decoded, rate = decode_file(tmp_path / f"song{suffix}")
    assert abs(ebur128(decoded, rate)[0] - on_disk.decoded.integrated_lufs) <= 0.02


def test_best_promise_keeping_encode_is_written_when_the_last_is_over(tmp_path, programme):
    """A codec whose decoded peak does not follow level can leave the loop's last render
    over the ceiling; the check keeps the best one that kept the promise, and writes it."""
    check = lossy.decoded_check("mp3")
    kept, _ = render_to(programme, TARGET_LUFS + 0.1, CEILING_DBTP - 1.0, 0.0)  # ~0.06 LU loud decoded: promise, not aim
    first = check.verdict(kept, SR, TARGET_LUFS, CEILING_DBTP)
    assert first.acceptable and not first.ok, (first.loudness_error_lu, first.decoded.true_peak_dbtp)
    over, _ = render_to(programme, TARGET_LUFS, CEILING_DBTP + 0.5, 0.0)  # limited above the ceiling
    second = check.verdict(over, SR, TARGET_LUFS, CEILING_DBTP)
    assert not second.acceptable and second.extra_threshold_db > 0.5
    assert check.chosen() is check.best and check.best.data == first.data
    out = check.write(tmp_path / "song.mp3")
    decoded, rate = decode_file(tmp_path / "song.mp3")
    lufs, _ = ebur128(decoded, rate)
    assert abs(lufs - TARGET_LUFS) <= 0.1 and scipy_true_peak_dbtp(decoded) <= CEILING_DBTP
    assert out.warnings == ()
    third = check.verdict(over, SR, TARGET_LUFS, CEILING_DBTP)  # the same over again: a larger step
    assert third.extra_threshold_db == pytest.approx(second.extra_threshold_db + check.margin_db, abs=1e-6)
