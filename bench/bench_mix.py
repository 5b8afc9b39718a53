"""Mixing speed: automix mix on 8 stems of 3.5 minutes vs the I/O floor.

    python bench/bench_mix.py [--minutes 3.5]

The floor is what any tool must do: read the 8 stems, sum them, write the sum. The
ratio says how much automix's analysis, processing and mastering cost on top.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import ROOT, run_command

from automix.io.audio import read_audio, write_audio

parser = argparse.ArgumentParser()
parser.add_argument("--minutes", type=float, default=3.5)
args = parser.parse_args()

work = Path(tempfile.mkdtemp())
stems_dir = work / "stems"
stems_dir.mkdir()
frames = int(args.minutes * 60 * 44100)
sources = sorted((ROOT / "sample_stems" / "pop_song").glob("*.flac"))[:8]
for path in sources:
    audio = read_audio(path)
    write_audio(np.tile(audio.samples, (1, frames // audio.frames + 1))[:, :frames], 44100, stems_dir / f"{path.stem}.wav", "24")
print(f"material: {len(sources)} stems of sample_stems/pop_song looped to {args.minutes:g} min, 24-bit WAV")

floor_script = (
    "import sys, soundfile as sf, numpy as np, glob\n"
    f"files = sorted(glob.glob({str(stems_dir)!r} + '/*.wav'))\n"
    "total = None\n"
    "for f in files:\n"
    "    x, sr = sf.read(f, dtype='float32', always_2d=True)\n"
    "    x = np.repeat(x, 2, axis=1) if x.shape[1] == 1 else x\n"
    "    total = x if total is None else total + x\n"
    f"sf.write({str(work / 'floor.wav')!r}, total, sr, subtype='PCM_24')\n"
)
floor, floor_memory = run_command([sys.executable, "-c", floor_script])
seconds, memory = run_command([sys.executable, "-m", "automix", "mix", str(stems_dir), "-o", str(work / "mix.wav"), "--quiet"])
print(f"I/O floor (read, sum, write) : {floor:6.2f} s  {floor_memory:6.0f} MB peak")
print(f"automix mix                  : {seconds:6.2f} s  {memory:6.0f} MB peak")
print(f"ratio automix / floor        : {seconds / floor:.1f}")
shutil.rmtree(work)
