"""Stage 1 of the pipeline: measure a signal the way a mastering engineer would.

:func:`analyze` turns audio into an :class:`AudioAnalysis`: loudness (BS.1770),
peaks, dynamics, a third-octave spectrum, stereo image and signal-health checks. The
balancer decides from these numbers only, and the report prints them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal

from automix.io.audio import Audio
from automix.measure import loudness

#: Below this many dB under the stem's own loudest blocks, a stem counts as silent
#: there. Relative (not absolute) so the analysis does not change with input gain.
ACTIVE_GATE_LUFS = -120.0

#: Third-octave band centres (base-10 series): 25 Hz ... 20 kHz.
THIRD_OCTAVE_CENTRES_HZ = tuple(1000.0 * 10 ** (k / 10) for k in range(-16, 14))
NOMINAL_CENTRES = (
    "25", "31.5", "40", "50", "63", "80", "100", "125", "160", "200", "250", "315", "400", "500", "630",
    "800", "1k", "1.25k", "1.6k", "2k", "2.5k", "3.15k", "4k", "5k", "6.3k", "8k", "10k", "12.5k", "16k", "20k",
)  # fmt: skip

CLIP_LEVEL = 0.999  # |x| at or above this, for 3+ samples in a row, is counted as clipped
SPECTRUM_SEGMENT = 8192  # FFT length of the Welch spectrum (5.4 Hz bins at 44.1 kHz)
SPECTRUM_FRAMES = 512  # most frames averaged, spread evenly over the signal


@dataclass(frozen=True)
class AudioAnalysis:
    """Measurements of one signal. Levels in dB are relative to full scale.

    Attributes
    ----------
    integrated_lufs : float
        BS.1770-4 integrated loudness (gates at -70 LUFS and -10 LU).
    active_lufs : float
        Loudness of the active part only: the relative gate alone decides what counts,
        so this moves exactly with gain. Used for balancing stems.
    loudness_range_lu, max_momentary_lufs, max_short_term_lufs : float
    true_peak_dbtp, sample_peak_dbfs, rms_dbfs : float
    plr_db : float
        Peak-to-loudness ratio, true peak minus integrated loudness.
    crest_factor_db : float
        Sample peak minus RMS, over the active part.
    loud_rms_dbfs : float
        The level of the loud moments as a compressor's detector sees them: the 95th
        percentile of 10 ms RMS (mean over channels) across the active part.
    spectral_centroid_hz : float
    band_levels_db : tuple of float
        Power per third-octave band (centres in ``THIRD_OCTAVE_CENTRES_HZ``) relative
        to the total power, so it describes the spectrum's shape, not its level.
    stereo_correlation : float
        Pearson correlation of left and right, 1.0 for mono.
    stereo_width : float
        Side energy over mid plus side energy: 0 mono, 0.5 uncorrelated, 1 out of phase.
    dc_offset : float
        Largest per-channel mean, in full-scale units.
    clipped_samples : int
        Samples in runs of 3 or more at or above ``CLIP_LEVEL``.
    duration_s : float
    sample_rate : int
    channels : int
    """

    integrated_lufs: float
    active_lufs: float
    loudness_range_lu: float
    max_momentary_lufs: float
    max_short_term_lufs: float
    true_peak_dbtp: float
    sample_peak_dbfs: float
    rms_dbfs: float
    plr_db: float
    crest_factor_db: float
    loud_rms_dbfs: float
    spectral_centroid_hz: float
    band_levels_db: tuple[float, ...]
    stereo_correlation: float
    stereo_width: float
    dc_offset: float
    clipped_samples: int
    duration_s: float
    sample_rate: int
    channels: int

    @property
    def is_silent(self) -> bool:
        return self.active_lufs <= loudness.SILENCE_DB

    def band_level_db(self, low_hz: float, high_hz: float) -> float:
        """Power in the bands whose centres lie in ``[low_hz, high_hz]``, relative to total."""
        levels = np.asarray(self.band_levels_db)
        centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: levels.size])
        inside = (centres >= low_hz) & (centres <= high_hz)
        return _power_db(np.sum(10 ** (levels[inside] / 10))) if inside.any() else loudness.SILENCE_DB

    def to_dict(self) -> dict:
        """JSON-ready dictionary; units are in the key names."""
        data = asdict(self)
        bands = data.pop("band_levels_db")
        data["third_octave_bands_db"] = {name: round(level, 2) for name, level in zip(NOMINAL_CENTRES, bands)}
        return {key: (round(value, 3) if isinstance(value, float) else value) for key, value in data.items()}


def analyze(audio: Audio) -> AudioAnalysis:
    """Measure ``audio``.

    Parameters
    ----------
    audio : Audio
        Any number of channels, any sample rate.

    Returns
    -------
    AudioAnalysis
    """
    samples, sample_rate = audio.samples, audio.sample_rate
    meter = loudness.measure(samples, sample_rate)
    active_lufs = loudness.gated_loudness(meter.momentary_lufs, ACTIVE_GATE_LUFS)
    if meter.momentary_lufs.size == 0:  # shorter than one 400 ms block: ungated mean
        active_lufs = float(loudness.power_to_lufs(np.mean(samples.astype(np.float64) ** 2) * samples.shape[0]))

    mean_square = float(np.mean(np.square(samples, dtype=np.float64)))
    rms_dbfs = _power_db(mean_square)
    # Crest factor over the active part: silence between notes would inflate it.
    crest = meter.sample_peak_dbfs - _active_rms_dbfs(samples, sample_rate)
    band_levels, centroid = _spectrum(samples, sample_rate)
    correlation, width = _stereo_image(samples)
    return AudioAnalysis(
        integrated_lufs=meter.integrated_lufs,
        active_lufs=active_lufs,
        loudness_range_lu=meter.loudness_range_lu,
        max_momentary_lufs=meter.max_momentary_lufs,
        max_short_term_lufs=meter.max_short_term_lufs,
        true_peak_dbtp=meter.true_peak_dbtp,
        sample_peak_dbfs=meter.sample_peak_dbfs,
        rms_dbfs=rms_dbfs,
        plr_db=meter.true_peak_dbtp - meter.integrated_lufs if meter.integrated_lufs > loudness.SILENCE_DB else 0.0,
        crest_factor_db=crest if math.isfinite(crest) else 0.0,
        loud_rms_dbfs=_loud_rms_dbfs(samples, sample_rate),
        spectral_centroid_hz=centroid,
        band_levels_db=band_levels,
        stereo_correlation=correlation,
        stereo_width=width,
        dc_offset=float(np.abs(samples.mean(axis=1, dtype=np.float64)).max()),
        clipped_samples=_clipped_samples(samples),
        duration_s=audio.duration_s,
        sample_rate=sample_rate,
        channels=audio.channels,
    )


def _power_db(power: float) -> float:
    return 10.0 * math.log10(power) if power > 0 else loudness.SILENCE_DB


def frame_power(samples: np.ndarray, hop: int) -> np.ndarray:
    """Mean square in consecutive frames of ``hop`` samples, averaged over channels.

    float64, one channel at a time (never a float64 copy of the whole signal); a
    trailing partial frame is dropped, so a signal shorter than one frame gives an
    empty array.
    """
    frames = samples.shape[1] // hop
    power = np.zeros(frames)
    for channel in samples:
        part = channel[: frames * hop].astype(np.float64).reshape(frames, hop)
        power += np.einsum("ij,ij->i", part, part) / hop
    return power / samples.shape[0]


def _active_rms_dbfs(samples: np.ndarray, sample_rate: int) -> float:
    """RMS over the 100 ms granules within 30 dB of the loudest (skips rests and tails)."""
    power = frame_power(samples, max(1, int(sample_rate * loudness.GRANULE_S)))
    if power.size == 0:
        return _power_db(float(np.mean(np.square(samples, dtype=np.float64))))
    active = power[power >= power.max() * 1e-3]
    return _power_db(float(active.mean())) if active.size else loudness.SILENCE_DB


def _loud_rms_dbfs(samples: np.ndarray, sample_rate: int) -> float:
    """95th percentile of 10 ms RMS over the frames within 40 dB of the loudest."""
    power = frame_power(samples, max(1, sample_rate // 100))
    if power.size == 0:
        return _power_db(float(np.mean(np.square(samples, dtype=np.float64))))
    active = power[power >= power.max() * 1e-4]
    return _power_db(float(np.percentile(active, 95))) if active.size else loudness.SILENCE_DB


def _spectrum(samples: np.ndarray, sample_rate: int) -> tuple[tuple[float, ...], float]:
    """Third-octave band levels relative to total power, and the spectral centroid.

    A Welch average over at most ``SPECTRUM_FRAMES`` Hann-windowed frames spread evenly
    over the whole signal: a long-term spectrum converges long before every frame of a
    long file is used, so the cost stays fixed however long the file is.
    """
    channels, frames = samples.shape
    segment = min(SPECTRUM_SEGMENT, frames)
    available = max(1, (frames - segment) // (segment // 2) + 1)
    starts = np.linspace(0, frames - segment, min(available, SPECTRUM_FRAMES)).astype(np.int64)
    window = signal.get_window("hann", segment).astype(np.float32)
    psd_sum = np.zeros(segment // 2 + 1)
    for batch in np.array_split(starts, -(-starts.size // 64)):
        frames_batch = samples[:, batch[:, None] + np.arange(segment)[None, :]]  # (ch, n, segment)
        frames_batch = (frames_batch - frames_batch.mean(axis=-1, keepdims=True)) * window  # detrend, as welch does
        psd_sum += (np.abs(np.fft.rfft(frames_batch, axis=-1)) ** 2).sum(axis=(0, 1))
    frequencies = np.fft.rfftfreq(segment, 1.0 / sample_rate)
    total = psd_sum[1:].sum()
    if total <= 0:
        return tuple(loudness.SILENCE_DB for _ in _bands_below(sample_rate)), 0.0
    centroid = float((frequencies * psd_sum).sum() / psd_sum.sum())
    levels = []
    for centre in _bands_below(sample_rate):
        inside = (frequencies >= centre / 2 ** (1 / 6)) & (frequencies < centre * 2 ** (1 / 6))
        levels.append(_power_db(float(psd_sum[inside].sum() / total)))
    return tuple(levels), centroid


def _bands_below(sample_rate: int) -> tuple[float, ...]:
    """The third-octave centres whose band lies below Nyquist."""
    return tuple(c for c in THIRD_OCTAVE_CENTRES_HZ if c * 2 ** (1 / 6) <= sample_rate / 2)


def _stereo_image(samples: np.ndarray) -> tuple[float, float]:
    if samples.shape[0] < 2:
        return 1.0, 0.0
    left = samples[0].astype(np.float64)
    right = samples[1].astype(np.float64)
    left_power, right_power = float(np.dot(left, left)), float(np.dot(right, right))
    cross = float(np.dot(left, right))
    if left_power == 0 or right_power == 0:
        return (1.0 if left_power == right_power else 0.0), (0.0 if left_power == right_power else 0.5)
    correlation = cross / math.sqrt(left_power * right_power)
    mid_power = left_power + right_power + 2 * cross
    side_power = left_power + right_power - 2 * cross
    return correlation, side_power / (mid_power + side_power)


def _clipped_samples(samples: np.ndarray) -> int:
    hot = np.abs(samples) >= CLIP_LEVEL
    if samples.shape[1] < 3 or not hot.any():
        return 0
    run = hot[:, :-2] & hot[:, 1:-1] & hot[:, 2:]
    in_run = np.zeros_like(hot)
    for shift in range(3):
        in_run[:, shift : shift + run.shape[1]] |= run
    return int(in_run.sum())
