"""The mix streams: its peak memory does not grow with the length of the song.

8 synthetic stems (deterministic, 16-bit FLAC) are mixed and mastered by ``automix mix``
in a subprocess, whose peak RSS ``os.wait4`` reports. Held whole, as the mix once did,
every minute of 8 stereo stems is 170 MB of float32 per copy of the audio (and the old
code held several copies: 1.4 GB for 8 x 3 min); streamed, a longer song only adds the
per-granule measurements (a few KB per second).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

RATE = 44100
STEMS = 8


def make_stems(folder: Path, seconds: float) -> None:
    """A kit, bass, two guitars, keys and a voice-like tone: every stage of the chain acts."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * RATE)) / RATE
    beat = (t * 2.0) % 1.0  # 120 bpm
    stems = {
        "kick": np.sin(2 * np.pi * 55 * t) * np.exp(-beat * 12),
        "snare": rng.standard_normal(t.size) * np.exp(-((beat + 0.5) % 1.0) * 18) * 0.5,
        "hats": np.diff(rng.standard_normal(t.size + 1)) * np.exp(-((t * 8) % 1.0) * 40) * 0.2,
        "bass": np.sin(2 * np.pi * 41.2 * t * (1 + 0.5 * (np.floor(t / 2) % 2))) * 0.5,
        "gtr_L": np.sign(np.sin(2 * np.pi * 196 * t)) * 0.1 * (0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t)),
        "gtr_R": np.sign(np.sin(2 * np.pi * 247 * t)) * 0.1 * (0.6 + 0.4 * np.cos(2 * np.pi * 0.25 * t)),
        "keys": sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) * 0.1,
        "lead_vox": np.sin(2 * np.pi * 440 * t + 3 * np.sin(2 * np.pi * 5 * t)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * 0.3,
    }
    assert len(stems) == STEMS
    for name, x in stems.items():
        x = np.asarray(x, dtype=np.float32)
        x = np.stack([x, np.roll(x, 7)]) if name in ("keys", "hats") else x[None, :]  # two stereo stems
        sf.write(folder / f"{name}.flac", x.T, RATE, subtype="PCM_16")


#: Runs ``automix`` in a grandchild and prints its peak RSS (kB). A process's ru_maxrss
#: starts at the RSS of the process it was forked from (Linux keeps the larger of the
#: forked copy's and the exec'd program's), so pytest (often 1 GB or more after the whole
#: suite) must not be the direct parent: this small launcher is.
LAUNCHER = """
import os, sys
code = "import sys; from automix.cli import main; sys.argv[0] = 'automix'; main()"
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-c", code, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss_mb(folder: Path, output: Path) -> float:
    """Peak resident memory of one ``automix mix`` run, in MB."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, "mix", str(folder), "-o", str(output), "--quiet"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert output.exists()
    return int(done.stdout.split()[-1]) / 1024  # kilobytes on Linux


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in kilobytes on Linux only")
def test_mix_memory_does_not_grow_with_length(tmp_path):
    # both past 19 s, where the report's panning figure reaches its fixed 400 frames
    short_s, long_s = 20.0, 60.0
    make_stems(tmp_path / "short", short_s)
    make_stems(tmp_path / "long", long_s)
    short = peak_rss_mb(tmp_path / "short", tmp_path / "short.wav")
    long = peak_rss_mb(tmp_path / "long", tmp_path / "long.wav")
    # Held whole, the 40 s more would cost (8 stems, stereo, float32) per copy:
    one_copy_mb = STEMS * (long_s - short_s) * RATE * 2 * 4 / 2**20  # 108 MB
    print(f"peak RSS: {short:.0f} MB ({short_s:g} s), {long:.0f} MB ({long_s:g} s)")
    assert long - short < min(50.0, 0.4 * one_copy_mb), (short, long)
    # ... and the whole-file code needed over 5 copies: 8 x 1 min took > 600 MB
    assert long < 400, (short, long)
