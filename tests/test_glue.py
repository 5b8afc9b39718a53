"""Glue: acts only on dynamic material, gently, without pumping or dulling transients.

Pumping and transient loss are measured here on the rendered audio, with this file's own
code: the level a steady pad is given over time (its band's level out minus in, 20 ms
frames), and the snare's first 5 ms against its 30-80 ms body.
"""

from dataclasses import replace

import numpy as np
import pytest
from scipy import signal
from test_loudness import ebur128

from automix.dsp import dynamics
from automix.dsp.fir import stream
from automix.io.audio import Audio
from automix.master import glue
from automix.measure.analyzer import analyze
from automix.presets import load_preset

SR = 44100
POP = load_preset("pop").master
HIT_S = 0.5  # kick on the beat, snare on the off-beat, 120 bpm


def kit_and_pad(seconds: float = 10.0, kick: float = 1.0, snare: float = 0.5, pad: float = 0.12, seed: int = 0):
    """Stereo mix of a kick (sweep 130 -> 50 Hz), a snare (190 Hz body + 1.5-9 kHz noise)
    and a steady pad (C major chord, 262-659 Hz)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    beat = (t / HIT_S) % 1.0
    kick_wave = np.sin(2 * np.pi * np.cumsum(50 + 80 * np.exp(-beat * 30)) / SR) * np.exp(-beat * 8)
    chord = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (261.6, 329.6, 392.0, 523.3, 659.3)) / 5
    off = (t / HIT_S + 0.5) % 1.0
    band = signal.butter(2, [1500, 9000], "bandpass", fs=SR, output="sos")
    snare_wave = 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-off * 25) + 0.5 * signal.sosfilt(band, rng.standard_normal(n)) * np.exp(-off * 30)
    mono = kick * kick_wave + pad * chord + snare * snare_wave
    return np.stack([mono, mono]).astype(np.float32)


def _frame_levels_db(x: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    sos = signal.butter(4, [low_hz, high_hz], "bandpass", fs=SR, output="sos")
    z = signal.sosfiltfilt(sos, x[0].astype(np.float64))
    hop = SR // 50
    frames = z[: z.size // hop * hop].reshape(-1, hop)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


def pad_gain_swing_db(before: np.ndarray, after: np.ndarray) -> float:
    """Spread (97th - 3rd percentile) of the gain the pad's band (230-750 Hz) is given,
    after the first 3 s (the glue settling on the programme)."""
    gain = (_frame_levels_db(after, 230, 750) - _frame_levels_db(before, 230, 750))[150:-25]
    return float(np.percentile(gain, 97) - np.percentile(gain, 3))


def snare_attack_loss_db(before: np.ndarray, after: np.ndarray, seconds: float) -> float:
    """Mean loss of the snare's attack (first 5 ms) against its body (30-80 ms), 2-8 kHz."""
    sos = signal.butter(4, [2000, 8000], "bandpass", fs=SR, output="sos")

    def attack_to_body(x):
        z = signal.sosfiltfilt(sos, x[0].astype(np.float64))
        ratios = []
        for k in range(6, int(seconds / HIT_S) - 1):  # after the glue settled
            onset = int(SR * (k + 0.5) * HIT_S)
            attack = np.sqrt(np.mean(z[onset : onset + SR // 200] ** 2))
            body = np.sqrt(np.mean(z[onset + int(0.03 * SR) : onset + int(0.08 * SR)] ** 2))
            ratios.append(20 * np.log10(attack / body))
        return np.mean(ratios)

    return float(attack_to_body(before) - attack_to_body(after))


def forced(x: np.ndarray, depth_db: float) -> glue.GlueDecision:
    """The glue the decision would pick for a dynamic mix, at a given depth."""
    threshold, initial = glue.calibrate(x, SR, depth_db, ratio=2.0, attack_ms=30.0, release_ms=200.0)
    return glue.GlueDecision(True, threshold, 2.0, 30.0, 200.0, glue.GAIN_SMOOTHING_MS, glue.SIDECHAIN_HIGHPASS_HZ,
                             depth_db, "test", initial)  # fmt: skip


@pytest.mark.parametrize("mix", [{}, {"kick": 0.5, "snare": 0.8, "pad": 0.05}, {"pad": 0.3, "snare": 0.3}])
def test_a_kick_does_not_pump_the_pad_at_3_db_of_glue(mix):
    x = kit_and_pad(**mix)
    decision = forced(x, 3.0)
    y = glue.apply_glue(x, SR, decision).samples
    assert pad_gain_swing_db(x, y) <= 0.6
    # the glue did act: the pad is turned down by about the depth on the loud passages
    gain = (_frame_levels_db(y, 230, 750) - _frame_levels_db(x, 230, 750))[150:-25]
    assert -3.6 <= np.median(gain) <= -2.0
    # and the measurement can fail: the same compressor without its two anti-pumping
    # measures (full-band detector, no gain averaging) swings the pad by several dB
    plain = replace(decision, sidechain_highpass_hz=0.0, gain_smoothing_ms=0.0, initial_reduction_db=0.0)
    assert pad_gain_swing_db(x, glue.apply_glue(x, SR, plain).samples) > 1.5


def test_the_snare_keeps_its_attack():
    x = kit_and_pad(10.0, kick=0.5, snare=0.8, pad=0.05)
    y = glue.apply_glue(x, SR, forced(x, 3.0)).samples
    assert snare_attack_loss_db(x, y, 10.0) <= 1.0


def test_dense_material_is_left_alone():
    """A finished-master-like signal (soft-clipped, PLR ~9 dB, verse 5 dB under the
    chorus): no glue, the same samples, the loudness range unchanged."""
    x = kit_and_pad(12.0, pad=0.3)
    x[:, : 6 * SR] *= 10 ** (-5 / 20)
    dense = (0.5 * np.tanh(4 * x)).astype(np.float32)
    analysis = analyze(Audio(dense, SR))
    assert analysis.plr_db < glue.DENSE_PLR_DB
    decision = glue.decide_glue(analysis, POP, samples=dense)
    assert not decision.act and "dense" in decision.reason
    result = glue.apply_glue(dense, SR, decision)
    assert result.samples is dense and result.max_gain_reduction_db == 0.0


def test_a_dynamic_mix_gets_gentle_glue_as_decided():
    x = kit_and_pad(10.0, kick=0.5, snare=0.8, pad=0.05)  # PLR ~18 dB: a dynamic mix
    analysis = analyze(Audio(x, SR))
    decision = glue.decide_glue(analysis, POP, samples=x)
    assert decision.act and decision.ratio <= 2.0 and 1.0 <= decision.depth_db <= 3.0
    assert "peak-to-loudness" in decision.reason
    y = glue.apply_glue(x, SR, decision).samples
    # measured on the audio: the pad's band is turned down by about the chosen depth
    gain = (_frame_levels_db(y, 230, 750) - _frame_levels_db(x, 230, 750))[150:-25]
    assert np.percentile(-gain, 95) == pytest.approx(decision.depth_db, abs=0.5)
    # loudness range measured by libebur128: a steady groove keeps its (near-zero) range
    assert abs(ebur128(y, SR)[2] - ebur128(x, SR)[2]) <= 0.5


def test_the_decision_follows_the_signal_not_its_level():
    x = kit_and_pad(8.0, kick=0.5, snare=0.8, pad=0.05)
    quiet = (x * 10 ** (-10 / 20)).astype(np.float32)
    loud_decision = glue.decide_glue(analyze(Audio(x, SR)), POP, samples=x)
    quiet_decision = glue.decide_glue(analyze(Audio(quiet, SR)), POP, samples=quiet)
    assert quiet_decision.act and quiet_decision.depth_db == pytest.approx(loud_decision.depth_db, abs=0.05)
    assert quiet_decision.threshold_db == pytest.approx(loud_decision.threshold_db - 10.0, abs=0.1)


def test_no_glue_when_the_preset_or_the_dynamics_say_so():
    x = kit_and_pad(6.0, kick=0.5, snare=0.8, pad=0.05)
    analysis = analyze(Audio(x, SR))
    assert not glue.decide_glue(analysis, load_preset("classical").master).act  # glue_ratio 1
    wide = replace(analysis, loudness_range_lu=18.0)
    assert "loudness range" in glue.decide_glue(wide, POP).reason


def test_streaming_glue_equals_whole_signal():
    x = kit_and_pad(4.0)
    decision = forced(x, 2.0)
    whole = glue.apply_glue(x, SR, decision, block_size=1 << 20).samples
    for block in (512, 10000):
        np.testing.assert_array_equal(stream(decision.compressor(SR, 2), x, block), whole)


def test_the_streaming_compressor_is_the_renderers_compressor():
    """One block through StreamingCompressor without the glue's options is bit-identical
    to dynamics.compress, the stem renderer's call; many blocks give the same samples."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 3 * SR)) * np.repeat(rng.uniform(0.01, 0.5, 30), SR // 10)).astype(np.float32)
    settings = {"threshold_db": -25.0, "ratio": 3.0, "attack_ms": 10.0, "release_ms": 100.0}
    reference = dynamics.compress(x, SR, **settings)
    one = dynamics.StreamingCompressor(SR, 2, **settings)
    np.testing.assert_array_equal(one.process(x), reference.samples)
    assert one.max_gain_reduction_db == reference.max_gain_reduction_db
    blocks = dynamics.compress_in_blocks(x, dynamics.StreamingCompressor(SR, 2, **settings), 1000)
    np.testing.assert_array_equal(blocks.samples, reference.samples)


def test_the_estimate_without_samples_is_close_to_the_calibration():
    """The lead's streaming chain decides from the analysis alone: the estimated
    threshold must give nearly the aimed reduction (here within 1.5 dB of threshold)."""
    for mix in ({}, {"kick": 0.5, "snare": 0.8, "pad": 0.05}):
        x = kit_and_pad(8.0, **mix)
        analysis = analyze(Audio(x, SR))
        with_samples = glue.decide_glue(analysis, POP, samples=x)
        estimated = glue.decide_glue(analysis, POP)
        assert estimated.act == with_samples.act
        if estimated.act:
            assert estimated.threshold_db == pytest.approx(with_samples.threshold_db, abs=1.5)


def test_a_meter_fed_block_by_block_calibrates_like_the_samples():
    x = kit_and_pad(8.0, kick=0.5, snare=0.8, pad=0.05)
    analysis = analyze(Audio(x, SR))
    meter = glue.GlueDetectorMeter(SR, 2)
    for start in range(0, x.shape[1], 5000):
        meter.add(x[:, start : start + 5000])
    streamed = glue.decide_glue(analysis, POP, detector=meter)
    whole = glue.decide_glue(analysis, POP, samples=x)
    assert streamed.act and streamed.threshold_db == pytest.approx(whole.threshold_db, abs=0.05)
    assert streamed.initial_reduction_db == pytest.approx(whole.initial_reduction_db, abs=0.05)


def test_a_long_signal_fed_block_by_block_calibrates_on_the_same_excerpts_as_the_samples(monkeypatch):
    """Past CALIBRATION_WHOLE_S the streaming meter keeps only the calibration's excerpts
    (memory independent of length), and calibrates exactly as the whole-signal path."""
    monkeypatch.setattr(glue, "CALIBRATION_WHOLE_S", 6.0)  # a short signal stands in for a long one
    x = kit_and_pad(16.0, kick=0.5, snare=0.8, pad=0.05)
    analysis = analyze(Audio(x, SR))
    meter = glue.GlueDetectorMeter(SR, 2, total_frames=x.shape[1])
    for start in range(0, x.shape[1], 7000):
        meter.add(x[:, start : start + 7000])
    kept = sum(powers.size for powers, _ in meter.groups())
    assert kept == glue.CALIBRATION_EXCERPTS * (int(glue.CALIBRATION_EXCERPT_S * SR) // glue.CONTROL_DECIMATION)
    streamed = glue.decide_glue(analysis, POP, detector=meter)
    whole = glue.decide_glue(analysis, POP, samples=x)
    assert streamed.act
    assert streamed.threshold_db == whole.threshold_db
    assert streamed.initial_reduction_db == whole.initial_reduction_db
