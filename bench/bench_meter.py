"""Metering speed and memory: automix against pyloudnorm and libebur128 (pyebur128).

    python bench/bench_meter.py [--minutes 3.5] [--rounds 3]

One generated stereo 44.1 kHz float WAV (dense noise-like music, peaks near 0 dBFS) is
measured by each tool in a fresh process, interleaved over several rounds. Printed per
tool: min and median wall time and CPU time of the measurement alone (after imports and
reading), the speed as a multiple of real time, the peak RSS of the whole process, and
the ratios to pyloudnorm and pyebur128.

What each measures (say so when comparing):
  automix measure        integrated, momentary/short-term, LRA, sample and 4x true peak
  automix stream         the same, reading the file in 64k-frame blocks (memory flat in length)
  automix integrated     integrated loudness only
  automix precise peak   the near-ideal (8x, 256 taps/phase) true peak
  automix analyze        the full analysis (loudness, spectrum, stereo, clipping, ...)
  pyloudnorm             integrated loudness only
  pyebur128              integrated, LRA and true peak (libebur128 in C)
``AUTOMIX_THREADS`` is passed through (default: all cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import sys, time
mode, path = sys.argv[1], sys.argv[2]
import numpy as np, soundfile as sf
if mode == "automix stream":
    from automix.measure import loudness
    info = sf.info(path)
    start, cpu = time.perf_counter(), time.process_time()
    meter = loudness.LoudnessMeter(info.samplerate, info.channels)
    for block in sf.blocks(path, blocksize=65536, dtype="float32", always_2d=True):
        meter.add(block.T)
    value = meter.result().integrated_lufs
    seconds = info.frames / info.samplerate
else:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    seconds = data.shape[0] / rate
    if mode.startswith("automix"):
        from automix.measure import loudness
        from automix.measure.analyzer import analyze
        from automix.io.audio import Audio
        x = np.ascontiguousarray(data.T)
    elif mode == "pyloudnorm":
        import pyloudnorm
        x = data.astype(np.float64)
    else:
        import pyebur128
    if mode != "pyebur128":
        del data  # only the array the tool reads stays in memory
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "automix measure":
        value = loudness.measure(x, rate).integrated_lufs
    elif mode == "automix integrated":
        value = loudness.integrated_loudness(x, rate)
    elif mode == "automix precise peak":
        value = loudness.true_peak_precise_dbtp(x, rate)
    elif mode == "automix analyze":
        value = analyze(Audio(x, rate)).integrated_lufs
    elif mode == "pyloudnorm":
        value = pyloudnorm.Meter(rate).integrated_loudness(x)
    else:
        m = pyebur128.MeasurementMode
        state = pyebur128.R128State(data.shape[1], rate, m.MODE_I | m.MODE_LRA | m.MODE_TRUE_PEAK)
        state.add_frames(data.astype(np.float64).ravel(), data.shape[0])
        value = pyebur128.get_loudness_global(state)
        pyebur128.get_loudness_range(state)
        [pyebur128.get_true_peak(state, c) for c in range(data.shape[1])]
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
print(wall, cpu, peak, seconds, value)
"""

MODES = ["automix measure", "automix stream", "automix integrated", "automix precise peak", "automix analyze",
         "pyloudnorm", "pyebur128"]


def make_file(path: Path, minutes: float, sample_rate: int = 44100) -> None:
    """Dense stereo noise-like music: low-passed noise plus a white floor, a beat envelope."""
    import numpy as np
    import soundfile as sf
    from scipy import signal

    rng = np.random.default_rng(1)
    frames = int(minutes * 60 * sample_rate)
    b, a = signal.butter(1, 2000 / (sample_rate / 2))
    zi = np.zeros((2, 1))
    with sf.SoundFile(path, "w", sample_rate, 2, "FLOAT") as out:
        for start in range(0, frames, 1 << 20):  # in blocks: a 60-minute file never in memory
            n = min(1 << 20, frames - start)
            white = rng.standard_normal((2, n))
            x, zi = signal.lfilter(b, a, white, axis=-1, zi=zi)
            x = x + 0.15 * white
            t = (start + np.arange(n)) / sample_rate
            x *= 0.6 + 0.4 * np.exp(-((t * 2) % 1.0) * 6)
            out.write((0.3 * x.T).astype(np.float32))


def run(mode: str, path: Path) -> tuple[float, float, float, float, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path)], check=True, capture_output=True, text=True, env=env)
    wall, cpu, rss, seconds, value = (float(v) for v in out.stdout.split())
    return wall, cpu, rss, seconds, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="*", default=MODES, help="a subset of: " + ", ".join(MODES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.wav"
        make_file(path, args.minutes)
        results: dict[str, list[tuple[float, float, float, float, float]]] = {mode: [] for mode in args.modes}
        for _ in range(args.rounds):  # interleaved, so machine load hits every tool alike
            for mode in args.modes:
                results[mode].append(run(mode, path))
    print(f"{args.minutes:g} min stereo 44.1 kHz float WAV, {args.rounds} rounds, "
          f"AUTOMIX_THREADS={os.environ.get('AUTOMIX_THREADS', 'unset')}, {os.cpu_count()} cores")
    print(f"{'tool':22s} {'min s':>7s} {'median s':>9s} {'cpu s':>7s} {'x realtime':>11s} {'peak RSS MB':>12s} "
          f"{'/pyloudnorm':>12s} {'/pyebur128':>11s}  reading")
    reference = {name: min(r[0] for r in results[name]) for name in ("pyloudnorm", "pyebur128") if name in results}
    for mode, runs in results.items():
        walls = [r[0] for r in runs]
        best = min(walls)
        ratios = [f"{best / reference[name]:.2f}" if name in reference else "-" for name in ("pyloudnorm", "pyebur128")]
        print(f"{mode:22s} {best:7.2f} {statistics.median(walls):9.2f} {min(r[1] for r in runs):7.2f} "
              f"{runs[0][3] / best:11.0f} {max(r[2] for r in runs):12.0f} {ratios[0]:>12s} {ratios[1]:>11s}  {runs[0][4]:.2f}")


if __name__ == "__main__":
    main()
