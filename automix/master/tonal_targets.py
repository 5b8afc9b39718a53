"""Target spectra for the tonal EQ, measured from finished music, as data with sources.

The measured curve
------------------
``MUSDB18_MIX_BANDS_DB`` is the long-term average third-octave spectrum of the 100
professionally mixed and released songs of the MUSDB18 train set (mostly pop and rock),
as band power relative to the total power -- the same scale as
:attr:`automix.measure.analyzer.AudioAnalysis.band_levels_db`.

Source: the per-stem averages published with Martinez-Ramirez et al., "Automatic music
mixing with deep learning and out-of-domain data", ISMIR 2022 (file
``trainings/features/features_MUSDB18.npy`` of the ``sony/FxNorm-automix`` repository,
MIT licence): for each stem class (vocals, drums, bass, other) the mean STFT magnitude
spectrum (FFT 65,536, 44.1 kHz, stem normalised to -30 LUFS) and the stem's mean
integrated loudness (vocals -30.73, drums -34.18, bass -29.73, other -31.17 LUFS).

How the mix spectrum is derived from the stems (:func:`derive_mix_bands_db` re-runs it):
each stem's magnitude spectrum is brought back to its measured loudness
(``|X_s| * 10 ** ((L_s + 30) / 20)``), squared, and the four are summed as powers, then
integrated over each third-octave band (centre / 2^(1/6) .. centre * 2^(1/6)) and
expressed relative to the total. Two approximations, both small next to the
differences the EQ acts on: the stems are taken as uncorrelated (their cross terms
average out over a song, except for bleed), and the square of a mean magnitude stands
for the mean power (it under-reads bands whose level varies a lot over time, by at most
a few dB; the same bias applies to every song, so the shape is kept).

Genre deviations
----------------
The measured curve is the reference for pop (MUSDB18's material). Genre presets move
away from it with the existing ``[master]`` keys, read as *deviations from pop's values*
(``GENRE_REFERENCE``): ``tilt_db_per_octave - (-3.0)`` dB per octave around 1 kHz,
``bass_db - 2.0`` dB below ~120 Hz and ``air_db - 0.5`` dB above ~8 kHz. So the shipped
pop preset gives exactly the measured curve, and each genre file states only how far
its practice departs from it. Published long-term spectra justify the directions:
Pestana, Ma, Reiss, Barbosa and Black, "Spectral characteristics of popular commercial
recordings 1950-2010" (AES 135th Convention, 2013) found genre and era differences
concentrated in the low end (more energy below ~150 Hz in hip-hop and electronic music,
growing over the decades); Elowsson and Friberg, "Long-term average spectrum in popular
music and its relation to the level of the percussion" (AES 142nd Convention, 2017,
paper 9762) found the spectral slope above ~1 kHz depends mainly on how loud the
percussion is (more percussion, flatter/brighter spectrum). The magnitudes in the genre
files are practice, not taken from those papers' tables (not copied here).

Tolerances
----------
:data:`TILT_TOLERANCE_DB_PER_OCTAVE`, :data:`DEAD_BAND_DB`, :func:`rolloff_allowance_db`
and :data:`ABSENT_BELOW_TARGET_DB` are documented where they are set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ

SOURCE = ("MUSDB18 train set (100 released mixes), power sum of the per-stem mean spectra at their mean "
          "loudness; Martinez-Ramirez et al., ISMIR 2022, sony/FxNorm-automix features_MUSDB18.npy (MIT)")

#: Long-term third-octave spectrum of the average MUSDB18 mix, dB relative to total
#: power, one value per ``THIRD_OCTAVE_CENTRES_HZ`` (25 Hz ... 20 kHz). Derived by
#: :func:`derive_mix_bands_db` from the source above (see the module docstring).
MUSDB18_MIX_BANDS_DB = (
    -21.92, -19.56, -17.37, -15.12, -12.74, -10.82, -9.67, -9.59, -10.31, -11.49,  # 25 ... 200 Hz
    -12.87, -13.47, -13.76, -13.85, -14.20, -15.02, -15.77, -16.50, -16.91, -17.38,  # 250 Hz ... 2 kHz
    -17.22, -18.55, -20.08, -22.37, -23.31, -24.27, -25.39, -27.89, -32.24, -38.46,  # 2.5 ... 20 kHz
)  # fmt: skip

#: The pop preset's values of the three shape keys: the settings that stand for the
#: measured curve itself (MUSDB18 is mostly pop and rock). Other values are deviations.
GENRE_REFERENCE = {"tilt_db_per_octave": -3.0, "bass_db": 2.0, "air_db": 0.5}

#: Bands the EQ may act on (centres). Below 31.5 Hz the analyzer's 5.4 Hz bins give one
#: or two bins per band, and above 16 kHz the measured curve is mostly codec and
#: anti-alias roll-off of the source files, not a mixing choice.
LOWEST_BAND_HZ = 31.5
HIGHEST_BAND_HZ = 16000.0

#: Broad tilt (dB per octave, third-octave power) the EQ leaves alone. The slope is the
#: largest legitimate difference between finished records (era, genre, percussion
#: level: Pestana et al. 2013; Elowsson and Friberg 2017) and the one playback systems
#: and listening level change most; the EQ corrects only what lies beyond it.
#: How the value was chosen, plainly: it is a policy anchored on pink noise, not a
#: measured spread. Pink noise, the conventional reference for a balanced spectrum
#: (issue 10 asks that it be moved by at most 1 dB), is 1.6-2.1 dB/octave brighter than
#: the MUSDB18 average (fit over 31.5 Hz-16 kHz / 40 Hz-16 kHz), so it must be inside;
#: white noise (3 dB/octave brighter still) must not be. For scale, changing one
#: MUSDB18 stem by +-6 LU tilts the mix by at most 0.6 dB/octave.
TILT_TOLERANCE_DB_PER_OCTAVE = 2.5

#: Dead-band around the target (after the tilt is removed and the difference smoothed
#: over about 2/3 octave): no move while a band is within this of the target. Changing
#: the balance of the MUSDB18 stems by +-3 LU (the kind of choice two engineers make
#: differently on the same song) moves single bands of the mix's shape by up to 1.6 dB
#: (computed from the same data: each stem +-3 LU, overall level removed), so a
#: difference that size is a choice, not a fault.
DEAD_BAND_DB = 1.5

#: The body of the spectrum: between these the measured curve is a shape the EQ holds
#: mixes to; outside them the average record rolls off (sub-bass, top octave).
EDGE_LOW_HZ = 100.0
EDGE_HIGH_HZ = 8000.0


#: A band this far under what the target expects there (after the broad level and tilt
#: are fitted) is taken to be absent -- the instrument that would fill it is not in the
#: mix (a snare-only track has no bass) -- and is never boosted, nor used in the fit.
#: Changing any one MUSDB18 stem by +-6 LU moves no band of the mix's shape by more than
#: 3.2 dB, so 10 dB under is outside any balance choice: something is missing, not quiet.
ABSENT_BELOW_TARGET_DB = 10.0


def centres_hz(count: int | None = None) -> np.ndarray:
    """Third-octave centres (Hz) of the target, the analyzer's bands."""
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ, dtype=np.float64)
    return centres if count is None else centres[:count]


def measured_curve_db(count: int | None = None) -> np.ndarray:
    """:data:`MUSDB18_MIX_BANDS_DB` as an array (first ``count`` bands)."""
    curve = np.asarray(MUSDB18_MIX_BANDS_DB, dtype=np.float64)
    return curve if count is None else curve[:count]


def genre_curve_db(centres: np.ndarray, tilt_db_per_octave: float, bass_db: float, air_db: float) -> np.ndarray:
    """The measured curve moved by a genre's deviations (see the module docstring).

    Parameters
    ----------
    centres : numpy.ndarray
        Band centres, Hz (a prefix of ``THIRD_OCTAVE_CENTRES_HZ``).
    tilt_db_per_octave, bass_db, air_db : float
        The preset's values; the deviation is each minus :data:`GENRE_REFERENCE`.

    Returns
    -------
    numpy.ndarray
        dB per band; only the shape matters (the EQ removes the overall level).
    """
    centres = np.asarray(centres, dtype=np.float64)
    curve = measured_curve_db(centres.size)
    octaves = np.log2(centres / 1000.0)
    bass_weight = 1.0 / (1.0 + (centres / 120.0) ** 2)  # first-order shelf shapes, as before
    air_weight = 1.0 / (1.0 + (8000.0 / centres) ** 2)
    tilt = tilt_db_per_octave - GENRE_REFERENCE["tilt_db_per_octave"]
    bass = bass_db - GENRE_REFERENCE["bass_db"]
    air = air_db - GENRE_REFERENCE["air_db"]
    return curve + tilt * octaves + bass * bass_weight + air * air_weight


def rolloff_allowance_db(centres: np.ndarray) -> np.ndarray:
    """How much wider the dead-band is at the spectrum's edges, dB per band.

    Below ``EDGE_LOW_HZ`` and above ``EDGE_HIGH_HZ`` the average record rolls off, and
    how deeply is an arrangement and bandwidth choice rather than a fault: a full-range
    808 or synth sub against an acoustic bass, a bright modern top against a tape-era
    one (Pestana et al. 2013 found the low end to be where genres and eras differ most).
    So the EQ accepts anything between the average roll-off and none at all: the
    allowance is the depth of the measured curve under the straight line fitted to its
    body (100 Hz-8 kHz) and extended; 0 inside the body. It reaches ~12 dB at 31.5 Hz and
    ~5 dB at 16 kHz. (Pink noise, flat to the edges, is thereby inside.)
    """
    centres = np.asarray(centres, dtype=np.float64)
    all_centres = centres_hz()
    curve = measured_curve_db()
    octaves = np.log2(all_centres / 1000.0)
    body = (all_centres >= EDGE_LOW_HZ * 0.99) & (all_centres <= EDGE_HIGH_HZ * 1.01)
    slope, intercept = np.polyfit(octaves[body], curve[body], 1)
    depth = np.maximum(slope * octaves + intercept - curve, 0.0)
    depth[body] = 0.0
    return depth[: centres.size]


def derive_mix_bands_db(features_path: str | Path) -> np.ndarray:
    """Re-derive :data:`MUSDB18_MIX_BANDS_DB` from ``musdb18_stem_features.npy``.

    Kept so the numbers above can be checked against their source (the test does when
    the file is present); automix itself never needs the file.
    """
    features = np.load(features_path, allow_pickle=True).item()
    frequencies = np.fft.rfftfreq(65536, 1.0 / 44100)
    power = 0.0
    for stem in ("vocals", "drums", "bass", "other"):
        gain = 10 ** ((float(np.ravel(features["loudness"][stem])[0]) + 30.0) / 20.0)
        power = power + (np.asarray(features["eq"][stem], dtype=np.float64) * gain) ** 2
    total = power[1:].sum()
    return np.array([
        10 * np.log10(power[(frequencies >= c / 2 ** (1 / 6)) & (frequencies < c * 2 ** (1 / 6))].sum() / total)
        for c in THIRD_OCTAVE_CENTRES_HZ
    ])  # fmt: skip


# --- Reference matching (``automix master --reference``) -----------------------------
# When the user gives a reference recording, its measured spectrum replaces the genre
# curve and the user has said which balance they want: the tolerances above, which
# exist so the EQ leaves legitimate choices alone, shrink to what is barely audible.

#: Tilt left alone when matching a reference: none. The slope is the first thing that
#: tells a dark record from a bright one, so it is what the user asked to copy.
REFERENCE_TILT_TOLERANCE_DB_PER_OCTAVE = 0.0

#: Dead-band when matching a reference, dB (after the 2/3-octave smoothing). The just
#: noticeable change in level of broadband sound is about 0.5-1 dB (Zwicker and Fastl,
#: "Psychoacoustics", ch. 7); the lower end is taken because the user asked for this
#: balance. Measurement noise is handled apart from it: each move is shrunk by its own
#: signal-to-noise ratio (:attr:`automix.master.tonal.TonalRules.shrink_by_snr`).
REFERENCE_DEAD_BAND_DB = 0.5

#: Largest boost or cut of any band when matching a reference, dB, whatever the preset's
#: ``tonal_max_db`` (which bounds the genre EQ). A policy, not a measurement: it is the
#: shelf a dark and a bright record differ by at the ends of the spectrum (the test
#: references, +-4 to 6 dB shelves, are of that size), while a larger difference says the
#: mix itself is far from the reference -- a problem for the mix, not for a mastering EQ
#: (Matchering, which has no such bound, is the counter-example the issue cites).
REFERENCE_MAX_DB = 6.0
