"""Balance against reference mixes: automix vs the equal-loudness baseline.

    python bench/eval_balance.py STEMS_FOLDER [STEMS_FOLDER ...] [--preset pop] [--seed 1]

Each folder must hold stems whose plain sum *is* the reference (professional) mix. The
stems' levels are scrambled at random (+-12 dB each), automix mixes them (no
mastering, stems exported), and each exported stem's loudness relative to the mix is
compared with the same stem's loudness relative to the reference mix. The baseline
sets every stem to the same loudness. Printed: per-stem errors and the RMS error (LU)
of automix and of the baseline; lower is better.

Without folders it runs on ../shared/data multitracks, which are raw recordings, not
mixes: that run only shows the tool works, not how good the balance is.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import SHARED

from automix.io.audio import find_audio_files, read_audio, resample, write_audio
from automix.measure import loudness
from automix.mix.renderer import pan

parser = argparse.ArgumentParser()
parser.add_argument("folders", nargs="*", type=Path)
parser.add_argument("--preset", default="pop")
parser.add_argument("--seed", type=int, default=1)
args = parser.parse_args()
folders = args.folders or sorted(p for p in SHARED.iterdir() if p.is_dir())
rng = np.random.default_rng(args.seed)


def relative_loudness(stems: dict[str, np.ndarray], rate: int) -> dict[str, float]:
    """Each stem's active loudness minus the loudness of their sum (LU)."""
    total = sum(stems.values())
    mix = loudness.integrated_loudness(total, rate, absolute_gate_lufs=-120)
    return {name: loudness.integrated_loudness(x, rate, absolute_gate_lufs=-120) - mix for name, x in stems.items()}


totals = {"automix": [], "equal loudness": []}
for folder in folders:
    audio = [read_audio(p) for p in find_audio_files([folder])]
    rate = max(a.sample_rate for a in audio)
    frames = max(int(a.frames * rate / a.sample_rate) for a in audio)
    stems = {}
    for a in audio:
        x = pan(resample(a.samples, a.sample_rate, rate), 0.0)
        stems[a.path.stem] = np.pad(x, ((0, 0), (0, frames - x.shape[1])))
    reference = relative_loudness(stems, rate)
    active = {n: loudness.integrated_loudness(x, rate, absolute_gate_lufs=-120) for n, x in stems.items()}
    equal = relative_loudness({n: x * np.float32(10 ** ((-23 - active[n]) / 20)) for n, x in stems.items()}, rate)

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "in").mkdir()
        for a in audio:
            write_audio(a.samples * np.float32(10 ** (rng.uniform(-12, 12) / 20)), a.sample_rate, work / "in" / f"{a.path.stem}.wav", "32f")
        subprocess.run([sys.executable, "-m", "automix", "mix", str(work / "in"), "-o", str(work / "mix.wav"), "--no-master",
                        "--export-stems", str(work / "out"), "--preset", args.preset, "--quiet", "--bit-depth", "32f"], check=True)
        exported = {p.stem.split("_", 1)[1]: read_audio(p).samples for p in sorted((work / "out").glob("*.wav"))}
    estimate = relative_loudness(exported, rate)

    print(f"\n{folder.name} ({len(stems)} stems, preset {args.preset})")
    print(f"  {'stem':18s} {'reference':>9s} {'automix':>8s} {'equal':>8s}")
    for name in sorted(stems):
        got = estimate.get(name)
        print(f"  {name:18s} {reference[name]:9.1f} {got if got is not None else float('nan'):8.1f} {equal[name]:8.1f}")
        if got is not None:  # both scored on the same stems: those automix did not leave out
            totals["automix"].append(got - reference[name])
            totals["equal loudness"].append(equal[name] - reference[name])

print()
for name, errors in totals.items():
    errors = np.asarray(errors)
    print(f"RMS error {name:15s}: {np.sqrt(np.mean(errors ** 2)):5.2f} LU over {errors.size} stems")
if not args.folders:
    print("(../shared multitracks are raw recordings, not mixes: these numbers only show the tool runs)")
