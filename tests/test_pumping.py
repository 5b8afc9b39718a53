"""Pumping, transient loss and loudness of the limiter stage: wideband vs split-band (issue 10).

The limiter stage alone (the chain cannot use the split limiter until it is wired): test
signals are scaled so the limiter must take a known reduction on their peaks. Measured
with independent code (scipy band-pass, tests/sound_metrics.py, libebur128 through
pyebur128), never with automix's own meters.
"""

from __future__ import annotations

import numpy as np
import pyebur128
import pytest
from scipy import signal
from signals import pink_noise
from sound_metrics import attack_to_body_db, snare_hits, true_peak_8x_db

from automix.master import limiter

FS = 44100
THRESHOLD_DB = -1.0
#: issue 10: a kick may add at most 0.6 dB of level swing to a sustained pad.
PUMPING_GOAL_DB = 0.6
#: issue 10: snare attack-to-body loss at most 1 dB.
TRANSIENT_GOAL_DB = 1.0
KINDS = pytest.mark.parametrize("split", [False, True], ids=["wideband", "split"])


def kick_and_pad(seconds: float = 5.0, click: float = 0.1) -> np.ndarray:
    """120 bpm kicks (a sine swept 110 -> 50 Hz, 33 ms decay, a 2 ms noise click of
    ``click`` times the body) over a sustained pad of four sines at 1.1-2.2 kHz, the pad's
    RMS 20 dB under the kick's peak (as /work/notes/pump.py's "kick +10 dB"; its peak is
    ~12 dB under, so only the kicks reach the threshold). 50 ms fade-in (no step at the
    start)."""
    t_hit = np.arange(FS // 2) / FS
    pitch_hz = 50 + 60 * np.exp(-t_hit * 40)
    hit = np.sin(2 * np.pi * np.cumsum(pitch_hz) / FS) * np.exp(-t_hit * 30)
    hit += click * np.random.default_rng(0).standard_normal(t_hit.size) * np.exp(-t_hit / 0.002)
    kick = np.tile(hit, int(seconds * 2))
    t = np.arange(kick.size) / FS
    pad = sum(np.sin(2 * np.pi * f * t + k) for k, f in enumerate((1100.0, 1390.0, 1650.0, 2200.0)))
    pad *= 10 ** (-20 / 20) / np.sqrt(np.mean(pad**2))
    x = (kick + pad) * np.minimum(1.0, t / 0.05)
    return np.stack([x, x]).astype(np.float32)


def band_swing_db(x: np.ndarray, low_hz: float = 900.0, high_hz: float = 3000.0, skip_s: float = 1.0) -> float:
    """Level swing (max - min, dB) of 20 ms RMS of the 900-3000 Hz band (6th-order
    Butterworth, zero phase), after ``skip_s`` and before the last 0.5 s."""
    sos = signal.butter(6, [low_hz, high_hz], "bandpass", fs=FS, output="sos")
    y = signal.sosfiltfilt(sos, np.asarray(x[0], dtype=np.float64))
    hop = int(0.02 * FS)
    frames = y[: y.size // hop * hop].reshape(-1, hop)
    level_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    body = level_db[int(skip_s / 0.02) : -int(0.5 / 0.02)]
    return float(body.max() - body.min())


def over(x: np.ndarray, gain_reduction_db: float) -> np.ndarray:
    """``x`` scaled so its 8x true peak is ``gain_reduction_db`` over the threshold."""
    return (x * 10 ** ((THRESHOLD_DB + gain_reduction_db - true_peak_8x_db(x)) / 20)).astype(np.float32)


def ebur128_lufs(x: np.ndarray) -> float:
    state = pyebur128.R128State(x.shape[0], FS, pyebur128.MeasurementMode.MODE_I)
    state.add_frames(np.ascontiguousarray(x.T).ravel().astype(np.float64), x.shape[1])
    return pyebur128.get_loudness_global(state)


def run(x: np.ndarray, split: bool, release_ms: float = 60.0) -> np.ndarray:
    return limiter.limit(x, FS, threshold_db=THRESHOLD_DB, release_ms=release_ms, split_band=split).samples


@KINDS
@pytest.mark.parametrize("gain_reduction_db", [1.5, 5.0])
def test_a_kick_does_not_pump_a_pad(gain_reduction_db, split):
    x = over(kick_and_pad(), gain_reduction_db)
    y = run(x, split)
    assert true_peak_8x_db(y) <= THRESHOLD_DB + 0.05
    added = band_swing_db(y) - band_swing_db(x)
    if split:
        # measured +0.00 / +0.01 dB: the reduction is taken from the low band only
        assert added <= PUMPING_GOAL_DB
    else:
        # the wideband limiter ducks the pad with the kick: measured +1.46 / +4.95 dB.
        # The same measurement fails it -- the test can fail.
        assert added > PUMPING_GOAL_DB


@KINDS
@pytest.mark.parametrize("release_ms", [60.0, 5.0])
def test_snare_attack_to_body_loss_at_3_db(release_ms, split):
    hits, onsets = snare_hits(FS, 3.0)
    x = over(hits, 3.0)
    loss = attack_to_body_db(x, FS, onsets) - attack_to_body_db(run(x, split, release_ms), FS, onsets)
    assert loss <= TRANSIENT_GOAL_DB  # measured 0.19 / 0.76 dB wideband, 0.20 / 0.78 split


@pytest.mark.xfail(strict=True, reason="issue 10 goal not met at 6 dB of reduction: measured loss 1.18-1.91 dB "
                   "wideband, 1.25-2.01 dB split (60-5 ms release); a 50 ms high-band hold gives 0.56-1.06 dB "
                   "but costs 0.3 LU on dense material")
@KINDS
def test_snare_attack_to_body_loss_at_6_db(split):
    hits, onsets = snare_hits(FS, 3.0)
    x = over(hits, 6.0)
    loss = attack_to_body_db(x, FS, onsets) - attack_to_body_db(run(x, split), FS, onsets)
    assert loss <= TRANSIENT_GOAL_DB


def _programmes() -> dict[str, np.ndarray]:
    hits, _ = snare_hits(FS, 3.0)
    return {"kick and pad": kick_and_pad(3.0), "pink noise": pink_noise(3.0, FS),
            "snares on noise": hits + 0.3 * pink_noise(3.0, FS)}


@pytest.mark.parametrize("name", list(_programmes()))
@pytest.mark.parametrize("gain_reduction_db", [3.0, 6.0])
def test_split_is_at_least_as_loud_as_wideband(name, gain_reduction_db):
    # at the same input gain the split limiter removes about as much loudness as the
    # wideband one: measured (automix meter, 3 / 6 dB) kick and pad +0.04 / +0.30 LU, pink
    # noise +0.23 / -0.03, snares on noise -0.06 / -0.14 (it keeps more of the high band
    # but takes more from the low band there)
    x = over(_programmes()[name], gain_reduction_db)
    wide, split = ebur128_lufs(run(x, False)), ebur128_lufs(run(x, True))
    assert split >= wide - 0.2, (wide, split)


def _features(x: np.ndarray, block: int) -> limiter.SplitBandHops:
    collector = limiter.SplitBandFeatures(FS, x.shape[0])
    for start in range(0, x.shape[1], block):
        collector.add(x[:, start : start + block])
    return collector.result()


def test_split_features_do_not_depend_on_the_block_size():
    x = over(kick_and_pad(2.0) + 0.1 * pink_noise(2.0, FS), 3.0)
    a, b = _features(x, x.shape[1]), _features(x, 7000)
    for name in ("peak_low", "peak_high", "peak_sum", "peak_bands", "energy_low", "energy_high", "energy_cross",
                 "candidates"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.peak_sum.size == a.features.peak.size == a.energy_low.size == a.candidates.shape[0]


@pytest.mark.parametrize("name", list(_programmes()))
@pytest.mark.parametrize("gain_db", [3.0, 8.0])
def test_split_model_predicts_the_rendered_loudness(name, gain_db):
    from automix.master import loop

    x = over(_programmes()[name], 0.0)  # true peak at the threshold: gain_db is the overshoot
    hops = _features(x, 30000)
    # K-weighting is linear: the band energies add up to the wideband energy
    wideband = loop.collect_features(x, FS)
    assert np.allclose(hops.features.energy, wideband.energy, rtol=1e-6, atol=1e-9)
    for release_ms in (60.0, 5.0):
        energy, reduction_db = limiter.split_band_hop_energy(hops, gain_db, THRESHOLD_DB, release_ms)
        predicted = loop.loudness.gated_loudness(loop._granule_loudness(energy, hops.features)[1])
        rendered = ebur128_lufs(run((x * 10 ** (gain_db / 20)).astype(np.float32), True, release_ms))
        # measured +0.003 .. +0.023 LU (automix's meter); issue goal 0.1, ideally 0.03
        assert -0.03 <= predicted - rendered <= 0.04, (release_ms, predicted, rendered)
        assert reduction_db.max() <= 0.0
