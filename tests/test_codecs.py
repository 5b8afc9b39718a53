"""Lossy-codec round trips and the codec-safe attenuation (automix.master.codecs).

Expected values come from the signals themselves (a 1 kHz tone's amplitude, the input
waveform for alignment) and from an independent true-peak reading: 8x polyphase
resampling with scipy and a long Kaiser filter, not the project's meter.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import signal

from automix.errors import AutomixError

pytest.importorskip("av", reason="PyAV (pip install av) is needed for the codec round trips")

from automix.master import codecs

SR = 44100
MAIN_CODECS = ("mp3", "aac", "opus")


def independent_true_peak_dbtp(samples: np.ndarray) -> float:
    """8x oversampled peak with a long interpolation filter (scipy, not automix)."""
    up = signal.resample_poly(samples.astype(np.float64), 8, 1, axis=-1, window=("kaiser", 10.0))
    return 20.0 * np.log10(np.abs(up).max())


def tone_plus_noise(seconds: float = 2.0) -> np.ndarray:
    """A 1 kHz tone at -12 dBFS under band-limited noise at about -30 dBFS RMS.

    The noise makes the cross-correlation peak unambiguous (a tone alone correlates
    equally well a period away); the tone gives a level with a known answer.
    """
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * SR)) / SR
    tone = 10 ** (-12 / 20) * np.sin(2 * np.pi * 1000 * t)
    noise = signal.sosfilt(signal.butter(4, 8000, fs=SR, output="sos"), rng.standard_normal((2, t.size))) * 0.05
    return (tone[None, :] + noise).astype(np.float32)


def tone_amplitude(samples: np.ndarray, freq_hz: float, start: int, stop: int) -> float:
    """Amplitude of one frequency by projection on sine and cosine (Hann-windowed)."""
    t = np.arange(start, stop) / SR
    window = np.hanning(stop - start)
    seg = samples[0, start:stop] * window
    c = np.dot(seg, np.cos(2 * np.pi * freq_hz * t))
    s = np.dot(seg, np.sin(2 * np.pi * freq_hz * t))
    return 2.0 * np.hypot(c, s) / window.sum()


@pytest.mark.parametrize("codec", MAIN_CODECS + ("vorbis",))
def test_round_trip_is_aligned_same_shape_and_level(codec):
    x = tone_plus_noise()
    y = codecs.encode_decode(x, SR, codec)
    assert y.shape == x.shape and y.dtype == np.float32

    # Cross-correlate one second from the middle over lags -100..+100 samples.
    ref = x[0, SR // 2 : SR // 2 + SR].astype(np.float64)
    seg = y[0, SR // 2 - 100 : SR // 2 + SR + 100].astype(np.float64)
    xc = signal.correlate(seg, ref, mode="valid")
    k = int(np.argmax(xc))
    assert k - 100 == 0, f"{codec}: decoded audio is {k - 100} samples off"
    fraction = 0.5 * (xc[k - 1] - xc[k + 1]) / (xc[k - 1] - 2 * xc[k] + xc[k + 1])
    assert abs(fraction) < 0.5

    level_db = 20 * np.log10(tone_amplitude(y, 1000, SR // 2, SR + SR // 2) / tone_amplitude(x, 1000, SR // 2, SR + SR // 2))
    assert abs(level_db) < 0.5, f"{codec}: 1 kHz comes back {level_db:+.2f} dB"


@pytest.mark.parametrize("codec", MAIN_CODECS)
def test_mono_at_48k_round_trip_is_aligned(codec):
    rate = 48000
    noise = signal.sosfilt(signal.butter(4, 8000, fs=rate, output="sos"), np.random.default_rng(5).standard_normal(rate))
    x = (0.2 * noise[None, :]).astype(np.float32)
    y = codecs.encode_decode(x, rate, codec)
    assert y.shape == x.shape
    xc = signal.correlate(y[0, rate // 4 - 50 : rate // 4 * 3 + 50], x[0, rate // 4 : rate // 4 * 3], mode="valid")
    assert int(np.argmax(xc)) == 50


def test_garbage_bytes_do_not_decode_with_a_traceback():
    with pytest.raises(AutomixError, match="cannot decode"):
        codecs.decode(b"not an mp3 file at all" * 10)


def test_opus_runs_at_48k_and_is_reported_so():
    x = tone_plus_noise(1.0)
    decoded, rate = codecs.encode_decode_native(x, SR, "opus")
    assert rate == 48000 and decoded.shape == (2, 48000)
    assert codecs.codec_rate(codecs.CODECS["mp3"], 96000) == 48000
    assert codecs.codec_rate(codecs.CODECS["mp3"], 88200) == 44100


def clipped_square(peak_dbtp: float, seconds: float = 2.0) -> np.ndarray:
    """A 220 Hz sine driven 24 dB into a clipper, scaled to ``peak_dbtp`` (8x meter).

    20 ms fades: an abrupt full-scale start alone makes FFmpeg's AAC encoder overshoot
    by +5 dB in its first frame, which is not what this test is about.
    """
    t = np.arange(int(seconds * SR)) / SR
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
    wave = np.clip(16.0 * np.sin(2 * np.pi * 220 * t), -1.0, 1.0) * fade
    x = np.stack([wave, np.roll(wave, 37)])
    x *= 10 ** ((peak_dbtp - independent_true_peak_dbtp(x)) / 20)
    return x.astype(np.float32)


def test_codec_safe_attenuation_brings_every_decoded_peak_under_the_ceiling():
    ceiling = -0.5
    x = clipped_square(ceiling)
    assert independent_true_peak_dbtp(x) == pytest.approx(ceiling, abs=0.01)
    # Coding noise on a clipped waveform goes over the ceiling (measured: mp3 +0.2 dB,
    # FFmpeg's AAC +3.8 dB).
    assert independent_true_peak_dbtp(codecs.encode_decode(x, SR, "mp3")) > ceiling + 0.1
    assert independent_true_peak_dbtp(codecs.encode_decode(x, SR, "aac")) > ceiling + 1.0

    result = codecs.codec_safe_gain_db(x, SR, ceiling, MAIN_CODECS)
    assert result.attenuation_db > 0.3 and result.verified
    assert set(result.peaks_before_dbtp) == {"mp3@320", "aac@256", "opus@160"}

    # Check independently: apply the attenuation, encode again, read with the 8x meter.
    attenuated = x * np.float32(10 ** (-result.attenuation_db / 20))
    for codec in MAIN_CODECS:
        peak = independent_true_peak_dbtp(codecs.encode_decode(attenuated, SR, codec))
        assert peak <= ceiling + 0.01, f"{codec}: {peak:.3f} dBTP after {result.attenuation_db:.2f} dB"


def test_without_verification_the_attenuation_is_the_measured_excess_plus_margin():
    ceiling = -0.5
    x = clipped_square(ceiling, 1.0)
    peaks = codecs.decoded_true_peaks(x, SR, "mp3,aac", robust=True)
    result = codecs.codec_safe_gain_db(x, SR, ceiling, "mp3,aac", verify=False)
    assert result.peaks_before_dbtp == peaks
    assert result.attenuation_db == pytest.approx(max(peaks.values()) - ceiling + codecs.MARGIN_DB)
    assert result.iterations == 1 and not result.verified and result.peaks_after_dbtp == {}


def test_nothing_to_do_under_the_ceiling():
    x = clipped_square(-6.0, 1.0)
    result = codecs.codec_safe_gain_db(x, SR, -1.0, "mp3,aac")
    assert result.attenuation_db == 0.0 and result.iterations == 1 and result.verified
    assert result.peaks_after_dbtp == result.peaks_before_dbtp


def test_same_input_same_bytes_and_same_result():
    x = tone_plus_noise(1.0)
    for codec in codecs.CODECS:
        assert codecs.encode(x, SR, codec) == codecs.encode(x, SR, codec), codec
    square = clipped_square(-0.5, 1.0)
    first = codecs.codec_safe_gain_db(square, SR, -1.0, "mp3,aac", verify=False)
    assert first.attenuation_db > 0 and first == codecs.codec_safe_gain_db(square, SR, -1.0, "mp3,aac", verify=False)


def test_bitrates_and_codec_lists():
    assert codecs.parse_codecs("mp3, aac:128,opus") == (("mp3", 320), ("aac", 128), ("opus", 160))
    x = tone_plus_noise(0.5)
    peaks = codecs.decoded_true_peaks(x, SR, ["aac"], bitrate_kbps={"aac": 96})
    assert list(peaks) == ["aac@96"]


@pytest.mark.parametrize("bad", ["flac", "mp3,wma", "", "aac:fast", "mp3:4000"])
def test_bad_codec_names_and_bitrates_are_refused_clearly(bad):
    with pytest.raises(AutomixError) as err:
        codecs.decoded_true_peaks(tone_plus_noise(0.2), SR, bad)
    assert "\n" not in str(err.value)
    if bad in ("flac", "mp3,wma"):
        assert "known: mp3, aac, opus" in str(err.value)


def test_bad_audio_is_refused():
    with pytest.raises(AutomixError, match="mono or stereo"):
        codecs.encode_decode(np.zeros((3, 1000), np.float32), SR, "mp3")
    with pytest.raises(AutomixError, match="NaN"):
        codecs.encode_decode(np.full((2, 1000), np.nan, np.float32), SR, "aac")


def test_missing_pyav_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # makes "import av" raise ImportError
    with pytest.raises(AutomixError, match="pip install av"):
        codecs.encode_decode(tone_plus_noise(0.2), SR, "mp3")
