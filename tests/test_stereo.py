"""Stereo shaping: side high-pass (mono low end), width, untouched mid, streaming."""

import numpy as np
import pytest

from automix.dsp.fir import StreamingFIR, filter_whole, stream
from automix.master.stereo import StereoShaper, shape_stereo

SR = 44100


def _tone(freq_hz: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return np.sin(2 * np.pi * freq_hz * t).astype(np.float32)


def _level_db(x: np.ndarray) -> float:
    core = x[SR // 2 : -SR // 2]  # skip the FIR's edges
    return 10 * np.log10(np.mean(core.astype(np.float64) ** 2) + 1e-30)


def test_side_is_removed_below_the_crossover_and_kept_above():
    for freq_hz, expect in ((40.0, "gone"), (1000.0, "kept")):
        side_in = 0.25 * _tone(freq_hz)
        x = np.stack([side_in, -side_in])  # pure side
        y = shape_stereo(x, SR, 120.0, 1.0)
        change_db = _level_db(0.5 * (y[0] - y[1])) - _level_db(side_in)
        if expect == "gone":
            assert change_db < -55.0  # 40 Hz is an octave and a half under 120 Hz
        else:
            assert abs(change_db) < 0.02


def test_mid_is_untouched_and_width_scales_the_side():
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal((2, 3 * SR))).astype(np.float32)
    y = shape_stereo(x, SR, 120.0, 1.5)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(0.5 * (y[0] + y[1]), 0.5 * (x[0] + x[1]), atol=1e-6)
    # side energy at 1-10 kHz scaled by width^2, measured in the spectrum
    side_in = np.abs(np.fft.rfft(0.5 * (x[0] - x[1]))) ** 2
    side_out = np.abs(np.fft.rfft(0.5 * (y[0] - y[1]))) ** 2
    f = np.fft.rfftfreq(x.shape[1], 1 / SR)
    band = (f > 1000) & (f < 10000)
    assert 10 * np.log10(side_out[band].sum() / side_in[band].sum()) == pytest.approx(20 * np.log10(1.5), abs=0.05)


def test_low_end_of_a_wide_mix_folds_to_mono_without_loss():
    """Out-of-phase 50 Hz (pure side) disappears; in-phase 50 Hz (mid) stays exactly."""
    low, high = 0.3 * _tone(50.0), 0.2 * _tone(3000.0)
    x = np.stack([low + low + high, -low + low + high])  # mid: 50 Hz + 3 kHz, side: 50 Hz
    y = shape_stereo(x, SR, 120.0, 1.0)
    assert _level_db(0.5 * (y[0] - y[1])) < _level_db(low) - 55
    np.testing.assert_allclose(y[0] + y[1], x[0] + x[1], atol=2e-6)


@pytest.mark.parametrize("block", [1, 777, 4096, 100000])
def test_stereo_block_by_block_equals_whole(block):
    rng = np.random.default_rng(2)
    x = (0.2 * rng.standard_normal((2, SR))).astype(np.float32)
    whole = shape_stereo(x, SR, 150.0, 1.2)
    if block == 1:  # sample-by-sample is slow: only the first 3000 samples
        x = x[:, :3000]
        whole = shape_stereo(x, SR, 150.0, 1.2)
    streamed = stream(StereoShaper(SR, 150.0, 1.2), x, block)
    assert streamed.shape == x.shape
    np.testing.assert_array_equal(streamed, whole)  # same overlap-save grid: bit-identical


def test_stereo_passes_mono_and_neutral_settings_through():
    mono = np.zeros((1, 1000), np.float32)
    assert shape_stereo(mono, SR, 120.0, 1.2) is mono
    x = np.ones((2, 1000), np.float32)
    assert shape_stereo(x, SR, 0.0, 1.0) is x
    assert np.array_equal(stream(StereoShaper(SR, 0.0, 1.0), x, 300), x)


def test_streaming_fir_equals_whole_signal_filtering():
    rng = np.random.default_rng(3)
    taps = np.hanning(301).astype(np.float32)
    taps /= taps.sum()
    x = rng.standard_normal((2, 20000)).astype(np.float32)
    whole = filter_whole(x, taps)
    for block in (64, 300, 5000, 30000):
        np.testing.assert_array_equal(stream(StreamingFIR(taps, 2), x, block), whole)
    # aligned: a symmetric low-pass leaves a slow sine where it was
    slow = np.sin(2 * np.pi * np.arange(20000) / 10000.0).astype(np.float32)[None, :]
    np.testing.assert_allclose(filter_whole(slow, taps)[:, 500:-500], slow[:, 500:-500], atol=1e-3)


def test_filter_whole_matches_direct_convolution():
    """Independent reference: numpy's direct convolution (float64), delay removed."""
    rng = np.random.default_rng(5)
    taps = np.hanning(1001).astype(np.float32)
    taps /= taps.sum()
    x = rng.standard_normal((2, 30000)).astype(np.float32)
    reference = np.stack([np.convolve(c.astype(np.float64), taps.astype(np.float64))[500 : 500 + x.shape[1]] for c in x])
    np.testing.assert_allclose(filter_whole(x, taps), reference, atol=2e-6)


class _Miscounting:
    """A streaming stage that returns ``extra`` frames more (or fewer) than it is given."""

    def __init__(self, extra: int):
        self.extra = extra

    def process(self, block):
        return np.zeros((block.shape[0], max(0, block.shape[1] + self.extra)), dtype=np.float32)

    def flush(self):
        return np.zeros((2, 0), dtype=np.float32)


@pytest.mark.parametrize("extra", [1, -1])
def test_stream_refuses_a_stage_that_does_not_keep_the_length(extra):
    from automix.errors import AutomixError

    x = np.ones((2, 1000), dtype=np.float32)
    with pytest.raises(AutomixError, match="frames"):
        stream(_Miscounting(extra), x, 300)
