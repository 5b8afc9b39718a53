"""Synthesise the demo songs in ``sample_stems/`` (ours to ship: no recordings used).

    python scripts/make_sample_stems.py

Two short songs in different styles, with levels deliberately badly balanced (a quiet
vocal, blaring hats, a buried bass...) so ``automix mix`` has real work to do. One stem
has a meaningless name (``take3``) so its role must be found from the audio, and the
guitars and overheads are named stereo pairs (``_L``/``_R``). Deterministic: the same
script writes the same files. Everything is vectorised; loops run over notes only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automix.io.audio import quantize, write_audio  # noqa: E402
from automix.measure import loudness  # noqa: E402

RATE = 44100
OUT = Path(__file__).resolve().parent.parent / "sample_stems"
rng = np.random.default_rng(20261125)


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def envelope(n: int, attack_s: float, decay_s: float, sustain: float, release_s: float) -> np.ndarray:
    """ADSR over n samples (release at the end)."""
    t = np.arange(n) / RATE
    total = n / RATE
    points_t = [0.0, attack_s, attack_s + decay_s, max(attack_s + decay_s, total - release_s), total]
    points_v = [0.0, 1.0, sustain, sustain, 0.0]
    return np.interp(t, points_t, points_v)


def additive(f0: float, seconds: float, amplitudes, vibrato_hz=0.0, vibrato_semitones=0.0, decay_per_harmonic=0.0,
             inharmonicity=0.0) -> np.ndarray:
    """Sum of harmonics k*f0 with given amplitudes (those above 18 kHz are dropped)."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    depth = np.clip(t / 0.25 - 0.5, 0, 1) * vibrato_semitones  # vibrato fades in
    f = f0 * 2 ** (depth * np.sin(2 * np.pi * vibrato_hz * t) / 12)
    phase = 2 * np.pi * np.cumsum(f) / RATE
    out = np.zeros(n)
    for k, a in enumerate(amplitudes, start=1):
        stretch = k * np.sqrt(1 + inharmonicity * k * k)
        if f0 * stretch > 18000 or a == 0:
            continue
        out += a * np.sin(stretch * phase + k * 0.7) * np.exp(-t * decay_per_harmonic * k)
    return out


def place(track: np.ndarray, sound: np.ndarray, start_s: float, gain: float = 1.0) -> None:
    start = int(start_s * RATE)
    end = min(track.shape[-1], start + sound.shape[-1])
    if end > start:
        track[..., start:end] += gain * sound[..., : end - start]


def noise(seconds: float) -> np.ndarray:
    return rng.standard_normal(int(seconds * RATE))


def band(x: np.ndarray, low: float, high: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, [low, high], "bandpass", fs=RATE, output="sos")
    return signal.sosfilt(sos, x)


def formant_gains(freqs: np.ndarray, formants) -> np.ndarray:
    """Spectral envelope of a vowel: resonance peaks (centre Hz, bandwidth Hz, dB)."""
    g = np.zeros_like(freqs)
    for centre, width, level_db in formants:
        g += 10 ** (level_db / 20) / (1 + ((freqs - centre) / (width / 2)) ** 2)
    return g


VOWELS = {  # F1, F2, F3 of sung vowels (approximate, soprano/tenor averages)
    "a": [(800, 120, 0), (1150, 140, -6), (2900, 200, -20)],
    "e": [(450, 100, 0), (2000, 150, -10), (2700, 200, -16)],
    "i": [(300, 80, 0), (2300, 150, -14), (3000, 200, -18)],
    "o": [(500, 100, 0), (850, 120, -6), (2800, 200, -24)],
    "u": [(330, 90, 0), (700, 120, -12), (2700, 200, -28)],
}


def sung_note(note: float, seconds: float, vowel: str) -> np.ndarray:
    f0 = midi_hz(note)
    k = np.arange(1, int(12000 / f0) + 1)
    amplitudes = k**-1.0 * formant_gains(k * f0, VOWELS[vowel])
    voice = additive(f0, seconds, amplitudes, vibrato_hz=5.5, vibrato_semitones=0.4)
    breath = band(noise(seconds), 2000, 8000) * 0.02
    return (voice + breath) * envelope(voice.size, 0.06, 0.1, 0.85, 0.12)


def sax_note(note: float, seconds: float) -> np.ndarray:
    f0 = midi_hz(note)
    k = np.arange(1, int(10000 / f0) + 1)
    amplitudes = k**-0.8 * formant_gains(k * f0, [(1200, 900, 0), (2800, 1200, -8)]) + 0.05 * k**-1.0
    tone = additive(f0, seconds, amplitudes, vibrato_hz=5.0, vibrato_semitones=0.25)
    air = band(noise(seconds), 1500, 6000) * 0.03
    return (tone + air) * envelope(tone.size, 0.03, 0.15, 0.7, 0.08)


def plucked(note: float, seconds: float, brightness: float = 0.5, decay: float = 0.996) -> np.ndarray:
    """Karplus-Strong string: a noise burst through a damped comb (scipy lfilter)."""
    period = RATE / midi_hz(note)
    delay = int(period)
    n = int(seconds * RATE)
    excitation = np.zeros(n)
    burst = rng.uniform(-1, 1, delay)
    burst = signal.lfilter([brightness], [1, -(1 - brightness)], burst)
    excitation[:delay] = burst
    a = np.zeros(delay + 2)
    a[0], a[delay], a[delay + 1] = 1.0, -decay * 0.5, -decay * 0.5
    return signal.lfilter([1.0], a, excitation) * envelope(n, 0.002, 0.05, 1.0, 0.05)


def kick_hit(seconds=0.45, punch=1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f = 45 + 110 * np.exp(-t * 30)
    body = np.sin(2 * np.pi * np.cumsum(f) / RATE) * np.exp(-t * 7)
    click = band(noise(seconds), 1500, 6000) * np.exp(-t * 250) * 0.3
    return punch * (body + click)


def snare_hit(seconds=0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    tone = np.sin(2 * np.pi * 190 * t) * np.exp(-t * 25)
    rattle = band(noise(seconds), 1200, 9000) * np.exp(-t * 16)
    return 0.7 * tone + 0.9 * rattle


def hat_hit(seconds=0.08, accent=1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    sos = signal.butter(4, 7000, "highpass", fs=RATE, output="sos")
    return accent * signal.sosfilt(sos, noise(seconds)) * np.exp(-t * 55)


def ride_hit(seconds=1.2) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    partials = sum(np.sin(2 * np.pi * f * t + p) for f, p in ((3210, 0.1), (4730, 1.3), (5980, 2.2), (7350, 0.4)))
    shimmer = band(noise(seconds), 5000, 14000) * 0.6
    return (0.15 * partials + shimmer) * np.exp(-t * 3.5) + band(noise(seconds), 2000, 9000) * np.exp(-t * 60) * 0.5


def brush_swish(seconds=0.35) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return band(noise(seconds), 1500, 7000) * np.sin(np.pi * t / seconds) ** 2 * 0.4


def stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.stack([left, right])


def save(folder: Path, name: str, x: np.ndarray, lufs: float) -> None:
    """Write one stem as 16-bit FLAC at a chosen (deliberately wrong) loudness."""
    x = np.atleast_2d(x).astype(np.float32)
    fade = int(0.02 * RATE)
    x[:, -fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    measured = loudness.integrated_loudness(x, RATE)
    x = x * np.float32(10 ** ((lufs - measured) / 20))
    peak = np.abs(x).max()
    if peak > 0.89:  # keep headroom: these are raw stems, not masters
        x *= np.float32(0.89 / peak)
    write_audio(quantize(x, "16"), RATE, folder / f"{name}.flac", "16")


def pop_song() -> None:
    """100 BPM, C - G - Am - F, eight bars (19.2 s)."""
    folder = OUT / "pop_song"
    beat = 60 / 100
    bars = 8
    seconds = bars * 4 * beat + 1.0
    n = int(seconds * RATE)
    chords = [[60, 64, 67], [59, 62, 67], [57, 60, 64], [57, 60, 65]] * 2
    roots = [36, 43, 45, 41] * 2

    kick, snare, hats = np.zeros(n), np.zeros(n), np.zeros(n)
    for bar in range(bars):
        t0 = bar * 4 * beat
        for b in (0, 2, 2.5):
            place(kick, kick_hit(), t0 + b * beat)
        for b in (1, 3):
            place(snare, snare_hit(), t0 + b * beat)
        for eighth in range(8):
            place(hats, hat_hit(accent=1.0 if eighth % 2 == 0 else 0.6), t0 + eighth * beat / 2)
    bass = np.zeros(n)
    for bar, root in enumerate(roots):
        for eighth in range(8):
            k = np.arange(1, 30)
            tone = additive(midi_hz(root), beat / 2 * 0.95, 1.0 / k * np.exp(-k / 8.0), decay_per_harmonic=0.8)
            place(bass, tone * envelope(tone.size, 0.005, 0.08, 0.7, 0.03), bar * 4 * beat + eighth * beat / 2)
    rhodes = np.zeros((2, n))
    for bar, chord in enumerate(chords):
        for hit in (0, 1.5, 2.5):
            for note in chord:
                tone = additive(midi_hz(note), 1.6, [1.0, 0.35, 0.1, 0.05, 0.02], decay_per_harmonic=0.9)
                tone *= envelope(tone.size, 0.004, 1.2, 0.2, 0.3)
                t = np.arange(tone.size) / RATE
                tremolo = 0.25 * np.sin(2 * np.pi * 4.5 * t)
                place(rhodes, stereo(tone * (1 + tremolo), tone * (1 - tremolo)), bar * 4 * beat + hit * beat, 0.3)
    gtr_l, gtr_r = np.zeros(n), np.zeros(n)
    for bar, chord in enumerate(chords):
        arpeggio = [chord[0] + 12, chord[1] + 12, chord[2] + 12, chord[1] + 12]
        for sixteenth in range(16):
            note = arpeggio[sixteenth % 4]
            place(gtr_l if sixteenth % 2 == 0 else gtr_r, plucked(note, 0.6, 0.6, 0.993), bar * 4 * beat + sixteenth * beat / 4)
    melody = [(72, 1, "a"), (74, 0.5, "e"), (76, 1.5, "o"), (74, 1, "i"), (72, 1, "a"), (71, 1, "e"), (72, 2, "o"),
              (76, 1, "a"), (79, 1, "e"), (77, 1, "i"), (76, 1, "o"), (74, 1.5, "a"), (72, 0.5, "u"), (72, 2, "o"),
              (69, 1, "a"), (71, 1, "e"), (72, 2, "i"), (74, 1, "o"), (76, 1, "a"), (72, 2, "o")]
    vox = np.zeros(n)
    position = 2 * beat
    for note, beats, vowel in melody:
        place(vox, sung_note(note - 12, beats * beat * 0.95, vowel), position)
        position += beats * beat
    pad = np.zeros((2, n))
    for bar, chord in enumerate(chords):
        for note in chord:
            k = np.arange(1, 40)
            left = additive(midi_hz(note) * 1.004, 4 * beat + 0.6, 1.0 / k * np.exp(-k / 6.0))
            right = additive(midi_hz(note) * 0.996, 4 * beat + 0.6, 1.0 / k * np.exp(-k / 6.0))
            env = envelope(left.size, 0.8, 0.5, 0.8, 0.6)
            place(pad, stereo(left * env, right * env), bar * 4 * beat, 0.2)

    # Deliberately badly balanced: vocal buried, hats and pad far too loud, bass weak.
    save(folder, "lead_vox", vox, -33.0)
    save(folder, "kick", kick, -14.0)
    save(folder, "snare", snare, -25.0)
    save(folder, "hihat", hats, -13.0)
    save(folder, "bass", bass, -31.0)
    save(folder, "rhodes", rhodes, -20.0)
    save(folder, "gtr_L", gtr_l, -18.0)
    save(folder, "gtr_R", gtr_r, -28.0)
    save(folder, "pad", pad, -14.0)


def jazz_trio() -> None:
    """Swing at 140 BPM, ii-V-I in Bb, six bars (about 10 s) twice."""
    folder = OUT / "jazz_trio"
    beat = 60 / 140
    swing = 2 / 3
    changes = [([60, 63, 67, 70], 48), ([58, 62, 65, 68], 53), ([57, 62, 65, 69], 46), ([57, 62, 65, 69], 46),
               ([60, 63, 67, 70], 48), ([58, 62, 65, 68], 53)] * 2
    bars = len(changes)
    seconds = bars * 4 * beat + 1.5
    n = int(seconds * RATE)
    bass = np.zeros(n)
    for bar, (_, root) in enumerate(changes):
        walk = [root, root + 4, root + 7, root + 9 if bar % 2 else root + 5]
        for b, note in enumerate(walk):
            k = np.arange(1, 25)
            tone = additive(midi_hz(note - 12), beat * 1.1, k**-1.5 * np.exp(-k / 5.0), decay_per_harmonic=1.5)
            place(bass, tone * envelope(tone.size, 0.004, 0.25, 0.5, 0.06), bar * 4 * beat + b * beat, 1.0)
    piano = np.zeros((2, n))
    for bar, (chord, _) in enumerate(changes):
        for hit in (1 + swing, 3):  # comping on the and of 2 and on 4
            for i, note in enumerate(chord):
                tone = additive(midi_hz(note), 1.2, [1.0, 0.5, 0.3, 0.15, 0.08, 0.04], decay_per_harmonic=1.2, inharmonicity=0.0004)
                tone *= envelope(tone.size, 0.003, 0.9, 0.3, 0.2)
                pan = 0.35 + 0.1 * i
                place(piano, stereo(tone * (1 - pan), tone * pan), bar * 4 * beat + hit * beat, 0.25)
    oh_l, oh_r = np.zeros(n), np.zeros(n)
    for bar in range(bars):
        t0 = bar * 4 * beat
        for b in (0, 1, 1 + swing, 2, 3, 3 + swing):
            hit = ride_hit() * (1.0 if b in (1, 3) else 0.7)
            place(oh_l, hit, t0 + b * beat, 0.9)
            place(oh_r, hit, t0 + b * beat, 0.35)
        for b in (1, 3):
            swish = brush_swish()
            place(oh_l, swish, t0 + b * beat, 0.3)
            place(oh_r, swish, t0 + b * beat, 0.8)
        for b in range(4):
            place(oh_r, kick_hit(0.3, 0.25), t0 + b * beat)
            place(oh_l, kick_hit(0.3, 0.2), t0 + b * beat)
    phrase = [(70, 1.5), (72, 0.5), (74, 1), (77, 1), (75, 2), (74, 1), (72, 1), (70, 1), (67, 1 + swing), (65, 1 - swing),
              (67, 2), (70, 2), (74, 1.5), (72, 0.5), (70, 1), (69, 1), (70, 4), (77, 1), (75, 1), (74, 1), (72, 1),
              (70, 2), (67, 2), (65, 1), (67, 1), (70, 2)]
    sax = np.zeros(n)
    position = 4 * beat
    for note, beats in phrase:
        place(sax, sax_note(note - 12, beats * beat * 0.92), position)
        position += beats * beat

    save(folder, "tenor_sax", sax, -30.0)
    save(folder, "piano", piano, -17.0)
    save(folder, "take3", bass, -36.0)  # a meaningless name: the role must come from the audio
    save(folder, "OH_L", oh_l, -16.0)
    save(folder, "OH_R", oh_r, -24.0)


if __name__ == "__main__":
    pop_song()
    jazz_trio()
    for path in sorted(OUT.glob("*/*.flac")):
        print(f"{path.relative_to(OUT)}  {path.stat().st_size / 1e6:.2f} MB")
