"""What each stem is: its role (vocal, kick, bass, ...) and why automix thinks so.

First the file name, split into words (``Lead_Vox-02.wav`` -> lead, vox, 02), is matched
against English names and common studio abbreviations. Roles are tried in a fixed
priority order, so "bass guitar" is bass, "lead synth" is synth, "drum room" is room and
"bassoon" is woodwinds. Only when the name says nothing is the audio itself used:
low-frequency share, crest factor, spectral centroid and syllable-rate modulation.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

from automix.errors import AutomixError
from automix.measure.analyzer import AudioAnalysis, frame_power
from automix.mix.balancer import LeadFeatures, presence_score
from automix.presets import ROLES

#: (role, words that name it). Tried top to bottom; the first role with a match wins.
NAME_RULES: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (role, frozenset(words.split()))
    for role, words in (
        ("backing_vocal", "bv bvs bgv bgvs bgvox backing backings backingvocal backingvocals harmony harmonies choir adlib adlibs double doubles bvox"),
        ("woodwinds", "bassoon bassoons flute flutes clarinet clarinets oboe oboes sax saxophone tenorsax altosax woodwind woodwinds piccolo"),
        ("kick", "kick kik kck bd bassdrum kickin kickout"),
        ("snare", "snare snr sn snaretop snarebottom rimshot clap claps handclap"),  # a clap plays the backbeat
        ("hats", "hh hat hats hihat hihats"),
        ("toms", "tom toms floortom racktom"),
        ("overheads", "oh ohs overhead overheads cymbal cymbals ride crash"),
        ("room", "room rooms amb ambience ambient"),
        ("percussion", "perc percs percussion shaker shakers tamb tambourine conga congas bongo bongos cowbell timpani glockenspiel"),
        ("bass", "bass basses bassline bassdi subbass sub 808 doublebass contrabass upright uprightbass bassgtr bassguitar"),
        ("drums", "drum drums kit drumkit beat beats breakbeat"),
        ("piano", "piano pianos pno pf grand"),
        ("keys", "keys key keyboard keyboards rhodes wurli wurlitzer organ ep clav epiano"),
        ("synth", "synth synths syn arp arps pluck plucks leadsynth"),
        ("pad", "pad pads drone"),
        ("strings", "strings string str violin violins viola violas cello cellos vln vla vc fiddle orchestra ensemble"),
        ("brass", "brass trumpet trumpets tpt trombone trombones tbn horn horns tuba flugelhorn"),
        ("guitar", "gtr gtrs guitar guitars gt egtr agtr acoustic electric elecgtr strat tele"),
        ("fx", "fx sfx effect effects riser risers sweep impact impacts noise reverse foley"),
        ("other", "other others accompaniment instrumental rest"),  # MUSDB18's fourth stem
        ("vocal", "vox vocal vocals voc lv leadvox leadvocal voice voices singer sing lead main speech dialog dialogue narration host"),
    )
)  # fmt: skip

#: Words that identify a stereo pair's side.
LEFT_WORDS = frozenset({"l", "left", "lft", "lt"})
RIGHT_WORDS = frozenset({"r", "right", "rgt", "rt"})


@dataclass(frozen=True)
class RoleGuess:
    role: str
    reason: str


def name_words(file_stem: str) -> list[str]:
    """Lower-case words of a file name: split at non-letters, digits and camelCase."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", file_stem)
    spaced = re.sub(r"(\d+)", r" \1 ", spaced)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def role_from_name(file_stem: str) -> RoleGuess | None:
    """The role a file name states, or None if it names none."""
    words = name_words(file_stem)
    joined = "".join(w for w in words if not w.isdigit())
    # Two-word names first ("double bass", "bass drum", "hi hat"), then single words.
    compounds = [a + b for a, b in itertools.pairwise(words)]
    for candidates in (compounds, words):
        for role, names in NAME_RULES:
            hits = [w for w in candidates if w in names]
            if hits:
                return RoleGuess(role, f"file name says '{hits[0]}'")
    # Names written as one word ("leadvox", "bassDI", "hihat"): look for longer names inside.
    for role, names in NAME_RULES:
        for name in sorted(names, key=len, reverse=True):
            if len(name) >= 4 and name in joined and not (role == "bass" and "bassoon" in joined):
                return RoleGuess(role, f"file name contains '{name}'")
    return None


def stereo_side(file_stem: str) -> str | None:
    """'L' or 'R' if the name marks one side of a stereo pair (``OH_L``, ``gtr left``)."""
    words = name_words(file_stem)
    if words and (words[-1] in LEFT_WORDS or "left" in words):
        return "L"
    if words and (words[-1] in RIGHT_WORDS or "right" in words):
        return "R"
    return None


def pair_key(file_stem: str) -> str:
    """The name without its side word, so ``OH_L`` and ``OH_R`` share a key."""
    words = [w for w in name_words(file_stem) if w not in LEFT_WORDS | RIGHT_WORDS]
    return " ".join(words)


def role_from_audio(samples: np.ndarray, sample_rate: int, analysis: AudioAnalysis) -> RoleGuess:
    """Guess a role from the sound when the name says nothing.

    Rules, from the way instrument families differ in measurable ways:

    * most energy below 150 Hz: kick if it is percussive (crest factor > 15 dB), else bass;
    * very percussive and mostly above 5 kHz: hats; percussive and broadband: drums;
    * strong 2-8 Hz amplitude modulation (syllables) with energy centred in the voice
      band: vocal;
    * slow, smooth envelope: pad; anything else: other.
    """
    low_share = 10 ** (analysis.band_level_db(20, 160) / 10)
    high_share = 10 ** (analysis.band_level_db(5000, 20000) / 10)
    voice_share = 10 ** (analysis.band_level_db(200, 4000) / 10)
    crest = analysis.crest_factor_db
    syllabic = syllable_modulation(samples, sample_rate)
    facts = f"low share {low_share:.0%}, crest {crest:.0f} dB, centroid {analysis.spectral_centroid_hz:.0f} Hz"
    if low_share > 0.6:
        if crest > 15:
            return RoleGuess("kick", f"audio: percussive low end ({facts})")
        return RoleGuess("bass", f"audio: sustained low end ({facts})")
    if crest > 16 and high_share > 0.5:
        return RoleGuess("hats", f"audio: percussive and bright ({facts})")
    if crest > 16 and low_share > 0.1:
        return RoleGuess("drums", f"audio: percussive and broadband ({facts})")
    if syllabic > 0.35 and voice_share > 0.7 and 250 < analysis.spectral_centroid_hz < 3500:
        return RoleGuess("vocal", f"audio: syllable-rate modulation {syllabic:.2f} in the voice band ({facts})")
    if syllabic < 0.15 and crest < 12:
        return RoleGuess("pad", f"audio: slow, smooth envelope ({facts})")
    return RoleGuess("other", f"audio: no clear family ({facts})")


def syllable_modulation(samples: np.ndarray, sample_rate: int) -> float:
    """Share of the envelope's modulation energy at 2-8 Hz (speech and singing: 0.3-0.6).

    The envelope is the RMS in 10 ms frames of the active part; its spectrum between
    0.5 and 25 Hz is what the ear hears as rhythm and articulation.
    """
    envelope = np.sqrt(frame_power(samples, max(1, sample_rate // 100)))
    if envelope.size < 200:
        return 0.0
    active = envelope > envelope.max() * 1e-2
    if active.sum() < 200:
        return 0.0
    envelope = envelope[active]
    spectrum = np.abs(np.fft.rfft((envelope - envelope.mean()) * np.hanning(envelope.size))) ** 2
    freqs = np.fft.rfftfreq(envelope.size, 0.01)
    band = spectrum[(freqs >= 2) & (freqs <= 8)].sum()
    total = spectrum[(freqs >= 0.5) & (freqs <= 25)].sum()
    return float(band / total) if total > 0 else 0.0


def detect_role(file_stem: str, samples: np.ndarray, sample_rate: int, analysis: AudioAnalysis,
                override: str | None = None) -> RoleGuess:
    """The role of one stem: the user's override, else the name, else the audio."""
    if override:
        if override not in ROLES:
            raise AutomixError(f"--role {file_stem}={override}: unknown role (known roles: {', '.join(ROLES)})")
        return RoleGuess(override, "set with --role")
    return role_from_name(file_stem) or role_from_audio(samples, sample_rate, analysis)


def lead_features(samples: np.ndarray, sample_rate: int, analysis: AudioAnalysis) -> LeadFeatures:
    """Measure how much a stem sounds like the part a listener follows.

    * continuity: share of its 100 ms frames within 20 dB of its loud moments (95th
      percentile), i.e. how much of the song it plays in;
    * presence: power share in 1-5 kHz (:func:`automix.mix.balancer.presence_score`);
    * melodic: the mean normalised autocorrelation peak at pitch lags (60-1000 Hz) of
      up to 200 of its loud 46 ms frames: near 1 for one clear pitch at a time (a voice,
      a horn, a lead synth), lower for chords, near 0 for noise and drums.

    All three are ratios of the stem to itself, so they do not change with its level.
    """
    hop = max(1, int(sample_rate * 0.1))
    power = frame_power(samples, hop)
    if power.size == 0 or power.max() <= 0:
        return LeadFeatures(0.0, presence_score(analysis), 0.0)
    loud = np.percentile(power, 95)
    continuity = float(np.mean(power >= loud * 1e-2))

    mono = samples.mean(axis=0)
    size = 1 << round(math.log2(max(64, sample_rate * 0.046)))
    frame_count = mono.size // size
    if frame_count == 0:
        return LeadFeatures(continuity, presence_score(analysis), 0.0)
    frames = mono[: frame_count * size].reshape(frame_count, size).astype(np.float64)
    energy = np.einsum("ij,ij->i", frames, frames)
    chosen = np.nonzero(energy >= energy.max() * 1e-2)[0]
    chosen = chosen[np.linspace(0, chosen.size - 1, min(200, chosen.size)).astype(np.int64)]
    spectrum = np.abs(np.fft.rfft(frames[chosen] * np.hanning(size), n=2 * size, axis=-1)) ** 2
    autocorrelation = np.fft.irfft(spectrum, axis=-1)[:, :size]
    # Unbiased (divide by the overlap) so long lags are not penalised by the window.
    autocorrelation /= np.maximum(autocorrelation[:, :1], 1e-30)
    window_overlap = np.correlate(np.hanning(size), np.hanning(size), "full")[size - 1:]
    autocorrelation /= np.maximum(window_overlap / window_overlap[0], 1e-3)
    low, high = int(sample_rate / 1000), min(size - 1, int(sample_rate / 60))
    melodic = float(np.clip(np.mean(autocorrelation[:, low:high].max(axis=1)), 0.0, 1.0))
    return LeadFeatures(continuity, presence_score(analysis), melodic)
