"""Limiter sound and speed: the issue-10 table rows, automix vs pedalboard's Limiter.

    python bench/limiter_quality.py [--seconds 30]

At 44.1 kHz, 6 dB of gain reduction (input true peak 6 dB over the threshold), for each
release the mastering loop may choose: THD+N of 50 Hz, 100 Hz and 1 kHz sines, SMPTE
IMD (60 Hz + 7 kHz, 4:1), the snare attack-to-body loss, and the output's true peak over
the threshold (4x meter and an independent 8x reconstruction). Then speed on pink noise:
ms of CPU per second of stereo audio. Then pumping (tests/test_pumping.py's kick and
pad). Measurements come from tests/sound_metrics.py and tests/test_pumping.py, which do
not use automix code.

pedalboard's ``Limiter`` is not a true-peak limiter (no lookahead; it ends in a clipper),
so its ceiling column is its own sample-peak behaviour, shown for comparison only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import ROOT  # noqa: F401  (puts the repo and tests/ on sys.path)
from signals import pink_noise
from sound_metrics import (
    attack_to_body_db,
    smpte_imd_percent,
    snare_hits,
    thd_n_db,
    true_peak_8x_db,
)

from automix.master import limiter
from automix.measure import loudness

FS = 44100
THRESHOLD_DB = -1.0
RELEASES_MS = (60.0, 30.0, 15.0, 5.0)


def over(x: np.ndarray, gain_reduction_db: float) -> np.ndarray:
    return (x * 10 ** ((THRESHOLD_DB + gain_reduction_db - true_peak_8x_db(x)) / 20)).astype(np.float32)


def tone(*parts: tuple[float, float], seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    x = sum(a * np.sin(2 * np.pi * f * t) for f, a in parts)
    return np.repeat(np.asarray(x, dtype=np.float32)[None], 2, axis=0)


def automix_limiter(release_ms: float):
    return lambda x: limiter.limit(x, FS, threshold_db=THRESHOLD_DB, release_ms=release_ms).samples


def automix_split_limiter(release_ms: float):
    return lambda x: limiter.limit(x, FS, threshold_db=THRESHOLD_DB, release_ms=release_ms, split_band=True).samples


def pedalboard_limiter(release_ms: float):
    import pedalboard

    def run(x: np.ndarray) -> np.ndarray:
        return pedalboard.Limiter(threshold_db=THRESHOLD_DB, release_ms=release_ms)(x, FS)

    return run


def row(name: str, release_ms: float, run) -> str:
    thd = [thd_n_db(run(over(tone((f, 1.0)), 6.0)), FS, f) for f in (50.0, 100.0, 1000.0)]
    imd = smpte_imd_percent(run(over(tone((60.0, 0.8), (7000.0, 0.2)), 6.0)), FS)
    hits, onsets = snare_hits(FS, 3.0)
    hits = over(hits, 6.0)
    snare = run(hits)
    loss = attack_to_body_db(hits, FS, onsets) - attack_to_body_db(snare, FS, onsets)
    noise = run(over(pink_noise(3, FS), 6.0))
    tp4 = loudness.true_peak_dbtp(noise, FS) - THRESHOLD_DB
    tp8 = true_peak_8x_db(noise) - THRESHOLD_DB
    return (f"| {name} | {release_ms:g} | {thd[0]:.1f} | {thd[1]:.1f} | {thd[2]:.1f} | {imd:.2f} | {loss:.2f} "
            f"| {tp4:+.3f} / {tp8:+.3f} |")


def pumping_db(run, gain_reduction_db: float) -> float:
    from test_pumping import band_swing_db, kick_and_pad

    x = over(kick_and_pad(), gain_reduction_db)
    return band_swing_db(run(x)) - band_swing_db(x)


def speed_ms_per_s(run, seconds: float) -> float:
    x = over(pink_noise(seconds, FS), 6.0)
    best = np.inf
    for _ in range(3):
        start = time.process_time()
        run(x)
        best = min(best, time.process_time() - start)
    return 1000 * best / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the speed test signal")
    args = parser.parse_args()
    try:
        import pedalboard  # noqa: F401

        peers = [("pedalboard Limiter", pedalboard_limiter)]
    except ImportError:
        peers = []
    print("6 dB gain reduction at 44.1 kHz; THD+N in dB; IMD in %; snare loss in dB; "
          "pink-noise true peak over the threshold in dB (4x meter / 8x check)")
    print("| limiter | release ms | THD+N 50 Hz | 100 Hz | 1 kHz | SMPTE IMD % | snare loss | true peak over |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ours = [("automix", automix_limiter), ("automix split-band", automix_split_limiter)]
    for name, make in [*ours, *peers]:
        for release_ms in RELEASES_MS:
            print(row(name, release_ms, make(release_ms)))
    print()
    print("pumping: added 900-3000 Hz level swing (dB) of a pad under kicks, limiter taking 1.5 / 5 dB on them")
    for name, make in [*ours, *peers]:
        print(f"{name}: " + " / ".join(f"{pumping_db(make(60.0), gr):+.2f}" for gr in (1.5, 5.0)))
    for name, make in [*ours, *peers]:
        print(f"speed {name}: {speed_ms_per_s(make(60.0), args.seconds):.1f} ms CPU per second of stereo audio")


if __name__ == "__main__":
    main()
