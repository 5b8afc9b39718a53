"""Tests written for the sixth mutation round (``bench/mutation.py``, keys ``int_count``,
``iir_copy``, ``secant``): each kills mutants the suite let live, and each checks an
answer worked out from the signal or the format, never one read from the code under test.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal
from signals import sine

from automix.errors import AutomixError

RATE = 44100


# --------------------------------------------------------------------------- int_count
# automix/io/stream.py: file_source, _counted (an integer WAV/AIFF counted, not decoded)


def _blocks_of(source) -> np.ndarray:
    return np.concatenate(list(source.blocks()), axis=1)


def test_int_count_a_streamed_file_source_pickles_and_reads_as_the_whole_file(tmp_path):
    """A WAV, FLAC or AIFF source is streamed from the file: its blocks are an object that
    pickles (the helper process gets the source, not the audio), and reading it gives the
    samples as written (16-bit: within one step of 1/32768)."""
    from automix.io.stream import file_source

    x = sine(-6, 0.2, RATE, 440.0)
    for name in ("s.wav", "s.flac", "s.aiff"):
        sf.write(tmp_path / name, x.T, RATE, subtype="PCM_16")
        source = file_source(tmp_path / name)
        again = pickle.loads(pickle.dumps(source.blocks))
        assert (source.sample_rate, source.channels, source.frames) == (RATE, 2, x.shape[1])
        streamed = np.concatenate(list(again()), axis=1)
        assert streamed.shape == x.shape and np.abs(streamed - x).max() <= 1 / 32768


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3")
@pytest.mark.parametrize("sample_rate", [None, RATE, 48000])
def test_int_count_an_mp3_source_is_decoded_whole_and_resampled_when_asked(tmp_path, sample_rate):
    """An MP3 is decoded whole (not streamed); asked for 48 kHz, a 44.1 kHz MP3 comes at
    48 kHz with 48000/44100 as many frames (+-1), and its 440 Hz tone still at 440 Hz."""
    from automix.io.audio import read_audio
    from automix.io.stream import file_source

    path = tmp_path / "t.mp3"
    sf.write(path, sine(-6, 1.0, RATE, 440.0).T, RATE, format="MP3")
    whole = read_audio(path)
    source = file_source(path, sample_rate=sample_rate)
    out_rate = sample_rate or RATE
    assert source.sample_rate == out_rate and source.channels == 2
    assert abs(source.frames - whole.frames * out_rate / RATE) <= 1
    got = _blocks_of(source)
    assert got.shape == (2, source.frames)
    if out_rate == RATE:
        assert np.array_equal(got, whole.samples)
    spectrum = np.abs(np.fft.rfft(got[0] * np.hanning(got.shape[1])))
    assert np.argmax(spectrum) * out_rate / got.shape[1] == pytest.approx(440.0, abs=2.0)


@pytest.mark.parametrize(("frames", "expected"), [(8820, 9600), (1000, 1088), (1001, 1090)])
def test_int_count_a_resampled_source_counts_the_frames_it_yields(tmp_path, frames, expected):
    """44.1 -> 48 kHz: 8820 frames become 9600 exactly, 1000 become 1088.4 -> 1088 and
    1001 become 1089.5 -> 1090 (rounded half up); the source says the count its blocks
    add up to."""
    from automix.io.stream import file_source

    sf.write(tmp_path / "r.wav", sine(-6, frames / RATE, RATE, 440.0).T, RATE, subtype="PCM_16")
    source = file_source(tmp_path / "r.wav", sample_rate=48000)
    assert source.sample_rate == 48000
    assert source.frames == expected
    assert _blocks_of(source).shape == (2, expected)
    same = file_source(tmp_path / "r.wav", sample_rate=RATE)  # asked for its own rate: untouched
    assert same.frames == frames and _blocks_of(same).shape == (2, frames)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_int_count_a_float_wav_is_still_decoded_and_refused_when_not_finite(tmp_path, value):
    """Only integer PCM is counted without decoding: a float WAV or AIFF holding a NaN or
    an infinity is refused by file_source as by the whole-file reader."""
    from automix.io.stream import file_source

    x = sine(-6, 0.2, RATE, 440.0)
    x[1, 5000] = value
    for name in ("f.wav", "f.aiff"):
        sf.write(tmp_path / name, x.T, RATE, subtype="FLOAT")
        with pytest.raises(AutomixError, match="NaN or infinite"):
            file_source(tmp_path / name)


@pytest.mark.parametrize("keep", [0.3, 0.8])
def test_int_count_a_cut_flac_is_decoded_and_refused_as_the_whole_file_reader_refuses_it(tmp_path, keep):
    """A FLAC holds integer samples but is compressed: its STREAMINFO count says nothing
    about what decodes. Cut short, it loses sync: file_source decodes it to check, and
    refuses it as read_audio does, before any render meets the damage."""
    from automix.io.audio import read_audio
    from automix.io.stream import file_source

    path = tmp_path / "cut.flac"
    sf.write(path, sine(-6, 0.5, RATE, 440.0).T, RATE, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert sf.info(str(path)).frames == RATE // 2  # what the header still claims
    with pytest.raises(AutomixError):
        read_audio(path)
    with pytest.raises(AutomixError, match="cut.flac: cannot decode"):
        file_source(path)


def test_int_count_the_length_cap_is_inclusive():
    """MAX_DURATION_S of audio is accepted, one frame more is refused (6 h at 44.1 kHz is
    952 560 000 frames)."""
    from automix.io.stream import _counted

    assert _counted(Path("a.wav"), RATE, 2, 6 * 3600 * RATE) == 952_560_000
    with pytest.raises(AutomixError, match="a.wav: lasts 6.0 hours; automix reads at most 6 hours"):
        _counted(Path("a.wav"), RATE, 2, 6 * 3600 * RATE + 1)
    assert _counted(Path("b.wav"), 8000, 1, 3) == 3


@pytest.mark.parametrize(("channels", "frames", "ok"), [(2, 2, False), (2, 3, True), (1, 1, False), (1, 2, True)])
def test_int_count_a_file_needs_more_frames_than_channels(tmp_path, channels, frames, ok):
    """A 16-bit WAV of 2 stereo frames is refused as too short, 3 are read; so are 1 and 2
    mono frames (the same rule as the whole-file reader: more frames than channels)."""
    from automix.io.stream import file_source

    path = tmp_path / "tiny.wav"
    sf.write(path, np.full((frames, channels), 0.25, np.float32), RATE, subtype="PCM_16")
    if ok:
        source = file_source(path)
        assert source.frames == frames
        assert np.array_equal(_blocks_of(source), np.full((channels, frames), 0.25, np.float32))
    else:
        with pytest.raises(AutomixError, match=f"tiny.wav: only {frames} sample"):
            file_source(path)


# --------------------------------------------------------------------------- iir_copy
# automix/dsp/iir.py: one copy into the filter's buffer, filtered in place


@pytest.mark.parametrize("with_state", [False, True])
def test_iir_copy_a_block_of_more_than_two_dimensions_is_scipy_sosfilt(with_state):
    """scipy.signal.sosfilt filters the last axis of any array: a (3, 4, n) block (12
    signals, one state per signal and section) gives scipy's output and state bit for bit."""
    from automix.dsp import iir

    rng = np.random.default_rng(61)
    sos = signal.butter(4, 90.0, "highpass", fs=RATE, output="sos")
    x = rng.standard_normal((3, 4, 700))
    if with_state:
        zi = rng.standard_normal((2, 3, 4, 2))
        ours, ours_zi = iir.sosfilt(sos, x, zi)
        theirs, theirs_zi = signal.sosfilt(sos, iir.guarded(x), axis=-1, zi=zi)
        assert np.array_equal(ours, theirs) and np.array_equal(ours_zi, theirs_zi)
        plain, plain_zi = iir.sosfilt_plain(sos, x, zi)
        scipy_plain, scipy_zi = signal.sosfilt(sos, x, axis=-1, zi=zi)
        assert np.array_equal(plain, scipy_plain) and np.array_equal(plain_zi, scipy_zi)
    else:
        assert np.array_equal(iir.sosfilt_plain(sos, x), signal.sosfilt(sos, x, axis=-1))


def test_iir_copy_sosfilt_as_refuses_a_block_wider_than_the_type_asked():
    """A float64 block cannot be filtered in float32 without losing bits, even when the
    filter and its state are float32: sosfilt_as refuses, as it does a float64 filter."""
    from automix.dsp import iir

    sos = signal.butter(2, 38.0, "highpass", fs=RATE, output="sos").astype(np.float32)
    zi = np.zeros((1, 2, 2), np.float32)
    with pytest.raises(TypeError, match="fit in float32"):
        iir.sosfilt_as(sos, np.zeros((2, 100), np.float64), zi, np.float32)
    with pytest.raises(TypeError, match="fit in float32"):
        iir.sosfilt_as(sos.astype(np.float64), np.zeros((2, 100), np.float32), zi, np.float32)
    x = np.random.default_rng(62).standard_normal((2, 100)).astype(np.float32)
    ours, ours_zi = iir.sosfilt_as(sos, x, zi, np.float32)  # all float32: allowed
    theirs, theirs_zi = signal.sosfilt(sos, iir.guarded(x), axis=-1, zi=zi)
    assert ours.dtype == np.float32
    assert np.array_equal(ours, theirs) and np.array_equal(ours_zi, theirs_zi)
