"""Synthesise evaluation songs whose stems sum to a reference mix at a known balance.

    python bench/make_eval_set.py OUT_FOLDER [--songs 4] [--spread-lu 2.0] [--seconds 8]

Writes ``OUT_FOLDER/<genre>/<song>/*.wav`` (32-bit float; their plain sum is the
reference mix) for three genres, each song with its own tempo, key, seed and stem
layout (a 4-stem MUSDB18-like split, or a multitrack with a kit on several
microphones, backing vocals, an instrumental lead...). Then::

    python bench/eval_balance.py OUT_FOLDER/pop/* --preset pop
    python bench/eval_balance.py OUT_FOLDER/jazz/* --preset jazz

What the reference balance is, and what this can and cannot show:

* pop: the groups (vocals, drums, bass, harmony) at the MUSDB18 train-set averages
  (drums -3.45, bass +1.0, other -0.44 LU relative to the vocals); edm and jazz: the
  group levels of the edm and jazz presets (genre practice, reasons in the preset
  files); inside a group, the roles' shares from the preset;
* every song then moves away from that average at random: each group by a normal
  deviate of ``--spread-lu`` (default 2 LU) and each stem inside its group by the same
  spread, as real songs differ from the average. MUSDB18's per-song spread is not in
  the published averages; 2 LU is an assumption, stated as such.

So the error automix reaches here shows that its rules implement the measured
averages, and how the per-song spread limits any fixed rule. It does not show that the
averages generalise to real songs: only stems of real released mixes can (none with a
licence allowing redistribution were found for this repository; MUSDB18 and
MedleyDB are available for research use on request from their authors).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import make_sample_stems as synth

from automix.measure import loudness
from automix.presets import ROLE_GROUPS, load_preset

RATE = synth.RATE
MIX_LUFS = -20.0


def active_lufs(x: np.ndarray) -> float:
    return loudness.integrated_loudness(np.atleast_2d(x), RATE, absolute_gate_lufs=-120)


def scale_to(x: np.ndarray, lufs: float) -> np.ndarray:
    return x * 10 ** ((lufs - active_lufs(x)) / 20)


def as_stereo(x: np.ndarray) -> np.ndarray:
    """Mono stems as 1-channel, stereo as 2: written as recorded."""
    return np.atleast_2d(x)


def placed(name: str, x: np.ndarray) -> np.ndarray:
    """One side of a stereo pair (``oh_l``) as the released mix has it: on its side
    only, written as a stereo stem (as MUSDB18's stems are the mix's stereo parts)."""
    if x.shape[0] == 1 and name.endswith(("_l", "_r")):
        silent = np.zeros_like(x[0])
        return np.stack([x[0], silent] if name.endswith("_l") else [silent, x[0]])
    return x


def centred(x: np.ndarray) -> np.ndarray:
    """A stem as it sounds in the mix: mono centred by the constant-power law (as
    bench/eval_balance.py and automix pan it), so its loudness is unchanged."""
    return x if x.shape[0] == 2 else np.concatenate([x, x]) * math.sqrt(0.5)


# --------------------------------------------------------------------------- parts
def melody_notes(rng, scale_root: int, count: int, low: int = -5, high: int = 9) -> list[int]:
    degrees = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16])
    steps = np.cumsum(rng.integers(-2, 3, count))
    steps = np.clip(steps, 0, degrees.size - 1)
    return [scale_root + int(degrees[s]) for s in steps]


def kit(n: int, beat: float, bars: int, rng, style: str) -> dict[str, np.ndarray]:
    kick, snare, hats, ride = (np.zeros(n) for _ in range(4))
    for bar in range(bars):
        t0 = bar * 4 * beat
        if style == "edm":
            for b in range(4):
                synth.place(kick, synth.kick_hit(0.4, 1.0), t0 + b * beat)
            for b in (1, 3):
                synth.place(snare, synth.snare_hit(0.25), t0 + b * beat, 0.8)
            for b in range(4):
                synth.place(hats, synth.hat_hit(0.06, 1.0), t0 + (b + 0.5) * beat)
        elif style == "jazz":
            swing = 2 / 3
            for b in (0, 1, 1 + swing, 2, 3, 3 + swing):
                synth.place(ride, synth.ride_hit(), t0 + b * beat, 0.8 if b in (1, 3) else 0.55)
            for b in (1, 3):
                synth.place(snare, synth.brush_swish(), t0 + b * beat, 0.6)
            for b in range(4):
                synth.place(kick, synth.kick_hit(0.3, 0.25), t0 + b * beat)
        else:
            for b in (0, 2, 2.5) if rng.random() < 0.5 else (0, 1.5, 2):
                synth.place(kick, synth.kick_hit(), t0 + b * beat)
            for b in (1, 3):
                synth.place(snare, synth.snare_hit(), t0 + b * beat)
            for eighth in range(8):
                synth.place(hats, synth.hat_hit(accent=1.0 if eighth % 2 == 0 else 0.6), t0 + eighth * beat / 2)
    return {"kick": kick, "snare": snare, "hats": hats, "ride": ride}


def chords_for(root: int, rng) -> list[list[int]]:
    shapes = {"I": [0, 4, 7], "V": [7, 11, 14], "vi": [9, 12, 16], "IV": [5, 9, 12], "ii": [2, 5, 9]}
    order = [["I", "V", "vi", "IV"], ["vi", "IV", "I", "V"], ["I", "IV", "V", "IV"], ["ii", "V", "I", "vi"]][rng.integers(4)]
    return [[root + i for i in shapes[name]] for name in order] * 2


def bass_line(n, beat, chords, rng, style: str) -> np.ndarray:
    bass = np.zeros(n)
    for bar, chord in enumerate(chords):
        root = chord[0] - 24
        if style == "jazz":
            notes = [root, root + 4, root + 7, root + 9]
            for b, note in enumerate(notes):
                k = np.arange(1, 25)
                tone = synth.additive(synth.midi_hz(note), beat * 1.1, k**-1.5 * np.exp(-k / 5.0), decay_per_harmonic=1.5)
                synth.place(bass, tone * synth.envelope(tone.size, 0.004, 0.25, 0.5, 0.06), bar * 4 * beat + b * beat)
        else:
            for eighth in range(8):
                if style == "edm" and eighth % 2 == 0:
                    continue  # off-beat bass under a four-on-the-floor kick
                k = np.arange(1, 30)
                tone = synth.additive(synth.midi_hz(root), beat / 2 * 0.9, 1.0 / k * np.exp(-k / (12.0 if style == "edm" else 8.0)),
                                      decay_per_harmonic=0.5)
                synth.place(bass, tone * synth.envelope(tone.size, 0.005, 0.08, 0.7, 0.03), bar * 4 * beat + eighth * beat / 2)
    return bass


def keys_part(n, beat, chords, brightness: float, pan: float) -> np.ndarray:
    out = np.zeros((2, n))
    for bar, chord in enumerate(chords):
        for hit in (0, 1.5, 2.5):
            for note in chord:
                tone = synth.additive(synth.midi_hz(note), 1.4, [1.0, 0.4 * brightness, 0.15 * brightness, 0.05], decay_per_harmonic=0.9)
                tone *= synth.envelope(tone.size, 0.004, 1.0, 0.2, 0.3)
                synth.place(out, synth.stereo(tone * (1 - pan), tone * pan), bar * 4 * beat + hit * beat, 0.3)
    return out


def guitar_part(n, beat, chords) -> np.ndarray:
    out = np.zeros(n)
    for bar, chord in enumerate(chords):
        arpeggio = [chord[0] + 12, chord[1] + 12, chord[2] + 12, chord[1] + 12]
        for sixteenth in range(16):
            synth.place(out, synth.plucked(arpeggio[sixteenth % 4], 0.5, 0.6, 0.993), bar * 4 * beat + sixteenth * beat / 4)
    return out


def pad_part(n, beat, chords) -> np.ndarray:
    out = np.zeros((2, n))
    for bar, chord in enumerate(chords):
        for note in chord:
            k = np.arange(1, 30)
            left = synth.additive(synth.midi_hz(note) * 1.004, 4 * beat + 0.5, 1.0 / k * np.exp(-k / 6.0))
            right = synth.additive(synth.midi_hz(note) * 0.996, 4 * beat + 0.5, 1.0 / k * np.exp(-k / 6.0))
            env = synth.envelope(left.size, 0.6, 0.4, 0.8, 0.5)
            synth.place(out, synth.stereo(left * env, right * env), bar * 4 * beat, 0.2)
    return out


def sung_line(n, beat, notes, rng, vowels="aeiou", start_beats=1.0) -> np.ndarray:
    out = np.zeros(n)
    position = start_beats * beat
    for note in notes:
        beats = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        if position + beats * beat > n / RATE - 0.3:
            break
        synth.place(out, synth.sung_note(note, beats * beat * 0.92, str(rng.choice(list(vowels)))), position)
        position += beats * beat
    return out


def lead_line(n, beat, notes, rng, kind: str) -> np.ndarray:
    out = np.zeros(n)
    position = beat
    for note in notes:
        beats = float(rng.choice([0.5, 1.0, 1.0, 1.5]))
        if position + beats * beat > n / RATE - 0.3:
            break
        if kind == "sax":
            tone = synth.sax_note(note, beats * beat * 0.92)
        else:
            k = np.arange(1, int(12000 / synth.midi_hz(note)))
            tone = synth.additive(synth.midi_hz(note), beats * beat * 0.9, 1.0 / k, vibrato_hz=5.0, vibrato_semitones=0.2)
            tone *= synth.envelope(tone.size, 0.01, 0.1, 0.8, 0.05)
        synth.place(out, tone, position)
        position += beats * beat
    return out


# --------------------------------------------------------------------------- songs
def song_stems(genre: str, index: int, seconds: float) -> dict[str, tuple[str, np.ndarray]]:
    """{file stem: (role, audio)} for one song; the layout varies with ``index``."""
    rng = np.random.default_rng(1000 * (1 + ["pop", "edm", "jazz"].index(genre)) + index)
    synth.rng = np.random.default_rng(rng.integers(1 << 30))  # noise bursts in the synth helpers
    bpm = {"pop": rng.uniform(88, 120), "edm": rng.uniform(122, 128), "jazz": rng.uniform(120, 160)}[genre]
    beat = 60 / bpm
    bars = max(2, int(seconds / (4 * beat)))
    n = int((bars * 4 * beat + 0.8) * RATE)
    root = 57 + int(rng.integers(0, 7))
    chords = chords_for(root, rng)[:bars]
    while len(chords) < bars:
        chords += chords[: bars - len(chords)]
    drums = kit(n, beat, bars, rng, "jazz" if genre == "jazz" else genre)
    layout = index % 2  # 0: few stems (MUSDB18-like), 1: a multitrack
    stems: dict[str, tuple[str, np.ndarray]] = {}
    if genre == "jazz":
        piano = keys_part(n, beat, chords, 0.8, 0.4)
        piano[:, :] += lead_line(n, beat, melody_notes(rng, root + 12, 40), rng, "synth") * 0.15  # right-hand line
        stems["piano"] = ("piano", piano)
        stems["upright_bass"] = ("bass", bass_line(n, beat, chords, rng, "jazz"))
        kit_sum = drums["ride"] + drums["snare"] + drums["kick"]
        if layout:
            stems["oh_l"] = ("overheads", drums["ride"] * 0.9 + drums["snare"] * 0.4 + drums["kick"] * 0.3)
            stems["oh_r"] = ("overheads", drums["ride"] * 0.4 + drums["snare"] * 0.9 + drums["kick"] * 0.3)
            stems["kick"] = ("kick", drums["kick"])
            if index % 4 == 3:  # a quartet: the sax leads, the piano comps
                stems["tenor_sax"] = ("woodwinds", lead_line(n, beat, melody_notes(rng, root - 12, 40), rng, "sax"))
        else:
            stems["drums"] = ("drums", synth.stereo(kit_sum * 0.8, kit_sum))
        return stems
    vocal_notes = melody_notes(rng, root - 12 if index % 3 else root, 40)
    instrumental = genre == "edm" and index % 2 == 1
    if not instrumental:
        stems["vocals" if layout == 0 else "lead_vox"] = ("vocal", sung_line(n, beat, vocal_notes, rng))
    bass = bass_line(n, beat, chords, rng, genre)
    if layout == 0 and genre == "pop":  # the four MUSDB18 stems
        stems["drums"] = ("drums", drums["kick"] + drums["snare"] + 0.5 * drums["hats"])
        stems["bass"] = ("bass", bass)
        other = keys_part(n, beat, chords, 1.0, 0.3) + synth.stereo(guitar_part(n, beat, chords) * 0.7, guitar_part(n, beat, chords) * 0.3)
        stems["other"] = ("other", other + pad_part(n, beat, chords) * 0.5)
        return stems
    stems["kick"] = ("kick", drums["kick"])
    stems["snare" if genre == "pop" else "clap"] = ("snare", drums["snare"])
    stems["hihat"] = ("hats", drums["hats"])
    if genre == "pop":
        overheads = drums["hats"] + 0.3 * drums["snare"] + 0.2 * drums["kick"]
        stems["oh_l"] = ("overheads", overheads)
        stems["oh_r"] = ("overheads", 0.8 * overheads)
        stems["bv"] = ("backing_vocal", sung_line(n, beat, [v + 4 for v in vocal_notes], rng, "ou", 3.0))
        stems["gtr"] = ("guitar", guitar_part(n, beat, chords))
        stems["keys"] = ("keys", keys_part(n, beat, chords, 1.0, 0.5))
    else:
        stems["sub_bass" if genre == "edm" else "bass"] = ("bass", bass)
        if instrumental:
            stems["lead_synth"] = ("synth", lead_line(n, beat, melody_notes(rng, root, 40), rng, "synth"))
        stems["chord_synth"] = ("synth", keys_part(n, beat, chords, 1.5, 0.5))
    stems["pad"] = ("pad", pad_part(n, beat, chords))
    if genre == "pop":
        stems["bass"] = ("bass", bass)
    return stems


def reference_levels(genre: str, stems: dict[str, tuple[str, np.ndarray]], rng, spread_lu: float
                     ) -> dict[str, float]:
    """Relative active loudness per stem (LU), before the group correction."""
    preset = load_preset(genre)
    group_lu = preset.groups.as_dict()
    roles = {name: role for name, (role, _) in stems.items()}
    has_vocal = "vocal" in roles.values()
    lead = None
    if not has_vocal:  # the instrument that leads takes the vocal's level
        for role in ("woodwinds", "brass", "synth", "piano", "guitar", "keys"):
            named = [n for n, r in roles.items() if r == role and ("lead" in n or role != "synth")]
            if named:
                lead = min(named)
                break
    groups: dict[str, list[str]] = {}
    for name, role in roles.items():
        groups.setdefault("vocals" if name == lead else ROLE_GROUPS[role], []).append(name)
    deviation = {g: rng.normal(0, spread_lu) for g in sorted(groups)}
    targets = {}
    for group, names in sorted(groups.items()):
        counts = {}
        for name in names:
            counts[roles[name]] = counts.get(roles[name], 0) + 1
        shares = {name: (0.0 if name == lead else preset.roles[roles[name]].loudness_lu) - 10 * math.log10(counts[roles[name]])
                  + rng.normal(0, spread_lu if len(names) > 1 else 0.0) for name in sorted(names)}
        total = 10 * math.log10(sum(10 ** (s / 10) for s in shares.values()))
        for name, share in shares.items():
            targets[name] = (group, group_lu[group] + deviation[group] + share - total)
    return targets


def build_song(folder: Path, genre: str, index: int, seconds: float, spread_lu: float) -> None:
    stems = song_stems(genre, index, seconds)
    rng = np.random.default_rng(77 + 31 * index + ["pop", "edm", "jazz"].index(genre))
    targets = reference_levels(genre, stems, rng, spread_lu)
    audio = {name: placed(name, scale_to(as_stereo(x), targets[name][1])) for name, (_, x) in stems.items()}
    # Groups summed onto their level (as a mix engineer's group fader does).
    for group in sorted({g for g, _ in targets.values()}):
        names = [n for n, (g, _) in targets.items() if g == group]
        planned = 10 * math.log10(sum(10 ** (targets[n][1] / 10) for n in names))
        total = sum(centred(audio[n]) for n in names)
        gain = 10 ** ((planned - active_lufs(total)) / 20)
        for name in names:
            audio[name] = audio[name] * gain
    mix = sum(centred(x) for x in audio.values())
    gain = 10 ** ((MIX_LUFS - active_lufs(mix)) / 20)
    peak = max(np.abs(x).max() for x in audio.values()) * gain
    gain *= min(1.0, 0.9 / peak)
    folder.mkdir(parents=True, exist_ok=True)
    for name, x in audio.items():
        sf.write(folder / f"{name}.wav", (x * gain).T.astype(np.float32), RATE, subtype="FLOAT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--songs", type=int, default=4, help="songs per genre")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--spread-lu", type=float, default=2.0, help="per-song deviation from the average balance (SD, LU)")
    args = parser.parse_args()
    for genre in ("pop", "edm", "jazz"):
        for index in range(args.songs):
            folder = args.out / genre / f"{genre}_{index + 1:02d}"
            build_song(folder, genre, index, args.seconds, args.spread_lu)
            print(folder, ", ".join(sorted(p.stem for p in folder.glob("*.wav"))))


if __name__ == "__main__":
    main()
