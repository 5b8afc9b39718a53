"""Shared helpers for the benchmarks: test material and timing in a clean process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "multitracks"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def real_or_synthetic_music(seconds: float, sample_rate: int = 44100) -> tuple[np.ndarray, str]:
    """Stereo music of the given length: the shared jazz multitrack looped (real
    recordings, when ../shared is there), else the synthetic sample song looped."""
    from automix.io.audio import read_audio, resample

    folder = SHARED / "filosax_01"
    if folder.is_dir():
        parts = [read_audio(p) for p in sorted(folder.glob("*.wav"))]
        left = parts[0].samples[0] + 0.8 * parts[1].samples[0] + 0.6 * parts[2].samples[0]
        right = parts[0].samples[0] + 0.5 * parts[1].samples[0] + 0.9 * parts[2].samples[0]
        block, rate, source = np.stack([left, right]), parts[0].sample_rate, "shared/filosax_01 (real recordings, looped)"
    else:
        stems = [read_audio(p) for p in sorted((ROOT / "sample_stems" / "pop_song").glob("*.flac"))]
        frames = min(s.frames for s in stems)
        block = sum(np.resize(s.samples[:, :frames], (2, frames)) for s in stems)
        rate, source = stems[0].sample_rate, "sample_stems/pop_song (synthetic, looped)"
    block = resample(block.astype(np.float32), rate, sample_rate)
    reps = int(np.ceil(seconds * sample_rate / block.shape[1]))
    music = np.tile(block, (1, reps))[:, : int(seconds * sample_rate)]
    return (0.5 * music / np.abs(music).max()).astype(np.float32), source


def timed(fn, *args, repeat: int = 1):
    """Best wall time of ``repeat`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def run_command(cmd: list[str]) -> tuple[float, float]:
    """Wall time (s) and peak memory (MB) of a command, in a wrapper process of its own
    (RUSAGE_CHILDREN is a maximum over all children, so it must not be shared)."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
        "print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1]) / 1024
