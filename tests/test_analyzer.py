"""The analyzer's measurements on signals with known answers."""

import numpy as np
import pytest
from signals import pink_noise, sine

from automix.io.audio import Audio
from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ, analyze


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
