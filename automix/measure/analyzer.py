"""Stage 1 of the pipeline: measure a signal the way a mastering engineer would.

:func:`analyze` turns audio into an :class:`AudioAnalysis`: loudness (BS.1770),
peaks, dynamics, a third-octave spectrum, stereo image and signal-health checks. The
balancer decides from these numbers only, and the report prints them.

:class:`Analyzer` does the same block by block (``add(block)``, ``result()``), keeping
only running sums, small per-frame arrays (10 ms and 100 ms powers: 100 + 10 floats per
second) and one spectrum segment of audio, so a file never has to be in memory whole;
:func:`analyze` is a one-block use of it. Inside, the input is cut into fixed chunks, so
any block sizes give the same numbers bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np

from automix.dsp import design, kernels
from automix.errors import AutomixError
from automix.io.audio import Audio
from automix.io.validate import MAX_CHANNELS, validate_audio
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
#: Shorter than this, a signal has no meaningful spectrum (its bands read SILENCE_DB).
MIN_SPECTRUM_FRAMES = 64
#: BS.1770's first gating block is 400 ms; shorter signals have no gated loudness.
MIN_MEASURABLE_S = 0.4
_CHUNK = loudness.STREAM_CHUNK_FRAMES


@dataclass(frozen=True)
class AudioAnalysis:
    """Measurements of one signal. Levels in dB are relative to full scale.

    Attributes
    ----------
    integrated_lufs : float
        BS.1770-4 integrated loudness (gates at -70 LUFS and -10 LU).
    active_lufs : float
        Loudness of the active part only: the relative gate alone decides what counts,
        so this moves exactly with gain. Used for balancing stems. For a signal shorter
        than one 400 ms block, the ungated mean power instead.
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
        ``SILENCE_DB`` in every band for silence or under ``MIN_SPECTRUM_FRAMES`` samples.
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
    channel_layout : str
        The loudspeaker layout assumed for the BS.1770 channel weights
        (:func:`automix.measure.loudness.channel_layout`).
    too_short : bool
        Shorter than one 400 ms BS.1770 block: no gated loudness exists, so the
        loudness fields read ``SILENCE_DB`` (``active_lufs`` is the ungated mean).
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
    channel_layout: str = ""
    too_short: bool = False
    #: False when the analysis left out the true-peak scan (``Analyzer(true_peak=False)``):
    #: then ``true_peak_dbtp`` and ``plr_db`` hold the sample peak, a lower bound
    true_peak_measured: bool = True

    @property
    def is_silent(self) -> bool:
        return self.active_lufs <= loudness.SILENCE_DB

    @property
    def is_measurable(self) -> bool:
        """Long enough for BS.1770 gating (at least one 400 ms block)."""
        return not self.too_short

    def band_level_db(self, low_hz: float, high_hz: float) -> float:
        """Power in the bands whose centres lie in ``[low_hz, high_hz]``, relative to total."""
        levels = np.asarray(self.band_levels_db)
        centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: levels.size])
        inside = (centres >= low_hz) & (centres <= high_hz)
        return _power_db(np.sum(10 ** (levels[inside] / 10))) if inside.any() else loudness.SILENCE_DB

    def to_dict(self) -> dict:
        """JSON-ready dictionary; units are in the key names."""
        data = asdict(self)
        if not data.pop("true_peak_measured"):
            data["true_peak_dbtp"] = data["plr_db"] = None  # not measured: no number that looks measured
        bands = data.pop("band_levels_db")
        data["third_octave_bands_db"] = {name: round(level, 2) for name, level in zip(NOMINAL_CENTRES, bands)}
        return {key: (round(value, 3) if isinstance(value, float) else value) for key, value in data.items()}


def analyze(audio: Audio) -> AudioAnalysis:
    """Measure ``audio``.

    Parameters
    ----------
    audio : Audio
        Any number of channels, any sample rate from 8 to 768 kHz.

    Returns
    -------
    AudioAnalysis

    Raises
    ------
    AutomixError
        For an array that is not ``(channels, samples)`` float and finite, or an
        unsupported rate. A file of a handful of samples (read from disk, so its layout
        is known) is analysed, with ``too_short`` set.
    """
    samples, sample_rate = audio.samples, audio.sample_rate
    if not (audio.path is not None and isinstance(samples, np.ndarray) and samples.ndim == 2
            and 0 < samples.shape[1] <= samples.shape[0]):
        # an in-memory array with no more samples than channels is ambiguous (transposed?)
        validate_audio(samples, sample_rate, name=audio.name)
    elif samples.shape[0] > MAX_CHANNELS:
        raise AutomixError(f"{audio.name}: {samples.shape[0]} channels; at most {MAX_CHANNELS} are supported")
    elif not np.issubdtype(samples.dtype, np.floating) or not np.isfinite(samples).all():
        raise AutomixError(f"{audio.name}: expected finite floating-point samples")
    analyzer = Analyzer(sample_rate, samples.shape[0], total_frames=samples.shape[1])
    analyzer.add(samples)
    return analyzer.result()


class Analyzer:
    """:func:`analyze`, block by block.

    Parameters
    ----------
    sample_rate : int
        8000 .. 768000 Hz (else AutomixError).
    channels : int
    total_frames : int, optional
        The length, if known up front: the spectrum then averages the same evenly spread
        frames as :func:`analyze` (identical result). Unknown, it keeps every k-th
        half-overlapping frame, doubling k as the signal grows, so the frames used are
        still evenly spread and at most ``2 * SPECTRUM_FRAMES``.
    true_peak : bool
        Run the 4x true-peak scan (the default). Without it ``true_peak_dbtp`` (and
        ``plr_db``) read the sample peak, a lower bound, and the analysis costs about a
        third less: for a caller that reads neither (the mix's per-stem analysis when no
        report is written; the plan never uses them).
    loudness_meter : bool
        Run the loudness meter (the default). Without it, a caller whose own meter reads
        the same blocks passes that meter's measurement to :meth:`result` (a render
        analyses its output beside the output meters it already runs).

    Notes
    -----
    Memory: running sums, the 10 ms and 100 ms frame powers, the loudness meter's 10 ms
    energies, and one ``SPECTRUM_SEGMENT`` of audio carried for frames that straddle
    block edges; never a float64 copy of more than a chunk.
    """

    def __init__(self, sample_rate: int, channels: int, total_frames: int | None = None, *, true_peak: bool = True,
                 loudness_meter: bool = True) -> None:
        self.meter = loudness.LoudnessMeter(sample_rate, channels, true_peak=true_peak) if loudness_meter else None
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.total_frames = None if total_frames is None else int(total_frames)
        self._frames = 0
        self._pending: list[np.ndarray] = []
        self._pending_frames = 0
        self._square_sums = np.zeros(channels)
        self._sums = np.zeros(channels)
        self._cross = 0.0  # sum of left * right
        self._clipped = 0
        self._clip_runs = np.zeros(channels, dtype=np.int64)  # open run of hot samples per channel
        self._powers = {hop: _FramePowers(hop) for hop in self._hops()}
        self._spectrum = _Spectrum(self.sample_rate, channels, self.total_frames)

    def _hops(self) -> tuple[int, int]:
        return max(1, int(self.sample_rate * loudness.GRANULE_S)), max(1, self.sample_rate // 100)

    def add(self, block: np.ndarray) -> None:
        """Feed the next ``(channels, n)`` block, in order."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise AutomixError(f"analyzer: expected a ({self.channels}, n) block, got shape {block.shape}")
        if self.meter is None:
            self._add_chunks(block)
            return
        # the sums run on this thread while the meter's true-peak scan may run on the pool
        self.meter._add(block, lambda: self._add_chunks(block))

    def _add_chunks(self, block: np.ndarray) -> None:
        # the same fixed chunks as the meter, whatever the block sizes
        start = 0
        if self._pending_frames + block.shape[1] < _CHUNK:
            self._pending.append(block.copy())
            self._pending_frames += block.shape[1]
            return
        if self._pending:
            start = _CHUNK - self._pending_frames
            self._chunk(np.concatenate(self._pending + [block[:, :start]], axis=1))
            self._pending, self._pending_frames = [], 0
        while block.shape[1] - start >= _CHUNK:
            self._chunk(block[:, start : start + _CHUNK])
            start += _CHUNK
        if start < block.shape[1]:
            self._pending = [block[:, start:].copy()]
            self._pending_frames = block.shape[1] - start

    def _chunk(self, chunk: np.ndarray) -> None:
        wide = chunk.astype(np.float64)  # one chunk at a time: never the whole signal
        squares = wide * wide
        self._square_sums += squares.sum(axis=1)
        self._sums += wide.sum(axis=1)
        if self.channels >= 2:  # not np.dot: OpenBLAS threads long dot products
            self._cross += float(np.einsum("i,i->", wide[0], wide[1]))
        per_sample = squares.sum(axis=0)
        for frames in self._powers.values():
            frames.add(per_sample)
        self._count_clips(chunk)
        self._spectrum.add(chunk, self._frames)
        self._frames += chunk.shape[1]

    def _count_clips(self, chunk: np.ndarray) -> None:
        """Samples in runs of 3+ hot samples; a run may continue across chunk edges."""
        hot = (chunk >= CLIP_LEVEL) | (chunk <= -CLIP_LEVEL)
        for channel in range(self.channels):
            row = hot[channel]
            if not row.any():
                self._clipped += self._clip_runs[channel] if self._clip_runs[channel] >= 3 else 0
                self._clip_runs[channel] = 0
                continue
            edges = np.diff(np.concatenate(([False], row, [False])).astype(np.int8))
            starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
            lengths = stops - starts
            if starts[0] == 0:
                lengths[0] += self._clip_runs[channel]  # the run carried in goes on
            elif self._clip_runs[channel] >= 3:
                self._clipped += self._clip_runs[channel]
            open_run = stops[-1] == row.size
            closed = lengths[:-1] if open_run else lengths
            self._clipped += int(closed[closed >= 3].sum())
            self._clip_runs[channel] = lengths[-1] if open_run else 0

    def _flush(self) -> None:
        if self._pending:
            chunk = np.concatenate(self._pending, axis=1)
            self._pending, self._pending_frames = [], 0
            self._chunk(chunk)

    def frame_powers(self, hop_ms: int) -> np.ndarray:
        """Mean square per complete 10 ms or 100 ms frame, averaged over channels
        (the streaming twin of :func:`frame_power`)."""
        self._flush()
        hop = {100: self._hops()[0], 10: self._hops()[1]}[hop_ms]
        return self._powers[hop].result() / self.channels

    def result(self, true_peak: float | None = None, measured: loudness.LoudnessMeasurement | None = None) -> AudioAnalysis:
        """Everything measured so far. ``true_peak``: the linear 4x true peak of the same
        blocks, measured elsewhere (an analyzer made with ``true_peak=False`` whose scan
        ran in the helper process: :func:`automix.master.chain.measure_source`).
        ``measured``: a true-peak meter's measurement of the same blocks, for an analyzer
        made with ``loudness_meter=False``."""
        self._flush()
        frames, channels = self._frames, self.channels
        if (measured is None) == (self.meter is None):
            raise AutomixError("internal error: an analyzer reads its own loudness meter or one given, one of the two")
        meter = self.meter.result() if measured is None else measured
        if true_peak is not None:
            meter = replace(meter, true_peak_dbtp=loudness.amplitude_to_db(true_peak))
        too_short = meter.momentary_lufs.size == 0
        total_square = float(self._square_sums.sum())
        mean_square = total_square / (frames * channels) if frames else 0.0
        active_lufs = loudness.gated_loudness(meter.momentary_lufs, ACTIVE_GATE_LUFS)
        if too_short:  # no 400 ms block: the ungated mean, as the meter would sum it
            active_lufs = float(loudness.power_to_lufs(mean_square * channels))
        # Crest factor over the active part: silence between notes would inflate it.
        crest = meter.sample_peak_dbfs - _active_rms_dbfs(self.frame_powers(100), mean_square)
        band_levels, centroid = self._spectrum.result()
        correlation, width = self._stereo_image()
        silent_loudness = meter.integrated_lufs <= loudness.SILENCE_DB
        clipped = self._clipped + sum(int(run) for run in self._clip_runs if run >= 3)
        return AudioAnalysis(
            integrated_lufs=meter.integrated_lufs,
            active_lufs=active_lufs,
            loudness_range_lu=meter.loudness_range_lu,
            max_momentary_lufs=meter.max_momentary_lufs,
            max_short_term_lufs=meter.max_short_term_lufs,
            true_peak_dbtp=meter.true_peak_dbtp,
            sample_peak_dbfs=meter.sample_peak_dbfs,
            rms_dbfs=_power_db(mean_square),
            plr_db=0.0 if silent_loudness else meter.true_peak_dbtp - meter.integrated_lufs,
            crest_factor_db=crest if math.isfinite(crest) and mean_square > 0 else 0.0,
            loud_rms_dbfs=_loud_rms_dbfs(self.frame_powers(10), mean_square),
            spectral_centroid_hz=centroid,
            band_levels_db=band_levels,
            stereo_correlation=correlation,
            stereo_width=width,
            dc_offset=float(np.abs(self._sums / frames).max()) if frames else 0.0,
            clipped_samples=int(clipped),
            duration_s=frames / self.sample_rate,
            sample_rate=self.sample_rate,
            channels=channels,
            true_peak_measured=measured is not None or self.meter.has_true_peak or true_peak is not None,
            channel_layout=loudness.channel_layout(channels),
            too_short=too_short,
        )

    def _stereo_image(self) -> tuple[float, float]:
        if self.channels < 2:
            return 1.0, 0.0
        left_power, right_power = float(self._square_sums[0]), float(self._square_sums[1])
        cross = self._cross
        if left_power == 0 or right_power == 0:
            return (1.0 if left_power == right_power else 0.0), (0.0 if left_power == right_power else 0.5)
        correlation = max(-1.0, min(1.0, cross / math.sqrt(left_power * right_power)))
        mid_power = left_power + right_power + 2 * cross
        side_power = left_power + right_power - 2 * cross
        total = mid_power + side_power
        return correlation, (max(0.0, side_power) / total if total > 0 else 0.0)


class _FramePowers:
    """Sums of a per-sample power over consecutive frames of ``hop`` samples (streaming)."""

    def __init__(self, hop: int) -> None:
        self.hop = hop
        self._done: list[np.ndarray] = []
        self._partial = np.zeros(0)

    def add(self, per_sample: np.ndarray) -> None:
        data = np.concatenate((self._partial, per_sample)) if self._partial.size else per_sample
        whole = data.size // self.hop
        if whole:
            loudness._append(self._done, data[: whole * self.hop].reshape(whole, self.hop).sum(axis=1) / self.hop)
        self._partial = data[whole * self.hop :].copy()

    def result(self) -> np.ndarray:
        return np.concatenate(self._done) if self._done else np.zeros(0)


class _Spectrum:
    """Welch long-term spectrum over evenly spread, Hann-windowed, detrended frames.

    Known length: the frame starts :func:`analyze` has always used (``SPECTRUM_FRAMES``
    spread over the signal). Unknown length: frames every half segment, keeping each
    k-th; the power sum of frame ``j`` goes in the bucket of its 2-adic valuation, so
    when k doubles the frames already summed that are multiples of the new k are still
    at hand. A tail of one segment is carried so frames straddling blocks are whole.
    """

    def __init__(self, sample_rate: int, channels: int, total_frames: int | None) -> None:
        self.sample_rate, self.channels, self.total = sample_rate, channels, total_frames
        self._tail = np.zeros((channels, 0), dtype=np.float32)
        self._tail_start = 0  # stream position of the tail's first sample
        if total_frames is not None:
            self.segment = min(SPECTRUM_SEGMENT, total_frames)
            if self.segment >= MIN_SPECTRUM_FRAMES:
                available = (total_frames - self.segment) // (self.segment // 2) + 1
                self._starts = np.linspace(0, total_frames - self.segment, min(available, SPECTRUM_FRAMES)).astype(np.int64)
            else:
                self._starts = np.zeros(0, dtype=np.int64)
            self._next = 0  # index into _starts
            self._sum = None
        else:
            self.segment = SPECTRUM_SEGMENT
            self._hop = SPECTRUM_SEGMENT // 2
            self._stride = 1  # keep frames whose index is a multiple of this
            self._next_frame = 0  # index of the next frame (start = index * hop)
            self._buckets: dict[int, np.ndarray] = {}
            self._counts: dict[int, int] = {}

    def add(self, chunk: np.ndarray, position: int) -> None:
        """``chunk`` starts at stream position ``position``."""
        tail = np.concatenate((self._tail, chunk), axis=1)
        start_of_tail = position - self._tail.shape[1]
        end = position + chunk.shape[1]
        if self.total is not None:
            stop = np.searchsorted(self._starts, end - self.segment, side="right")
            starts = self._starts[self._next : stop]
            self._next = stop
            if starts.size:
                psd = self._psd(tail, starts - start_of_tail)
                self._sum = psd if self._sum is None else self._sum + psd
        else:
            self._stream_frames(tail, start_of_tail, end)
        keep = min(self.segment, tail.shape[1])
        self._tail = tail[:, tail.shape[1] - keep :].copy()

    def _stream_frames(self, tail: np.ndarray, start_of_tail: int, end: int) -> None:
        while True:
            frame_start = self._next_frame * self._hop
            if frame_start + self.segment > end:
                return
            if self._next_frame % self._stride == 0:
                psd = self._psd(tail, np.array([frame_start - start_of_tail]))
                level = _two_adic(self._next_frame)
                self._buckets[level] = self._buckets.get(level, 0.0) + psd
                self._counts[level] = self._counts.get(level, 0) + 1
                if self._kept(self._stride) > 2 * SPECTRUM_FRAMES:
                    self._stride *= 2
            self._next_frame += self._stride - (self._next_frame % self._stride)

    def _kept(self, stride: int) -> int:
        minimum = stride.bit_length() - 1
        return sum(count for level, count in self._counts.items() if level >= minimum)

    def _psd(self, data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        # float32 frames and transform (scipy.fft keeps float32; numpy's rfft is 3-4x
        # slower here): the band levels move by about 1e-5 dB against float64
        window = _hann(self.segment)
        total = np.zeros(self.segment // 2 + 1)
        views = np.lib.stride_tricks.sliding_window_view(data, self.segment, axis=-1)  # no copy
        for batch in np.array_split(offsets, -(-offsets.size // 64)):
            frames = views[:, batch]  # (ch, n, segment), one copy
            frames = frames - frames.mean(axis=-1, keepdims=True)  # detrend, as welch does
            frames *= window
            spectrum = kernels.rfft(frames, axis=-1)
            power = np.square(spectrum.real)
            power += np.square(spectrum.imag)
            total += power.reshape(-1, power.shape[-1]).sum(axis=0, dtype=np.float64)
        return total

    def result(self) -> tuple[tuple[float, ...], float]:
        """Third-octave band levels relative to total power, and the spectral centroid."""
        silent = tuple(loudness.SILENCE_DB for _ in _bands_below(self.sample_rate)), 0.0
        if self.total is not None:
            psd_sum, segment = self._sum, self.segment
        elif self._counts:
            minimum = self._stride.bit_length() - 1
            psd_sum = sum(total for level, total in self._buckets.items() if level >= minimum)
            segment = self.segment
        else:  # shorter than one segment: the whole signal is one frame
            segment = self._tail.shape[1]
            if segment < MIN_SPECTRUM_FRAMES:
                return silent
            saved = self.segment
            self.segment = segment
            psd_sum = self._psd(self._tail, np.array([0]))
            self.segment = saved
        if psd_sum is None or segment < MIN_SPECTRUM_FRAMES:
            return silent
        frequencies = np.fft.rfftfreq(segment, 1.0 / self.sample_rate)
        total = psd_sum[1:].sum()
        if total <= 0:
            return silent
        centroid = float((frequencies * psd_sum).sum() / psd_sum.sum())
        levels = []
        for centre in _bands_below(self.sample_rate):
            inside = (frequencies >= centre / 2 ** (1 / 6)) & (frequencies < centre * 2 ** (1 / 6))
            levels.append(_power_db(float(psd_sum[inside].sum() / total)))
        return tuple(levels), centroid


@lru_cache(maxsize=8)
def _hann(length: int) -> np.ndarray:
    return design.hann(length).astype(np.float32)


def _two_adic(index: int) -> int:
    """How many times 2 divides ``index`` (0 counts as divisible by everything)."""
    return 64 if index == 0 else (index & -index).bit_length() - 1


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


def _active_rms_dbfs(power: np.ndarray, mean_square: float) -> float:
    """RMS over the 100 ms frames within 30 dB of the loudest (skips rests and tails)."""
    if power.size == 0:
        return _power_db(mean_square)
    active = power[power >= power.max() * 1e-3]
    return _power_db(float(active.mean())) if active.size else loudness.SILENCE_DB


def _loud_rms_dbfs(power: np.ndarray, mean_square: float) -> float:
    """95th percentile of 10 ms RMS over the frames within 40 dB of the loudest."""
    if power.size == 0:
        return _power_db(mean_square)
    active = power[power >= power.max() * 1e-4]
    return _power_db(float(np.percentile(active, 95))) if active.size else loudness.SILENCE_DB


def _bands_below(sample_rate: int) -> tuple[float, ...]:
    """The third-octave centres whose band lies below Nyquist."""
    return tuple(c for c in THIRD_OCTAVE_CENTRES_HZ if c * 2 ** (1 / 6) <= sample_rate / 2)
