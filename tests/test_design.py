"""automix.dsp.design against scipy.signal (the independent reference) and closed forms.

Tolerances (measured deviation from scipy 1.17.1 / numpy 2.4 in brackets):

- hann: 1e-15 absolute [0: same construction];
- kaiser: 1e-15 absolute [3.3e-16: numpy's i0 against scipy.special.i0, last bits];
- kaiserord: integers equal, beta 1e-12 [0];
- firwin_lowpass: 1e-15 absolute on taps of magnitude <= 0.5 [5.6e-17];
- firwin2: 1e-14 absolute on taps of magnitude ~1 [2.8e-17: numpy's irfft against
  scipy.fft's];
- butter_sos: 1e-12 relative, elementwise, zeros exactly zero [0: bit-identical];
- sos_response: 1e-12 relative [0].
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from automix.dsp import design

SAMPLE_RATES = (22050, 44100, 48000, 96000)


# --- import cost -------------------------------------------------------------------

def test_importing_design_does_not_import_scipy():
    code = "import automix.dsp.design, sys; assert not any(m.startswith('scipy') for m in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


# --- hann ----------------------------------------------------------------------------

@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 255, 256, 2048, 4096, 4097])
def test_hann_matches_scipy(length):
    ours = design.hann(length)
    assert ours.dtype == np.float64 and ours.shape == (length,)
    np.testing.assert_allclose(ours, signal.get_window("hann", length), rtol=0, atol=1e-15)


def test_hann_closed_form():
    assert design.hann(4).tolist() == [0.0, 0.5, 1.0, 0.5]
    # Periodic Hann at a hop of half its length sums to exactly 1 (sin^2 + cos^2).
    window = design.hann(1024)
    np.testing.assert_allclose(window[:512] + window[512:], 1.0, rtol=0, atol=1e-15)


# --- kaiser --------------------------------------------------------------------------

@pytest.mark.parametrize("length", [1, 2, 3, 64, 65, 1335, 4411])
@pytest.mark.parametrize("beta", [0.0, 5.0, 5.65, 6.0, 8.6, 10.0, 14.0])
def test_kaiser_matches_scipy(length, beta):
    ours = design.kaiser(length, beta)
    assert ours.dtype == np.float64 and ours.shape == (length,)
    np.testing.assert_allclose(ours, signal.get_window(("kaiser", beta), length, fftbins=False),
                               rtol=0, atol=1e-15)


def _bessel_i0(x: float) -> float:
    """I0 by its power series sum ((x/2)^k / k!)^2, independent of numpy's Chebyshev form."""
    term, total, k = 1.0, 1.0, 0
    while term > 1e-18 * total:
        k += 1
        term *= (x / 2 / k) ** 2
        total += term
    return total


@pytest.mark.parametrize("beta", [2.0, 6.0, 10.0])
def test_kaiser_closed_form(beta):
    window = design.kaiser(101, beta)
    assert window[50] == 1.0  # centre: I0(beta) / I0(beta)
    np.testing.assert_allclose(window, window[::-1], rtol=0, atol=0)
    # End points: I0(0) / I0(beta).
    np.testing.assert_allclose(window[0], 1.0 / _bessel_i0(beta), rtol=1e-13)
    # A quarter of the way in, (n - alpha) / alpha = -1/2.
    np.testing.assert_allclose(window[25], _bessel_i0(beta * math.sqrt(0.75)) / _bessel_i0(beta), rtol=1e-13)
    assert np.all(design.kaiser(31, 0.0) == 1.0)  # beta 0 is rectangular


# --- kaiserord -----------------------------------------------------------------------

@pytest.mark.parametrize("ripple_db", [8.0, 10.0, 21.0, 21.5, 30.0, 50.0, 50.1, 60.0, 80.0, 100.0, -60.0])
@pytest.mark.parametrize("width", [0.001, 0.0025, 0.0054, 0.01, 0.1, 0.5])
def test_kaiserord_matches_scipy(ripple_db, width):
    numtaps, beta = design.kaiserord(ripple_db, width)
    ref_numtaps, ref_beta = signal.kaiserord(ripple_db, width)
    assert isinstance(numtaps, int) and numtaps == ref_numtaps
    assert beta == pytest.approx(ref_beta, rel=0, abs=1e-12)


def test_kaiserord_textbook_example():
    # Oppenheim & Schafer (3rd ed.) example 7.8: pass edge 0.4 pi, stop edge 0.6 pi,
    # delta = 0.001 -> A = 60 dB, beta = 5.653, order M = 37, i.e. 38 taps.
    numtaps, beta = design.kaiserord(60.0, 0.2)
    assert numtaps == 38
    assert beta == pytest.approx(5.653, abs=5e-4)
    assert design.kaiserord(20.0, 0.1)[1] == 0.0  # below 21 dB: rectangular window


@pytest.mark.parametrize("ripple_db, width", [(7.9, 0.1), (60.0, 0.0), (60.0, -0.1)])
def test_kaiserord_rejects(ripple_db, width):
    with pytest.raises(ValueError):
        design.kaiserord(ripple_db, width)


# --- firwin_lowpass ------------------------------------------------------------------

def _oversampler_cases():
    # loudness.py: firwin(factor * taps_per_phase + 1, 1 / factor, window=("kaiser", beta)).
    for factor in (4, 8):
        for taps_per_phase in (12, 16, 24, 32):
            for beta in (5.0, 7.5, 10.0):
                yield factor * taps_per_phase + 1, 1.0 / factor, beta
    yield 8 * 256 + 1, 1.0 / 8, 10.0  # the precise true-peak check


@pytest.mark.parametrize("numtaps, cutoff, beta", list(_oversampler_cases()))
def test_firwin_lowpass_matches_scipy_oversampler(numtaps, cutoff, beta):
    np.testing.assert_allclose(design.firwin_lowpass(numtaps, cutoff, beta),
                               signal.firwin(numtaps, cutoff, window=("kaiser", beta)), rtol=0, atol=1e-15)


@pytest.mark.parametrize("sample_rate", SAMPLE_RATES)
@pytest.mark.parametrize("mono_below_hz", [60.0, 120.0, 300.0])
def test_firwin_lowpass_matches_scipy_stereo_side_filter(sample_rate, mono_below_hz):
    # stereo.py side_highpass_taps: kaiserord(60 dB, cutoff / nyquist), odd, firwin(fs=).
    nyquist = sample_rate / 2
    cutoff_hz = min(mono_below_hz, 0.45 * nyquist)
    numtaps, beta = design.kaiserord(60.0, cutoff_hz / nyquist)
    assert (numtaps, beta) == signal.kaiserord(60.0, cutoff_hz / nyquist)
    numtaps |= 1
    ours = design.firwin_lowpass(numtaps, cutoff_hz / nyquist, beta)
    reference = signal.firwin(numtaps, cutoff_hz, window=("kaiser", beta), fs=sample_rate)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-15)


@pytest.mark.parametrize("sample_rate", SAMPLE_RATES)
def test_firwin_lowpass_matches_scipy_limiter_crossover(sample_rate):
    # limiter.py crossover: 36 ms, 150 Hz, Kaiser beta 5.65, firwin(fs=).
    taps = max(3, round(36.0 * sample_rate / 1000.0)) | 1
    ours = design.firwin_lowpass(taps, 150.0 / (sample_rate / 2), 5.65)
    reference = signal.firwin(taps, 150.0, window=("kaiser", 5.65), fs=sample_rate)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-15)


def test_firwin_lowpass_even_length_matches_scipy():
    np.testing.assert_allclose(design.firwin_lowpass(64, 0.3, 6.0), signal.firwin(64, 0.3, window=("kaiser", 6.0)),
                               rtol=0, atol=1e-15)


def test_firwin_lowpass_closed_form():
    taps = design.firwin_lowpass(4 * 16 + 1, 0.25, 5.0)
    assert taps.sum() == pytest.approx(1.0, abs=1e-15)  # unity gain at DC
    np.testing.assert_array_equal(taps, taps[::-1])  # linear phase
    # A cutoff of 1/4 puts the sinc's zeros on every 4th tap from the centre (the
    # oversampler's pass-through branch).
    others = np.delete(taps[32 % 4::4], 32 // 4)
    np.testing.assert_allclose(others, 0.0, rtol=0, atol=1e-17)
    # The window method's -6 dB point is the cutoff: |H| = 1/2 within the ripple.
    long_taps = design.firwin_lowpass(1001, 0.2, 8.6)
    n = np.arange(1001)
    at_cutoff = abs(np.sum(long_taps * np.exp(-1j * np.pi * 0.2 * n)))
    assert at_cutoff == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("numtaps, cutoff", [(0, 0.5), (31, 0.0), (31, 1.0), (31, -0.2), (31, 1.5)])
def test_firwin_lowpass_rejects(numtaps, cutoff):
    with pytest.raises(ValueError):
        design.firwin_lowpass(numtaps, cutoff, 5.0)


# --- firwin2 -------------------------------------------------------------------------

#: 1/3-octave centres 25 Hz .. 16 kHz (base-10 series), as the tonal EQ's bands.
_CENTRES_HZ = 10 ** (np.arange(14, 43) / 10)


def _tonal_grid(sample_rate: int, gains_db: np.ndarray):
    """tonal.py ``_eq_fir``'s numtaps, freqs and gains (copied so the test stands alone)."""
    numtaps = int(sample_rate * 0.1)
    numtaps = numtaps if numtaps % 2 else numtaps + 1
    nyquist = sample_rate / 2
    grid = np.geomspace(10.0, nyquist, 512)
    curve_db = np.interp(np.log(grid), np.log(_CENTRES_HZ), gains_db)
    freqs = np.concatenate(([0.0], grid / nyquist))
    gains = 10 ** (np.concatenate(([curve_db[0]], curve_db)) / 20)
    freqs[-1] = 1.0
    return numtaps, freqs, gains


@pytest.mark.parametrize("sample_rate", SAMPLE_RATES)
@pytest.mark.parametrize("seed", [0, 1])
def test_firwin2_matches_scipy_tonal_eq(sample_rate, seed):
    gains_db = np.random.default_rng(seed).uniform(-6.0, 6.0, _CENTRES_HZ.size)
    numtaps, freqs, gains = _tonal_grid(sample_rate, gains_db)
    assert freqs.size == 513  # 0, then the 512-point log grid
    ours = design.firwin2(numtaps, freqs, gains, 6.0)
    reference = signal.firwin2(numtaps, freqs, gains, window=("kaiser", 6.0))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-14)


@pytest.mark.parametrize("numtaps", [31, 101, 1001])
def test_firwin2_matches_scipy_repeated_frequency(numtaps):
    freqs = [0.0, 0.2, 0.2, 0.5, 0.5, 1.0]  # two steps
    gains = [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    np.testing.assert_allclose(design.firwin2(numtaps, freqs, gains, 6.0),
                               signal.firwin2(numtaps, freqs, gains, window=("kaiser", 6.0)), rtol=0, atol=1e-14)


def test_firwin2_matches_scipy_even_length_and_nfreqs():
    freqs, gains = [0.0, 0.3, 1.0], [1.0, 1.0, 0.0]
    np.testing.assert_allclose(design.firwin2(64, freqs, gains, 8.0),
                               signal.firwin2(64, freqs, gains, window=("kaiser", 8.0)), rtol=0, atol=1e-14)
    np.testing.assert_allclose(design.firwin2(65, freqs, gains, 8.0, nfreqs=1000),
                               signal.firwin2(65, freqs, gains, window=("kaiser", 8.0), nfreqs=1000),
                               rtol=0, atol=1e-14)


def test_firwin2_closed_form():
    # A flat response of gain g is g times a delay of (numtaps - 1) / 2: an impulse at the
    # centre, where the window is 1.
    taps = design.firwin2(101, [0.0, 0.5, 1.0], [0.5, 0.5, 0.5], 6.0)
    expected = np.zeros(101)
    expected[50] = 0.5
    np.testing.assert_allclose(taps, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("numtaps, freqs, gains", [
    (64, [0.0, 0.5, 1.0], [1.0, 1.0, 1.0]),  # even length, gain at Nyquist
    (31, [0.1, 0.5, 1.0], [1.0, 1.0, 1.0]),  # does not start at 0
    (31, [0.0, 0.5, 0.9], [1.0, 1.0, 1.0]),  # does not end at Nyquist
    (31, [0.0, 0.6, 0.5, 1.0], [1.0, 1.0, 1.0, 1.0]),  # decreasing
    (31, [0.0, 0.5, 0.5, 0.5, 1.0], [1.0] * 5),  # a value three times
    (31, [0.0, 0.0, 0.5, 1.0], [1.0] * 4),  # 0 repeated
    (31, [0.0, 0.5, 1.0, 1.0], [1.0] * 4),  # Nyquist repeated
    (31, [0.0, 0.5, 1.0], [1.0, 1.0]),  # lengths differ
    (31, [0.0, 0.5, 1.0], [1.0, np.nan, 1.0]),  # not finite
])
def test_firwin2_rejects(numtaps, freqs, gains):
    with pytest.raises(ValueError):
        design.firwin2(numtaps, freqs, gains, 6.0)


def test_firwin2_rejects_small_nfreqs():
    with pytest.raises(ValueError):
        design.firwin2(31, [0.0, 0.5, 1.0], [1.0, 1.0, 1.0], 6.0, nfreqs=31)


# --- butter_sos ----------------------------------------------------------------------

def _butter_cases():
    for sample_rate in SAMPLE_RATES:
        for cutoff_hz in (20.0, 80.0, 1000.0, 0.3 * sample_rate, 0.45 * sample_rate):
            for btype in ("highpass", "lowpass"):
                yield sample_rate, cutoff_hz, btype


@pytest.mark.parametrize("sample_rate, cutoff_hz, btype", list(_butter_cases()))
def test_butter_sos_matches_scipy(sample_rate, cutoff_hz, btype):
    for order in range(1, 9):
        ours = design.butter_sos(order, cutoff_hz, btype, sample_rate)
        reference = signal.butter(order, cutoff_hz, btype, fs=sample_rate, output="sos")
        assert ours.dtype == np.float64 and ours.shape == reference.shape == ((order + 1) // 2, 6)
        np.testing.assert_array_equal(ours == 0, reference == 0)  # same pairing
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=0)


@pytest.mark.parametrize("order", [3, 4, 5])
def test_butter_sos_filters_like_scipy(order):
    x = np.random.default_rng(order).standard_normal(4000)
    for cutoff_hz, btype in ((30.0, "highpass"), (19000.0, "highpass"), (8000.0, "lowpass")):
        ours = signal.sosfilt(design.butter_sos(order, cutoff_hz, btype, 44100), x)
        reference = signal.sosfilt(signal.butter(order, cutoff_hz, btype, fs=44100, output="sos"), x)
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


def _biquad_response(sos: np.ndarray, frequencies_hz: np.ndarray, sample_rate: float) -> np.ndarray:
    """Independent evaluation: each section's polynomials in z (numpy.polyval), multiplied."""
    z = np.exp(2j * np.pi * frequencies_hz / sample_rate)
    response = np.ones_like(z)
    for section in sos:
        response *= np.polyval(section[:3], z) / np.polyval(section[3:], z)
    return response


@pytest.mark.parametrize("sample_rate", [44100, 96000])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("btype", ["highpass", "lowpass"])
def test_butter_sos_closed_form(sample_rate, order, btype):
    # The bilinear Butterworth's power response is exactly
    # 1 / (1 + (tan(pi f / fs) / tan(pi fc / fs))^(+-2N)) (Oppenheim & Schafer 7.1.2).
    cutoff_hz = 100.0
    sos = design.butter_sos(order, cutoff_hz, btype, sample_rate)
    frequencies_hz = np.geomspace(5.0, 0.49 * sample_rate, 200)
    ratio = np.tan(np.pi * frequencies_hz / sample_rate) / np.tan(np.pi * cutoff_hz / sample_rate)
    exponent = 2 * order if btype == "lowpass" else -2 * order
    expected = 1.0 / (1.0 + ratio ** exponent)
    power = np.abs(_biquad_response(sos, frequencies_hz, sample_rate)) ** 2
    np.testing.assert_allclose(power, expected, rtol=1e-6, atol=1e-14)
    at_cutoff_db = 20 * np.log10(abs(_biquad_response(sos, np.array([cutoff_hz]), sample_rate)[0]))
    assert at_cutoff_db == pytest.approx(-10 * np.log10(2), abs=1e-9)  # -3.0103 dB


def test_butter_sos_second_order_highpass_ends():
    sos = design.butter_sos(2, 1000.0, "highpass", 48000)
    ends = _biquad_response(sos, np.array([0.0, 24000.0]), 48000)
    assert abs(ends[0]) < 1e-15  # double zero at z = 1
    assert abs(ends[1]) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("order, cutoff_hz, btype", [
    (0, 100.0, "highpass"), (11, 100.0, "highpass"), (2.0, 100.0, "highpass"),
    (2, 0.0, "highpass"), (2, 22050.0, "highpass"), (2, -5.0, "lowpass"), (2, 100.0, "bandpass"),
])
def test_butter_sos_rejects(order, cutoff_hz, btype):
    with pytest.raises(ValueError):
        design.butter_sos(order, cutoff_hz, btype, 44100)


# --- sos_response --------------------------------------------------------------------

@pytest.mark.parametrize("sample_rate", SAMPLE_RATES)
def test_sos_response_matches_scipy(sample_rate):
    frequencies_hz = np.concatenate(([0.0], np.geomspace(1.0, sample_rate / 2, 300)))
    for sos in (signal.butter(4, 60.0, "highpass", fs=sample_rate, output="sos"),
                signal.butter(5, 0.4 * sample_rate, "lowpass", fs=sample_rate, output="sos"),
                # K-weighting: BS.1770-4's published 48 kHz shelf and high-pass.
                np.array([[1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0,
                           -1.69065929318241, 0.73248077421585],
                          [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621]])):
        reference = signal.sosfreqz(sos, worN=frequencies_hz, fs=sample_rate)[1]
        ours = design.sos_response(sos, frequencies_hz, sample_rate)
        assert ours.dtype == np.complex128 and ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-300)


def test_sos_response_closed_form():
    # Two cascaded one-sample delays: exp(-2 j omega); at fs/4 that is exp(-j pi) = -1.
    delays = np.array([[0.0, 1.0, 0.0, 1.0, 0.0, 0.0]] * 2)
    np.testing.assert_allclose(design.sos_response(delays, [12000.0], 48000), [-1.0], rtol=0, atol=1e-15)
    # One pole at z = a: DC gain 1 / (1 - a), Nyquist gain 1 / (1 + a).
    one_pole = np.array([1.0, 0.0, 0.0, 1.0, -0.5, 0.0])
    np.testing.assert_allclose(design.sos_response(one_pole, [0.0, 24000.0], 48000), [2.0, 2.0 / 3.0],
                               rtol=1e-15, atol=1e-15)
    assert design.sos_response(one_pole, 100.0, 48000).shape == (1,)


@pytest.mark.parametrize("sos", [np.zeros((0, 6)), np.ones((2, 5)), np.array([[1.0, 0, 0, 2.0, 0, 0]])])
def test_sos_response_rejects(sos):
    with pytest.raises(ValueError):
        design.sos_response(sos, [100.0], 48000)
