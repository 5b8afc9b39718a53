"""Measured balance of professional mixes, as data with its sources.

Every default level automix's presets set comes from here or says why it departs from
it. The main source is the MUSDB18 train set: 100 professionally mixed songs (mostly
pop and rock) released as four stems -- vocals, drums, bass, other -- whose plain sum
is the released mix, so their levels are what mixing engineers chose.

Source of the figures: the per-class averages published with Martinez-Ramirez et al.,
"Automatic music mixing with deep learning and out-of-domain data", ISMIR 2022
(file ``trainings/features/features_MUSDB18.npy`` of the ``sony/FxNorm-automix``
repository, MIT licence). They are copied here because a user's checkout has nothing
else to read them from.

What they do *not* say: MUSDB18's "other" holds every stem that is neither vocals,
drums nor bass (guitars, keys, synths, strings...), and its "vocals" holds lead and
backing vocals together. Levels inside those groups (kick against overheads, lead
against backing) are engineering practice, set in the preset files with their reason.
"""

from __future__ import annotations

import math

import numpy as np

from automix.measure.analyzer import (
    NOMINAL_CENTRES,
    THIRD_OCTAVE_CENTRES_HZ,
    AudioAnalysis,
)

SOURCE = ("MUSDB18 train set, 100 professional mixes; per-stem averages of Martinez-Ramirez et al., "
          "ISMIR 2022 (sony/FxNorm-automix features_MUSDB18.npy)")

#: Mean BS.1770 integrated loudness of each stem class (pyloudnorm), LUFS.
MUSDB18_LOUDNESS_LUFS = {"vocals": -30.73, "drums": -34.18, "bass": -29.73, "other": -31.17}

#: The same relative to the vocals (LU): the default group balance of every preset.
MUSDB18_RELATIVE_LU = {name: round(value - MUSDB18_LOUDNESS_LUFS["vocals"], 2)
                       for name, value in MUSDB18_LOUDNESS_LUFS.items()}
# -> vocals 0.0, drums -3.45, bass +1.0, other -0.44

#: automix's group name for each MUSDB18 class ("other" is everything harmonic).
GROUP_OF_CLASS = {"vocals": "vocals", "drums": "drums", "bass": "bass", "other": "harmony"}
CLASS_OF_GROUP = {group: name for name, group in GROUP_OF_CLASS.items()}

#: Mean power per third-octave band (centres ``THIRD_OCTAVE_CENTRES_HZ``, 25 Hz-20 kHz)
#: of each stem class normalised to -30 LUFS, in dB on one common (arbitrary) scale, so
#: classes can be added after scaling each to its loudness. Derived from the average
#: magnitude spectra (FFT 65536 at 44.1 kHz): power summed over the bins of each band.
MUSDB18_BANDS_DB = {
    "vocals": (9.4, 11.3, 13.1, 14.8, 17.4, 19.9, 22.8, 25.9, 28.8, 31.5, 34.1, 36.3, 37.4, 38.4, 38.4, 37.6, 37.1,
               35.8, 34.9, 32.7, 32.4, 32.0, 30.0, 25.5, 26.0, 26.2, 24.7, 20.9, 13.7, 4.6),
    "drums": (34.4, 36.5, 38.5, 40.4, 42.6, 44.3, 44.8, 44.0, 43.5, 42.2, 39.8, 37.7, 36.8, 35.8, 34.3, 33.0, 31.7,
              31.6, 31.6, 31.5, 32.4, 33.5, 34.3, 34.4, 34.4, 33.3, 32.4, 30.3, 26.5, 20.3),
    "bass": (29.3, 32.0, 34.6, 37.2, 39.7, 41.8, 43.3, 43.6, 42.3, 40.0, 36.2, 32.1, 28.4, 25.2, 22.5, 21.3, 20.3,
             18.7, 18.1, 19.2, 18.3, 16.7, 10.9, 5.9, 0.6, -3.8, -6.3, -8.2, -6.7, -4.0),
    "other": (22.8, 24.3, 25.3, 26.4, 28.3, 30.0, 31.9, 34.1, 36.3, 38.3, 39.4, 39.8, 39.4, 38.9, 38.6, 37.8, 36.9,
              36.6, 36.6, 37.0, 37.3, 34.9, 32.4, 28.5, 23.2, 19.0, 16.9, 13.8, 9.7, 5.7),
}  # fmt: skip

#: Mean inter-channel similarity phi = 2|L||R| / (|L|^2 + |R|^2) of the magnitude STFTs,
#: power-weighted over frequency: 1 = both channels equally loud (centred or mono),
#: lower = panned or wide. A level-difference measure: it does not see phase.
MUSDB18_PANNING_SIMILARITY = {"vocals": 0.920, "drums": 0.915, "bass": 0.967, "other": 0.836}

#: Compression proxy: mean and spread (dB) of the onset peaks of each stem normalised
#: to a -10 dBFS peak, upper quartile only (higher = more compressed).
MUSDB18_ONSET_PEAKS_DB = {"vocals": (-14.24, 1.37), "drums": (-13.48, 1.13), "bass": (-13.13, 0.90),
                          "other": (-14.66, 1.27)}


def band_shape_db(levels_db) -> np.ndarray:
    """Band levels relative to their total power (the analyser's convention)."""
    levels = np.asarray(levels_db, dtype=float)
    return levels - 10.0 * math.log10(float(np.sum(10 ** (levels / 10))))


def class_shape_db(name: str) -> np.ndarray:
    """Average third-octave shape of one MUSDB18 class, relative to its total power."""
    return band_shape_db(MUSDB18_BANDS_DB[name])


def expected_mix_bands_db(group_lu: dict[str, float]) -> np.ndarray:
    """Third-octave shape a mix should have with its groups at ``group_lu``.

    Each class's average spectrum (measured at -30 LUFS) is scaled to the loudness its
    group has in the preset and the powers are added (stems are mostly uncorrelated),
    so a preset that puts the drums lower expects a darker, less punchy mix. With the
    MUSDB18 levels this is the average professional mix.
    """
    total = np.zeros(len(THIRD_OCTAVE_CENTRES_HZ))
    for name, levels in MUSDB18_BANDS_DB.items():
        lu = group_lu.get(GROUP_OF_CLASS[name])
        if lu is None:
            continue
        total += 10 ** ((np.asarray(levels) + lu) / 10)
    return band_shape_db(10 * np.log10(np.maximum(total, 1e-30)))


def expected_similarity(group_lu: dict[str, float]) -> float:
    """Loudness-weighted mean panning similarity of the groups at ``group_lu``."""
    weights = {name: 10 ** (group_lu[GROUP_OF_CLASS[name]] / 10) for name in MUSDB18_PANNING_SIMILARITY
               if GROUP_OF_CLASS[name] in group_lu}
    total = sum(weights.values())
    return sum(MUSDB18_PANNING_SIMILARITY[n] * w for n, w in weights.items()) / total


def panning_similarity(samples: np.ndarray, fft_size: int = 4096) -> float:
    """phi of a stereo signal, measured as the MUSDB18 figures were (power-weighted).

    Magnitude STFTs (Hann, hop fft_size/2) of left and right; per bin and frame
    2|L||R| / (|L|^2+|R|^2), averaged with the bin's power as weight. Mono is 1.0.
    """
    if samples.shape[0] < 2 or samples.shape[1] < fft_size:
        return 1.0
    hop = fft_size // 2
    frames = (samples.shape[1] - fft_size) // hop + 1
    starts = np.linspace(0, samples.shape[1] - fft_size, min(frames, 400)).astype(np.int64)
    window = np.hanning(fft_size).astype(np.float32)
    index = starts[:, None] + np.arange(fft_size)[None, :]
    left = np.abs(np.fft.rfft(samples[0][index] * window, axis=-1))
    right = np.abs(np.fft.rfft(samples[1][index] * window, axis=-1))
    power = left**2 + right**2
    total = float(power.sum())
    if total <= 0:
        return 1.0
    return float((2 * left * right).sum() / total)


def compare_to_reference(analysis: AudioAnalysis, group_lu: dict[str, float],
                         samples: np.ndarray | None = None) -> dict:
    """The finished mix's third-octave balance and width against the expected average.

    Parameters
    ----------
    analysis : AudioAnalysis
        Of the finished (balanced or mastered) mix.
    group_lu : dict
        The preset's group levels (``preset.groups.as_dict()``); the expected spectrum is
        the MUSDB18 class spectra added at those levels.
    samples : numpy.ndarray, optional
        The mix itself, to measure its panning similarity the way the reference was.

    Returns
    -------
    dict
        ``bands_db``: per nominal band, the mix minus the expected shape (dB, + = more
        than usual); ``low_db``, ``mid_db``, ``high_db``: the same over 25-250 Hz,
        250 Hz-4 kHz and 4-20 kHz (None for a region the output holds no band of: an
        8 kHz file ends at 4 kHz); ``verdict``: darker / brighter / balanced and
        narrower / wider; ``source``.
    """
    levels = np.asarray(analysis.band_levels_db, dtype=float)
    count = levels.size
    expected = expected_mix_bands_db(group_lu)[:count]
    mine = band_shape_db(levels)
    difference = mine - band_shape_db(expected)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[:count])

    def region(low: float, high: float) -> float | None:
        inside = (centres >= low) & (centres < high)
        if not inside.any():  # not a 0 / 0: the report's JSON must stay valid (no NaN)
            return None
        mix_power = np.sum(10 ** (mine[inside] / 10))
        ref_power = np.sum(10 ** (band_shape_db(expected)[inside] / 10))
        return float(10 * np.log10(mix_power / ref_power))

    low, mid, high = region(20, 250), region(250, 4000), region(4000, 20001)
    verdicts = []
    tilt = high - low if high is not None and low is not None else None
    if tilt is None:
        verdicts.append("tonal balance not compared (the output holds no band above 4 kHz)")
    elif tilt > 3:
        verdicts.append(f"brighter than usual ({tilt:+.1f} dB high against low)")
    elif tilt < -3:
        verdicts.append(f"darker than usual ({tilt:+.1f} dB high against low)")
    else:
        verdicts.append("tonal balance within 3 dB of the usual")
    result = {
        "bands_db": {name: round(float(d), 1) for name, d in zip(NOMINAL_CENTRES, difference)},
        **{name: (None if value is None else round(value, 1)) for name, value in (("low_db", low), ("mid_db", mid), ("high_db", high))},
        "stereo_width": round(analysis.stereo_width, 3),
        "source": SOURCE,
    }
    if samples is not None:
        similarity = panning_similarity(samples)
        reference = expected_similarity(group_lu)
        result.update(panning_similarity=round(similarity, 3), expected_panning_similarity=round(reference, 3))
        if similarity < reference - 0.05:
            verdicts.append(f"wider than usual (similarity {similarity:.2f} against {reference:.2f})")
        elif similarity > reference + 0.05:
            verdicts.append(f"narrower than usual (similarity {similarity:.2f} against {reference:.2f})")
        else:
            verdicts.append("stereo spread as usual")
    result["verdict"] = "; ".join(verdicts)
    return result
