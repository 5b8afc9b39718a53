"""Tonal EQ: corrects only what is clearly off the measured target, measured on the audio.

Every check measures the rendered audio with this file's own third-octave meter (a
Welch spectrum summed over bands), not the EQ's own gain numbers.
"""

from pathlib import Path

import numpy as np
import pytest
from scipy import signal
from signals import pink_noise

from automix.dsp.fir import stream
from automix.io.audio import Audio
from automix.master import tonal_targets
from automix.master.tonal import StreamingEQ, TonalMove, apply_eq, tonal_balance
from automix.measure.analyzer import analyze
from automix.presets import load_preset

SR = 44100
POP = load_preset("pop").master
CENTRES = np.array([1000.0 * 10 ** (k / 10) for k in range(-16, 14)])  # 25 Hz ... 20 kHz
JUDGED = (CENTRES >= 31) & (CENTRES <= 16500)
FEATURES = Path(__file__).resolve().parents[2] / "shared/data/reference_stats/musdb18_stem_features.npy"


def bands_db(x: np.ndarray) -> np.ndarray:
    """Third-octave band powers (dB) of a stereo signal, Welch, 16384-point segments."""
    f, psd = signal.welch(x.astype(np.float64), SR, nperseg=16384, axis=-1)
    psd = psd.sum(axis=0)
    return np.array([10 * np.log10(psd[(f >= c / 2 ** (1 / 6)) & (f < c * 2 ** (1 / 6))].sum() + 1e-30) for c in CENTRES])


def shape_change_db(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per-band change of the spectrum's shape (overall gain removed), judged bands only."""
    change = (bands_db(after) - bands_db(before))[JUDGED]
    return change - change.mean()


def noise_with_spectrum(curve_db: np.ndarray, seconds: float, seed: int = 0, ripple_db: float = 0.0) -> np.ndarray:
    """Stereo noise whose third-octave spectrum follows ``curve_db`` (one value per CENTRES)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    f = np.fft.rfftfreq(n, 1 / SR)
    curve = np.asarray(curve_db) + ripple_db * rng.uniform(-1, 1, CENTRES.size)
    density_db = curve - 10 * np.log10(0.2316 * CENTRES)  # band power over its bandwidth
    gain_db = np.interp(np.log(np.maximum(f, 1.0)), np.log(CENTRES), density_db)
    spectrum = (rng.standard_normal((2, f.size)) + 1j * rng.standard_normal((2, f.size))) * 10 ** (gain_db / 20)
    spectrum[:, 0] = 0
    x = np.fft.irfft(spectrum, n, axis=-1)
    return (0.25 * x / np.abs(x).max()).astype(np.float32)


def master_eq(x: np.ndarray, settings=POP) -> tuple[TonalMove, np.ndarray]:
    move = tonal_balance(analyze(Audio(x, SR)), settings, samples=x)
    return move, apply_eq(x, SR, move)


TARGET = np.asarray(tonal_targets.MUSDB18_MIX_BANDS_DB)


def test_pink_noise_is_moved_by_at_most_1_db():
    x = pink_noise(12, SR)
    move, y = master_eq(x)
    assert np.abs(shape_change_db(x, y)).max() <= 1.0
    assert move.max_abs_db <= 1.0


def test_a_mix_on_the_target_with_ripple_comes_back_nearly_untouched():
    for seed in (1, 2, 3):
        x = noise_with_spectrum(TARGET, 12, seed=seed, ripple_db=1.0)
        move, y = master_eq(x)
        assert np.abs(shape_change_db(x, y)).max() <= 0.5, move.reason


def test_a_boomy_mix_is_cut_where_it_booms_and_bounded():
    boom = 6.0 * np.exp(-0.5 * (np.log2(CENTRES / 100.0) / 0.5) ** 2)  # +6 dB around 100 Hz
    x = noise_with_spectrum(TARGET + boom, 12)
    _move, y = master_eq(x)
    change = shape_change_db(x, y)
    at_100 = change[np.argmin(np.abs(CENTRES[JUDGED] - 100))]
    assert -POP.tonal_max_db - 0.2 <= at_100 <= -0.5
    assert np.abs(change[CENTRES[JUDGED] > 400]).max() < 0.3  # nothing else touched


def test_a_dull_mix_is_brightened_a_bounded_amount():
    dull = -6.0 / (1.0 + (4000.0 / CENTRES) ** 4)  # -6 dB shelf above 4 kHz
    x = noise_with_spectrum(TARGET + dull, 12)
    _, y = master_eq(x)
    change = shape_change_db(x, y)
    top = change[(CENTRES[JUDGED] >= 6000) & (CENTRES[JUDGED] <= 10500)]
    assert 0.3 <= top.max() <= POP.tonal_max_db
    assert np.all(top > -0.1)  # toward the target only


def _snare(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(5)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    beat = (t * 2 + 0.5) % 1.0
    body = np.sin(2 * np.pi * 190 * t) * np.exp(-beat * 25)
    band = signal.butter(2, [1500, 9000], "bandpass", fs=SR, output="sos")
    rattle = signal.sosfilt(band, rng.standard_normal(n)) * np.exp(-beat * 18)
    x = 0.4 * body + 0.3 * rattle
    return np.stack([x, x]).astype(np.float32)


def test_a_snare_alone_gets_no_low_boost():
    x = _snare(12)
    move, y = master_eq(x)
    low = CENTRES[: len(move.gains_db)] <= 120
    assert max(np.asarray(move.gains_db)[low]) <= 0.0
    rendered = (bands_db(y) - bands_db(x))[(CENTRES >= 31) & (CENTRES <= 120)]
    assert rendered.max() <= 0.1


def test_a_short_excerpt_is_moved_less_than_a_long_one():
    boom = 6.0 * np.exp(-0.5 * (np.log2(CENTRES / 100.0) / 0.5) ** 2)
    long_move, _ = master_eq(noise_with_spectrum(TARGET + boom, 12))
    short_move, _ = master_eq(noise_with_spectrum(TARGET + boom, 2))
    assert 0.0 <= short_move.max_abs_db < long_move.max_abs_db


def test_genre_deviation_moves_the_target_where_the_preset_says():
    hip_hop = load_preset("hip-hop").master
    pop_curve = tonal_targets.genre_curve_db(CENTRES, POP.tilt_db_per_octave, POP.bass_db, POP.air_db)
    np.testing.assert_allclose(pop_curve, TARGET)  # pop is the measured curve itself
    hh_curve = tonal_targets.genre_curve_db(CENTRES, hip_hop.tilt_db_per_octave, hip_hop.bass_db, hip_hop.air_db)
    lift = (hh_curve - pop_curve)[CENTRES == CENTRES[3]][0] - (hh_curve - pop_curve)[16]  # 50 Hz vs 1 kHz
    assert lift == pytest.approx((hip_hop.bass_db - POP.bass_db) * (1 / (1 + (50 / 120) ** 2) - 1 / (1 + (1000 / 120) ** 2))
                                 - (hip_hop.tilt_db_per_octave - POP.tilt_db_per_octave) * np.log2(1000 / 50), abs=0.2)


def test_tonal_amount_zero_is_off():
    from dataclasses import replace

    x = pink_noise(3, SR)
    move = tonal_balance(analyze(Audio(x, SR)), replace(POP, tonal_amount=0.0))
    assert not any(move.gains_db) and apply_eq(x, SR, move) is x


def test_streaming_eq_equals_whole_signal():
    x = (0.1 * np.random.default_rng(4).standard_normal((2, 3 * SR))).astype(np.float32)
    gains = tuple(3.0 * np.sin(np.arange(30) / 3.0))
    move = TonalMove(tuple(CENTRES), gains)
    whole = apply_eq(x, SR, move)
    for block in (1000, 44100, 500000):
        np.testing.assert_array_equal(stream(StreamingEQ(SR, move, 2), x, block), whole)


@pytest.mark.skipif(not FEATURES.is_file(), reason="the MUSDB18 feature file is not in this checkout")
def test_the_target_curve_is_what_its_source_gives():
    np.testing.assert_allclose(tonal_targets.derive_mix_bands_db(FEATURES), TARGET, atol=0.006)


def test_mastered_material_is_only_nudged():
    """White noise is far brighter than any record (the EQ wants 4 dB), but its density
    (peak-to-loudness ~9 dB) is a master's: moves stay within 1.5 dB on the audio."""
    x = (0.1 * np.random.default_rng(0).standard_normal((2, 12 * SR))).astype(np.float32)
    analysis = analyze(Audio(x, SR))
    assert analysis.plr_db <= 12.0
    move, y = master_eq(x)
    assert move.max_abs_db <= 1.5 and "already mastered" in move.reason
    change = (bands_db(y) - bands_db(x))[JUDGED]
    assert np.abs(change - np.median(change)).max() <= 3.2  # +-1.5 dB around the unchanged middle


def test_a_sparse_signal_is_not_compared_with_a_full_mix():
    t = np.arange(6 * SR) / SR
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * 0.2
    x = np.stack([chord, chord]).astype(np.float32)
    move, y = master_eq(x)
    assert move.max_abs_db == 0.0 and "sparse" in move.reason
    assert y is x


def test_band_spread_meter_streams_what_the_samples_give():
    """Sparse material (a snare alone) is uncertain in its sparse bands, steady noise is
    not, whether measured from the samples or fed block by block."""
    from automix.master.tonal import BandSpreadMeter, band_uncertainty_db

    for x, expect_uncertain in ((_snare(12), True), (pink_noise(12, SR), False)):
        meter = BandSpreadMeter(SR, 2)
        for start in range(0, x.shape[1], 10000):
            meter.add(x[:, start : start + 10000])
        streamed, whole = meter.uncertainty_db(), band_uncertainty_db(x, SR, meter.band_count)
        mids = (CENTRES[: meter.band_count] >= 200) & (CENTRES[: meter.band_count] <= 5000)
        if expect_uncertain:
            assert np.median(streamed[mids]) > 3.0 and np.median(whole[mids]) > 3.0
        else:
            assert np.median(streamed[mids]) < 0.6 and np.median(whole[mids]) < 0.6
