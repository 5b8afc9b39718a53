"""The renderer, checked on rendered audio against answers worked out by hand.

Every expected number here comes from the signal or from textbook formulas (pan law,
Butterworth magnitude, compressor static curve), never from the code under test.
"""

import math

import numpy as np
import pytest
from signals import pink_noise, sine
from test_loudness import ebur128

from automix.measure import loudness
from automix.mix.balancer import CompressorPlan, EqCut, MixPlan, StemPlan
from automix.mix.renderer import (
    BUS_CEILING_DBTP,
    pan,
    process_stem,
    programme_peak_dbtp,
    render,
)

RATE = 44100


def plan_for(name="x", *, target_lufs=-20.0, gain_db=0.0, highpass_hz=None, eq_cuts=(), compressor=None, pan_position=0.0,
             group="", group_lufs=0.0) -> StemPlan:
    return StemPlan(name=name, role="other", role_reason="test", target_lufs=target_lufs, gain_db=gain_db, gain_rule="test",
                    highpass_hz=highpass_hz, highpass_order=2, highpass_rule="test", eq_cuts=tuple(eq_cuts),
                    compressor=compressor, compressor_rule="test", pan=pan_position, pan_rule="test",
                    group=group, group_lufs=group_lufs)


def rms_db(x: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.square(x, dtype=np.float64))))


def tone_level_db(x: np.ndarray, frequency_hz: float) -> float:
    """Level of one sine component (Hann-windowed FFT, bin power around the peak)."""
    window = np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x * window)) ** 2
    k = round(frequency_hz * x.size / RATE)
    return 10 * math.log10(spectrum[k - 3 : k + 4].sum())


# --------------------------------------------------------------------------- pan law
def test_mono_hard_left_has_no_right_channel_and_centre_is_minus_3_db_per_side():
    mono = sine(-10, 1.0, RATE, 440.0, channels=1)
    left = pan(mono, -1.0)
    assert np.all(left[1] == 0.0)
    assert rms_db(left[0]) == pytest.approx(rms_db(mono), abs=0.01)
    centre = pan(mono, 0.0)
    assert rms_db(centre[0]) - rms_db(mono) == pytest.approx(-3.01, abs=0.02)  # constant power: cos(pi/4)
    assert rms_db(centre[1]) - rms_db(mono) == pytest.approx(-3.01, abs=0.02)
    # half left: cos / sin of 3pi/8... measured against the formula's numbers
    half = pan(mono, -0.5)
    assert rms_db(half[0]) - rms_db(mono) == pytest.approx(20 * math.log10(math.cos(math.pi / 8)), abs=0.02)
    assert rms_db(half[1]) - rms_db(mono) == pytest.approx(20 * math.log10(math.sin(math.pi / 8)), abs=0.02)
    # constant power: loudness of the centred stereo equals the mono original (BS.1770)
    assert ebur128(centre, RATE)[0] == pytest.approx(ebur128(mono, RATE)[0], abs=0.05)


def test_stereo_stem_keeps_its_sides_when_panned():
    left_tone = sine(-12, 1.0, RATE, 440.0, channels=1)[0]
    right_tone = sine(-12, 1.0, RATE, 1900.0, channels=1)[0]
    stereo = np.stack([left_tone, right_tone])
    for position in (-0.6, 0.0, 0.6):
        out = pan(stereo, position)
        # left output holds only the left input's tone, right only the right's: no swap
        assert tone_level_db(out[0], 440.0) - tone_level_db(out[0], 1900.0) > 60
        assert tone_level_db(out[1], 1900.0) - tone_level_db(out[1], 440.0) > 60
    out = pan(stereo, 0.6)  # panned right: the left side is turned down, the right kept
    assert rms_db(out[1]) == pytest.approx(rms_db(right_tone), abs=0.01)
    assert rms_db(out[0]) < rms_db(left_tone) - 3


def test_rendered_stem_is_panned_and_lands_on_its_loudness():
    mono = sine(-20, 2.0, RATE, 440.0, channels=1)
    out, _, _ = process_stem(mono, RATE, plan_for(target_lufs=-18.0, pan_position=1.0))
    assert np.abs(out[0]).max() < 1e-6  # hard right: nothing on the left
    assert ebur128(out, RATE)[0] == pytest.approx(-18.0, abs=0.1)


# --------------------------------------------------------------------------- filters and dynamics
def test_highpass_is_3_db_down_at_its_cutoff_and_12_db_an_octave_below():
    cutoff = 200.0
    probe = (sine(-20, 2.0, RATE, cutoff, channels=1) + sine(-20, 2.0, RATE, 4000.0, channels=1)
             + sine(-20, 2.0, RATE, cutoff / 2, channels=1))
    out, _, _ = process_stem(probe, RATE, plan_for(highpass_hz=cutoff, pan_position=-1.0))
    left = out[0][RATE // 2 :]
    reference = probe[0][RATE // 2 :]
    def attenuation(f):  # relative to the 4 kHz tone, which a 200 Hz high-pass leaves alone
        return (tone_level_db(left, f) - tone_level_db(left, 4000.0)) - (tone_level_db(reference, f) - tone_level_db(reference, 4000.0))
    # 2nd-order Butterworth: |H|^2 = 1 / (1 + (fc/f)^4)
    assert attenuation(cutoff) == pytest.approx(-10 * math.log10(2), abs=0.2)
    assert attenuation(cutoff / 2) == pytest.approx(-10 * math.log10(17), abs=0.3)


def test_masking_cut_depth_is_measured_on_the_rendered_spectrum():
    probe = sine(-20, 2.0, RATE, 1000.0, channels=1) + sine(-20, 2.0, RATE, 8000.0, channels=1)
    cut = EqCut(frequency_hz=1000.0, gain_db=-4.0, q=2.0, rule="test")
    out, _, _ = process_stem(probe, RATE, plan_for(eq_cuts=[cut], pan_position=-1.0))
    dry, wet = probe[0][RATE // 2 :], out[0][RATE // 2 :]
    depth = (tone_level_db(wet, 1000.0) - tone_level_db(wet, 8000.0)) - (tone_level_db(dry, 1000.0) - tone_level_db(dry, 8000.0))
    assert depth == pytest.approx(-4.0, abs=0.3)


def test_compressor_ratio_measured_on_a_stepped_tone():
    """A tone 10 dB under, then 10 dB over the threshold: 4:1 leaves 2.5 dB of the 10 over."""
    threshold, ratio = -20.0, 4.0
    quiet = sine(-30 + 3.0103, 2.0, RATE, 1000.0, channels=1)  # RMS -30 dB
    loud = sine(-10 + 3.0103, 2.0, RATE, 1000.0, channels=1)  # RMS -10 dB
    stepped = np.concatenate([quiet, loud], axis=1)
    plan = plan_for(compressor=CompressorPlan(threshold, ratio, 5.0, 50.0, "test"), pan_position=-1.0)
    out, _, reduction_db = process_stem(stepped, RATE, plan)
    steady_quiet = rms_db(out[0][RATE : 2 * RATE])
    steady_loud = rms_db(out[0][3 * RATE : 4 * RATE])
    assert steady_loud - steady_quiet == pytest.approx(10 + 10 / ratio, abs=0.3)
    assert reduction_db == pytest.approx(10 * (1 - 1 / ratio), abs=0.5)


# --------------------------------------------------------------------------- groups and the bus
def test_group_is_scaled_together_onto_its_level():
    """Two stems of one group that play at different moments: their sum, not each,
    lands on the group's loudness; their balance inside the group is kept."""
    a = sine(-20, 4.0, RATE, 300.0, channels=1)
    b = sine(-20, 4.0, RATE, 600.0, channels=1)
    a[:, 2 * RATE :] = 0  # a plays the first half, b the second
    b[:, : 2 * RATE] = 0
    vocal = sine(-20, 4.0, RATE, 1000.0, channels=1)
    stems = [a, b, vocal]
    plans = (plan_for("a", target_lufs=-6.0, group="drums", group_lufs=-3.0),
             plan_for("b", target_lufs=-9.0, group="drums", group_lufs=-3.0),
             plan_for("v", target_lufs=0.0, group="vocals", group_lufs=0.0))
    result = render(stems, RATE, MixPlan(plans, "v", "test", -20.0), keep_stems=True, mastering_follows=True)
    drums = result.stems[0].samples + result.stems[1].samples
    vocals = result.stems[2].samples
    assert ebur128(drums, RATE)[0] - ebur128(vocals, RATE)[0] == pytest.approx(-3.0, abs=0.1)
    assert ebur128(result.stems[0].samples, RATE)[0] - ebur128(result.stems[1].samples, RATE)[0] == pytest.approx(3.0, abs=0.1)
    assert result.groups["drums"]["stems"] == 2


def with_clicks(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[:, 0] = 1.0  # a click at 0 dBFS at the very start and end (a badly cut excerpt)
    x[:, -1] = -1.0
    return x


def test_a_click_at_each_end_does_not_set_the_bus_level():
    music = [pink_noise(6.0, RATE, channels=2, seed=s).astype(np.float32) * np.float32(0.05) for s in (1, 2)]
    plans = (plan_for("a", target_lufs=-3.0), plan_for("b", target_lufs=-3.0))
    plan = MixPlan(plans, None, "test", -14.0)  # loud enough that the programme peak matters
    clean = render(music, RATE, plan)
    clicked = render([with_clicks(x) for x in music], RATE, plan)
    assert clicked.bus_gain_db == pytest.approx(clean.bus_gain_db, abs=0.5)
    # the unmastered bus stays safe: its programme peak under the ceiling
    assert programme_peak_dbtp(clicked.mix, RATE)[0] <= BUS_CEILING_DBTP + 0.05
    # mastering follows: the float bus goes on at its loudness, never lowered for peaks
    mastered = render([with_clicks(x) for x in music], RATE, plan, mastering_follows=True)
    assert loudness.integrated_loudness(mastered.mix, RATE, absolute_gate_lufs=-120) == pytest.approx(-14.0, abs=0.05)


def test_programme_peak_follows_recurring_hits_not_one_event():
    x = np.zeros((1, 5 * RATE), np.float32)
    x[0, :: RATE // 4] = 0.25  # recurring hits at -12 dBFS, 20 of them
    x[0, RATE + 7] = 1.0  # one event at 0 dBFS
    peak_db, _, outliers = programme_peak_dbtp(x, RATE)
    assert peak_db == pytest.approx(-12.0, abs=0.7)  # true peak of an impulse reads a little over its sample
    assert len(outliers) == 1 and outliers[0][0] == pytest.approx(1.0, abs=0.011)


def test_render_is_deterministic():
    music = [pink_noise(2.0, RATE, channels=2, seed=s).astype(np.float32) * np.float32(0.1) for s in (3, 4)]
    plans = (plan_for("a", target_lufs=-3.0, group="harmony", group_lufs=0.0,
                      compressor=CompressorPlan(-12.0, 3.0, 5.0, 80.0, "t")),
             plan_for("b", target_lufs=-6.0, group="harmony", group_lufs=0.0, highpass_hz=100.0, pan_position=0.4))
    plan = MixPlan(plans, None, "test", -20.0)
    assert np.array_equal(render(music, RATE, plan).mix, render(music, RATE, plan).mix)
