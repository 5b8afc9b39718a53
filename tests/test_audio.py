"""Reading, writing, dither and the safety rules of the writer."""

import numpy as np
import pytest
import soundfile as sf
from signals import sine

from automix.errors import AutomixError
from automix.io.audio import quantize, read_audio, resample, write_audio


def test_round_trip_keeps_layout_rate_and_values(tmp_path):
    x = sine(-6, 0.5, 44100)
    x[1] *= 0.5
    path = write_audio(x, 44100, tmp_path / "a.wav", "32f")
    audio = read_audio(path)
    assert audio.samples.shape == (2, 22050)
    assert audio.samples.dtype == np.float32 and audio.samples.flags.c_contiguous
    assert audio.sample_rate == 44100
    assert np.array_equal(audio.samples, x)


@pytest.mark.parametrize(("suffix", "bit_depth", "subtype"), [(".wav", "16", "PCM_16"), (".flac", "24", "PCM_24"), (".aiff", "24", "PCM_24"), (".wav", "32f", "FLOAT")])
def test_formats_and_bit_depths(tmp_path, suffix, bit_depth, subtype):
    path = write_audio(quantize(sine(-6, 0.2, 48000), bit_depth), 48000, tmp_path / f"out{suffix}", bit_depth)
    assert sf.info(path).subtype == subtype
    assert read_audio(path).samples.shape == (2, 9600)


def test_sixteen_bit_is_dithered_and_deterministic():
    x = sine(-60, 0.5, 48000)
    a, b = quantize(x, "16"), quantize(x, "16")
    assert np.array_equal(a, b)
    error = (a - x).astype(np.float64) * 32768
    # TPDF dither over +-1 LSB (variance 1/6) plus rounding (variance 1/12): std 0.5 LSB
    assert error.std() == pytest.approx(0.5, rel=0.03)
    # ...and is uncorrelated with the signal (undithered rounding error is not)
    assert abs(np.corrcoef(error.ravel(), x.ravel())[0, 1]) < 0.02
    assert np.all(np.abs(a * 32768 - np.rint(a * 32768)) < 1e-3)  # on the 16-bit grid


def test_silence_stays_digital_silence_only_where_dither_allows():
    q = quantize(np.zeros((2, 1000), np.float32), "16")
    assert np.abs(q).max() <= 1 / 32768 + 1e-9


def test_refuses_to_overwrite_an_input(tmp_path):
    src = write_audio(sine(-6, 0.1, 44100), 44100, tmp_path / "in.wav", "32f")
    before = src.read_bytes()
    with pytest.raises(AutomixError, match="input"):
        write_audio(sine(-1, 0.1, 44100), 44100, tmp_path / "in.wav", "32f", protected=(src,))
    assert src.read_bytes() == before


def test_failed_write_leaves_no_partial_file(tmp_path):
    with pytest.raises(AutomixError, match="FLAC"):
        write_audio(sine(-6, 0.1, 44100), 44100, tmp_path / "x.flac", "32f")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"not audio at all", b"RIFF\x00\x00\x00\x00WAVE"])
def test_unreadable_files_raise_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AutomixError, match="bad.wav"):
        read_audio(path)


def test_zero_length_and_nan_are_rejected(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros((0, 2)), 44100)
    with pytest.raises(AutomixError, match="zero length"):
        read_audio(tmp_path / "empty.wav")
    x = np.zeros((100, 1), np.float32)
    x[5] = np.nan
    sf.write(tmp_path / "nan.wav", x, 44100, subtype="FLOAT")
    with pytest.raises(AutomixError, match="NaN"):
        read_audio(tmp_path / "nan.wav")


def test_resample_keeps_a_tone_and_its_level():
    x = sine(-6, 1.0, 44100, 1000.0, channels=1)
    y = resample(x, 44100, 48000)
    assert y.shape == (1, 48000)
    spectrum = np.abs(np.fft.rfft(y[0, 4800:-4800]))
    peak_hz = np.argmax(spectrum) * 48000 / (48000 - 9600)
    assert peak_hz == pytest.approx(1000.0, abs=2.0)
    assert np.abs(y[0, 4800:-4800]).max() == pytest.approx(10 ** (-6 / 20), rel=1e-3)
