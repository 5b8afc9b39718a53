"""Reference mastering: "make it sound like this" (``--reference ref.wav``).

:func:`analyze_reference` reads a finished record the user likes, as a stream (any
sample rate, length or channel count), and measures what a mastering engineer would copy
from it: the long-term third-octave spectrum of its mid and of its side (shape only),
its stereo width, its density (peak-to-loudness ratio) and its loudness. The chain then
moves the mix toward it, each move bounded:

* tonal balance -- the reference's mid spectrum replaces the preset's target curve in
  :func:`automix.master.tonal.tonal_balance` (:func:`reference_tonal_move`: a narrower
  dead-band, no tilt tolerance, the confidence weighting kept, at most
  ``REFERENCE_MAX_DB`` per band, no boost of a band the mix does not fill); the side's
  shape is matched by a second, gentler EQ in the mid/side frame
  (:func:`reference_side_move`, :class:`SideEQ`);
* width -- a side gain toward the reference's side-to-total energy
  (:func:`reference_width`, ``WIDTH_MIN``..``WIDTH_MAX``);
* density -- the glue aims at the reference's peak-to-loudness ratio instead of
  :data:`automix.master.glue.DENSE_PLR_DB`, within ``PLR_MIN_DB``..``PLR_MAX_DB``
  (:func:`reference_glue`);
* loudness -- the reference's integrated loudness is the target unless the user gave
  one (:attr:`Reference.integrated_lufs`).

Everything measured is a shape or a ratio, so the reference's own level does not matter
(except its loudness, which is the point of copying it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from automix.dsp import design
from automix.dsp.fir import StreamingFIR
from automix.errors import AutomixError
from automix.io.stream import file_source
from automix.master import glue as glue_stage
from automix.master import tonal_targets as targets
from automix.master.tonal import (
    FULL_CONFIDENCE_S,
    TonalMove,
    TonalRules,
    _uncertainty_from_frames,
    eq_taps,
    tonal_balance,
)
from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ, Analyzer, AudioAnalysis
from automix.presets import MasterSettings

#: A reference shorter than this is refused: it cannot describe a record's long-term
#: balance (half of ``FULL_CONFIDENCE_S``, two bars at 100 bpm; under it one part --
#: an intro, a break -- would be copied as if it were the song's balance).
MIN_REFERENCE_S = 5.0

#: A reference with more than this share of its samples in clipped runs (3+ samples at
#: full scale, the analyzer's count) is warned about: a mastered record has a handful of
#: such runs at most, a clipped one has flat tops on every loud hit (1e-4 is ~260
#: samples a minute at 44.1 kHz stereo). Its peak-to-loudness ratio then measures the
#: clipping, not a density to copy, so the glue ignores it.
CLIPPED_SHARE = 1e-4

#: Bounds of the side gain the reference may ask for. Above 1.5 (+3.5 dB of side) the
#: image starts to come apart in mono and the side's noise and reverb tails come forward;
#: under 0.5 (-6 dB) the mix's image is narrowed by more than the preset's own widest
#: narrowing (the presets' ``stereo_width`` span 0.8-1.2). The issue's example range.
WIDTH_MIN = 0.5
WIDTH_MAX = 1.5

#: Bounds of the reference's peak-to-loudness ratio the glue may aim at, dB. Under 8 dB
#: is loudness-war density (the DR database's album means never fell below 8-9 dB on
#: average, see :data:`automix.master.glue.DENSE_PLR_DB`): the glue would have to crush to
#: copy it, so it aims at 8. Over ``DENSE_PLR_DB`` the reference is no denser than what
#: automix already leaves alone: the usual rule holds.
PLR_MIN_DB = 8.0
PLR_MAX_DB = glue_stage.DENSE_PLR_DB

#: A reference whose side is this far under its mid (energy) counts as mono: it has no
#: side spectrum or width to copy. -40 dB: a vinyl rip's or a mono-compatible
#: re-release's residual side, not an image.
MONO_SIDE_DB = -40.0

#: A band this far under the reference's loudest band holds nothing (a low-passed file,
#: an MP3's empty top): the reference says nothing there, so the EQ leaves it alone.
EMPTY_BAND_DB = 60.0

#: Above 5 kHz, a fall of more than this from one third-octave band to the next is the
#: reference's bandwidth ending (an MP3 encoder's or a low sample rate's low-pass), not a
#: tonal choice: the average record falls at most 6.2 dB (16 to 20 kHz, MUSDB18), so the
#: reference is unknown from there up.
BANDWIDTH_STEP_DB = 8.0
BANDWIDTH_CHECK_FROM_HZ = 5000.0

#: The side EQ's rules: the side is heard less directly than the mid (it is the room and
#: the spread, never alone), so its dead-band is twice the mid's and its cap half.
SIDE_RULES = TonalRules(0.0, 2 * targets.REFERENCE_DEAD_BAND_DB, False, targets.REFERENCE_MAX_DB / 2, False,
                        "the reference's side")

#: The mix's side must be at least this share of its energy in a band for the side EQ
#: to boost there: boosting a side that is barely present raises noise and phase
#: artefacts, not an image. (-20 dB: the side a wide mix still has in its low mids.)
SIDE_PRESENT_DB = -20.0


@dataclass(frozen=True)
class Reference:
    """What the reference recording gives the chain to copy.

    Attributes
    ----------
    name : str
    sample_rate, channels : int
        As the file has them (nothing is resampled: the bands are in Hz).
    duration_s : float
    integrated_lufs, true_peak_dbtp, plr_db, loudness_range_lu : float
        BS.1770-4 loudness, true peak, their difference, EBU loudness range.
    stereo_width : float
        Side energy over mid plus side energy (the analyzer's measure); 0 for mono.
    mid_bands_db : tuple of float
        Third-octave power of the mid (``(L + R) / 2``; the signal itself if mono)
        relative to its total, one per ``THIRD_OCTAVE_CENTRES_HZ`` band below the
        reference's Nyquist frequency; NaN where the reference says nothing (beyond its
        bandwidth, or empty).
    side_bands_db : tuple of float or None
        The same for the side (``(L - R) / 2``), relative to the *mid's* total (so the
        side-to-mid ratio per band is the difference); None for a mono reference.
    mid_uncertainty_db : tuple of float
        Standard error of each mid band's long-term level (its spread over time, as
        :func:`automix.master.tonal.band_uncertainty_db` measures a mix); inf where
        unknown.
    clipped_samples : int
    warnings : tuple of str
    """

    name: str
    sample_rate: int
    channels: int
    duration_s: float
    integrated_lufs: float
    true_peak_dbtp: float
    plr_db: float
    loudness_range_lu: float
    stereo_width: float
    mid_bands_db: tuple[float, ...]
    side_bands_db: tuple[float, ...] | None
    mid_uncertainty_db: tuple[float, ...]
    clipped_samples: int
    warnings: tuple[str, ...] = ()

    @property
    def duration_trust(self) -> float:
        """0-1: how representative of a whole record the excerpt is (as for a mix)."""
        return min(1.0, math.sqrt(max(self.duration_s, 0.0) / FULL_CONFIDENCE_S))

    @property
    def is_mono(self) -> bool:
        return self.side_bands_db is None

    def side_to_mid(self, above_hz: float = 0.0) -> float:
        """Side over mid energy in the bands centred above ``above_hz`` (0 for mono)."""
        if self.side_bands_db is None:
            return 0.0
        centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: len(self.mid_bands_db)])
        mid, side = np.asarray(self.mid_bands_db), np.asarray(self.side_bands_db)
        keep = (centres > above_hz) & np.isfinite(mid) & np.isfinite(side)
        total = float((10 ** (mid[keep] / 10)).sum())
        return float((10 ** (side[keep] / 10)).sum()) / total if total > 0 else 0.0

    @property
    def is_clipped(self) -> bool:
        return self.clipped_samples > CLIPPED_SHARE * self.duration_s * self.sample_rate * self.channels

    def to_dict(self) -> dict:
        """JSON-ready summary for the report (bands keyed by centre, NaN left out)."""

        def bands(values):
            if values is None:
                return None
            return {f"{c:.0f}": round(v, 2) for c, v in zip(THIRD_OCTAVE_CENTRES_HZ, values) if math.isfinite(v)}

        return {
            "name": self.name, "sample_rate": self.sample_rate, "channels": self.channels,
            "duration_s": round(self.duration_s, 2), "integrated_lufs": round(self.integrated_lufs, 2),
            "true_peak_dbtp": round(self.true_peak_dbtp, 2), "plr_db": round(self.plr_db, 2),
            "loudness_range_lu": round(self.loudness_range_lu, 2), "stereo_width": round(self.stereo_width, 4),
            "mid_bands_db": bands(self.mid_bands_db), "side_bands_db": bands(self.side_bands_db),
            "clipped_samples": self.clipped_samples, "warnings": list(self.warnings),
        }  # fmt: skip


class MidSideSpectrumMeter:
    """Long-term third-octave spectra of the mid and the side, block by block.

    Hann-windowed frames of about 186 ms (8192 samples at 44.1/48 kHz, doubled at 88.2 kHz
    and up so every band from 31.5 Hz holds several bins) on a fixed grid from the
    stream's start, half overlapping; per frame and band the power of the mid and of the
    side. Memory: one frame of audio and two rows of band powers per frame (60 floats).

    Parameters
    ----------
    sample_rate, channels : int
        Channels 1: mid only. 2 or more: mid is the mean of all channels, side is half the
        difference of the first two (left and right).
    """

    def __init__(self, sample_rate: int, channels: int):
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.segment = 8192 * max(1, round(sample_rate / 48000))
        self.hop = self.segment // 2
        self.band_count = sum(1 for c in THIRD_OCTAVE_CENTRES_HZ if c * 2 ** (1 / 6) <= sample_rate / 2)
        frequencies = np.fft.rfftfreq(self.segment, 1.0 / sample_rate)
        centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: self.band_count])
        self._membership = np.stack([(frequencies >= c / 2 ** (1 / 6)) & (frequencies < c * 2 ** (1 / 6))
                                     for c in centres]).astype(np.float64)  # fmt: skip
        self._window = design.hann(self.segment).astype(np.float32)
        self._tail = np.zeros((2, 0), dtype=np.float32)
        self._mid_rows: list[np.ndarray] = []
        self._side_rows: list[np.ndarray] = []
        self.frames = 0

    def add(self, block: np.ndarray) -> None:
        """Feed the next ``(channels, samples)`` block (any length)."""
        block = np.asarray(block, dtype=np.float32)
        self.frames += block.shape[1]
        if self.channels >= 2:
            mid = block.mean(axis=0)
            side = np.float32(0.5) * (block[0] - block[1])
        else:
            mid, side = block[0], np.zeros(block.shape[1], dtype=np.float32)
        buffer = np.concatenate([self._tail, np.stack([mid, side])], axis=1)
        count = (buffer.shape[1] - self.segment) // self.hop + 1 if buffer.shape[1] >= self.segment else 0
        if count:
            starts = np.arange(count) * self.hop
            frames = buffer[:, starts[:, None] + np.arange(self.segment)[None, :]] * self._window  # (2, n, seg)
            power = (np.abs(np.fft.rfft(frames, axis=-1)) ** 2).astype(np.float64) @ self._membership.T
            self._mid_rows.append(power[0])
            self._side_rows.append(power[1])
        self._tail = buffer[:, count * self.hop :].copy()

    def band_powers(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame band powers ``(frames, bands)`` of the mid and the side."""
        empty = np.zeros((0, self.band_count))
        if not self._mid_rows:
            return empty, empty
        return np.concatenate(self._mid_rows), np.concatenate(self._side_rows)

    def spectra_db(self) -> tuple[np.ndarray, np.ndarray]:
        """Long-term mid and side band levels, dB relative to the mid's total band power
        (``-inf`` where empty); the whole signal as one frame if shorter than a frame."""
        mid_rows, side_rows = self.band_powers()
        if mid_rows.shape[0] == 0:
            return np.full(self.band_count, -np.inf), np.full(self.band_count, -np.inf)
        mid, side = mid_rows.sum(axis=0), side_rows.sum(axis=0)
        total = mid.sum()
        with np.errstate(divide="ignore"):
            if total <= 0:
                return np.full(self.band_count, -np.inf), np.full(self.band_count, -np.inf)
            return 10 * np.log10(mid / total), 10 * np.log10(side / total)


def measure_mid_side(source) -> tuple[Analyzer, MidSideSpectrumMeter]:
    """One streaming pass over a :class:`~automix.io.stream.BlockSource`: the analyzer
    and the mid/side spectrum meter, fed the same blocks (read their results)."""
    analyzer = Analyzer(source.sample_rate, source.channels, total_frames=source.frames)
    spectrum = MidSideSpectrumMeter(source.sample_rate, source.channels)
    for block in source.blocks():
        analyzer.add(block)
        spectrum.add(block)
    return analyzer, spectrum


def analyze_reference(path: str | Path) -> Reference:
    """Measure a reference recording (see the module docstring), streaming.

    Raises
    ------
    AutomixError
        The file cannot be read as audio, is silent, or is shorter than
        ``MIN_REFERENCE_S`` -- each with the reason.
    """
    source = file_source(Path(path))
    name = Path(path).name
    analyzer, spectrum = measure_mid_side(source)
    analysis = analyzer.result()
    if analysis.is_silent:
        raise AutomixError(f"reference {name}: the audio is silent; there is no balance to copy")
    if analysis.duration_s < MIN_REFERENCE_S:
        raise AutomixError(f"reference {name}: {analysis.duration_s:.1f} s is too short to describe a tonal balance "
                           f"(at least {MIN_REFERENCE_S:g} s; a whole song is best)")  # fmt: skip
    mid_db, side_db = spectrum.spectra_db()
    mid_db = _known_bands(mid_db, spectrum)
    mono = source.channels < 2 or not np.any(np.isfinite(side_db)) or analysis.stereo_width <= 10 ** (MONO_SIDE_DB / 10)
    side = None
    if not mono:
        side = tuple(float(v) if math.isfinite(m) and math.isfinite(v) else math.nan for v, m in zip(side_db, mid_db))
    mid_rows, _ = spectrum.band_powers()
    uncertainty = _uncertainty_from_frames(mid_rows, analysis.duration_s, spectrum._membership.sum(axis=1) > 0)
    uncertainty = np.where(np.isfinite(mid_db), uncertainty, np.inf)
    reference = Reference(
        name=name, sample_rate=source.sample_rate, channels=source.channels, duration_s=analysis.duration_s,
        integrated_lufs=analysis.integrated_lufs, true_peak_dbtp=analysis.true_peak_dbtp, plr_db=analysis.plr_db,
        loudness_range_lu=analysis.loudness_range_lu, stereo_width=0.0 if mono else analysis.stereo_width,
        mid_bands_db=tuple(float(v) for v in mid_db), side_bands_db=side, mid_uncertainty_db=tuple(float(u) for u in uncertainty),
        clipped_samples=analysis.clipped_samples, warnings=tuple(source.warnings),
    )  # fmt: skip
    if reference.is_clipped:
        warning = (f"reference {name} is clipped ({reference.clipped_samples} samples at full scale): its "
                   f"peak-to-loudness ratio ({reference.plr_db:.1f} dB) measures the clipping, not a density to copy; "
                   "the glue keeps its own rule")  # fmt: skip
        reference = replace(reference, warnings=(*reference.warnings, warning))
    return reference


def _known_bands(levels_db: np.ndarray, meter: MidSideSpectrumMeter) -> np.ndarray:
    """NaN where the reference says nothing: empty bands and bands past its bandwidth."""
    levels = np.asarray(levels_db, dtype=np.float64).copy()
    finite = np.isfinite(levels)
    if not finite.any():
        return np.full(levels.size, np.nan)
    levels[~finite | (levels < levels[finite].max() - EMPTY_BAND_DB)] = np.nan
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: levels.size])
    for k in range(1, levels.size):
        if centres[k] < BANDWIDTH_CHECK_FROM_HZ:
            continue
        if not math.isfinite(levels[k]) or levels[k - 1] - levels[k] > BANDWIDTH_STEP_DB:
            levels[k:] = np.nan
            break
    return levels


def reference_tonal_move(analysis: AudioAnalysis, reference: Reference, settings: MasterSettings, *,
                         mix_mid_db: np.ndarray | None = None, uncertainty_db: np.ndarray | None = None) -> TonalMove:
    """The tonal EQ (applied to every channel) that moves the mix's mid toward the reference's.

    Parameters
    ----------
    analysis : AudioAnalysis
        The mix's analysis (duration, loudness range, PLR, band levels).
    reference : Reference
    settings : MasterSettings
        Only ``tonal_max_db`` of the genre EQ is *not* used: the reference's rules
        (:data:`automix.master.tonal.REFERENCE_RULES`) set the cap.
    mix_mid_db : numpy.ndarray, optional
        The mix's mid spectrum (:meth:`MidSideSpectrumMeter.spectra_db` fed the mix in the
        analysis pass). Without it the analysis's band levels (all channels' power) stand
        for the mid: the same where the side is well under the mid, as in most mixes.
    uncertainty_db : numpy.ndarray, optional
        The mix's per-band uncertainty (``InputMeasurements.band_uncertainty_db``).

    Returns
    -------
    TonalMove
        Gains per band; the reason names the reference. Scale by ``--amount`` as the
        genre EQ is scaled.
    """
    if mix_mid_db is not None:
        count = len(analysis.band_levels_db)
        mid = np.asarray(mix_mid_db, dtype=np.float64)[:count]
        analysis = replace(analysis, band_levels_db=tuple(float(v) if math.isfinite(v) else -200.0 for v in mid))
    uncertainty, trust = _combined(analysis, reference, uncertainty_db)
    move = tonal_balance(analysis, settings, uncertainty_db=uncertainty, target_db=np.asarray(reference.mid_bands_db),
                         target_trust=trust)  # fmt: skip
    return replace(move, reason=f"matching reference {reference.name}: {move.reason}")


def _combined(analysis: AudioAnalysis, reference: Reference,
              uncertainty_db: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The difference's uncertainty per band (the mix's and the reference's standard
    errors in quadrature) and the target trust that makes the duration factor the
    shorter excerpt's (:func:`automix.master.tonal.confidence` already applies the mix's)."""
    count = len(analysis.band_levels_db)
    ref = np.asarray(reference.mid_uncertainty_db, dtype=np.float64)[:count]
    ref = np.concatenate([ref, np.full(count - ref.size, np.inf)])
    mix = np.zeros(count) if uncertainty_db is None else np.asarray(uncertainty_db, dtype=np.float64)[:count]
    mix_duration = min(1.0, math.sqrt(max(analysis.duration_s, 1e-9) / FULL_CONFIDENCE_S))
    trust = np.full(count, min(1.0, reference.duration_trust / mix_duration))
    return np.sqrt(ref**2 + mix**2), trust


def reference_side_move(analysis: AudioAnalysis, reference: Reference, mid_move: TonalMove, mix_mid_db: np.ndarray,
                        mix_side_db: np.ndarray, settings: MasterSettings) -> TonalMove:
    """The side-only EQ that moves the shape of the mix's side toward the reference's.

    Applied in the mid/side frame after the main EQ (:class:`SideEQ`), so it corrects what
    the main EQ leaves: the side's shape after the main EQ against the reference side's
    shape. Level is not its business (the width is): only the shape is matched, with
    :data:`SIDE_RULES` (twice the mid's dead-band, half its cap) and no boost where the
    mix's side is under ``SIDE_PRESENT_DB`` of its mid.

    Returns
    -------
    TonalMove
        Flat (with the reason) for a mono reference or a mix with no side.
    """
    count = len(analysis.band_levels_db)
    centres = tuple(float(c) for c in THIRD_OCTAVE_CENTRES_HZ[:count])
    flat = tuple(0.0 for _ in centres)
    if reference.is_mono:
        return TonalMove(centres, flat, "no side EQ: the reference is mono")
    mix_side = np.asarray(mix_side_db, dtype=np.float64)[:count]
    mix_mid = np.asarray(mix_mid_db, dtype=np.float64)[:count]
    if analysis.channels != 2 or not np.any(np.isfinite(mix_side)) or analysis.stereo_width <= 10 ** (MONO_SIDE_DB / 10):
        return TonalMove(centres, flat, "no side EQ: the mix has no side")
    side_after = mix_side + np.asarray(mid_move.gains_db[:count])
    side_analysis = replace(analysis, band_levels_db=tuple(float(v) if math.isfinite(v) else -200.0 for v in side_after))
    target = np.asarray(reference.side_bands_db, dtype=np.float64)
    uncertainty, trust = _combined(analysis, reference, None)
    move = tonal_balance(side_analysis, settings, uncertainty_db=uncertainty, target_db=target, target_trust=trust,
                         rules=SIDE_RULES)  # fmt: skip
    thin = ~np.isfinite(mix_side - mix_mid) | (mix_side - mix_mid < SIDE_PRESENT_DB)
    gains = np.where(thin & (np.asarray(move.gains_db) > 0), 0.0, np.asarray(move.gains_db))
    return replace(move, gains_db=tuple(float(g) for g in gains), reason=f"side EQ toward {reference.name}: {move.reason}")


def side_to_mid_after(mix_mid_db: np.ndarray, mix_side_db: np.ndarray, *, mid_gains_db=None, side_gains_db=None,
                      mono_below_hz: float = 0.0) -> float:
    """The mix's side-over-mid energy once the chain's EQs and mono bass have acted.

    From the band powers (:class:`MidSideSpectrumMeter`): the main EQ's gains apply to
    both, the side EQ's to the side, and the side is taken as gone in the bands centred
    at or below ``mono_below_hz`` (the stereo stage's high-pass, -6 dB there, -60 dB an
    octave under). Why it matters: on a dark reference the EQ lifts the lows, where the
    mono bass leaves only mid, so the width falls unless the side gain makes up for it.
    """
    mid = np.asarray(mix_mid_db, dtype=np.float64)
    count = mid.size
    side = np.asarray(mix_side_db, dtype=np.float64)[:count]
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[:count])
    g_mid = np.zeros(count) if mid_gains_db is None else np.asarray(mid_gains_db, dtype=np.float64)[:count]
    g_side = g_mid + (0.0 if side_gains_db is None else np.asarray(side_gains_db, dtype=np.float64)[:count])
    mid_power = np.where(np.isfinite(mid), 10 ** (np.nan_to_num(mid, neginf=-300.0) / 10), 0.0) * 10 ** (g_mid / 10)
    side_power = np.where(np.isfinite(side), 10 ** (np.nan_to_num(side, neginf=-300.0) / 10), 0.0) * 10 ** (g_side / 10)
    side_power = np.where(centres > mono_below_hz, side_power, 0.0)
    return float(side_power.sum() / mid_power.sum()) if mid_power.sum() > 0 else 0.0


def reference_width(mix_width: float, reference: Reference, *, side_change_db: float = 0.0,
                    side_to_mid: float | None = None, mono_below_hz: float = 0.0) -> tuple[float, str]:
    """The side gain that moves the mix's width toward the reference's.

    Width is side energy over mid plus side energy, ``w``. A side gain ``g`` turns
    ``w / (1 - w)`` (side over mid) into ``g**2`` times it, so the gain that reaches the
    reference is ``sqrt(ratio_ref / ratio_mix)``, bounded to ``WIDTH_MIN``..``WIDTH_MAX``.

    Parameters
    ----------
    mix_width : float
        The mix's ``AudioAnalysis.stereo_width``.
    reference : Reference
    side_change_db : float
        How much the side EQ changes the side's power (it is compensated here).
    side_to_mid : float, optional
        The mix's side-over-mid energy after the chain's EQs and mono bass
        (:func:`side_to_mid_after` with the same ``mono_below_hz``; recommended: it
        replaces ``mix_width`` and ``side_change_db``), so the master's width, not the
        input's, meets the reference's.
    mono_below_hz : float
        With ``side_to_mid``: the chain's mono-bass frequency. Both sides of the
        comparison are then taken above it: below it the preset makes the master mono
        whatever the reference does (the preset still sets the rest), and a width
        measured over everything would be ruled by that bass -- on a dark reference the
        side gain would chase side energy the mono bass removes.

    Returns
    -------
    (float, str)
        The side gain (1 for a mono reference or mix: nothing to copy, or no side to
        scale) and a reason for the report. Scale by ``--amount`` as the preset's width
        is (``1 + (g - 1) * amount``).
    """
    if reference.is_mono:
        return 1.0, f"width kept: the reference {reference.name} is mono"
    floor = 10 ** (MONO_SIDE_DB / 10)
    if mix_width <= floor:
        return 1.0, "width kept: the mix is mono, there is no side to scale"
    ratio_ref = reference.stereo_width / max(1.0 - reference.stereo_width, 1e-9)
    above = ""
    if side_to_mid is not None and side_to_mid > floor:
        ratio_ref = reference.side_to_mid(mono_below_hz)
        wanted = math.sqrt(ratio_ref / side_to_mid)
        mix_width, above = side_to_mid / (1.0 + side_to_mid), f" above {mono_below_hz:.0f} Hz" if mono_below_hz > 0 else ""
    else:
        ratio_mix = mix_width / max(1.0 - mix_width, 1e-9)
        wanted = math.sqrt(ratio_ref / ratio_mix) / 10 ** (side_change_db / 20)
    gain = float(np.clip(wanted, WIDTH_MIN, WIDTH_MAX))
    bounded = "" if gain == wanted else f" (bounded from {wanted:.2f})"
    ref_width = ratio_ref / (1.0 + ratio_ref)
    return gain, (f"side gain {gain:.2f}{bounded}: width{above} {mix_width:.3f} toward the reference's "
                  f"{ref_width:.3f}")  # fmt: skip


def reference_plr_db(reference: Reference) -> float | None:
    """The peak-to-loudness ratio the glue may aim at, or None to keep its own rule.

    The reference's PLR bounded to ``PLR_MIN_DB``..``PLR_MAX_DB``; None for a clipped
    reference (its PLR measures the clipping) or an unmeasurable one.
    """
    if reference.is_clipped or not math.isfinite(reference.plr_db) or reference.plr_db <= 0:
        return None
    return float(np.clip(reference.plr_db, PLR_MIN_DB, PLR_MAX_DB))


def reference_glue(analysis: AudioAnalysis, settings: MasterSettings, reference: Reference, *,
                   detector: glue_stage.GlueDetectorMeter | None = None,
                   samples: np.ndarray | None = None) -> glue_stage.GlueDecision:
    """The glue, aiming at the reference's density instead of ``DENSE_PLR_DB``.

    The glue's rule (:func:`automix.master.glue.decide_glue`) takes half of the PLR above
    ``DENSE_PLR_DB`` (1-3 dB, the limiter takes the rest); here the reference's bounded
    PLR (:func:`reference_plr_db`) takes that place: a denser reference gets more glue (at
    most ``glue.MAX_DEPTH_DB``), a reference as open as the usual rule changes nothing.
    Implemented by shifting the PLR the rule sees, so every other guard (preset without
    glue, wide loudness range, silence) is kept.
    """
    aim = reference_plr_db(reference)
    if aim is None:
        decision = glue_stage.decide_glue(analysis, settings, detector=detector, samples=samples)
        return replace(decision, reason=f"{decision.reason} (reference density not used: clipped or unmeasurable)")
    shift = glue_stage.DENSE_PLR_DB - aim
    shifted = replace(analysis, plr_db=analysis.plr_db + shift)
    decision = glue_stage.decide_glue(shifted, settings, detector=detector, samples=samples)
    note = (f"aiming at the reference's peak-to-loudness {aim:.1f} dB (measured {reference.plr_db:.1f}); "
            f"the mix's is {analysis.plr_db:.1f} dB")  # fmt: skip
    if decision.act:
        return replace(decision, reason=f"glue {decision.ratio:g}:1, about {decision.depth_db:.1f} dB off the loud "
                                        f"passages, {note}")  # fmt: skip
    if decision.reason.startswith("no glue: already dense"):
        return replace(decision, reason=f"no glue: the mix is already about as dense as the reference ({note})")
    return decision


class SideEQ:
    """Streaming side-only EQ: ``process(block)`` then ``flush()``, output aligned.

    Mid/side (``mid = (L + R) / 2``, ``side = (L - R) / 2``); the side goes through the
    move's linear-phase FIR, the mid only waits for it (a FIFO of the FIR's latency), so
    the mono sum is untouched. Anything but stereo, or a flat move, passes through.
    """

    def __init__(self, sample_rate: int, move: TonalMove, channels: int = 2):
        taps = eq_taps(sample_rate, move) if channels == 2 else None
        self.channels = channels
        self._fir = StreamingFIR(taps, 1) if taps is not None else None
        self.latency = self._fir.latency if self._fir else 0
        self._mid_pending = np.zeros(0, dtype=np.float32)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Equalise one block's side; returns the aligned output ready so far."""
        if self._fir is None:
            return block
        block = np.asarray(block, dtype=np.float32)
        mid = np.float32(0.5) * (block[0] + block[1])
        side = np.float32(0.5) * (block[0] - block[1])
        return self._combine(mid, self._fir.process(side[None, :])[0])

    def flush(self) -> np.ndarray:
        """The output still owed at the end of the stream."""
        if self._fir is None:
            return np.zeros((self.channels, 0), dtype=np.float32)
        return self._combine(np.zeros(0, dtype=np.float32), self._fir.flush()[0])

    def _combine(self, mid: np.ndarray, side: np.ndarray) -> np.ndarray:
        self._mid_pending = np.concatenate([self._mid_pending, mid]) if self._mid_pending.size else mid
        n = side.size
        mid_out, self._mid_pending = self._mid_pending[:n], self._mid_pending[n:]
        return np.stack([mid_out + side, mid_out - side])


def side_power_change_db(move: TonalMove, mix_side_db: np.ndarray) -> float:
    """How much the side EQ changes the side's power (from the band powers), dB."""
    side = np.asarray(mix_side_db, dtype=np.float64)[: len(move.gains_db)]
    gains = np.asarray(move.gains_db[: side.size])
    power = np.where(np.isfinite(side), 10 ** (np.nan_to_num(side, neginf=-300.0) / 10), 0.0)
    before = power.sum()
    return float(10 * np.log10((power * 10 ** (gains / 10)).sum() / before)) if before > 0 else 0.0


def reference_target_lufs(reference: Reference) -> tuple[float, str]:
    """The loudness target the reference sets (when the user gave none), and a note.

    Its integrated loudness, rounded to 0.1 LU and held within the range a preset may
    set (``MasterSettings.target_lufs``: the loop's final word on loudness and ceiling
    is unchanged, so a reference louder than the ceiling allows still gets a master at
    or under the ceiling, through the ``--over-limit`` policy).
    """
    from dataclasses import fields

    from automix.presets import MasterSettings as _Settings

    low, high = next(f.metadata["range"] for f in fields(_Settings) if f.name == "target_lufs")
    wanted = round(reference.integrated_lufs, 1)
    target = float(min(max(wanted, low), high))
    if target != wanted:
        return target, f"loudness target {target:g} LUFS: the reference's {wanted:g} LUFS is outside {low:g}..{high:g}"
    return target, f"loudness target {target:g} LUFS from the reference {reference.name}"


def check_reference_path(path: str | Path, inputs=(), outputs=()) -> Path:
    """Validate ``--reference`` before any audio is read (cheap: stat and header only).

    Refuses, naming the reason: a missing, empty, unreadable or non-regular file, a
    file that is not audio by its header, the same file as an input or an output
    (through links too: device and inode, or the resolved path), and a file inside an
    input folder (``mix stems/``: it would be mixed as a stem).
    """
    import os

    from automix.io.audio import _check_input_file, _container_of

    path = Path(path)
    try:
        _check_input_file(path)
        _container_of(path)
    except AutomixError as error:
        raise AutomixError(f"--reference {error}") from None
    st = os.stat(path)
    real = os.path.realpath(path)
    for kind, items in (("input", inputs), ("output", outputs)):
        for item in items:
            other = Path(item)
            other_real = os.path.realpath(other)
            same = other_real == real
            if not same:
                try:
                    other_st = os.stat(other)
                    same = (other_st.st_dev, other_st.st_ino) == (st.st_dev, st.st_ino)
                except OSError:
                    pass
            if same:
                raise AutomixError(f"--reference {path}: is the {kind} {other}; the reference must be another recording")
            if kind == "input" and other.is_dir() and real.startswith(other_real.rstrip(os.sep) + os.sep):
                raise AutomixError(f"--reference {path}: lies inside the input folder {other} and would be mixed as a "
                                   "stem; move it out of the folder")  # fmt: skip
    return path
