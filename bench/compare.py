"""automix against its peers, on the same generated files, in the same run.

    python bench/compare.py                      # master, batch and mix; 3 rounds
    python bench/compare.py --minutes 1 --rounds 2 --files 5      # a quick look
    python bench/compare.py --only long          # the 60-minute master (takes minutes)
    python bench/compare.py --only mix --minutes 12               # the 12-minute mix

Work items (issue 11), each on deterministic music-like audio that ``bench/_music.py``
writes (kick, snare, hats, bass, chords, pad, a vowel-like lead, a noise bed; stereo
44.1 kHz 24-bit WAV; the mix peaks at -1 dBFS and reads about -16.5 LUFS):

  single  master one song to -14 LUFS / -1 dBTP: ``automix master`` vs Matchering (to a
          generated reference at about -14 LUFS), ffmpeg loudnorm two-pass (measure, then
          normalise with the measured values and linear=true), pedalboard gain + limiter
          (a pyloudnorm reading, a gain and pedalboard's limiter at -1 dB), and two I/O
          floors: ``sox in.wav out.wav`` and a soundfile read + write.
  batch   master --files songs: ``automix master ... -j 1`` and ``-j 2`` vs ffmpeg-normalize
          (sequential: it has no parallel mode) and a sox copy loop (the floor).
  long    master one --long-minutes song (default 60): automix vs ffmpeg loudnorm two-pass
          and the sox floor. Off unless --long or --only long.
  mix     mix 8 stems: ``automix mix stems/ -o mix.wav`` vs the floors: a numpy script
          that reads the stems, sums them and writes the sum, and ``sox -m``.

Every tool runs as a subprocess; in each round the tools of a work item run one after
another, starting one further along the list each round (round-robin), so load from
other processes on the machine falls on all of them alike. Per run: wall time, CPU time
(user + sys of the child and the children it waited for, from os.wait4) and peak RSS
(the largest ru_maxrss of the child or any of its children: for -j 2 that is one
worker, not the sum). The driver stays a small stdlib-only process (its own peak RSS is
printed) because Linux reports a child's peak as at least its parent's at the fork;
audio is written and checked by child processes.

Every output is checked with libebur128 (pyebur128): integrated loudness and true peak,
printed beside the timings; automix's must be within +-0.1 LU of the target and at or
under the ceiling. Ratios are of the minimum wall times (the median's in brackets):
"matchering / automix = 5.1x" means automix took a fifth of Matchering's time;
"automix / floor = 3.2x" means automix took 3.2 times as long as only reading and
writing the audio. Peers that are not installed are skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MUSIC = HERE / "_music.py"
PY = sys.executable
TARGET_LUFS = -14.0
CEILING_DBTP = -1.0
LOUDNESS_TOLERANCE_LU = 0.1


# ----------------------------------------------------------------------------- running


@dataclass
class Measurement:
    """One run of one tool: all its commands together."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    error: str = ""
    note: str = ""


#: The tools run as installed: with Python's bytecode cache (pip compiles it at install). A
#: machine that sets PYTHONDONTWRITEBYTECODE would otherwise have automix, Matchering and
#: ffmpeg-normalize compile their sources on every start (0.1 s for automix here).
TOOL_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


class Meter:
    """Runs a tool's commands, adding up wall and CPU time and keeping the largest RSS."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.result = Measurement()

    def run(self, cmd: list[str], cwd: Path | None = None) -> tuple[str, str]:
        """Run ``cmd`` to the end; its stdout and stderr. A failure raises RuntimeError."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd,
                                    start_new_session=True, env=TOOL_ENV)
            killer = threading.Timer(self.timeout_s, lambda: os.killpg(proc.pid, signal.SIGKILL))
            killer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                killer.cancel()
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            self.result.wall_s += wall
            self.result.cpu_s += usage.ru_utime + usage.ru_stime
            self.result.peak_rss_mb = max(self.result.peak_rss_mb, usage.ru_maxrss / 1024)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if proc.returncode != 0:
            tail = " | ".join(stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"exit {proc.returncode} from {shlex.join(cmd[:3])} ...: {tail[-400:]}")
        return stdout, stderr


@dataclass
class Tool:
    """A contender in one work item. ``run(meter, outdir)`` does the work via ``meter``;
    its outputs are the audio files it leaves in ``outdir``."""

    name: str
    run: Callable[[Meter, Path], None]
    floor: bool = False  # an I/O floor: ratios read automix / floor
    main: bool = False  # the automix entry the others are compared to
    runs: list[Measurement] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------ tools


def automix_cmd() -> list[str]:
    script = Path(PY).with_name("automix")  # the console script users run, next to this python
    return [str(script)] if script.exists() else [PY, "-m", "automix"]


def find_exe(name: str) -> str | None:
    beside = Path(PY).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None  # finds, does not import (the driver stays small)


def ffmpeg_loudnorm(meter: Meter, src: Path, dst: Path) -> None:
    """ffmpeg's documented two-pass loudnorm: measure, then normalise with the measured values."""
    target = f"I={TARGET_LUFS:g}:TP={CEILING_DBTP:g}:LRA=11"
    _, err = meter.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(src), "-af",
                        f"loudnorm={target}:print_format=json", "-f", "null", "-"])
    stats = json.loads(err[err.rindex("{"):])
    _, err = meter.run(["ffmpeg", "-hide_banner", "-nostats", "-y", "-i", str(src), "-af",
               (f"loudnorm={target}:measured_I={stats['input_i']}:measured_TP={stats['input_tp']}:"
                f"measured_LRA={stats['input_lra']}:measured_thresh={stats['input_thresh']}:"
                f"offset={stats['target_offset']}:linear=true:print_format=json"),
               "-ar", "44100", "-c:a", "pcm_s24le", str(dst)])
    # linear=true falls back to dynamic (AGC) mode when the gain would break the ceiling
    mode = json.loads(err[err.rindex("{"):]).get("normalization_type", "?")
    meter.result.note = f"loudnorm mode: {mode}"


PEDALBOARD = """
import sys, soundfile as sf, pyloudnorm, pedalboard
x, rate = sf.read(sys.argv[1], dtype="float32", always_2d=True)
gain_db = float(sys.argv[3]) - pyloudnorm.Meter(rate).integrated_loudness(x)
ceiling_db = float(sys.argv[4])
# JUCE's limiter makes up its threshold (its peaks land at 0 dBFS): the last gain puts them at the ceiling
board = pedalboard.Pedalboard([pedalboard.Gain(gain_db), pedalboard.Limiter(threshold_db=ceiling_db), pedalboard.Gain(ceiling_db)])
sf.write(sys.argv[2], board(x.T, rate).T, rate, subtype="PCM_24")
"""

MATCHERING = """
import sys, matchering as mg
mg.log(lambda *a: None)
mg.process(target=sys.argv[1], reference=sys.argv[2], results=[mg.pcm24(sys.argv[3])])
"""

COPY = """
import sys, soundfile as sf
x, rate = sf.read(sys.argv[1], dtype="float32", always_2d=True)
sf.write(sys.argv[2], x, rate, subtype="PCM_24")
"""

MIX_FLOOR = """
import sys, glob, numpy as np, soundfile as sf
total = None
for path in sorted(glob.glob(sys.argv[1] + "/*.wav")):
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    total = x if total is None else total + x
sf.write(sys.argv[2], total, rate, subtype="PCM_24")
"""


def single_tools(song: Path, reference: Path) -> tuple[list[Tool], list[str]]:
    tools, skipped = [Tool("automix master", lambda m, o: m.run(automix_cmd() + ["master", str(song), "-o", str(o), "--quiet"]),
                           main=True)], []
    if has_module("matchering"):
        tools.append(Tool("matchering (to reference)", lambda m, o: m.run([PY, "-c", MATCHERING, str(song), str(reference),
                                                                            str(o / "matchering.wav")])))
    else:
        skipped.append("matchering: not installed (pip install matchering)")
    if shutil.which("ffmpeg"):
        tools.append(Tool("ffmpeg loudnorm 2-pass", lambda m, o: ffmpeg_loudnorm(m, song, o / "ffmpeg.wav")))
    else:
        skipped.append("ffmpeg loudnorm: ffmpeg not installed (apt-get install ffmpeg)")
    if has_module("pedalboard") and has_module("pyloudnorm"):
        tools.append(Tool("pedalboard gain+limiter", lambda m, o: m.run([PY, "-c", PEDALBOARD, str(song), str(o / "pedalboard.wav"),
                                                                          str(TARGET_LUFS), str(CEILING_DBTP)])))
    else:
        skipped.append("pedalboard: pedalboard or pyloudnorm not installed")
    if shutil.which("sox"):
        tools.append(Tool("floor: sox copy", lambda m, o: m.run(["sox", str(song), str(o / "sox.wav")]), floor=True))
    else:
        skipped.append("sox floor: sox not installed (apt-get install sox)")
    tools.append(Tool("floor: python read+write", lambda m, o: m.run([PY, "-c", COPY, str(song), str(o / "copy.wav")]), floor=True))
    return tools, skipped


def batch_tools(songs: list[Path]) -> tuple[list[Tool], list[str]]:
    names = [str(s) for s in songs]
    tools = [Tool("automix master -j 1", lambda m, o: m.run(automix_cmd() + ["master", *names, "-o", str(o), "--quiet", "-j", "1"]),
                  main=True),
             Tool("automix master -j 2", lambda m, o: m.run(automix_cmd() + ["master", *names, "-o", str(o), "--quiet", "-j", "2"]))]
    skipped = []
    normalize = find_exe("ffmpeg-normalize")
    if normalize and shutil.which("ffmpeg"):
        # EBU mode (two passes per file, as loudnorm above); it processes files one by one
        tools.append(Tool("ffmpeg-normalize", lambda m, o: m.run([normalize, *names, "-of", str(o), "-ext", "wav", "-nt", "ebu",
                                                                   "-t", str(TARGET_LUFS), "-tp", str(CEILING_DBTP),
                                                                   "-ar", "44100", "-f", "-q"])))
    else:
        skipped.append("ffmpeg-normalize: not installed (pip install ffmpeg-normalize; needs ffmpeg)")
    if shutil.which("sox"):
        def sox_loop(m: Meter, o: Path) -> None:
            for s in songs:
                m.run(["sox", str(s), str(o / s.name)])
        tools.append(Tool("floor: sox copy loop", sox_loop, floor=True))
    return tools, skipped


def long_tools(song: Path) -> tuple[list[Tool], list[str]]:
    tools = [Tool("automix master", lambda m, o: m.run(automix_cmd() + ["master", str(song), "-o", str(o), "--quiet"]), main=True)]
    skipped = ["matchering: skipped (it refuses files over 15 minutes)"]
    if shutil.which("ffmpeg"):
        tools.append(Tool("ffmpeg loudnorm 2-pass", lambda m, o: ffmpeg_loudnorm(m, song, o / "ffmpeg.wav")))
    else:
        skipped.append("ffmpeg loudnorm: ffmpeg not installed (apt-get install ffmpeg)")
    if shutil.which("sox"):
        tools.append(Tool("floor: sox copy", lambda m, o: m.run(["sox", str(song), str(o / "sox.wav")]), floor=True))
    else:
        skipped.append("sox floor: sox not installed (apt-get install sox)")
    return tools, skipped


def mix_tools(stems: Path) -> tuple[list[Tool], list[str]]:
    tools = [Tool("automix mix", lambda m, o: m.run(automix_cmd() + ["mix", str(stems), "-o", str(o / "mix.wav"), "--quiet"]),
                  main=True),
             Tool("floor: numpy read+sum+write", lambda m, o: m.run([PY, "-c", MIX_FLOOR, str(stems), str(o / "sum.wav")]),
                  floor=True)]
    skipped = []
    if shutil.which("sox"):
        inputs = [arg for p in sorted(stems.glob("*.wav")) for arg in ("-v", "1", str(p))]  # a plain sum, as the numpy floor
        tools.append(Tool("floor: sox -m", lambda m, o: m.run(["sox", "-m", *inputs, str(o / "sox.wav")]), floor=True))
    else:
        skipped.append("sox -m floor: sox not installed (apt-get install sox)")
    return tools, skipped


# --------------------------------------------------------------------------- reporting


@dataclass
class Item:
    key: str
    title: str
    tools: list[Tool]
    skipped: list[str]
    check_target: bool  # automix's outputs must hit -14 LUFS / -1 dBTP (the mix is checked too)
    goals: list[tuple[str, str, float]]  # (tool name, "peer/automix>=" | "automix/floor<=" | "rss<=", value)


def generate(kind: str, path: Path, minutes: float, seed: int) -> None:
    subprocess.run([PY, str(MUSIC), kind, str(path), f"{minutes}", str(seed)], check=True)


def verify(paths: list[Path]) -> list[dict]:
    if not paths:
        return []
    if not has_module("pyebur128"):
        return [{"path": str(p), "error": "pyebur128 not installed"} for p in paths]
    out = subprocess.run([PY, str(MUSIC), "verify", *map(str, paths)], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def fmt_check(tool: Tool, check_target: bool) -> str:
    """Loudness and true peaks of a tool's outputs (the range over a batch); for automix,
    whether every output is within the tolerance of the target and under the ceiling."""
    if not tool.checks:
        return "no output" if tool.runs and not any(r.error for r in tool.runs) else "-"
    if "error" in tool.checks[0]:
        return tool.checks[0]["error"]
    lufs = [c["lufs"] for c in tool.checks]
    peak = max(c["true_peak_dbtp"] for c in tool.checks)
    fine = max(c["true_peak_16x_dbtp"] for c in tool.checks)
    text = f"{min(lufs):7.2f}" if len(lufs) == 1 else f"{min(lufs):.2f}..{max(lufs):.2f}"
    text = f"{text:>13s} LUFS {peak:6.2f} {fine:6.2f} dBTP"
    if tool.name.startswith("automix") and check_target:
        off = [Path(c["path"]).name for c in tool.checks if abs(c["lufs"] - TARGET_LUFS) > LOUDNESS_TOLERANCE_LU]
        over = [Path(c["path"]).name for c in tool.checks if c["true_peak_16x_dbtp"] > CEILING_DBTP]
        over_4x = [Path(c["path"]).name for c in tool.checks if c["true_peak_dbtp"] > CEILING_DBTP]
        if off or over:
            text += f"  TARGET MISSED: {len(off)} off loudness {off[:3]}, {len(over)} over the ceiling {over[:3]}"
        else:
            text += "  target ok"
        if over_4x:
            text += f" (libebur128 reads {len(over_4x)} over the ceiling, up to {peak - CEILING_DBTP:+.3f} dB: {over_4x[:3]})"
    return text


def stats(tool: Tool) -> dict | None:
    good = [r for r in tool.runs if not r.error]
    if not good:
        return None
    walls, cpus = [r.wall_s for r in good], [r.cpu_s for r in good]
    return {"wall_min": min(walls), "wall_med": statistics.median(walls), "cpu_min": min(cpus),
            "cpu_med": statistics.median(cpus), "rss_max": max(r.peak_rss_mb for r in good), "n": len(good)}


def report(item: Item) -> list[str]:
    lines = [f"\n== {item.title} =="]
    lines += [f"   skipped {s}" for s in item.skipped]
    lines.append(f"   {'tool':30s} {'wall min':>9s} {'median':>8s} {'CPU min':>8s} {'median':>8s} {'peak RSS':>9s}   "
                 f"output: integrated, true peak by libebur128 (4x) and 16x")
    table = {t.name: stats(t) for t in item.tools}
    for tool in item.tools:
        s = table[tool.name]
        if s is None:
            lines.append(f"   {tool.name:30s} {'failed':>9s}   {tool.runs[-1].error if tool.runs else ''}")
            continue
        lines.append(f"   {tool.name:30s} {s['wall_min']:8.2f}s {s['wall_med']:7.2f}s {s['cpu_min']:7.2f}s {s['cpu_med']:7.2f}s "
                     f"{s['rss_max']:6.0f} MB   {fmt_check(tool, item.check_target)}"
                     + (f"  ({tool.runs[-1].note})" if tool.runs[-1].note else ""))
        failed = [r.error for r in tool.runs if r.error]
        if failed:
            lines.append(f"   {'':30s} {len(failed)} run(s) failed: {failed[-1]}")
    main = next((t for t in item.tools if t.main), None)
    ms = table.get(main.name) if main else None
    if ms is None:
        return lines + ["   automix failed: no ratios"]
    lines.append("   ratios (of min wall; median in brackets; CPU of min CPU):")
    for tool in item.tools:
        s = table[tool.name]
        if tool is main or s is None:
            continue
        if tool.name.startswith("automix"):  # another automix setting: its speed-up over the main one
            lines.append(f"     speed-up of {tool.name}: {main.name} / {tool.name} = {ms['wall_min'] / s['wall_min']:.2f}x "
                         f"({ms['wall_med'] / s['wall_med']:.2f}x), CPU {ms['cpu_min'] / s['cpu_min']:.2f}x, "
                         f"peak RSS {ms['rss_max']:.0f} vs {s['rss_max']:.0f} MB")
        elif tool.floor:
            lines.append(f"     {main.name} / {tool.name} = {ms['wall_min'] / s['wall_min']:.1f}x "
                         f"({ms['wall_med'] / s['wall_med']:.1f}x), CPU {ms['cpu_min'] / max(s['cpu_min'], 1e-3):.1f}x")
        else:
            lines.append(f"     {tool.name} / {main.name} = {s['wall_min'] / ms['wall_min']:.2f}x "
                         f"({s['wall_med'] / ms['wall_med']:.2f}x), CPU {s['cpu_min'] / ms['cpu_min']:.2f}x, "
                         f"peak RSS {ms['rss_max']:.0f} vs {s['rss_max']:.0f} MB")
    for name, kind, value in item.goals:
        s = table.get(name)
        if kind == "rss<=":
            ok = ms["rss_max"] <= value
            lines.append(f"   goal  [{'pass' if ok else 'FAIL'}] {main.name} peak RSS <= {value:g} MB: {ms['rss_max']:.0f} MB")
            continue
        if s is None:
            lines.append(f"   goal  [ -- ] {name}: not measured")
            continue
        if kind == "peer/automix>=":  # automix at least `value` times faster than the peer
            wall, cpu, text = s["wall_min"] / ms["wall_min"], s["cpu_min"] / ms["cpu_min"], f"{name} / {main.name} >= {value:g}x"
            ok = wall >= value
        elif kind == "automix/floor<=":  # automix within `value` times the floor
            wall, cpu = ms["wall_min"] / s["wall_min"], ms["cpu_min"] / max(s["cpu_min"], 1e-3)
            ok, text = wall <= value, f"{main.name} / {name} <= {value:g}x"
        else:  # "scaling>=": the main entry's time over this one's (-j 1 over -j 2)
            wall, cpu, text = ms["wall_min"] / s["wall_min"], ms["cpu_min"] / s["cpu_min"], f"{main.name} / {name} >= {value:g}x"
            ok = wall >= value
        lines.append(f"   goal  [{'pass' if ok else 'FAIL'}] {text}: {wall:.2f}x wall (CPU {cpu:.2f}x)")
    return lines


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], check=False, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "automix"],
                           check=False, capture_output=True, text=True).stdout.strip()
    versions = []
    for exe, args in (("ffmpeg", ["-version"]), ("sox", ["--version"])):
        if shutil.which(exe):
            first = subprocess.run([exe, *args], check=False, capture_output=True, text=True).stdout.splitlines()[:1]
            versions.append(" ".join(first[0].split()[:3]) if first else exe)
    return (f"machine: {os.cpu_count()} cores ({model}), {ram_gb:.1f} GB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}\n"
            f"automix: {commit}{' (automix/ has uncommitted changes)' if dirty else ''}; "
            f"AUTOMIX_THREADS={os.environ.get('AUTOMIX_THREADS', 'unset')}\n"
            f"peers: {', '.join(versions) or 'no ffmpeg/sox'}")


# -------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.5, help="length of each song and stem (default 3.5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every tool, interleaved (default 3)")
    parser.add_argument("--files", type=int, default=20, help="songs in the batch (default 20)")
    parser.add_argument("--long-minutes", type=float, default=60.0, help="length of the long master (default 60)")
    parser.add_argument("--long", action="store_true", help="also run the long master (off by default: it takes minutes)")
    parser.add_argument("--only", action="append", choices=["master", "single", "batch", "mix", "long"],
                        help="run only this work item (repeatable; master = single + batch)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is killed (default 3600)")
    parser.add_argument("--workdir", type=Path, help="where to write the audio (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()

    wanted = set(args.only or ["single", "batch", "mix"] + (["long"] if args.long else []))
    if "master" in wanted:
        wanted |= {"single", "batch"}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="automix-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    print(machine())
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} "
          f"(a shared machine: compare the ratios from one run, not absolute times)")
    print(f"generating audio in {work} ...", flush=True)
    started = time.perf_counter()
    items: list[Item] = []
    minutes = f"{args.minutes:g}-min"
    if "single" in wanted or "batch" in wanted:
        count = args.files if "batch" in wanted else 1
        songs = []
        for i in range(count):
            songs.append(work / "songs" / f"song{i + 1:02d}.wav")
            songs[-1].parent.mkdir(exist_ok=True)
            generate("song", songs[-1], args.minutes, seed=i + 1)
        reference = work / "reference.wav"
        generate("ref", reference, args.minutes, seed=101)
        if "single" in wanted:
            tools, skipped = single_tools(songs[0], reference)
            items.append(Item("single", f"master one {minutes} stereo song to {TARGET_LUFS:g} LUFS / {CEILING_DBTP:g} dBTP",
                              tools, skipped, True,
                              [("matchering (to reference)", "peer/automix>=", 5.0), ("ffmpeg loudnorm 2-pass", "peer/automix>=", 3.0)]))
        if "batch" in wanted:
            tools, skipped = batch_tools(songs)
            items.append(Item("batch", f"master {count} {minutes} songs", tools, skipped, True,
                              [("ffmpeg-normalize", "peer/automix>=", 1.0), ("automix master -j 2", "scaling>=", 1.7)]))
    if "long" in wanted:
        song = work / "long.wav"
        generate("song", song, args.long_minutes, seed=201)
        tools, skipped = long_tools(song)
        items.append(Item("long", f"master one {args.long_minutes:g}-min song", tools, skipped, True,
                          [("", "rss<=", 500.0), ("ffmpeg loudnorm 2-pass", "peer/automix>=", 1.0)]))
    if "mix" in wanted:
        stems = work / "stems"
        generate("stems", stems, args.minutes, seed=301)
        tools, skipped = mix_tools(stems)
        items.append(Item("mix", f"mix 8 stems x {minutes} (stereo 24-bit WAV)", tools, skipped, True,
                          [("floor: numpy read+sum+write", "automix/floor<=", 4.0), ("", "rss<=", 1000.0)]))
    print(f"generated in {time.perf_counter() - started:.0f} s; {args.rounds} rounds ...", flush=True)

    for r in range(args.rounds):
        for item in items:
            order = item.tools[r % len(item.tools):] + item.tools[: r % len(item.tools)]
            for tool in order:
                out = work / "out" / item.key / tool.name.replace(" ", "_").replace("/", "_")
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                meter = Meter(args.timeout)
                try:
                    tool.run(meter, out)
                except (RuntimeError, ValueError, KeyError) as exc:  # a failed or unparsable run is reported, not fatal
                    meter.result.error = str(exc)
                tool.runs.append(meter.result)
                status = f"failed: {meter.result.error[:120]}" if meter.result.error else f"{meter.result.wall_s:.2f} s"
                print(f"  round {r + 1} {item.key:6s} {tool.name:30s} {status}", flush=True)
    for item in items:  # outputs of the last round
        for tool in item.tools:
            out = work / "out" / item.key / tool.name.replace(" ", "_").replace("/", "_")
            tool.checks = verify(sorted(out.glob("*.wav")))

    load_after = os.getloadavg()
    lines = []
    for item in items:
        lines += report(item)
    lines.append(f"\nload average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; "
                 f"driver peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
                 f"(every peak RSS above includes at least this); total {time.perf_counter() - started:.0f} s")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({item.key: {t.name: {"runs": [vars(r) for r in t.runs], "checks": t.checks}
                                                    for t in item.tools} for item in items}, indent=1))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
