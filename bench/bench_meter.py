"""Metering speed: automix's full measurement vs pyloudnorm's integrated loudness alone.

    python bench/bench_meter.py [--minutes 10]

automix measures integrated loudness, momentary and short-term curves, LRA, sample and
true peak; pyloudnorm only integrated loudness. Both on the same 10-minute stereo file.
"""

import argparse

import pyloudnorm
from _common import real_or_synthetic_music, timed

from automix.measure import loudness

parser = argparse.ArgumentParser()
parser.add_argument("--minutes", type=float, default=10.0)
args = parser.parse_args()

music, source = real_or_synthetic_music(args.minutes * 60)
print(f"material: {source}, {args.minutes:g} min stereo 44.1 kHz")
baseline, reference = timed(lambda: pyloudnorm.Meter(44100).integrated_loudness(music.T), repeat=2)
ours, measured = timed(lambda: loudness.measure(music, 44100), repeat=2)
print(f"pyloudnorm integrated_loudness only : {baseline:6.2f} s  ({reference:.2f} LUFS)")
print(f"automix full measurement            : {ours:6.2f} s  ({measured.integrated_lufs:.2f} LUFS, "
      f"LRA {measured.loudness_range_lu:.1f} LU, {measured.true_peak_dbtp:.2f} dBTP)")
print(f"ratio automix / pyloudnorm          : {ours / baseline:.2f}")
