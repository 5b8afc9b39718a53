"""Tests written to kill the mutants that survived the sampled mutation analysis.

``python bench/mutation.py`` (see its docstring) changes one operator or constant at a
time in the meter, the compressor, the balancer, the renderer and the mastering stages
and runs the targeted tests; a mutant no test notices is a missing test. Each test here
checks behaviour -- rendered audio or a measured value -- against an expected value
worked out independently: a published constant (BS.1770-4, EBU Tech 3341/3342), a
signal whose answer is known in closed form, or a hand calculation written out beside
the assertion. None reads its expected value back from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from automix.dsp import dynamics
from automix.measure import loudness

RATE = 48000


# --------------------------------------------------------------------------- compressor
# A constant (DC) signal is the compressor's known-answer input: the detector (mean
# square over channels, one-pole smoothed, started at the first value) is settled from
# the first sample, so the gain is the static curve's everywhere.
#   level 0.5 -> mean square 0.25 -> 10 log10(0.25) = -6.0206 dB on the detector's scale.
DC_LEVEL = 0.5
DC_DB = 10 * math.log10(DC_LEVEL**2)


def dc(seconds: float = 0.2, channels: int = 2, level: float = DC_LEVEL) -> np.ndarray:
    return np.full((channels, int(seconds * RATE)), level, dtype=np.float32)


def static_reduction_db(over_db: float, ratio: float, knee_db: float) -> float:
    """The textbook soft-knee curve (Giannoulis, Massberg & Reiss, JAES 2012, eq. 4),
    written out here: no reduction under -knee/2, a quadratic through the knee, then
    (1 - 1/ratio) of the excess."""
    slope = 1 - 1 / ratio
    if over_db < -knee_db / 2:
        return 0.0
    if over_db < knee_db / 2:
        return slope * (over_db + knee_db / 2) ** 2 / (2 * knee_db)
    return slope * over_db


@pytest.mark.parametrize("threshold_db, ratio, knee_db", [
    (-20.0, 4.0, 6.0),   # 13.98 dB over: straight line, 0.75 * 13.98 = 10.49 dB
    (-7.0, 4.0, 6.0),    # 0.98 dB over: inside the knee, 0.75 * 3.98^2 / 12 = 0.99 dB
    (-10.0, 2.0, 4.0),   # 3.98 dB over, knee 4: line, 0.5 * 3.98 = 1.99 dB
    (0.0, 4.0, 6.0),     # 6.02 dB under: below the knee, nothing
])
def test_compressor_static_curve_on_a_settled_detector(threshold_db, ratio, knee_db):
    over = DC_DB - threshold_db
    expected_db = static_reduction_db(over, ratio, knee_db)
    x = dc()
    result = dynamics.compress(x, RATE, threshold_db=threshold_db, ratio=ratio, attack_ms=5.0, release_ms=100.0,
                               knee_db=knee_db)
    gain_db = 20 * np.log10(result.samples / x)
    np.testing.assert_allclose(gain_db, -expected_db, atol=2e-3)
    assert result.max_gain_reduction_db == pytest.approx(expected_db, abs=2e-3)
    assert result.mean_gain_reduction_db == pytest.approx(expected_db if expected_db > 0.01 else 0.0, abs=2e-3)
    # the streaming compressor has the same static curve (and statistics)
    streaming = dynamics.StreamingCompressor(RATE, 2, threshold_db=threshold_db, ratio=ratio, attack_ms=5.0,
                                             release_ms=100.0, knee_db=knee_db)
    out = dynamics.compress_in_blocks(x, streaming, block_size=1000)
    np.testing.assert_allclose(20 * np.log10(out.samples / x), -expected_db, atol=2e-3)
    assert out.max_gain_reduction_db == pytest.approx(expected_db, abs=2e-3)
    assert out.mean_gain_reduction_db == pytest.approx(expected_db if expected_db > 0.01 else 0.0, abs=2e-3)


def test_compressor_detector_is_the_mean_square_over_channels():
    """One channel at 0.5 and one silent: the mean square over channels is 0.125
    (-9.03 dB), not 0.25: threshold -20, 4:1 -> 0.75 * 10.97 = 8.23 dB of reduction, on
    both channels alike (linked)."""
    x = np.zeros((2, RATE // 5), dtype=np.float32)
    x[0] = DC_LEVEL
    expected_db = 0.75 * (10 * math.log10(0.125) + 20.0)
    result = dynamics.compress(x, RATE, threshold_db=-20.0, ratio=4.0, attack_ms=5.0, release_ms=100.0)
    np.testing.assert_allclose(20 * np.log10(result.samples[0] / x[0]), -expected_db, atol=2e-3)
    assert np.all(result.samples[1] == 0.0)


def test_ratio_one_or_less_leaves_the_signal_alone():
    x = dc()
    for ratio in (1.0, 0.5):
        result = dynamics.compress(x, RATE, threshold_db=-40.0, ratio=ratio, attack_ms=5.0, release_ms=100.0)
        assert np.array_equal(result.samples, x)
        assert result.max_gain_reduction_db == 0.0
        streaming = dynamics.StreamingCompressor(RATE, 2, threshold_db=-40.0, ratio=ratio, attack_ms=5.0, release_ms=100.0)
        assert np.array_equal(streaming.process(x), x)
        assert streaming.max_gain_reduction_db == 0.0


def test_mean_reduction_counts_only_the_samples_where_it_acts():
    """Loud DC (static reduction R = 0.75 * 13.98 dB) for 0.2 s, then 0.2 s of silence:
    with near-instant attack and release the reduction is R on the loud half and ~0 on
    the silent one, so the mean over the samples where it acts (> 0.01 dB) is R, not R/2."""
    x = np.concatenate([dc(0.2), np.zeros((2, RATE // 5), dtype=np.float32)], axis=1)
    r = 0.75 * (DC_DB + 20.0)
    whole = dynamics.compress(x, RATE, threshold_db=-20.0, ratio=4.0, attack_ms=0.01, release_ms=0.01)
    assert whole.mean_gain_reduction_db == pytest.approx(r, abs=0.01)
    comp = dynamics.StreamingCompressor(RATE, 2, threshold_db=-20.0, ratio=4.0, attack_ms=0.01, release_ms=0.01)
    streamed = dynamics.compress_in_blocks(x, comp, block_size=5000)
    assert streamed.mean_gain_reduction_db == pytest.approx(r, abs=0.01)
    assert streamed.max_gain_reduction_db == pytest.approx(r, abs=0.01)


def release_curve(release_ms: float, **options) -> tuple[np.ndarray, np.ndarray, float]:
    """0.2 s of loud DC, then quiet DC far under the threshold; returns the gain (dB)
    over the quiet part, its time axis (s) and the loud part's settled reduction."""
    loud, quiet = dc(0.2), dc(0.3, level=0.001)  # quiet: -60 dB, 40 dB under the threshold
    x = np.concatenate([loud, quiet], axis=1)
    reduction = 0.75 * (DC_DB + 20.0)
    comp = dynamics.StreamingCompressor(RATE, 2, threshold_db=-20.0, ratio=4.0, attack_ms=0.01, release_ms=release_ms,
                                        **options)
    out = dynamics.compress_in_blocks(x, comp, block_size=4096).samples
    n = loud.shape[1]
    gain_db = 20 * np.log10(out[0, n:] / x[0, n:])
    return gain_db, np.arange(1, gain_db.size + 1) / RATE, reduction


@pytest.mark.parametrize("release_ms", [20.0, 80.0])
def test_release_is_a_one_pole_decay_with_the_release_time_constant(release_ms):
    """With a near-instant attack the detector drops under the threshold at once, and
    the held reduction decays as r0 * exp(-t / release): after one time constant 36.8%
    of it is left, after three 5.0%."""
    gain_db, t, r0 = release_curve(release_ms)
    for k in (1, 2, 3):
        at = int(k * release_ms / 1000 * RATE) - 1
        assert -gain_db[at] == pytest.approx(r0 * math.exp(-t[at] * 1000 / release_ms), rel=0.03, abs=0.02)
    # the whole signal through compress() (the stem renderer's path) releases the same way
    loud, quiet = dc(0.2), dc(0.3, level=0.001)
    x = np.concatenate([loud, quiet], axis=1)
    whole = dynamics.compress(x, RATE, threshold_db=-20.0, ratio=4.0, attack_ms=0.01, release_ms=release_ms).samples
    at = int(release_ms / 1000 * RATE) - 1
    assert -20 * math.log10(whole[0, loud.shape[1] + at] / 0.001) == pytest.approx(r0 * math.exp(-1), rel=0.03)


def test_attack_time_constant_on_a_step():
    """Silence then DC: the detector's mean square rises as P (1 - exp(-t / attack)); at
    t = attack it reads P (1 - 1/e) = 0.632 P, i.e. -6.02 - 1.99 = -8.01 dB: 11.99 dB over
    a -20 dB threshold, 4:1 -> 8.99 dB of reduction."""
    attack_ms = 10.0
    x = np.concatenate([np.zeros((2, RATE // 10), dtype=np.float32), dc(0.2)], axis=1)
    out = dynamics.compress(x, RATE, threshold_db=-20.0, ratio=4.0, attack_ms=attack_ms, release_ms=1000.0).samples
    at = RATE // 10 + int(attack_ms / 1000 * RATE) - 1
    detector_db = 10 * math.log10(DC_LEVEL**2 * (1 - math.exp(-1)))
    expected = 0.75 * (detector_db + 20.0)
    assert -20 * math.log10(out[0, at] / DC_LEVEL) == pytest.approx(expected, abs=0.05)


def test_gain_smoothing_time_constant_and_initial_reduction():
    """Gain smoothing is a one-pole low-pass on the reduction: on settled DC with a
    static reduction R it rises from the initial value s0 as R + (s0 - R) exp(-t/T)."""
    smoothing_ms = 30.0
    r = 0.75 * (DC_DB + 20.0)
    for start in (0.0, 4.0):
        comp = dynamics.StreamingCompressor(RATE, 2, threshold_db=-20.0, ratio=4.0, attack_ms=5.0, release_ms=100.0,
                                            gain_smoothing_ms=smoothing_ms, initial_gain_reduction_db=start)
        x = dc(0.2)
        out = dynamics.compress_in_blocks(x, comp, block_size=3000).samples
        reduction = -20 * np.log10(out[0] / x[0])
        for k in (1, 3):
            at = int(k * smoothing_ms / 1000 * RATE) - 1
            expected = r + (start - r) * math.exp(-(at + 1) / (smoothing_ms / 1000 * RATE))
            assert reduction[at] == pytest.approx(expected, abs=0.03)
        # first sample, by the recurrence y[0] = (1 - c) R + c y[-1], y[-1] = the start
        c = math.exp(-1000 / (smoothing_ms * RATE))
        assert reduction[0] == pytest.approx((1 - c) * r + c * start, abs=3e-4)
    # a negative initial reduction is treated as none
    comp = dynamics.StreamingCompressor(RATE, 2, threshold_db=-20.0, ratio=4.0, attack_ms=5.0, release_ms=100.0,
                                        gain_smoothing_ms=smoothing_ms, initial_gain_reduction_db=-6.0)
    first = comp.process(dc(0.01))
    assert -20 * math.log10(first[0, 0] / DC_LEVEL) == pytest.approx(r * (1 - math.exp(-1000 / (smoothing_ms * RATE))),
                                                                      abs=0.01)


def test_sidechain_highpass_ignores_the_low_end():
    """A 30 Hz tone at -6 dB RMS, 12 dB over the threshold: without the sidechain
    high-pass it is compressed by 0.75 * 12 = 9 dB; through a 2nd-order 200 Hz high-pass
    it is attenuated by 10 log10(1 + (200/30)^4) = 33 dB in the detector, far under the
    threshold: no reduction."""
    t = np.arange(RATE) / RATE
    tone = (math.sqrt(2) * 10 ** (-6 / 20) * np.sin(2 * np.pi * 30 * t)).astype(np.float32)
    x = np.stack([tone, tone])
    plain = dynamics.StreamingCompressor(RATE, 2, threshold_db=-18.0, ratio=4.0, attack_ms=50.0, release_ms=100.0)
    filtered = dynamics.StreamingCompressor(RATE, 2, threshold_db=-18.0, ratio=4.0, attack_ms=50.0, release_ms=100.0,
                                            sidechain_highpass_hz=200.0)
    half = slice(RATE // 2, None)
    gain_plain = 20 * math.log10(np.sqrt(np.mean(plain.process(x)[0, half] ** 2)) / np.sqrt(np.mean(tone[half] ** 2)))
    out = filtered.process(x)
    assert gain_plain == pytest.approx(-9.0, abs=0.5)
    assert np.max(np.abs(out - x)) < 1e-6
    assert filtered.max_gain_reduction_db == 0.0


# --------------------------------------------------------------------------- the meter
def test_k_weighting_is_the_published_filter():
    """ITU-R BS.1770-4 Tables 1 and 2 give the 48 kHz coefficients; at other rates the
    response must be the same curve (within 0.03 dB from 20 Hz to 15 kHz)."""
    published = np.array([[1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
                          [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621]])
    np.testing.assert_allclose(loudness.k_weighting_sos(48000), published, atol=1e-10)
    from scipy import signal

    frequencies = np.array([20.0, 38.0, 100.0, 1000.0, 1681.0, 4000.0, 10000.0, 15000.0])
    reference = 10 * np.log10(_k_power_response(frequencies))
    for rate in (44100, 96000):
        _, h = signal.sosfreqz(loudness.k_weighting_sos(rate), worN=frequencies, fs=rate)
        np.testing.assert_allclose(20 * np.log10(np.abs(h)), reference, atol=0.03)


# BS.1770-4 Table 3 weights by loudspeaker position, in WAVE channel order for each count
# (front L/R/C 1.0, LFE excluded, surrounds 1.41 = +1.5 dB).
BS1770_WEIGHTS = {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 1.0, 1.0], 4: [1.0, 1.0, 1.41, 1.41],
                  5: [1.0, 1.0, 1.0, 1.41, 1.41], 6: [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]}


@pytest.mark.parametrize("channels", sorted(BS1770_WEIGHTS))
def test_each_channel_weighs_as_bs1770_table_3(channels):
    """A 997 Hz sine at -20 dBFS peak on one channel reads -20 - 3.01 LUFS times the
    channel's weight (+1.49 dB for a surround, nothing for the LFE)."""
    single = _tone_mono(2.0, -20.0)
    for index, weight in enumerate(BS1770_WEIGHTS[channels]):
        x = np.zeros((channels, single.size), np.float32)
        x[index] = single
        measured = loudness.integrated_loudness(x, RATE)
        if weight == 0.0:
            assert measured == loudness.SILENCE_DB
        else:
            assert measured == pytest.approx(-20.0 - 10 * math.log10(2) + 10 * math.log10(weight), abs=0.05)


def _tone_mono(seconds: float, peak_dbfs: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * 997.0 * t)).astype(np.float32)


@pytest.mark.parametrize("frames", [47999, 48000, 48001, 4799, 16384 * 3 + 5])
def test_sub_granule_energies_are_the_k_weighted_sums_over_10_ms(frames):
    """The 10 ms sub-granule energies, against the published 48 kHz K-weighting applied
    here with scipy and summed over [480 j, 480 (j + 1)): only complete sub-granules are
    returned (47 999 frames: 99 of them), and each is that sum."""
    from scipy import signal

    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal((2, frames))).astype(np.float32)
    sos = np.array([[1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
                    [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621]])
    weighted = signal.sosfilt(sos, x.astype(np.float64), axis=-1)
    power = (weighted**2).sum(axis=0)
    complete = frames // 480
    expected = power[: complete * 480].reshape(complete, 480).sum(axis=1)
    meter = loudness.LoudnessMeter(RATE, 2, true_peak=False)
    for start in range(0, frames, 7000):  # any feeding gives the same
        meter.add(x[:, start : start + 7000])
    energies, counts = meter.granule_energies(10)
    assert energies.size == complete
    np.testing.assert_allclose(energies, expected, rtol=1e-6)
    assert np.all(counts == 480)
    hundred, _ = meter.granule_energies(100)
    assert hundred.size == frames // 4800


@pytest.mark.parametrize("frequency_hz", [1000.0, 5000.0, 11025.0, 17000.0])
def test_true_peak_of_sines_between_samples(frequency_hz):
    """A sine's true peak is its amplitude wherever the samples fall: -6.02 dBTP for 0.5,
    read within -0.05/+0.03 dB (the module's stated accuracy) at any phase."""
    t = np.arange(RATE // 5) / RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # faded ends: a cut-off edge overshoots
    for phase in (0.0, 0.3, 0.7, 1.3):
        x = (0.5 * ramp * np.sin(2 * np.pi * frequency_hz * t + phase)).astype(np.float32)
        measured = loudness.true_peak_dbtp(np.stack([x, x]), RATE)
        assert -6.0206 - 0.05 <= measured <= -6.0206 + 0.03


def test_refined_peaks_recover_a_sinusoids_amplitude_between_grid_points():
    """Three grid points of A cos(w n + p) give A exactly (the refinement's identity):
    |0.8 cos(pi n / 7 + 0.3)| on a 4x grid peaks between points, and reads 0.8."""
    n = np.arange(64)
    grid = np.abs(0.8 * np.cos(np.pi * n / 7 + 0.3))[None, :]
    assert grid.max() < 0.8 - 1e-3
    assert loudness.refined_peaks(grid, 4)[0] == pytest.approx(0.8, abs=1e-9)


# --------------------------------------------------------------------------- the meter's gates
# BS.1770-4 section 2.8: blocks at or under -70 LUFS never count (J_g = {j: l_j > -70});
# the relative gate is 10 LU under the loudness of the blocks that passed.
def test_absolute_gate_is_minus_70_lufs_and_strict():
    assert loudness.gated_loudness(np.full(10, -70.0)) == loudness.SILENCE_DB
    assert loudness.gated_loudness(np.full(10, -69.5)) == pytest.approx(-69.5, abs=1e-9)
    assert loudness.gated_loudness(np.full(10, -75.0)) == loudness.SILENCE_DB
    # a block at -75 next to -20 blocks is gone before the relative gate is computed
    assert loudness.gated_loudness(np.array([-20.0, -20.0, -20.0, -75.0])) == pytest.approx(-20.0, abs=1e-9)
    # a caller's lower gate (the stems' active loudness) lets them in
    assert loudness.gated_loudness(np.full(10, -75.0), absolute_gate_lufs=-100.0) == pytest.approx(-75.0, abs=1e-9)


def test_relative_gate_by_hand():
    """Blocks -20, -20, -20, -40: their mean power is (3e-2 + 1e-4) / 4 -> -21.235 LUFS;
    the gate at -31.235 drops the -40 block: -20.000. Blocks -20, -20, -20, -28 pass it
    whole: 10 log10((3e-2 + 10^-2.8) / 4) = -21.081."""
    assert loudness.gated_loudness(np.array([-20.0, -20.0, -20.0, -40.0])) == pytest.approx(-20.0, abs=1e-9)
    expected = 10 * math.log10((3e-2 + 10**-2.8) / 4)
    assert loudness.gated_loudness(np.array([-20.0, -20.0, -20.0, -28.0])) == pytest.approx(expected, abs=1e-9)


def test_quiet_tone_under_the_absolute_gate_reads_silence_on_rendered_audio():
    """A 1 kHz sine of peak level L dBFS on both channels reads L LUFS (EBU Tech 3341
    case 1: -23 dBFS -> -23.0 LUFS, within 0.1 LU): at -75 dBFS it is under the gate."""
    t = np.arange(2 * RATE) / RATE
    for level_db, expected in ((-23.0, -23.0), (-60.0, -60.0), (-75.0, loudness.SILENCE_DB)):
        tone = (10 ** (level_db / 20) * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
        measured = loudness.integrated_loudness(np.stack([tone, tone]), RATE)
        assert measured == pytest.approx(expected, abs=0.1)


def test_sample_peak_reads_negative_peaks():
    x = np.zeros((2, RATE), dtype=np.float32)
    x[0, 100], x[1, 200] = 0.25, -0.5
    m = loudness.measure(x, RATE)
    assert m.sample_peak_dbfs == pytest.approx(20 * math.log10(0.5), abs=1e-6)


# --------------------------------------------------------------------------- renderer
def test_unmastered_bus_is_held_at_minus_1_dbtp():
    """A steady 1 kHz sine asked to be very loud: every 10 ms block peaks alike, so the
    programme peak is the sine's true peak, and an unmastered bus is lowered until it
    reads -1 dBTP (the README's bus ceiling) -- measured here by libebur128."""
    from test_loudness import ebur128
    from test_renderer import plan_for

    from automix.mix.balancer import MixPlan
    from automix.mix.renderer import render

    rate = 44100
    t = np.arange(3 * rate) / rate
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # 20 ms fades: no cut-off edge overshoots
    tone = (0.1 * ramp * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None, :]
    plan = MixPlan((plan_for("a", target_lufs=-3.0),), None, "test", 2.0)  # +2 LUFS: peaks near +2 dBTP
    result = render([tone], rate, plan)
    # at the ceiling, never over it (the renderer reads each 10 ms block's true peak on a
    # short excerpt, whose cut edges read up to ~0.07 dB high: a safe-side error)
    assert -1.1 <= ebur128(result.mix, rate)[1] <= -1.0 + 0.01
    assert -1.1 <= 20 * math.log10(np.abs(result.mix).max()) <= -1.0
    # the stem sums to -3 LUFS; +2 LUFS asked is +5 dB, less the ~3 dB a stereo 1 kHz sine
    # at +2 LUFS peaks over -1 dBTP (its peak level in dBFS equals its loudness in LUFS)
    assert result.bus_gain_db == pytest.approx(5.0 - 3.0, abs=0.15)
    # exported stems carry the bus gain and sum to the mix
    kept = render([tone], rate, plan, keep_stems=True)
    np.testing.assert_array_equal(kept.mix, kept.stems[0].samples)
    assert -1.1 <= ebur128(kept.mix, rate)[1] <= -1.0 + 0.01
    # with mastering to follow, the bus goes on at the loudness asked for, peaks and all
    follows = render([tone], rate, plan, mastering_follows=True, keep_stems=True)
    assert ebur128(follows.mix, rate)[0] == pytest.approx(2.0, abs=0.1)
    assert "not lowered for peaks" in follows.bus_rule and "lowered" in result.bus_rule


@pytest.mark.parametrize("position", [-0.5, 0.5, -1.0, 1.0])
def test_stereo_balance_turns_the_far_side_down_by_the_constant_power_law(position):
    """A stereo stem at ``position``: the near side is kept (gain 1), the far side gets
    sqrt(2) times its constant-power gain -- at -0.5 the right side sqrt(2) sin(pi/8) =
    0.5412 (-5.33 dB), at +-1 the far side nothing."""
    from automix.mix.renderer import pan

    x = np.stack([np.full(100, 0.5, np.float32), np.full(100, 0.25, np.float32)])
    angle = (position + 1) * math.pi / 4
    expected_left = min(1.0, math.sqrt(2) * math.cos(angle))
    expected_right = min(1.0, math.sqrt(2) * math.sin(angle))
    out = pan(x, position)
    np.testing.assert_allclose(out[0], 0.5 * expected_left, atol=1e-6)
    np.testing.assert_allclose(out[1], 0.25 * expected_right, atol=1e-6)
    far = out[1] if position < 0 else out[0]
    near = out[0] if position < 0 else out[1]
    assert near[0] in (np.float32(0.5), np.float32(0.25))
    if abs(position) == 0.5:
        assert far[0] / (0.25 if position < 0 else 0.5) == pytest.approx(0.5412, abs=1e-4)


def test_programme_peak_sets_aside_half_a_percent_of_blocks_and_says_where():
    """10 s = 1000 blocks of 10 ms: 0.5% of them (5) may be isolated events. Four clicks
    at 0 dBFS over recurring hits at -12 dBFS are all set aside; the programme peak is the
    hits' level, found in the loud passage (3.0-3.5 s) where the hits are."""
    from automix.mix.renderer import programme_peak_dbtp

    rate = 44100
    x = np.zeros((1, 10 * rate), np.float32)
    x[0, 3 * rate : int(3.5 * rate) : rate // 50] = 0.25  # a hit every 20 ms in 3.0-3.5 s: 25 blocks
    x[0, int(0.5 * rate) : 6 * rate : rate // 20] = 0.05  # quieter hits elsewhere
    for t in (1.0, 5.0, 7.0, 9.0):
        x[0, int(t * rate) + 7] = 1.0
    peak_db, where_s, outliers = programme_peak_dbtp(x, rate)
    assert peak_db == pytest.approx(-12.0, abs=0.7)
    assert 3.0 <= where_s < 3.5
    assert sorted(round(t, 2) for t, _ in outliers) == [1.0, 5.0, 7.0, 9.0]


def test_a_silent_group_is_not_raised():
    """A group whose sum is under the active gate (-120 LUFS: digital near-silence)
    cannot be measured: it gets no group gain (raising -200 to its plan would be +190 dB)."""
    from test_renderer import plan_for

    from automix.mix.balancer import MixPlan
    from automix.mix.renderer import render

    rate = 44100
    t = np.arange(2 * rate) / rate
    tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    hiss = (1e-9 * np.random.default_rng(1).standard_normal((1, t.size))).astype(np.float32)  # -180 dBFS
    plans = (plan_for("tone", target_lufs=-10.0, group="vocals", group_lufs=-10.0),
             plan_for("hiss", target_lufs=-10.0, group="drums", group_lufs=-10.0))
    result = render([tone, hiss], rate, MixPlan(plans, None, "test", -20.0), keep_stems=True, mastering_follows=True)
    assert np.abs(result.stems[1].samples).max() < 1e-6
    assert "drums" not in result.groups
    assert result.stems[1].makeup_db == 0.0 and result.stems[1].group_gain_db == 0.0


# --------------------------------------------------------------------------- mastering chain
def _k_power_response(frequencies_hz: np.ndarray) -> np.ndarray:
    """|H|^2 of K-weighting from the coefficients published in ITU-R BS.1770-4 (48 kHz)."""
    from scipy import signal

    shelf_b, shelf_a = [1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585]
    hp_b, hp_a = [1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621]
    _, h1 = signal.freqz(shelf_b, shelf_a, worN=frequencies_hz, fs=48000)
    _, h2 = signal.freqz(hp_b, hp_a, worN=frequencies_hz, fs=48000)
    return np.abs(h1 * h2) ** 2


def test_tonal_loudness_change_is_k_weighted_band_power():
    """Bands at 100 Hz, 1 kHz and 10 kHz at -40, -30 and -50 dB; +6 dB at 1 kHz raises
    the K-weighted power by w2 10^-3 (10^0.6 - 1) over w1 10^-4 + w2 10^-3 + w3 10^-5."""
    from types import SimpleNamespace

    from automix.master.chain import tonal_loudness_change_db
    from automix.master.tonal import TonalMove

    centres = np.array([100.0, 1000.0, 10000.0])
    levels = np.array([-40.0, -30.0, -50.0])  # quiet bands: powers well under 1
    w = _k_power_response(centres)
    before = np.sum(w * 10 ** (levels / 10))
    for gains in ([0.0, 6.0, 0.0], [-3.0, 0.0, 9.0]):
        after = np.sum(w * 10 ** ((levels + np.array(gains)) / 10))
        analysis = SimpleNamespace(band_levels_db=tuple(levels), sample_rate=48000)
        move = TonalMove(tuple(centres), tuple(gains), "test")
        assert tonal_loudness_change_db(analysis, move) == pytest.approx(10 * math.log10(after / before), abs=0.01)
    # the same gain everywhere changes the loudness by exactly that gain
    move = TonalMove(tuple(centres), (2.5, 2.5, 2.5), "test")
    assert tonal_loudness_change_db(SimpleNamespace(band_levels_db=tuple(levels), sample_rate=48000), move) == \
        pytest.approx(2.5, abs=1e-9)
    # no power in any band: no change (not 0/0)
    silent = SimpleNamespace(band_levels_db=(-np.inf,) * 3, sample_rate=48000)
    assert tonal_loudness_change_db(silent, move) == 0.0


def test_input_warnings_for_clipping_and_a_dc_offset_over_1_percent():
    from types import SimpleNamespace

    from automix.master.chain import input_warnings

    assert input_warnings(SimpleNamespace(clipped_samples=0, dc_offset=0.005)) == ()
    warned = input_warnings(SimpleNamespace(clipped_samples=12, dc_offset=0.015))
    assert len(warned) == 2 and "12 samples" in warned[0] and "0.015" in warned[1]


@pytest.fixture(scope="module")
def dynamic_mix():
    from test_glue import SR, kit_and_pad

    from automix.io.audio import Audio
    from automix.measure.analyzer import analyze

    x = kit_and_pad(6.0)
    return x, SR, analyze(Audio(x, SR))


def _plan_chain(dynamic_mix, settings, amount):
    """plan_chain on the mix (newer versions take the analysis pass's measurements)."""
    from automix.io.audio import Audio
    from automix.master import chain

    x, rate, analysis = dynamic_mix
    measured = analysis
    if hasattr(chain, "measure_source"):
        from automix.io.stream import array_source

        measured = chain.measure_source(array_source(Audio(x, rate)), analysis)
    return chain.plan_chain(measured, settings, amount)


def test_amount_scales_each_corrective_move_by_its_share(dynamic_mix):
    """``amount`` is documented as the share of each corrective move: the width's
    distance from 1, the mono-bass frequency, each EQ band's gain and the glue ratio's
    excess over 1:1 -- at 0.5 half of each, at 0 none."""
    from automix.presets import load_preset

    settings = load_preset("pop").master
    full = _plan_chain(dynamic_mix, settings, 1.0)
    assert full.glue.act and full.glue.ratio > 1.0  # this mix is dynamic enough for glue
    half = _plan_chain(dynamic_mix, settings, 0.5)
    assert half.glue.act and "(at amount 0.5)" in half.glue.reason
    assert half.glue.ratio == pytest.approx(1.0 + (full.glue.ratio - 1.0) / 2, abs=1e-9)
    assert half.stereo_width == pytest.approx(1.0 + (settings.stereo_width - 1.0) / 2, abs=1e-9)
    assert half.mono_below_hz == pytest.approx(settings.mono_below_hz / 2, abs=1e-9)
    np.testing.assert_allclose(half.tonal.gains_db, np.asarray(full.tonal.gains_db) / 2, atol=1e-9)
    none = _plan_chain(dynamic_mix, settings, 0.0)
    assert not none.glue.act and none.stereo_width == 1.0 and none.mono_below_hz == 0.0
    assert not any(none.tonal.gains_db)


def test_master_report_carries_what_was_measured_on_the_master(dynamic_mix):
    """The report (``to_dict``) holds every measurement, rounded to 0.001, and its output
    loudness and true peak are the master's as libebur128 reads them."""
    import json

    from test_loudness import ebur128

    from automix.io.audio import Audio
    from automix.master.chain import master
    from automix.presets import load_preset

    x, rate, _ = dynamic_mix
    samples, result = master(Audio(x[:, : 4 * rate], rate), load_preset("pop").master)
    report = json.loads(json.dumps(result.to_dict()))
    lufs, peak, _ = ebur128(samples, rate)
    assert report["output_lufs"] == pytest.approx(lufs, abs=0.1)
    assert report["output_true_peak_dbtp"] == pytest.approx(peak, abs=0.2)
    for key in ("input_lufs", "output_lufs", "gain_db", "limiter_threshold_db", "limiter_max_gain_reduction_db",
                "stereo_width", "mono_below_hz"):
        assert report[key] == pytest.approx(getattr(result, key), abs=6e-4)
    assert report["status"] == result.status and report["renders"] == result.renders
    assert report["settings"]["target_lufs"] == load_preset("pop").master.target_lufs
    assert report["glue"]["act"] == result.glue.act


# --------------------------------------------------------------------------- balancer
def _stem(name: str, role: str, levels: dict[int, float], **analysis):
    """A StemInfo whose analysis is given by hand: third-octave levels (index -> dB,
    else -60 dB) and whatever scalar fields a test needs."""
    from types import SimpleNamespace

    from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ
    from automix.mix.balancer import StemInfo

    bands = np.full(len(THIRD_OCTAVE_CENTRES_HZ), -60.0)
    for index, level in levels.items():
        bands[index] = level
    return StemInfo(name, role, "test", SimpleNamespace(band_levels_db=tuple(bands), **analysis))


# lead (a vocal) strongest at 316 Hz (band 11, -10 dB) and 2 kHz (band 19, -12 dB)
LEAD_BANDS = {11: -10.0, 19: -12.0, 9: -5.0}  # 200 Hz louder still, but under the 250 Hz-5 kHz presence band


@pytest.mark.parametrize("accompaniment_db, max_cut_db, expected_cut_db", [
    (-14.0, 6.0, -1.0),   # -14 vs the lead's -10 - 6 = -16: 2 dB of excess, half of it cut
    (-4.0, 3.0, -3.0),    # 12 dB of excess: half is 6, bounded by the preset's 3 dB
    (-15.5, 6.0, None),   # 0.5 dB of excess: a 0.25 dB cut is under 0.5 dB, none
    (-17.0, 6.0, None),   # under the lead - 6 dB: no competition
])
def test_masking_cut_is_half_the_excess_over_lead_minus_6_db_and_bounded(accompaniment_db, max_cut_db, expected_cut_db):
    from automix.mix.balancer import masking_cuts

    lead = _stem("vox", "vocal", LEAD_BANDS)
    keys = _stem("keys", "keys", {11: accompaniment_db, 19: -30.0, 9: 0.0})
    cuts = masking_cuts(keys, 0.0, lead, 0.0, max_cut_db)
    if expected_cut_db is None:
        assert cuts == ()
    else:
        assert len(cuts) == 1
        assert cuts[0].frequency_hz == pytest.approx(316.2, abs=0.1)
        assert cuts[0].gain_db == pytest.approx(expected_cut_db, abs=1e-9)
        assert cuts[0].q == 2.0
    # planned levels count: the lead planned 20 dB louder leaves nothing in its way
    assert masking_cuts(keys, 0.0, lead, 20.0, max_cut_db) == ()
    # the lead itself, the rhythm section, and a preset with no cuts: never cut
    assert masking_cuts(lead, 0.0, lead, 0.0, max_cut_db) == ()
    assert masking_cuts(_stem("bass", "bass", {11: 0.0}), 0.0, lead, 0.0, max_cut_db) == ()
    assert masking_cuts(keys, 0.0, lead, 0.0, 0.0) == ()
    assert masking_cuts(keys, 0.0, None, 0.0, max_cut_db) == ()


def test_masking_cut_bands_are_the_leads_two_strongest_an_octave_apart():
    """Lead strongest at 316 Hz, then 400 Hz (a third away: skipped), then 2 kHz; the
    accompaniment competes in all three -> cuts at 316 Hz and 2 kHz only."""
    from automix.mix.balancer import masking_cuts

    lead = _stem("vox", "vocal", {11: -10.0, 12: -11.0, 19: -12.0})
    keys = _stem("keys", "keys", {11: -12.0, 12: -12.0, 19: -14.0})
    cuts = masking_cuts(keys, 0.0, lead, 0.0, 6.0)
    assert [round(c.frequency_hz) for c in cuts] == [316, 1995]
    # 316 Hz: -12 vs -16 -> 4 dB excess -> 2 dB; 2 kHz: -14 vs -18 -> 2 dB
    assert [c.gain_db for c in cuts] == pytest.approx([-2.0, -2.0], abs=1e-9)


def test_estimated_continuity_is_mean_over_active_power():
    """rms -13.01 dBFS against an active rms of 0 - 10 = -10 dBFS (peak - crest): half the
    power, so it plays half the time: continuity 0.5; presence: 1-5 kHz holds 1/10 of
    the power (-10 dB) -> (-10 + 20) / 20 = 0.5."""
    from types import SimpleNamespace

    from automix.mix.balancer import estimated_lead_features

    analysis = SimpleNamespace(sample_peak_dbfs=0.0, crest_factor_db=10.0, rms_dbfs=-10.0 + 10 * math.log10(0.5),
                               band_level_db=lambda low, high: -10.0 if (low, high) == (1000.0, 5000.0) else 0.0)
    features = estimated_lead_features(analysis)
    assert features.continuity == pytest.approx(0.5, abs=1e-9)
    assert features.presence == pytest.approx(0.5, abs=1e-9)
    assert features.melodic == 0.5


def test_plan_report_is_json_with_rounded_numbers():
    import json

    from automix.mix.balancer import CompressorPlan, MixPlan, StemPlan

    stem = StemPlan(name="a", role="keys", role_reason="r", target_lufs=-12.34567, gain_db=1.23456, gain_rule="g",
                    highpass_hz=80.0, highpass_order=2, highpass_rule="h", eq_cuts=(), pan=0.25, pan_rule="p",
                    compressor=CompressorPlan(-20.12345, 2.5, 10.0, 100.0, "c"), compressor_rule="c")
    data = json.loads(json.dumps(MixPlan((stem,), "a", "lead", -20.0).to_dict()))
    assert data["stems"][0]["target_lufs"] == -12.346
    assert data["stems"][0]["compressor"]["threshold_db"] == -20.123
    assert data["lead"] == "a" and data["bus_lufs"] == -20.0


def _lead_candidates(margin: float, roles=("woodwinds", "other")):
    from automix.mix.balancer import LeadFeatures

    a = _stem("take_a", roles[0], {})
    b = _stem("take_b", roles[1], {})
    from dataclasses import replace

    return [replace(a, lead_features=LeadFeatures(0.5, 0.5, 0.5)),
            replace(b, lead_features=LeadFeatures(0.5 + margin, 0.5, 0.5))]


def test_lead_score_adds_the_three_audio_scores_and_the_role_prior():
    """No vocal: the score is continuity + presence + melodic + the role's prior, 0.3 x
    (1 - rank / 9) along LEAD_ORDER (woodwinds rank 1: 0.267; other, rank 9: 0). So
    "other" needs audio scores more than 0.267 higher to lead over woodwinds."""
    from automix.mix.balancer import LeadFeatures, choose_lead

    assert choose_lead(_lead_candidates(0.25))[0] == "take_a"
    assert choose_lead(_lead_candidates(0.28))[0] == "take_b"
    # melodic counts for, not against: a clear pitch (1.0) beats none (0.0) at equal rest
    from dataclasses import replace

    tune = replace(_stem("tune", "guitar", {}), lead_features=LeadFeatures(0.5, 0.5, 1.0))
    pad = replace(_stem("pad", "guitar", {}), lead_features=LeadFeatures(0.7, 0.7, 0.0))
    assert choose_lead([pad, tune])[0] == "tune"  # 2.0 against 1.4
    # the file name's "solo" adds 0.5
    solo = replace(_stem("gtr solo", "guitar", {}), lead_features=LeadFeatures(0.5, 0.5, 0.6))
    assert choose_lead([tune, solo])[0] == "gtr solo"  # 1.6 + 0.5 against 2.0


def test_a_tie_between_lead_candidates_goes_to_the_first_name():
    from dataclasses import replace

    from automix.mix.balancer import LeadFeatures, choose_lead

    same = LeadFeatures(0.5, 0.5, 0.5)
    stems = [replace(_stem(name, "guitar", {}), lead_features=same) for name in ("b gtr", "a gtr")]
    assert choose_lead(stems)[0] == "a gtr"


def test_stems_of_one_role_share_the_groups_level_each_3_db_down():
    """Two keyboard stems alone in the harmony group: their powers add up to the group's
    level, so each sits 10 log10(2) = 3.01 dB under it, whatever the role's own LU."""
    from automix.mix.balancer import group_targets
    from automix.presets import load_preset

    pop = load_preset("pop")
    stems = [_stem("keys 1", "keys", {}), _stem("keys 2", "keys", {}), _stem("vox", "vocal", {})]
    targets, groups = group_targets(stems, pop, "vox")
    harmony = pop.groups.as_dict()["harmony"]
    assert {g.name: g.stems for g in groups}["harmony"] == ("keys 1", "keys 2")
    for name in ("keys 1", "keys 2"):
        target, rule, group, group_lufs = targets[name]
        assert group == "harmony" and group_lufs == harmony
        assert target == pytest.approx(harmony - 10 * math.log10(2), abs=1e-9)
        assert "shared by 2 stems (-3.0 dB each)" in rule and "2 stems scaled together" in rule
    assert targets["vox"][0] == pytest.approx(pop.groups.as_dict()["vocals"], abs=1e-9)
    assert "shared by" not in targets["vox"][1] and "scaled together" not in targets["vox"][1]
    # the old per-role API: n stems of a role each 10 log10(n) dB under the role's level
    from automix.mix.balancer import target_loudness

    target, rule = target_loudness(stems[0], pop.roles["keys"], 4)
    assert target == pytest.approx(pop.roles["keys"].loudness_lu - 10 * math.log10(4), abs=1e-9)
    assert "shared by 4 keys stems (-6.0 dB each)" in rule


def test_highpass_an_octave_under_the_content_within_the_roles_limit():
    """Content from 200 Hz (band 9) within 30 dB of the strongest band: cutoff 100 Hz;
    the same stem with content from 63 Hz: 31.5 Hz; from 25 Hz: never under 20 Hz; and a
    role whose limit is 0 (the kick) gets no high-pass at all."""
    from dataclasses import replace

    from automix.mix.balancer import highpass_cutoff
    from automix.presets import load_preset

    rules = replace(load_preset("pop").roles["keys"], hpf_max_hz=150.0)
    base = {index: -70.0 for index in range(9)}  # 40 dB under the strongest: rumble, ignored
    cases = [({**base, 9: -25.0, 16: 0.0}, 199.526 / 2), ({**base, 4: -29.0, 16: 0.0}, 63.0957 / 2),
             ({**base, 0: -20.0, 16: 0.0}, 20.0), ({**base, 12: -10.0, 16: 0.0}, 150.0)]
    for levels, expected in cases:
        cutoff, _ = highpass_cutoff(_stem("keys", "keys", levels), rules)
        assert cutoff == pytest.approx(expected, abs=0.01)
    kick_rules = load_preset("pop").roles["kick"]
    assert kick_rules.hpf_max_hz == 0.0
    assert highpass_cutoff(_stem("kick", "kick", {16: 0.0}), kick_rules)[0] is None


# --------------------------------------------------------------------------- the chain's stages and sinks
def test_the_decided_glue_is_in_the_chain(dynamic_mix):
    """A plan with a flat EQ, width 1 and no mono bass, and glue that acts: the chain
    before the limiter must turn the loud passages down (the glue's ~3 dB depth), not
    pass the signal."""
    from test_glue import forced

    from automix.master.chain import ChainPlan, pre_limiter
    from automix.master.tonal import TonalMove

    x, rate, _ = dynamic_mix
    decision = forced(x, 3.0)
    plan = ChainPlan(TonalMove((1000.0,), (0.0,), "flat"), 0.0, 1.0, decision)
    chain = pre_limiter(plan, rate, 2)
    out = np.concatenate([chain.process(x), chain.flush()], axis=1)[:, : x.shape[1]]
    late = slice(3 * rate, None)
    change_db = 10 * math.log10(np.mean(out[:, late].astype(np.float64) ** 2) / np.mean(x[:, late].astype(np.float64) ** 2))
    assert change_db < -1.0


def test_file_sink_reads_back_what_it_wrote(tmp_path):
    """A 24-bit WAV render read back (for --codec-safe) is the block written, within
    24-bit quantisation (2^-23)."""
    from automix.master.chain import FileSink

    block = (0.5 * np.sin(np.linspace(0, 200, 4800))).astype(np.float32)
    block = np.stack([block, -block])
    temp, destination = tmp_path / "render.part.wav", tmp_path / "master.wav"
    sink = FileSink(str(temp), destination, 48000, 2, "24", "WAV")
    sink.start()
    sink.write(block)
    sink.finish()
    assert not destination.exists()  # the render goes to the temporary file only
    np.testing.assert_allclose(sink.read(), block, atol=2.0**-23)


def test_master_to_file_writes_the_master_by_default(dynamic_mix, tmp_path):
    """Without ``dry_run`` the master is written, at the preset's loudness and under its
    ceiling as libebur128 reads the file."""
    import soundfile as sf
    from test_loudness import ebur128

    from automix.io.audio import Audio
    from automix.io.stream import array_source
    from automix.master.chain import master_to_file
    from automix.presets import load_preset

    x, rate, _ = dynamic_mix
    settings = load_preset("pop").master
    output = tmp_path / "master.wav"
    result = master_to_file(array_source(Audio(x[:, : 4 * rate], rate)), output, settings)
    data, file_rate = sf.read(output, dtype="float64", always_2d=True)
    assert file_rate == rate and data.shape == (4 * rate, 2)
    lufs, peak, _ = ebur128(data.T, rate)
    assert lufs == pytest.approx(settings.target_lufs, abs=0.1)
    assert peak <= settings.ceiling_dbtp + 0.05
    assert result.output_lufs == pytest.approx(lufs, abs=0.1)


# --------------------------------------------------------------------------- the loop's model
def _tone(seconds: float, peak_dbfs: float, rate: int = 48000, frequency_hz: float = 997.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    x = (10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)
    return np.stack([x, x])


@pytest.mark.parametrize("seconds, peak_dbfs", [(2.0, -60.0), (0.4, -20.0)])
def test_model_loudness_of_quiet_and_shortest_signals_agrees_with_libebur128(seconds, peak_dbfs):
    """The loop's model (hop energies) reads a stereo 997 Hz sine at -60 dBFS as -60 LUFS,
    and a signal of exactly one 400 ms block as libebur128 does."""
    from test_loudness import ebur128

    from automix.master.loop import collect_features, linear_loudness, predict

    x = _tone(seconds, peak_dbfs)
    features = collect_features(x, 48000)
    expected = ebur128(x, 48000)[0]
    assert expected == pytest.approx(peak_dbfs, abs=0.1)
    assert linear_loudness(features) == pytest.approx(expected, abs=0.02)
    unlimited = predict(features, 6.0, 0.0, 50.0)  # +6 dB, threshold far over the peaks
    assert unlimited.integrated_lufs == pytest.approx(expected + 6.0, abs=0.02)
    assert unlimited.max_gain_reduction_db == pytest.approx(0.0, abs=1e-6)


def test_solve_gain_is_the_linear_gain_when_nothing_is_limited_and_stops_where_a_sine_saturates():
    """A stereo 997 Hz sine at -20 dBFS reads -20 LUFS. Under a -10 dBTP threshold,
    +5 dB reaches -15 LUFS untouched; -5 LUFS is out of reach: a limited sine's loudness
    stops at its ceiling, -10 LUFS, and the answer is reported unreachable."""
    from automix.master.loop import collect_features, solve_gain

    features = collect_features(_tone(3.0, -20.0), 48000)
    reached, ok = solve_gain(features, -15.0, -10.0, 50.0)
    assert ok and reached.gain_db == pytest.approx(5.0, abs=0.02)
    assert reached.integrated_lufs == pytest.approx(-15.0, abs=0.03)
    missed, ok = solve_gain(features, -5.0, -10.0, 50.0)
    assert not ok
    assert missed.integrated_lufs == pytest.approx(-10.0, abs=0.2)


def test_model_has_no_loudness_under_one_400_ms_block():
    """0.3 s holds no 400 ms gating block: BS.1770 gives no integrated loudness (libebur128
    reads -inf), the model its silence value."""
    from test_loudness import ebur128

    from automix.master.loop import collect_features, linear_loudness, predict

    x = _tone(0.3, -20.0)
    assert ebur128(x, 48000)[0] == -math.inf
    features = collect_features(x, 48000)
    assert linear_loudness(features) == loudness.SILENCE_DB
    assert predict(features, 0.0, 0.0, 50.0).integrated_lufs == loudness.SILENCE_DB


def test_model_programme_reduction_is_over_loud_granules_and_deepest_is_the_spike():
    """2 s of a 0 dBFS sine with one sample at +6 dBFS at 1.05 s, then 20 s at -30 dBFS,
    limited at -6 dBTP (20 ms release): of the 20 loud granules 19 are reduced by 6 dB
    and the spike's by about 12 dB, so the reduction exceeded in 10% of them (the
    programme figure) is 6 dB and the deepest 12 dB, at 1.05 s. The quiet part -- more
    than 20 dB under the loudest granule, not reduced -- is left out of the programme
    figure (with it, the 91% of granules that are quiet would make it 0 dB)."""
    from automix.master.loop import collect_features, predict

    rate = 48000
    loud, quiet = _tone(2.0, 0.0), _tone(20.0, -30.0)
    loud[:, int(1.05 * rate)] = 2.0
    features = collect_features(np.concatenate([loud, quiet], axis=1), rate)
    p = predict(features, 0.0, -6.0, 20.0)
    assert p.programme_gain_reduction_db == pytest.approx(6.0, abs=0.3)
    assert p.max_gain_reduction_db == pytest.approx(12.0, abs=0.5)
    assert p.deepest_at_s == pytest.approx(1.05, abs=0.01)


def _preset(pan_width: float = 0.5, **roles):
    """The pop preset with a narrower pan width (so scaling by it is visible) and the
    given roles' rules replaced."""
    from dataclasses import replace

    from automix.presets import load_preset

    pop = load_preset("pop")
    rules = dict(pop.roles)
    for role, changes in roles.items():
        rules[role] = replace(rules[role], **changes)
    return replace(pop, mix=replace(pop.mix, pan_width=pan_width), roles=rules)


def test_pan_positions_by_the_documented_rules():
    """width 0.5; keys spread 0.6, overheads 0.2 (pairs go at least 0.8), backing vocals
    0.7: OH pair at -+0.8 x 0.5 = -+0.4; two keys at -+0.3; the only guitar (spread 0.8)
    half its spread to one side, -0.2; a vocal besides the lead -0.7 x 0.5 / 2 = -0.175;
    the lead in the centre."""
    from dataclasses import replace

    from automix.mix.balancer import pan_positions

    preset = _preset(0.5, keys={"pan_spread": 0.6}, overheads={"pan_spread": 0.2}, guitar={"pan_spread": 0.8},
                     backing_vocal={"pan_spread": 0.7})
    oh_l = replace(_stem("OH_L", "overheads", {}), stereo_side="L", pair_key="OH")
    oh_r = replace(_stem("OH_R", "overheads", {}), stereo_side="R", pair_key="OH")
    stems = [oh_l, oh_r, _stem("keys 1", "keys", {}), _stem("keys 2", "keys", {}), _stem("gtr", "guitar", {}),
             _stem("vox", "vocal", {}), _stem("vox double", "vocal", {})]
    positions = {name: pan for name, (pan, _) in pan_positions(stems, preset, "vox").items()}
    assert positions["OH_L"] == pytest.approx(-0.4) and positions["OH_R"] == pytest.approx(0.4)
    assert positions["keys 1"] == pytest.approx(-0.3) and positions["keys 2"] == pytest.approx(0.3)
    assert positions["gtr"] == pytest.approx(-0.2)
    assert positions["vox"] == 0.0
    assert positions["vox double"] == pytest.approx(-0.175)
    # two vocals besides the lead spread across -+0.35
    more = pan_positions(stems + [_stem("vox harm", "vocal", {})], preset, "vox")
    assert sorted(more[n][0] for n in ("vox double", "vox harm")) == pytest.approx([-0.35, 0.35])
    # half a pair (its partner missing) is a single stem of its role: half the spread
    alone = {name: pan for name, (pan, _) in pan_positions([oh_l, _stem("vox", "vocal", {})], preset, "vox").items()}
    assert alone["OH_L"] == pytest.approx(-0.2 * 0.5 / 2)


@pytest.mark.parametrize("lra_lu, expected_scale", [(2.0, 0.75), (8.0, 1.125), (14.0, 1.5), (20.0, 1.5), (0.0, 0.75)])
def test_compressor_ratio_follows_the_loudness_range(lra_lu, expected_scale):
    """Ratio = the role's ratio x (0.75 at 2 LU rising linearly to 1.5 at 14 LU, held
    outside); threshold = the loud moments' RMS at the planned gain, less the depth;
    attack doubled for a crest factor over 18 dB."""
    from automix.mix.balancer import compressor_settings

    preset = _preset(keys={"compression_ratio": 3.0, "compression_depth_db": 4.0, "attack_ms": 10.0})
    stem = _stem("keys", "keys", {}, active_lufs=-20.0, loud_rms_dbfs=-15.0, loudness_range_lu=lra_lu,
                 crest_factor_db=12.0)
    plan, _ = compressor_settings(stem, -26.0, preset.roles["keys"])
    assert plan.ratio == pytest.approx(3.0 * expected_scale, abs=1e-9)
    assert plan.threshold_db == pytest.approx(-15.0 + (-26.0 + 20.0) - 4.0, abs=1e-9)
    assert plan.attack_ms == 10.0
    transient = _stem("keys", "keys", {}, active_lufs=-20.0, loud_rms_dbfs=-15.0, loudness_range_lu=lra_lu,
                      crest_factor_db=20.0)
    assert compressor_settings(transient, -26.0, preset.roles["keys"])[0].attack_ms == 20.0


def test_no_compressor_under_1_05_to_1():
    """Ratio 1.3 x 0.75 (a steady part, 2 LU) = 0.975: under 1.05:1, no compressor; ratio
    1.5 x 0.75 = 1.125: a compressor."""
    from automix.mix.balancer import compressor_settings

    for ratio, expected in ((1.3, None), (1.5, 1.125)):
        preset = _preset(keys={"compression_ratio": ratio})
        stem = _stem("keys", "keys", {}, active_lufs=-20.0, loud_rms_dbfs=-15.0, loudness_range_lu=2.0, crest_factor_db=12.0)
        plan, _ = compressor_settings(stem, -20.0, preset.roles["keys"])
        assert (plan is None) if expected is None else plan.ratio == pytest.approx(expected, abs=1e-9)


# --------------------------------------------------------------------------- limiter
def test_limiter_hold_is_the_asked_time_rounded_up_to_whole_samples():
    """A lone +6 dB detector spike is held at full depth for the hold time: 5 ms at 48 kHz
    is exactly 240 samples, so 5 ms holds as long as 4.99 ms (239.5 -> 240 samples) and
    one sample less than 5.01 ms (240.5 -> 241)."""
    from automix.master.limiter import gain_reduction_db

    envelope = np.zeros(5000)
    envelope[1000] = 2.0

    def held(hold_ms: float) -> int:
        reduction = gain_reduction_db(envelope, 48000, 0.0, 50.0, hold_ms=hold_ms, lookahead_ms=1.5)
        assert reduction.max() == pytest.approx(20 * math.log10(2.0), abs=1e-6)
        return int(np.count_nonzero(reduction >= 20 * math.log10(2.0) - 1e-4))

    exact = held(5.0)
    assert held(5.0 - 0.5 / 48) == exact
    assert held(5.0 + 0.5 / 48) == exact + 1
    assert held(10.0) == exact + 240


# --------------------------------------------------------------------------- tonal balance
def _tonal(tilt_db_per_octave: float, *, duration_s: float = 30.0, lra_lu: float = 6.0, plr_db: float = 15.0,
           amount: float = 0.5, offset_db: float = -20.0, dips: dict[int, float] | None = None,
           band_spread_db: float | None = None):
    """tonal_balance on a spectrum that is the preset's target plus a pure tilt (so the
    fit is exact and the residuals zero) -- the target curve typed from the MUSDB18
    curve module, not from tonal."""
    from dataclasses import replace
    from types import SimpleNamespace

    from automix.master import tonal_targets
    from automix.master.tonal import tonal_balance
    from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ
    from automix.presets import load_preset

    settings = replace(load_preset("pop").master, tonal_amount=amount)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ)
    target = tonal_targets.genre_curve_db(centres, settings.tilt_db_per_octave, settings.bass_db, settings.air_db)
    levels = target + offset_db + tilt_db_per_octave * np.log2(centres / 1000.0)
    for index, dip in (dips or {}).items():
        levels[index] += dip
    analysis = SimpleNamespace(band_levels_db=tuple(levels), duration_s=duration_s, loudness_range_lu=lra_lu,
                               plr_db=plr_db, sample_rate=48000)
    if band_spread_db is not None:
        analysis.band_spread_db = tuple(np.full(centres.size, band_spread_db))
    return centres, np.asarray(tonal_balance(analysis, settings).gains_db), settings


def test_a_spectrum_on_the_target_or_within_the_tilt_tolerance_is_left_alone():
    for tilt in (0.0, 2.0, -2.0):  # the tolerance is +-2.5 dB/octave
        _, gains, _ = _tonal(tilt)
        assert not np.any(gains)


def test_tonal_amount_zero_says_the_eq_is_off():
    from dataclasses import replace
    from types import SimpleNamespace

    from automix.master.tonal import tonal_balance
    from automix.presets import load_preset

    settings = replace(load_preset("pop").master, tonal_amount=0.0)
    analysis = SimpleNamespace(band_levels_db=tuple(np.linspace(-20, -60, 30)), duration_s=30.0, loudness_range_lu=6.0,
                               plr_db=15.0, sample_rate=48000)
    move = tonal_balance(analysis, settings)
    assert not any(move.gains_db) and "off" in move.reason


def test_excess_tilt_is_corrected_by_amount_times_confidence():
    """+4 dB/octave (1.5 beyond the 2.5 tolerated), pop's amount 0.5: the EQ tilts the
    body (100 Hz - 8 kHz) by -1.5 x 0.5 = -0.75 dB/octave, so 4 kHz ends 1.5 dB under
    1 kHz; flat beyond the body's edges; nothing outside 31.5 Hz - 16 kHz."""
    centres, gains, _ = _tonal(4.0)

    def at(frequency_hz):
        return gains[int(np.argmin(np.abs(centres - frequency_hz)))]

    assert at(4000) - at(1000) == pytest.approx(-1.5, abs=0.01)
    assert at(250) - at(1000) == pytest.approx(+1.5, abs=0.01)
    assert at(10000) == pytest.approx(at(8000), abs=0.01) and at(63) == pytest.approx(at(100), abs=0.01)
    assert at(25) == 0.0 and at(20000) == 0.0
    # the same tilt the other way round: the body tilted up by the same amount
    _, down, _ = _tonal(-4.0)
    assert down[int(np.argmin(np.abs(centres - 4000)))] - down[16] == pytest.approx(1.5, abs=0.01)
    # confidence: 5 s of 10 -> sqrt(0.5); a loudness range of 24 LU -> 12 / 24
    _, short, _ = _tonal(4.0, duration_s=5.0)
    np.testing.assert_allclose(short, gains * math.sqrt(0.5), atol=0.051)
    _, dynamic, _ = _tonal(4.0, lra_lu=24.0)
    np.testing.assert_allclose(dynamic, gains * 0.5, atol=0.051)
    # the analysis's per-band spread: 3 dB over 8 s = 4 independent 2 s looks -> a standard
    # error of 1.5 dB, which halves the move (1 / (1 + (1.5 / 1.5)^2)); 8 s of 10 -> sqrt(0.8)
    _, spread, _ = _tonal(4.0, duration_s=8.0, band_spread_db=3.0)
    np.testing.assert_allclose(spread, gains * math.sqrt(0.8) * 0.5, atol=0.051)
    # amount 1: twice the move, within the preset's 4 dB cap
    _, full, settings = _tonal(4.0, amount=1.0)
    np.testing.assert_allclose(full, np.clip(gains * 2, -settings.tonal_max_db, settings.tonal_max_db), atol=1e-9)


def test_moves_are_capped_and_finished_masters_only_nudged():
    """+10 dB/octave is 7.5 beyond tolerance: the moves would reach ~+-20 dB; they stop at
    the preset's 4 dB, and at 1.5 dB on a finished master (peak-to-loudness <= 12 dB)."""
    _, gains, settings = _tonal(10.0, amount=1.0)
    assert np.max(np.abs(gains)) == pytest.approx(settings.tonal_max_db, abs=1e-9)
    _, finished, _ = _tonal(10.0, amount=1.0, plr_db=10.0)
    assert np.max(np.abs(finished)) == pytest.approx(1.5, abs=1e-9)


def test_an_empty_band_is_never_boosted():
    """A dull mix (-4 dB/octave: the treble is boosted) with the 3.15 kHz band empty
    (40 dB under the rest): its neighbours are boosted, it is not."""
    _, gains, _ = _tonal(-4.0, dips={21: -40.0})
    assert gains[20] > 0.3 and gains[22] > 0.3
    assert gains[21] <= 0.0


@pytest.mark.parametrize("precise", [True, False])
def test_detector_envelope_of_a_sine_is_its_amplitude(precise):
    """Both detectors (8x near-ideal and the 4x BS.1770 one) read a 0.5 sine's envelope
    as 0.5 (-6.02 dB) within 0.05 dB away from the faded ends, one value per frame."""
    from automix.master.limiter import detector_envelope

    rate = 48000
    t = np.arange(rate // 2) / rate
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
    x = (0.5 * ramp * np.sin(2 * np.pi * 3000.0 * t + 0.4)).astype(np.float32)
    envelope = detector_envelope(np.stack([x, x]), rate, precise=precise)
    assert envelope.size == x.size
    middle = envelope[rate // 20 : -rate // 20]
    assert 20 * math.log10(middle.max()) == pytest.approx(-6.0206, abs=0.05)
    # each value is the peak around its sample: never under the sample itself
    assert np.all(envelope >= np.abs(x) - 1e-4)


def test_peak_envelope_and_the_old_smoothed_gain_curve():
    """The previous limiter's helpers (kept for callers): the 4x peak envelope of a 0.5
    sine peaks at 0.5 within 0.3 dB; the old gain curve holds a -6 dB requirement for the hold
    time (10 ms at 48 kHz holds 240 samples longer than 5 ms)."""
    from automix.master.limiter import peak_envelope, smooth_gain_reduction

    rate = 48000
    t = np.arange(rate // 4) / rate
    x = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    envelope = peak_envelope(np.stack([x, x]), 4)
    assert envelope.size == x.size
    assert np.all(envelope[:-1] >= np.maximum(np.abs(x[:-1]), np.abs(x[1:])) - 1e-4)
    assert 20 * math.log10(envelope.max()) == pytest.approx(-6.02, abs=0.3)
    required = np.zeros(5000)
    required[1000] = -6.0

    def held(hold_ms):
        return int(np.count_nonzero(smooth_gain_reduction(required, 1, 0.01, rate, hold_ms=hold_ms) <= -5.9))

    assert held(10.0) - held(5.0) == 240


def test_gain_computer_refuses_a_rate_of_zero_and_streams_any_window():
    """Out-of-range settings are a clear error; the shortest window (no hold, a 2-sample
    lookahead) gives the same reduction fed in blocks as whole."""
    from automix.errors import AutomixError
    from automix.master.limiter import GainComputer

    with pytest.raises(AutomixError):
        GainComputer(0, -1.0)
    envelope = np.abs(np.random.default_rng(2).standard_normal(3000)) * 2
    whole = GainComputer(48000, 0.0, 20.0, hold_ms=0.0, lookahead_ms=2000 / 48000)
    expected = np.concatenate([whole.process(envelope), whole.flush()])
    assert whole.window_frames == 2
    parts = GainComputer(48000, 0.0, 20.0, hold_ms=0.0, lookahead_ms=2000 / 48000)
    streamed = np.concatenate([parts.process(envelope[i : i + 100]) for i in range(0, 3000, 100)] + [parts.flush()])
    np.testing.assert_array_equal(streamed, expected)
    assert expected.size == envelope.size


def test_an_unreachable_target_stops_where_more_gain_stops_adding_loudness():
    """3 s of a 0 dBFS sine then 3 s at -10 dBFS, limited at -1 dBTP, asked for +5 LUFS:
    beyond +9 dB of gain both halves sit at the ceiling and more gain adds nothing; below
    it the quiet half still grows (about 0.4 LU per dB). The search stops where the slope
    falls under 0.1 LU/dB: just under +9 dB (a hand estimate: 8.4 - 9.2 dB), and says the
    target was out of reach."""
    from automix.master.loop import collect_features, solve_gain

    x = np.concatenate([_tone(3.0, 0.0), _tone(3.0, -10.0)], axis=1)
    features = collect_features(x, 48000)
    prediction, reached = solve_gain(features, 5.0, -1.0, 50.0)
    assert not reached
    assert 8.4 <= prediction.gain_db <= 9.2


def test_band_uncertainty_of_a_short_signal_is_unknown_and_of_a_long_one_finite():
    """0.1 s at 48 kHz is one 4800-sample frame (bins every 10 Hz): too few looks to say
    how a band varies, so every band holding a bin reads the 3 dB 'unknown' value, and
    the 25 Hz band (22.4-28.2 Hz: no multiple of 10 Hz) reads infinite. 2 s gives 8192-
    sample frames (bins every 5.86 Hz): the 25 Hz band holds one bin, 23.4 Hz, and is
    measured (finite), as is every band."""
    from automix.master.tonal import band_uncertainty_db

    rng = np.random.default_rng(4)
    short = band_uncertainty_db((0.1 * rng.standard_normal((2, 4800))).astype(np.float32), 48000, 30)
    assert math.isinf(short[0])
    np.testing.assert_array_equal(short[1:], 3.0)
    long = band_uncertainty_db((0.1 * rng.standard_normal((2, 2 * 48000))).astype(np.float32), 48000, 30)
    assert np.all(np.isfinite(long)) and np.all(long > 0)
    assert long[-1] < 0.5 < long[0]  # a wide band (many bins) is known far better than a 1-bin one


def test_limiter_statistics_are_the_reduction_applied_to_the_audio():
    """DC at 1.0 (0 dBFS) limited at -6 dBTP: each output sample is the gain applied, so
    the reduction can be read back from the audio, -20 log10(out); the statistics must be
    that curve's maximum and its mean over the samples where it acts (> 0.01 dB)."""
    from automix.master.limiter import TruePeakLimiter

    rate = 48000
    x = np.ones((1, 3000), np.float32)
    limiter = TruePeakLimiter(rate, 1, -6.0, 20.0)
    out = np.concatenate([limiter.process(x), limiter.flush()], axis=1)
    assert out.shape == x.shape
    reduction = -20 * np.log10(out[0].astype(np.float64))
    stats = limiter.stats()
    assert stats.max_gain_reduction_db == pytest.approx(reduction.max(), abs=1e-4)
    assert stats.mean_gain_reduction_db == pytest.approx(reduction[reduction > 0.01].mean(), abs=1e-4)
    assert reduction.min() == pytest.approx(6.0, abs=0.01)  # never less than DC at 0 dBFS needs under -6 dBTP


def test_a_sine_asked_to_be_louder_than_its_ceiling_allows_is_reported_missed():
    """A limited sine's loudness cannot exceed its peak level: a stereo 997 Hz sine under
    -8 dBTP reads at most -8 LUFS, so -5 LUFS is out of physical reach: with the default
    over-limit policy ("fail") the master says so (status target_missed) instead of
    returning a master that misses its target silently."""
    from dataclasses import replace

    from automix.io.audio import Audio
    from automix.master.chain import master
    from automix.presets import load_preset

    settings = replace(load_preset("pop").master, target_lufs=-5.0, ceiling_dbtp=-8.0)
    _, result = master(Audio(_tone(2.0, -20.0), 48000), settings)
    assert result.status == "target_missed"
    assert "out of reach" in result.message
    assert result.output_lufs <= -8.0 + 0.1


def test_the_shortest_masterable_input_is_one_400_ms_loudness_block():
    """BS.1770 integrated loudness needs one 400 ms block: 0.6 s is mastered (onto the
    preset's loudness, as libebur128 reads it), 0.3 s is refused with a clear error."""
    from test_loudness import ebur128

    from automix.errors import AutomixError
    from automix.io.audio import Audio
    from automix.master.chain import master
    from automix.presets import load_preset

    settings = load_preset("pop").master
    samples, result = master(Audio(_tone(0.6, -20.0), 48000), settings)
    assert result.status == "ok"
    assert ebur128(samples, 48000)[0] == pytest.approx(settings.target_lufs, abs=0.2)
    with pytest.raises(AutomixError):
        master(Audio(_tone(0.3, -20.0), 48000), settings)
