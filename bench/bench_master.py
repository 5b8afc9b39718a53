"""Mastering speed and accuracy: automix master vs ffmpeg loudnorm and Matchering.

    python bench/bench_master.py [--minutes 3.5]

All tools master the same file to -14 LUFS / -1 dBTP (Matchering to a reference at
-14 LUFS, as it matches a reference rather than a number). Each runs in its own
process; the table gives wall time, the ratio to automix, peak memory, and what
libebur128 and a 16x oversampler read from each output.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyebur128
from _common import real_or_synthetic_music, run_command
from scipy import signal

from automix.io.audio import read_audio, write_audio

parser = argparse.ArgumentParser()
parser.add_argument("--minutes", type=float, default=3.5)
args = parser.parse_args()

work = Path(tempfile.mkdtemp())
music, source = real_or_synthetic_music(args.minutes * 60)
write_audio(music, 44100, work / "song.wav", "24")
print(f"material: {source}, {args.minutes:g} min stereo 44.1 kHz, 24-bit WAV")


def verdict(path: Path) -> str:
    audio = read_audio(path)
    mode = pyebur128.MeasurementMode
    state = pyebur128.R128State(audio.channels, audio.sample_rate, mode.MODE_I | mode.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(audio.samples.T).ravel().astype(np.float64), audio.frames)
    peak = max(pyebur128.get_true_peak(state, c) for c in range(audio.channels))
    head = audio.samples[:, : 44100 * 60].astype(np.float64)  # 16x on the first minute (memory)
    fine = np.abs(signal.resample_poly(head, 16, 1, axis=-1, window=("kaiser", 10.0))).max()
    return f"{pyebur128.get_loudness_global(state):7.2f} LUFS {20 * np.log10(peak):6.2f} dBTP (16x, 1st min: {20 * np.log10(fine):6.2f})"


rows = []
automix_cmd = [sys.executable, "-m", "automix", "master", str(work / "song.wav"), "-o", str(work / "automix"), "--quiet",
               "--target-lufs", "-14", "--ceiling-dbtp", "-1", "--max-limiting-db", "20"]
seconds, memory = run_command(automix_cmd)
rows.append(("automix master", seconds, memory, work / "automix" / "song.wav"))

if shutil.which("ffmpeg"):
    # ffmpeg's documented two-pass loudnorm: measure, then normalise with the measurement.
    import json
    import subprocess

    first_seconds, _ = run_command(["ffmpeg", "-hide_banner", "-i", str(work / "song.wav"), "-af",
                                    "loudnorm=I=-14:TP=-1:LRA=11:print_format=json", "-f", "null", "-"])
    first = subprocess.run(["ffmpeg", "-hide_banner", "-i", str(work / "song.wav"), "-af", "loudnorm=I=-14:TP=-1:LRA=11:print_format=json",
                            "-f", "null", "-"], capture_output=True, text=True)
    stats = json.loads(first.stderr[first.stderr.rindex("{"):])
    second_cmd = ["ffmpeg", "-hide_banner", "-y", "-i", str(work / "song.wav"), "-af",
                  f"loudnorm=I=-14:TP=-1:LRA=11:measured_I={stats['input_i']}:measured_TP={stats['input_tp']}:"
                  f"measured_LRA={stats['input_lra']}:measured_thresh={stats['input_thresh']}:offset={stats['target_offset']}:linear=true",
                  "-ar", "44100", "-c:a", "pcm_s24le", str(work / "ffmpeg.wav")]
    second_seconds, memory = run_command(second_cmd)
    rows.append(("ffmpeg loudnorm (2 passes)", first_seconds + second_seconds, memory, work / "ffmpeg.wav"))
else:
    print("ffmpeg not installed: skipped (apt-get install ffmpeg)")

try:
    import matchering  # noqa: F401

    reference = work / "reference.wav"
    louder = music * np.float32(10 ** (6 / 20))
    write_audio(np.clip(louder, -0.89, 0.89), 44100, reference, "24")
    script = (f"import matchering as mg; mg.log(lambda *a: None); "
              f"mg.process(target={str(work / 'song.wav')!r}, reference={str(reference)!r}, results=[mg.pcm24({str(work / 'matchering.wav')!r})])")
    seconds, memory = run_command([sys.executable, "-c", script])
    rows.append(("matchering (to a reference)", seconds, memory, work / "matchering.wav"))
except ImportError:
    print("matchering not installed: skipped (pip install matchering)")

base = rows[0][1]
print(f"\n{'tool':30s} {'time':>8s} {'x automix':>10s} {'peak MB':>8s}   output (libebur128; 16x oversampled)")
for name, seconds, memory, path in rows:
    print(f"{name:30s} {seconds:7.2f}s {seconds / base:10.2f} {memory:8.0f}   {verdict(path)}")
shutil.rmtree(work)
