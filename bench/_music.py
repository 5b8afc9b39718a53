"""Deterministic music-like test audio for the benchmarks (bench/compare.py).

    python bench/_music.py song   OUT.wav MINUTES SEED      # a finished, unmastered mix
    python bench/_music.py ref    OUT.wav MINUTES SEED      # a loud, "mastered" reference
    python bench/_music.py stems  OUT_DIR MINUTES SEED      # 8 stems of one song
    python bench/_music.py verify FILE [FILE ...]           # loudness / peaks, one JSON line each

A song is 120-128 BPM 4/4: kick, snare, hats, a saw bass following the chord roots,
detuned saw chords, a soft pad, a vowel-like lead with vibrato and a low noise bed.
Four 8-bar sections are synthesised once per seed (vectorised per note), then the file is
written section by section with a fresh noise bed and a slow level automation, so a
60-minute file never sits in memory and takes seconds to write. Stereo 44.1 kHz 24-bit
WAV, as a DAW bounces them; the stems are stereo too (mono sources as dual mono), so
``sox -m`` can sum them.

Levels: the unmastered mix peaks at -1 dBFS (sample) and reads about -16.5 LUFS, a
peak-to-loudness ratio of about 15.5 dB, so -14 LUFS under a -1 dBTP ceiling needs ~2.5 dB
of limiting (as a real pre-master does; the pop preset allows 6 dB). The reference is the
same kind of song pushed 3.5 dB into a soft clipper at -1 dBFS: about -14 LUFS, so
Matchering (which matches the reference's loudness) aims where the others aim.

Run by the benchmark in child processes: the driver must stay small, because Linux
reports a child's peak RSS as at least its parent's peak at the fork.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

RATE = 44100
STEMS = ("kick", "snare", "hats", "bass", "keys", "pad", "vox", "fx")
#: RMS level (dBFS, over the four sections) of each stem in the finished mix, before the
#: mix is scaled to its peak: kick, bass and lead forward, hats and the noise bed low
MIX_RMS_DB = {"kick": -20.0, "snare": -26.0, "hats": -34.0, "bass": -21.0, "keys": -26.0, "pad": -30.0, "vox": -21.0,
              "fx": -40.0}
#: pans (-1 left .. +1 right), constant power
PANS = {"kick": 0.0, "snare": 0.05, "hats": 0.35, "bass": 0.0, "keys": 0.0, "pad": 0.0, "vox": 0.0, "fx": 0.0}
SONG_PEAK = 10 ** (-1 / 20)
#: stems are bounced this much louder than their place in the mix (each peaks well under
#: full scale; their plain sum is the mix + 3 dB, as stems exported pre-fader often are)
STEM_HEADROOM_DB = 3.0


def _saw(phase: np.ndarray) -> np.ndarray:
    """A naive saw from a phase in cycles (every use low-passes or band-passes it, so its
    aliasing stays far below the music; a band-limited sum of sines cost 10x the time)."""
    return 2.0 * np.mod(phase, 1.0) - 1.0


def _note_env(n: int, attack_s: float, release_s: float) -> np.ndarray:
    t = np.arange(n) / RATE
    env = np.minimum(1.0, t / max(attack_s, 1e-4))
    tail = np.clip((n / RATE - t) / release_s, 0.0, 1.0)
    return env * tail


class Song:
    """Four 8-bar sections of a seeded song, per stem, mono or stereo float64."""

    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.bpm = 120 + 2 * (seed % 5)
        self.beat = round(RATE * 60 / self.bpm)
        self.section_frames = 32 * self.beat
        key = 40 + seed % 7  # MIDI note of the key's root (E2 .. A#2)
        progressions = ([0, 5, 7, 3], [0, 8, 5, 7], [9, 5, 0, 7], [0, 3, 8, 7])
        self.sections = [self._section(rng, key, progressions[i], busy=i % 2 == 1) for i in range(4)]
        for name in STEMS:  # each stem to its mix level (RMS over the sections)
            if name == "fx":
                continue
            rms = np.sqrt(np.mean([np.mean(sec[name] ** 2) for sec in self.sections]))
            for sec in self.sections:
                sec[name] *= 10 ** (MIX_RMS_DB[name] / 20) / rms

    @staticmethod
    def _hz(midi: float) -> float:
        return 440.0 * 2 ** ((midi - 69) / 12)

    def _section(self, rng: np.random.Generator, key: int, prog: list[int], busy: bool) -> dict[str, np.ndarray]:
        n, beat = self.section_frames, self.beat
        out = {name: np.zeros(n) for name in STEMS}
        out["keys"] = np.zeros((2, n))
        out["pad"] = np.zeros((2, n))
        out["fx"] = np.zeros((2, n))
        # kick: pitch glide 110 -> 45 Hz, 300 ms decay, a click on top
        k_len = int(0.35 * RATE)
        t = np.arange(k_len) / RATE
        freq = 45 + 65 * np.exp(-t / 0.04)
        kick = np.sin(2 * np.pi * np.cumsum(freq) / RATE) * np.exp(-t / 0.12)
        kick[:64] += np.hanning(128)[64:] * 0.5
        for b in range(32):
            if b % 4 in (0, 2) or (busy and b % 8 == 7):
                out["kick"][b * beat: b * beat + k_len] += kick[: n - b * beat]
        # snare: band-passed noise and a 190 Hz body on beats 2 and 4
        s_len = int(0.25 * RATE)
        t = np.arange(s_len) / RATE
        bp = signal.butter(2, [1200, 6000], "bandpass", fs=RATE, output="sos")
        for b in range(1, 32, 2):
            body = 0.6 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)
            noise = signal.sosfilt(bp, rng.standard_normal(s_len)) * np.exp(-t / 0.07) * 1.6
            out["snare"][b * beat: b * beat + s_len] += (body + noise)[: n - b * beat]
        # hats: high-passed noise on eighths (sixteenths when busy), accents on the beat
        step = beat // (4 if busy else 2)
        h_len = int(0.05 * RATE)
        t = np.arange(h_len) / RATE
        hp = signal.butter(4, 7000, "highpass", fs=RATE, output="sos")
        for i, start in enumerate(range(0, n - h_len, step)):
            accent = 1.0 if start % beat == 0 else 0.55
            out["hats"][start: start + h_len] += signal.sosfilt(hp, rng.standard_normal(h_len)) * np.exp(-t / 0.015) * accent
        # bass: saw through a 700 Hz low-pass, eighth notes on the chord root
        lp = signal.butter(2, 700, "lowpass", fs=RATE, output="sos")
        eighth = beat // 2
        for bar in range(8):
            root = key + prog[bar % 4] - 12 * (prog[bar % 4] > 6)
            for e in range(8):
                start = bar * 4 * beat + e * eighth
                m = eighth - 200
                note = root + (12 if busy and e == 6 else 0)
                ph = self._hz(note) * np.arange(m) / RATE
                out["bass"][start: start + m] += _saw(ph) * _note_env(m, 0.003, 0.02)
        out["bass"] = signal.sosfilt(lp, out["bass"]) * 1.6
        # chords: detuned saw triads, one per bar, left/right detuned differently
        lp_keys = signal.butter(2, 3000, "lowpass", fs=RATE, output="sos")
        bar_len = 4 * beat
        for bar in range(8):
            root = key + 12 + prog[bar % 4]
            third = 3 if prog[bar % 4] in (0, 5, 9) else 4
            m = bar_len - 400
            tt = np.arange(m) / RATE
            env = _note_env(m, 0.01, 0.2) * (0.7 + 0.3 * np.exp(-tt / 0.4))
            for side, cents in ((0, -7), (1, 7)):
                chord = sum(_saw(self._hz(root + iv + cents / 100) * tt) for iv in (0, third, 7))
                out["keys"][side, bar * bar_len: bar * bar_len + m] += chord * env / 3
            # pad: soft sines an octave up, slow attack
            pad = sum(np.sin(2 * np.pi * self._hz(root + 12 + iv) * tt) for iv in (0, third, 7, 12))
            penv = _note_env(m, 0.3, 0.6)
            out["pad"][0, bar * bar_len: bar * bar_len + m] += pad * penv / 4
            out["pad"][1, bar * bar_len: bar * bar_len + m] += np.roll(pad, 300) * penv / 4
        out["keys"] = signal.sosfilt(lp_keys, out["keys"], axis=-1)
        # lead: vowel-like (harmonics through two formant band-passes), vibrato, phrases
        f1 = signal.butter(2, [600, 1000], "bandpass", fs=RATE, output="sos")
        f2 = signal.butter(2, [2200, 3000], "bandpass", fs=RATE, output="sos")
        scale = [0, 2, 3, 5, 7, 8, 10, 12]
        for bar in range(0, 8, 2):
            for q in range(6):  # six notes of 2/3 beat... a phrase of 4 beats, then rest
                m = int(beat * 2 / 3)
                start = bar * bar_len + q * m
                tt = np.arange(m) / RATE
                note = key + 24 + scale[int(rng.integers(0, len(scale)))]
                vib = 1 + 0.006 * np.sin(2 * np.pi * 5.5 * tt)
                ph = np.cumsum(self._hz(note) * vib) / RATE
                out["vox"][start: start + m] += _saw(ph) * _note_env(m, 0.02, 0.05)
        out["vox"] = 1.4 * signal.sosfilt(f1, out["vox"]) + 1.0 * signal.sosfilt(f2, out["vox"]) + 0.15 * out["vox"]
        return out

    def stems_block(self, index: int) -> dict[str, np.ndarray]:
        """Section ``index`` of the song: stereo per stem, with a fresh noise bed."""
        sec = self.sections[(index // 2) % 4 if index % 8 < 6 else 3 - index % 4]
        rng = np.random.default_rng([self.seed, index])
        n = self.section_frames
        lift = 0.85 + 0.15 * np.sin(index * 0.9)  # slow level automation between sections
        block: dict[str, np.ndarray] = {}
        for name in STEMS:
            x = sec[name]
            if name == "fx":
                white = rng.standard_normal((2, n))
                x = signal.lfilter([1.0], [1.0, -0.98], white, axis=-1) * 0.05 + 0.2 * white  # RMS about 0.3
                x = x * (0.6 + 0.4 * np.sin(2 * np.pi * np.arange(n) / n)) * 10 ** (MIX_RMS_DB["fx"] / 20) / 0.3
            if x.ndim == 1:
                pan = PANS[name]
                gains = np.array([np.cos((pan + 1) * np.pi / 4), np.sin((pan + 1) * np.pi / 4)]) * np.sqrt(2)
                x = gains[:, None] * x[None, :]
            block[name] = x * (lift if name in ("keys", "pad", "hats") else 1.0)
        return block


def _blocks(song: Song, minutes: float):
    frames = round(minutes * 60 * RATE)
    for index, start in enumerate(range(0, frames, song.section_frames)):
        block = song.stems_block(index)
        n = min(song.section_frames, frames - start)
        yield {name: x[:, :n] for name, x in block.items()}


def _song_scale(song: Song) -> float:
    """Gain putting the mix's sample peak at -1 dBFS (peak over the first eight sections,
    which play all four)."""
    peak = 0.0
    for block in _blocks(song, song.section_frames * 8 / RATE / 60):
        peak = max(peak, np.abs(sum(block.values())).max())
    return SONG_PEAK / peak


def write_song(path: Path, minutes: float, seed: int, reference: bool = False) -> None:
    song = Song(seed)
    scale = _song_scale(song)
    with sf.SoundFile(path, "w", RATE, 2, "PCM_24") as out:
        for block in _blocks(song, minutes):
            x = sum(block.values()) * scale
            if reference:  # a master at streaming loudness: +3.5 dB into a soft clipper at -1 dBFS
                x = SONG_PEAK * np.tanh(x * 10 ** (3.5 / 20) / SONG_PEAK)
            out.write(x.T.astype(np.float32))


def write_stems(folder: Path, minutes: float, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    song = Song(seed)
    scale = _song_scale(song) * 10 ** (STEM_HEADROOM_DB / 20)
    files = {name: sf.SoundFile(folder / f"{name}.wav", "w", RATE, 2, "PCM_24") for name in STEMS}
    try:
        for block in _blocks(song, minutes):
            for name, x in block.items():
                files[name].write((x * scale).T.astype(np.float32))
    finally:
        for f in files.values():
            f.close()


def verify(path: str) -> dict:
    """Integrated loudness and true peak by libebur128 (pyebur128), streamed in blocks;
    the sample peak; and a near-ideal true peak (16x polyphase, Kaiser beta 10) of the
    (up to 8) blocks whose 4x peak is nearest the file's highest. libebur128's 4x interpolator
    can read a few hundredths of a dB over the ideal value, so both are kept."""
    import pyebur128

    info = sf.info(path)
    mode = pyebur128.MeasurementMode
    state = pyebur128.R128State(info.channels, info.samplerate, mode.MODE_I | mode.MODE_TRUE_PEAK)
    block_frames, context = 1 << 18, 512
    block_peaks = []
    for block in sf.blocks(path, blocksize=block_frames, dtype="float64", always_2d=True):
        state.add_frames(np.ascontiguousarray(block).ravel(), block.shape[0])
        block_peaks.append(float(np.abs(block).max()))
    sample_peak = max(block_peaks, default=0.0)
    true_peak = max(pyebur128.get_true_peak(state, c) for c in range(info.channels))

    def oversampled_peak(f: sf.SoundFile, i: int, factor: int) -> float:
        f.seek(max(0, i * block_frames - context))
        x = f.read(block_frames + 2 * context, dtype="float64", always_2d=True)
        return float(np.abs(signal.resample_poly(x, factor, 1, axis=0, window=("kaiser", 10.0))).max())

    # screen at 4x the blocks within 3 dB of the sample peak, then 16x the (at most 8)
    # highest within 0.1 dB of the highest 4x reading: a limited hour is near its ceiling
    # everywhere, and 16x of all of it took minutes
    with sf.SoundFile(path) as f:
        coarse = {i: oversampled_peak(f, i, 4) for i, p in enumerate(block_peaks) if p >= sample_peak * 10 ** (-3 / 20)}
        top = max(coarse.values(), default=0.0)
        near = sorted((i for i, p in coarse.items() if p >= top * 10 ** (-0.1 / 20)), key=coarse.get, reverse=True)[:8]
        fine_peak = max((oversampled_peak(f, i, 16) for i in near), default=0.0)

    def db(v: float) -> float:
        return 20 * np.log10(v) if v > 0 else -np.inf

    return {"path": path, "lufs": round(float(pyebur128.get_loudness_global(state)), 3),
            "true_peak_dbtp": round(float(db(true_peak)), 3), "true_peak_16x_dbtp": round(float(db(fine_peak)), 3),
            "sample_peak_dbfs": round(float(db(sample_peak)), 3),
            "minutes": round(info.frames / info.samplerate / 60, 3), "rate": info.samplerate}


def main(argv: list[str]) -> None:
    what = argv[0]
    if what == "verify":
        for path in argv[1:]:
            print(json.dumps(verify(path)), flush=True)
        return
    target, minutes, seed = Path(argv[1]), float(argv[2]), int(argv[3])
    if what == "song":
        write_song(target, minutes, seed)
    elif what == "ref":
        write_song(target, minutes, seed, reference=True)
    elif what == "stems":
        write_stems(target, minutes, seed)
    else:
        raise SystemExit(f"unknown: {what}")


if __name__ == "__main__":
    main(sys.argv[1:])
