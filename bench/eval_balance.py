"""Balance against reference mixes: automix vs the equal-loudness baseline.

    python bench/eval_balance.py STEMS_FOLDER [STEMS_FOLDER ...] [--preset pop] [--seeds 1 2 3]
    python bench/eval_balance.py EVAL/jazz/* --preset jazz --pythonpath /path/to/other/automix

Each folder must hold stems whose plain sum *is* the reference (professional) mix
(``bench/make_eval_set.py`` writes synthetic ones). Per seed, the stems' levels are
scrambled at random (uniform +-12 dB each), automix mixes them (``--no-master``,
stems exported) with the preset, and each exported stem's loudness relative to the mix
is compared with the same stem's loudness relative to the reference mix. The baseline
sets every stem to the same loudness. Loudness is the active loudness of automix's
balancer (BS.1770 with the relative gate only), mono stems centred by the
constant-power law.

Printed per folder: each stem's relative loudness in the reference, automix's and the
baseline's mixes; the folder's RMS error for both; and the group balance (vocals,
drums, bass, harmony, stems grouped by the role their names give) relative to the
vocals, with its RMS distance from the MUSDB18 averages. At the end: the mean over
folders of the per-folder RMS error (the issue's figure) and the RMS over all stems.

Without folders it runs on ../shared/data multitracks, which are raw recordings, not
mixes: that run only shows the tool works, not how good the balance is.
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from _common import SHARED

from automix.io.audio import find_audio_files, read_audio, resample
from automix.measure import loudness
from automix.mix.reference_levels import MUSDB18_RELATIVE_LU
from automix.mix.roles import role_from_name
from automix.presets import ROLE_GROUPS, available_presets

parser = argparse.ArgumentParser()
parser.add_argument("folders", nargs="*", type=Path)
parser.add_argument("--preset", default=None, help="preset for every folder (default: the parent folder's name if it is a preset, else pop)")
parser.add_argument("--seeds", type=int, nargs="+", default=[1])
parser.add_argument("--pythonpath", default=None, help="run the automix found here instead (e.g. an older version, for before/after)")
parser.add_argument("--quiet", action="store_true", help="only the per-folder and overall figures")
args = parser.parse_args()
folders = args.folders or sorted(p for p in SHARED.iterdir() if p.is_dir())

MUSDB_GROUPS = {"drums": MUSDB18_RELATIVE_LU["drums"], "bass": MUSDB18_RELATIVE_LU["bass"], "harmony": MUSDB18_RELATIVE_LU["other"]}


def lufs(x: np.ndarray, rate: int) -> float:
    return loudness.integrated_loudness(x, rate, absolute_gate_lufs=-120)


def centred(x: np.ndarray) -> np.ndarray:
    return x if x.shape[0] == 2 else np.concatenate([x[:1], x[:1]]) * np.float32(math.sqrt(0.5))


def relative_loudness(stems: dict[str, np.ndarray], rate: int) -> dict[str, float]:
    """Each stem's active loudness minus the loudness of their sum (LU)."""
    mix = lufs(sum(stems.values()), rate)
    return {name: lufs(x, rate) - mix for name, x in stems.items()}


def group_balance(stems: dict[str, np.ndarray], rate: int) -> dict[str, float]:
    """Loudness of each group's summed stems relative to the vocals group (LU)."""
    groups: dict[str, list[np.ndarray]] = {}
    for name, x in stems.items():
        guess = role_from_name(name)
        groups.setdefault(ROLE_GROUPS.get(guess.role, "harmony") if guess else "harmony", []).append(x)
    if "vocals" not in groups:
        return {}
    vocals = lufs(sum(groups["vocals"]), rate)
    return {g: lufs(sum(xs), rate) - vocals for g, xs in sorted(groups.items()) if g != "vocals"}


def distance_from_musdb(balance: dict[str, float]) -> float:
    errors = [balance[g] - MUSDB_GROUPS[g] for g in balance if g in MUSDB_GROUPS]
    return float(np.sqrt(np.mean(np.square(errors)))) if errors else float("nan")


def run_automix(folder: Path, audio, preset: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "in").mkdir()
        for a in audio:  # written with soundfile: automix refuses its own outputs as stems
            gain = np.float32(10 ** (rng.uniform(-12, 12) / 20))
            sf.write(work / "in" / f"{a.path.stem}.wav", (a.samples * gain).T, a.sample_rate, subtype="FLOAT")
        subprocess.run([sys.executable, "-m", "automix", "mix", str(work / "in"), "-o", str(work / "mix.wav"), "--no-master",
                        "--export-stems", str(work / "out"), "--preset", preset, "--quiet", "--bit-depth", "32f"],
                       check=True, env=env, cwd=work)
        return {p.stem.split("_", 1)[1]: read_audio(p).samples for p in sorted((work / "out").glob("*.wav"))}


per_folder = {"automix": [], "equal loudness": []}
all_errors = {"automix": [], "equal loudness": []}
distances = {"reference": [], "automix": []}
for folder in folders:
    preset = args.preset or (folder.parent.name if folder.parent.name in available_presets() else "pop")
    audio = [read_audio(p) for p in find_audio_files([folder])]
    rate = max(a.sample_rate for a in audio)
    frames = max(int(a.frames * rate / a.sample_rate) for a in audio)
    stems = {}
    for a in audio:
        x = centred(resample(a.samples, a.sample_rate, rate))
        stems[a.path.stem] = np.pad(x, ((0, 0), (0, frames - x.shape[1])))
    reference = relative_loudness(stems, rate)
    active = {n: lufs(x, rate) for n, x in stems.items()}
    equal = relative_loudness({n: x * np.float32(10 ** ((-23 - active[n]) / 20)) for n, x in stems.items()}, rate)
    reference_groups = group_balance(stems, rate)

    folder_errors = {"automix": [], "equal loudness": []}
    for seed in args.seeds:
        exported = {n: centred(x) for n, x in run_automix(folder, audio, preset, seed).items()}
        estimate = relative_loudness(exported, rate)
        if not args.quiet:
            print(f"\n{folder.name} ({len(stems)} stems, preset {preset}, seed {seed})")
            print(f"  {'stem':18s} {'reference':>9s} {'automix':>8s} {'equal':>8s}")
        for name in sorted(stems):
            got = estimate.get(name)
            if not args.quiet:
                print(f"  {name:18s} {reference[name]:9.1f} {got if got is not None else float('nan'):8.1f} {equal[name]:8.1f}")
            if got is not None:  # both scored on the same stems: those automix did not leave out
                folder_errors["automix"].append(got - reference[name])
                folder_errors["equal loudness"].append(equal[name] - reference[name])
        mixed_groups = group_balance(exported, rate)
        if mixed_groups:
            distances["automix"].append(distance_from_musdb(mixed_groups))
    if reference_groups:
        distances["reference"].append(distance_from_musdb(reference_groups))
    line = []
    for name, errors in folder_errors.items():
        rms = float(np.sqrt(np.mean(np.square(errors))))
        per_folder[name].append(rms)
        all_errors[name].extend(errors)
        line.append(f"{name} {rms:4.2f}")
    groups_text = ", ".join(f"{g} {v:+.1f}" for g, v in reference_groups.items())
    print(f"{folder.parent.name}/{folder.name:10s} RMS error LU: {', '.join(line)}"
          + (f"   reference groups vs vocals: {groups_text}" if groups_text else ""))

print()
for name, rms_per_folder in per_folder.items():
    print(f"{name:15s}: mean per-song RMS error {np.mean(rms_per_folder):5.2f} LU; "
          f"RMS over all {len(all_errors[name])} stems {np.sqrt(np.mean(np.square(all_errors[name]))):5.2f} LU")
if distances["automix"]:
    print(f"group balance distance from the MUSDB18 averages (RMS over drums/bass/harmony, songs with a vocal): "
          f"reference mixes {np.mean(distances['reference']):.2f} LU, automix {np.mean(distances['automix']):.2f} LU")
if not args.folders:
    print("(../shared multitracks are raw recordings, not mixes: these numbers only show the tool runs)")
