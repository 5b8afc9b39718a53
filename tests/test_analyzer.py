"""The analyzer's measurements on signals with known answers."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from signals import music_like, pink_noise, sine

from automix.errors import AutomixError
from automix.io.audio import Audio
from automix.measure import loudness
from automix.measure.analyzer import (
    MIN_SPECTRUM_FRAMES,
    THIRD_OCTAVE_CENTRES_HZ,
    Analyzer,
    AudioAnalysis,
    analyze,
)


def test_sine_measurements():
    a = analyze(Audio(sine(-20, 3.0, 48000, 1000.0), 48000))
    assert a.integrated_lufs == pytest.approx(-20.0, abs=0.05)
    assert a.sample_peak_dbfs == pytest.approx(-20.0, abs=0.01)
    assert a.crest_factor_db == pytest.approx(3.01, abs=0.02)  # sqrt(2) for a sine
    assert a.rms_dbfs == pytest.approx(-23.01, abs=0.02)
    assert a.spectral_centroid_hz == pytest.approx(1000.0, rel=0.02)
    loudest = int(np.argmax(a.band_levels_db))
    assert THIRD_OCTAVE_CENTRES_HZ[loudest] == pytest.approx(1000.0)
    assert a.stereo_correlation == pytest.approx(1.0)
    assert a.stereo_width == pytest.approx(0.0, abs=1e-6)
    assert a.clipped_samples == 0 and a.dc_offset < 1e-4
    assert (a.duration_s, a.sample_rate, a.channels) == (3.0, 48000, 2)


def test_stereo_width_and_correlation():
    noise = 0.1 * pink_noise(3.0, 44100)
    uncorrelated = analyze(Audio(noise, 44100))
    assert uncorrelated.stereo_correlation == pytest.approx(0.0, abs=0.05)
    assert uncorrelated.stereo_width == pytest.approx(0.5, abs=0.03)
    inverted = analyze(Audio(np.stack([noise[0], -noise[0]]), 44100))
    assert inverted.stereo_correlation == pytest.approx(-1.0)
    assert inverted.stereo_width == pytest.approx(1.0)


def test_pink_noise_has_a_flat_third_octave_spectrum():
    a = analyze(Audio(0.1 * pink_noise(10.0, 48000), 48000))
    levels = np.asarray(a.band_levels_db)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: levels.size])
    mid = levels[(centres >= 100) & (centres <= 10000)]
    assert np.ptp(mid) < 1.5  # equal power per third octave


def test_clipping_dc_and_silence():
    x = sine(3, 1.0, 44100, 100.0)
    np.clip(x, -1, 1, out=x)
    x += 0.01
    a = analyze(Audio(x, 44100))
    assert a.clipped_samples > 1000
    assert a.dc_offset == pytest.approx(0.01, abs=1e-3)
    silent = analyze(Audio(np.zeros((2, 44100), np.float32), 44100))
    assert silent.is_silent and silent.integrated_lufs <= -199


def test_json_has_units_in_keys():
    data = analyze(Audio(sine(-20, 1.0, 44100), 44100)).to_dict()
    for key in ("integrated_lufs", "true_peak_dbtp", "loudness_range_lu", "sample_peak_dbfs", "spectral_centroid_hz", "duration_s"):
        assert key in data
    assert data["third_octave_bands_db"]["1k"] > -1.0


# --- streaming, short and bad input ---------------------------------------------------


def _streamed(x: np.ndarray, sample_rate: int, sizes: list[int], total: int | None) -> AudioAnalysis:
    analyzer = Analyzer(sample_rate, x.shape[0], total_frames=total)
    start = i = 0
    while start < x.shape[1]:
        analyzer.add(x[:, start : start + sizes[i % len(sizes)]])
        start += sizes[i % len(sizes)]
        i += 1
    return analyzer.result()


def _clipping_music(seconds: float = 5.0) -> np.ndarray:
    x = music_like(seconds, 44100)
    x[:, 16380:16390] = 1.0  # a clipped run across the analyzer's internal chunk edge
    x[0, 30000:30003] = -1.0  # exactly 3: counts
    x[1, 40000:40002] = 1.0  # 2: does not
    return x


@pytest.mark.parametrize("sizes", [[4097], [44100], [1000, 1, 16384, 3]])
def test_streaming_analysis_equals_whole_for_any_block_size(sizes):
    x = _clipping_music()
    whole = analyze(Audio(x, 44100))
    assert whole.clipped_samples == 2 * 10 + 3
    assert _streamed(x, 44100, sizes, x.shape[1]) == whole


def test_streaming_analysis_one_sample_at_a_time():
    x = _clipping_music(0.6)
    x[:, 1000:1004] = 1.0
    assert _streamed(x, 44100, [1], x.shape[1]) == analyze(Audio(x, 44100))


def test_streaming_without_the_length_spreads_its_spectrum_frames():
    x = 0.1 * pink_noise(20.0, 44100)
    whole = analyze(Audio(x, 44100))
    streamed = _streamed(x, 44100, [10000], None)
    assert streamed.integrated_lufs == whole.integrated_lufs and streamed.stereo_width == whole.stereo_width
    levels, reference = np.asarray(streamed.band_levels_db), np.asarray(whole.band_levels_db)
    assert np.abs(levels - reference)[3:].max() < 0.5  # same long-term spectrum, other frames
    assert streamed.spectral_centroid_hz == pytest.approx(whole.spectral_centroid_hz, rel=0.03)


@pytest.mark.parametrize(("channels", "frames"), [(1, 1), (2, 1), (2, 2), (1, 30), (2, 4409)])
def test_files_too_short_to_measure_get_defined_values(channels, frames):
    x = np.full((channels, frames), 0.25, np.float32)
    a = analyze(Audio(x, 44100, path=Path("tiny.wav")))
    assert a.too_short and not a.is_measurable
    assert a.integrated_lufs == loudness.SILENCE_DB and a.loudness_range_lu == 0.0
    assert a.sample_peak_dbfs == pytest.approx(20 * np.log10(0.25), abs=1e-4)
    assert a.active_lufs == pytest.approx(-0.691 + 10 * np.log10(0.0625 * channels), abs=1e-4)  # ungated mean
    if frames < MIN_SPECTRUM_FRAMES:
        assert set(a.band_levels_db) == {loudness.SILENCE_DB} and a.spectral_centroid_hz == 0.0
    for value in a.to_dict().values():
        assert not isinstance(value, float) or np.isfinite(value)
    assert a.duration_s == frames / 44100


def test_layout_is_reported():
    assert analyze(Audio(0.1 * pink_noise(1.0, 48000, channels=6), 48000)).channel_layout.startswith("5.1")
    assert analyze(Audio(sine(-20, 1.0, 48000, channels=1), 48000)).to_dict()["channel_layout"] == "mono"


@pytest.mark.parametrize(
    ("samples", "rate", "message"),
    [
        (np.zeros((44100, 2), np.float32), 44100, "transposed"),
        (np.zeros(44100, np.float32), 44100, "dimension"),
        (np.full((2, 44100), np.nan, np.float32), 44100, "NaN"),
        (np.zeros((2, 44100), np.int16), 44100, "floating"),
        (np.zeros((2, 4410), np.float32), 1, "sample rate"),
        (np.zeros((2, 4410), np.float32), 100, "sample rate"),
    ],
)
def test_bad_input_is_a_clear_error(samples, rate, message):
    with pytest.raises(AutomixError, match=message):
        analyze(Audio(samples, rate))


def test_bad_rate_in_a_short_file_is_a_clear_error():
    with pytest.raises(AutomixError, match="sample rate"):
        analyze(Audio(np.zeros((2, 1), np.float32), 1, path=Path("x.wav")))


def test_analysis_never_copies_the_signal_to_float64():
    x = music_like(20.0, 44100)  # 7 MB as float32, 14 MB as float64
    tracemalloc.start()
    try:
        analyze(Audio(x, 44100))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.6 * x.nbytes


def test_an_analysis_without_the_true_peak_scan_says_so():
    # a sine at a quarter of the rate, sampled 45 degrees off its crest: the samples read
    # 3 dB under its true peak, and that sample peak must not pass for a true peak
    rate = 44100
    t = np.arange(rate) / rate
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.05)  # no edge: a step would ring over the crest
    x = np.stack([0.5 * ramp * np.sin(2 * np.pi * (rate / 4) * t + np.pi / 4)] * 2).astype(np.float32)
    full, fast = (Analyzer(rate, 2, true_peak=flag) for flag in (True, False))
    full.add(x)
    fast.add(x)
    measured, skipped = full.result(), fast.result()
    assert measured.true_peak_measured and not skipped.true_peak_measured
    assert measured.to_dict()["true_peak_dbtp"] == pytest.approx(20 * np.log10(0.5), abs=0.05)
    assert measured.sample_peak_dbfs == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.01)
    assert skipped.to_dict()["true_peak_dbtp"] is None and skipped.to_dict()["plr_db"] is None
    assert "true_peak_measured" not in measured.to_dict()
