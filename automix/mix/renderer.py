"""Stage 3 of the pipeline: apply the mix plan to the stems and sum them.

Per stem, in order: gain, high-pass (12 dB/oct Butterworth), masking cuts (pedalboard
peak filters), compression (automix's linked RMS compressor, whose threshold is on the
same loudness scale the balancer plans in), a make-up gain measured so that the stem
lands exactly on its planned loudness, and pan to stereo. Then each *group* of stems
(drums, bass, vocals, harmony: see ``automix.presets.ROLE_GROUPS``) is measured summed
and scaled together onto the group's planned loudness, so a kit recorded on eight
microphones is no louder than one recorded on one (their hits overlap in time, or not,
and only measuring the sum says how they add). The stems are summed and the bus is set
to the plan's loudness.

The bus is float32 and, normally, goes on to the mastering chain, which has its own
true-peak limiter: then it is not lowered for peaks at all. For an unmastered mix
(``mastering_follows=False``) it is kept under -1 dBTP by its *programme* peak -- the
level the peaks of the music reach, not its single loudest event (see
:func:`programme_peak_dbtp`) -- so one click at 0 dBFS cannot turn a whole song down.

:func:`render` works on whole arrays (the reference); :func:`render_stream` gives the
same mix block by block from block sources (:class:`automix.io.stream.BlockSource`), in memory that
does not depend on the length of the song (see "streaming" below).
"""

from __future__ import annotations

import math
import pickle
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pedalboard

from automix.dsp import design, dynamics, iir
from automix.io.stream import BLOCK_FRAMES
from automix.measure import loudness
from automix.measure.analyzer import ACTIVE_GATE_LUFS
from automix.mix.balancer import MixPlan, StemPlan

BUS_CEILING_DBTP = -1.0
#: Programme peak: the length of the blocks peaks are taken over, and the share of them
#: (at least ``PEAK_OUTLIER_BLOCKS``) allowed over the ceiling as isolated events.
PEAK_BLOCK_S = 0.01
PEAK_OUTLIER_SHARE = 0.005
PEAK_OUTLIER_BLOCKS = 2


@dataclass(frozen=True, eq=False)
class RenderedStem:
    name: str
    samples: np.ndarray | None  # stereo, after the bus gain; None unless kept
    makeup_db: float
    compressor_max_gain_reduction_db: float
    group_gain_db: float = 0.0  # gain that put the stem's group on its planned loudness


@dataclass(frozen=True, eq=False)
class RenderResult:
    mix: np.ndarray  # stereo float32, the sum of the processed stems
    stems: tuple[RenderedStem, ...]
    bus_gain_db: float
    bus_rule: str
    #: per group: (planned LUFS, measured before the group gain, group gain dB), on the
    #: plan's scale (before the bus gain)
    groups: dict = field(default_factory=dict)


def render(stems: list[np.ndarray], sample_rate: int, plan: MixPlan, keep_stems: bool = False,
           mastering_follows: bool = False) -> RenderResult:
    """Process and sum the stems.

    Parameters
    ----------
    stems : list of numpy.ndarray
        ``(channels, samples)`` per stem, in the order of ``plan.stems``, all the same
        length and sample rate.
    keep_stems : bool
        Keep each processed stem (after the bus gain), whose plain sum is the mix.
    mastering_follows : bool
        The mix goes on to the mastering chain (whose limiter owns the true peak): the
        bus is then set to its loudness and never lowered for peaks. Otherwise its
        programme peak is kept under ``BUS_CEILING_DBTP``.
    """
    frames = stems[0].shape[1]
    # Stems are processed two at a time (scipy and numpy release the GIL on big arrays)
    # and summed in plan order, so the result does not depend on which finishes first.
    with ThreadPoolExecutor(max_workers=max(1, loudness.THREADS)) as pool:  # the one thread setting
        results = list(pool.map(lambda pair: process_stem(pair[0], sample_rate, pair[1]), zip(stems, plan.stems)))
    processed = [stereo for stereo, _, _ in results]
    group_gains, group_report = group_gains_db(processed, sample_rate, plan.stems)
    mix = np.zeros((2, frames), dtype=np.float32)
    infos = []
    for index, (stem_plan, (stereo, makeup_db, reduction_db)) in enumerate(zip(plan.stems, results)):
        gain_db = group_gains[index]
        if gain_db != 0.0:
            stereo *= np.float32(10 ** (gain_db / 20))
        mix += stereo
        infos.append((stem_plan.name, makeup_db, reduction_db, gain_db))
    if not keep_stems:
        processed = []

    bus_lufs = loudness.integrated_loudness(mix, sample_rate, absolute_gate_lufs=ACTIVE_GATE_LUFS)
    bus_gain_db = plan.bus_lufs - bus_lufs
    bus_rule = f"sum set to {plan.bus_lufs:g} LUFS"
    if mastering_follows:
        bus_rule += " (float bus, not lowered for peaks: the master's limiter sets the true peak)"
    else:
        bus_gain_db, bus_rule = held_under_bus_ceiling(bus_gain_db, bus_rule, *programme_peak_dbtp(mix, sample_rate))
    bus_gain = np.float32(10 ** (bus_gain_db / 20))
    if keep_stems:
        # The exported stems carry the bus gain and the mix is re-summed from them,
        # so their plain sum is the mix, sample for sample.
        for stereo in processed:
            stereo *= bus_gain
        mix = np.zeros((2, frames), dtype=np.float32)
        for stereo in processed:
            mix += stereo
    else:
        mix *= bus_gain
    rendered = tuple(
        RenderedStem(name, processed[i] if keep_stems else None, makeup, reduction, group_gain)
        for i, (name, makeup, reduction, group_gain) in enumerate(infos)
    )
    return RenderResult(mix, rendered, bus_gain_db, bus_rule, group_report)


def group_gains_db(processed: list[np.ndarray], sample_rate: int, plans) -> tuple[list[float], dict]:
    """Gain per stem that puts each group's *summed* loudness on its planned level.

    The balancer shares a group's loudness among its stems as if their powers added;
    stems of one kit play at different moments (kick, snare) or the same ones (close
    mics and overheads hear the same hits), so the sum is measured here and the whole
    group moved together -- the balance inside the group is unchanged.
    """
    gains = [0.0] * len(plans)
    report = {}
    members: dict[str, list[int]] = {}
    for index, stem_plan in enumerate(plans):
        if getattr(stem_plan, "group", ""):
            members.setdefault(stem_plan.group, []).append(index)
    for group, indices in members.items():
        # Measured without the user's own gains (--gain, --focus), which then apply on top
        # exactly: a stem that rests most of the time adds less to the measured sum than
        # its planned share, so leaving its gain in would be undone by the group scaling.
        total = np.zeros_like(processed[indices[0]])
        for index in indices:
            user_db = getattr(plans[index], "user_gain_db", 0.0)
            total += processed[index] * np.float32(10 ** (-user_db / 20)) if user_db else processed[index]
        measured = loudness.integrated_loudness(total, sample_rate, absolute_gate_lufs=ACTIVE_GATE_LUFS)
        if measured <= loudness.SILENCE_DB:
            continue
        target = plans[indices[0]].group_lufs - getattr(plans[indices[0]], "group_user_db", 0.0)
        for index in indices:
            gains[index] = target - measured
        report[group] = {"planned_lufs": round(target, 2), "summed_lufs": round(measured, 2),
                         "gain_db": round(target - measured, 2), "stems": len(indices)}
    return gains, report


def held_under_bus_ceiling(bus_gain_db: float, bus_rule: str, peak_db: float, where_s: float,
                           outliers: list[tuple[float, float]]) -> tuple[float, str]:
    """Lower an unmastered bus so its programme peak stays under ``BUS_CEILING_DBTP``;
    isolated peaks left over it are named in the rule, not allowed to set the level."""
    peak_after = peak_db + bus_gain_db
    if peak_after > BUS_CEILING_DBTP:
        bus_gain_db -= peak_after - BUS_CEILING_DBTP
        bus_rule += (f", lowered {peak_after - BUS_CEILING_DBTP:.1f} dB to keep its programme peak (at {where_s:.2f} s) "
                     f"under {BUS_CEILING_DBTP:g} dBTP")
    outliers = [(t, db) for t, db in outliers if db + bus_gain_db > BUS_CEILING_DBTP]
    if outliers:
        bus_rule += (f"; {len(outliers)} isolated peak(s) ignored for the bus level, loudest at {outliers[0][0]:.2f} s "
                     f"({outliers[0][1] + bus_gain_db:+.1f} dBTP after the bus gain)")
    return bus_gain_db, bus_rule


def programme_peak_dbtp(mix: np.ndarray, sample_rate: int) -> tuple[float, float, list[tuple[float, float]]]:
    """The level the programme's peaks reach, robust to a few isolated events.

    The true peak of each 10 ms block; the highest ``PEAK_OUTLIER_SHARE`` of blocks
    (at least ``PEAK_OUTLIER_BLOCKS``) are isolated events -- a click, a cut-off
    edit -- and the next one down is the programme peak. Music whose loud hits recur
    (every kick, every snare) has many blocks at its peak level, so this is its peak;
    a click at the start and end of a file is two blocks and does not count.

    Returns
    -------
    (programme peak dBTP, where it is in seconds, [(time s, dBTP) of the ignored blocks,
    loudest first])
    """
    block = max(1, round(PEAK_BLOCK_S * sample_rate))
    frames = mix.shape[1]
    count = -(-frames // block)
    padded = np.pad(np.abs(mix), ((0, 0), (0, count * block - frames)))
    sample_peaks = padded.reshape(mix.shape[0], count, block).max(axis=(0, 2))
    allowed = max(PEAK_OUTLIER_BLOCKS, int(PEAK_OUTLIER_SHARE * count))
    # True peaks of the loudest blocks by sample peak (and a margin of candidates: the
    # true peak reorders blocks only slightly); each block is read with 16 samples of
    # context either side for the interpolator.
    order = np.argsort(-sample_peaks, kind="stable")[: min(count, allowed + 1 + 16)]
    true_peaks = []
    for index in order:
        start, end = max(0, index * block - 16), min(frames, (index + 1) * block + 16)
        true_peaks.append(loudness.true_peak(np.ascontiguousarray(mix[:, start:end]), sample_rate))
    ranked = sorted(zip(true_peaks, order.tolist()), key=lambda pair: (-pair[0], pair[1]))
    if len(ranked) <= allowed:  # a very short bus: no outliers to set aside
        allowed = 0
    # Of the highest blocks, only those more than 1 dB over the next one down are
    # isolated events; peaks within 1 dB of the programme are the programme.
    reference = ranked[allowed][0] * 10 ** (1 / 20)
    outliers = [(value, index) for value, index in ranked[:allowed] if value > reference]
    peak, where = ranked[len(outliers)]
    return (loudness.amplitude_to_db(peak), where * block / sample_rate,
            [(index * block / sample_rate, loudness.amplitude_to_db(value)) for value, index in outliers])


def process_stem(samples: np.ndarray, sample_rate: int, plan: StemPlan) -> tuple[np.ndarray, float, float]:
    """One stem through its chain; returns stereo audio, make-up gain and compressor depth."""
    x = samples * np.float32(10 ** (plan.gain_db / 20))
    if plan.highpass_hz:
        sos = design.butter_sos(plan.highpass_order, plan.highpass_hz, "highpass", sample_rate)
        x = iir.sosfilt_plain(sos, x).astype(np.float32)
    if plan.eq_cuts:
        board = pedalboard.Pedalboard([pedalboard.PeakFilter(cut.frequency_hz, cut.gain_db, cut.q) for cut in plan.eq_cuts])
        x = board(x, sample_rate)
    reduction_db = 0.0
    if plan.compressor:
        c = plan.compressor
        result = dynamics.compress(x, sample_rate, threshold_db=c.threshold_db, ratio=c.ratio, attack_ms=c.attack_ms, release_ms=c.release_ms)
        x, reduction_db = result.samples, result.max_gain_reduction_db
    # Filters, compression and panning a stereo stem (its far side turned down) change
    # the level: measure the stem as it enters the mix and restore the planned loudness.
    x = pan(x, plan.pan)
    measured = loudness.integrated_loudness(x, sample_rate, absolute_gate_lufs=ACTIVE_GATE_LUFS)
    makeup_db = plan.target_lufs - measured if measured > loudness.SILENCE_DB else 0.0
    x *= np.float32(10 ** (makeup_db / 20))
    return x, makeup_db, reduction_db


def pan(x: np.ndarray, position: float) -> np.ndarray:
    """Stereo from mono or stereo, at ``position`` in [-1, 1].

    Mono uses the constant-power (-3 dB) law, so a centred mono stem has the same
    BS.1770 loudness as the mono original. Stereo stems are balanced: the far side is
    turned down by the same law, normalised so the centre leaves them unchanged.
    """
    angle = (position + 1.0) * math.pi / 4.0
    left_gain, right_gain = math.cos(angle), math.sin(angle)
    if x.shape[0] == 1:
        return np.concatenate([x * np.float32(left_gain), x * np.float32(right_gain)]).astype(np.float32)
    scale = math.sqrt(2.0)
    left = x[0] * np.float32(min(1.0, scale * left_gain))
    right = x[1] * np.float32(min(1.0, scale * right_gain))
    return np.stack([left, right]).astype(np.float32)


def pan_gains(channels: int, position: float) -> np.ndarray:
    """The gains :func:`pan` applies, as a ``(2, channels)`` matrix (output channel by
    input channel, each the float32 value ``pan`` multiplies by)."""
    angle = (position + 1.0) * math.pi / 4.0
    left_gain, right_gain = math.cos(angle), math.sin(angle)
    if channels == 1:
        return np.array([[np.float32(left_gain)], [np.float32(right_gain)]], dtype=np.float64)
    scale = math.sqrt(2.0)
    return np.array([[np.float32(min(1.0, scale * left_gain)), 0.0], [0.0, np.float32(min(1.0, scale * right_gain))]],
                    dtype=np.float64)


# --- streaming ---------------------------------------------------------------------------
# The same render, block by block: memory depends on the block size and the number of
# stems, not on the length of the song. One measuring pass (every stem through its chain,
# K-weighted, the 100 ms granule energies of every *pair* of stems kept: the loudness of
# any weighted sum of the stems follows from them, since K-weighting is linear), so the
# make-up gains, the group gains and the bus gain are known without summing anything;
# for an unmastered mix, one pass over the bus for its programme peak; then the render.


class StemChain:
    """:func:`process_stem` up to the make-up gain, block by block, state carried across
    blocks (high-pass ``zi``, pedalboard's filter state with ``reset=False``, the
    streaming compressor), so any blocking gives the same audio as one whole-signal run
    within float rounding."""

    def __init__(self, plan: StemPlan, sample_rate: int, channels: int) -> None:
        self.plan, self.sample_rate = plan, sample_rate
        self._gain = np.float32(10 ** (plan.gain_db / 20))
        self._sos = self._zi = None
        if plan.highpass_hz:
            self._sos = design.butter_sos(plan.highpass_order, plan.highpass_hz, "highpass", sample_rate)
            self._zi = np.zeros((self._sos.shape[0], channels, 2))
        self._board = (pedalboard.Pedalboard([pedalboard.PeakFilter(cut.frequency_hz, cut.gain_db, cut.q) for cut in plan.eq_cuts])
                       if plan.eq_cuts else None)  # fmt: skip
        self._started = False
        self._compressor = None
        if plan.compressor:
            c = plan.compressor
            self._compressor = dynamics.StreamingCompressor(sample_rate, channels, threshold_db=c.threshold_db, ratio=c.ratio,
                                                            attack_ms=c.attack_ms, release_ms=c.release_ms)

    @property
    def max_gain_reduction_db(self) -> float:
        return self._compressor.max_gain_reduction_db if self._compressor is not None else 0.0

    def process(self, block: np.ndarray) -> np.ndarray:
        """The next ``(channels, n)`` block in, stereo float32 out (before the make-up gain)."""
        return pan(self.process_unpanned(block), self.plan.pan)

    def process_unpanned(self, block: np.ndarray) -> np.ndarray:
        """:meth:`process` before the pan: ``(channels, n)`` float32, the stem's own
        channels (the pan is a gain per output channel, applied with the others)."""
        x = block * self._gain
        if self._sos is not None:
            x, self._zi = iir.sosfilt(self._sos, x, self._zi)
            x = x.astype(np.float32)
        if self._board is not None and x.shape[1]:
            x = self._board(x, self.sample_rate, reset=not self._started)
            self._started = True
        if self._compressor is not None:
            x = self._compressor.process(x)
        return x


class ProgrammePeakMeter:
    """:func:`programme_peak_dbtp` block by block: the sample peak of every 10 ms block,
    and the audio (with 16 samples of context either side) of only the loudest few, which
    are all the true-peak ranking ever looks at."""

    CONTEXT = 16

    def __init__(self, sample_rate: int, frames: int) -> None:
        self.sample_rate, self.frames = sample_rate, frames
        self.block = max(1, round(PEAK_BLOCK_S * sample_rate))
        self.count = -(-frames // self.block)
        self.allowed = max(PEAK_OUTLIER_BLOCKS, int(PEAK_OUTLIER_SHARE * self.count))
        self.keep = min(self.count, self.allowed + 1 + 16)
        self._buffer = np.zeros((2, 0), dtype=np.float32)
        self._buffer_start = 0  # global frame of self._buffer[:, 0]
        self._next_block = 0
        self._peaks = np.zeros(0)
        self._indices = np.zeros(0, dtype=np.int64)
        self._segments: dict[int, np.ndarray] = {}

    def add(self, block: np.ndarray) -> None:
        self._buffer = np.concatenate([self._buffer, block], axis=1)
        self._scan(final=False)

    def _scan(self, final: bool) -> None:
        end = self._buffer_start + self._buffer.shape[1]
        last = self.count if final else min(self.count, (end - self.CONTEXT) // self.block)
        first = self._next_block
        if last <= first:
            return
        b = self.block
        offset = first * b - self._buffer_start
        stop = min(last * b, self.frames) - self._buffer_start
        region = np.abs(self._buffer[:, offset:stop])
        padded = np.pad(region, ((0, 0), (0, (last - first) * b - region.shape[1])))
        peaks = padded.reshape(2, last - first, b).max(axis=(0, 2)).astype(np.float64)
        indices = np.arange(first, last, dtype=np.int64)
        all_peaks = np.concatenate([self._peaks, peaks])
        all_indices = np.concatenate([self._indices, indices])
        order = np.lexsort((all_indices, -all_peaks))[: self.keep]
        self._peaks, self._indices = all_peaks[order], all_indices[order]
        for index in self._indices.tolist():
            if index >= first and index not in self._segments:
                s, e = max(0, index * b - self.CONTEXT), min(self.frames, (index + 1) * b + self.CONTEXT)
                self._segments[index] = self._buffer[:, s - self._buffer_start : e - self._buffer_start].copy()
        kept = set(self._indices.tolist())
        self._segments = {k: v for k, v in self._segments.items() if k in kept}
        self._next_block = last
        drop = max(0, last * b - self.CONTEXT - self._buffer_start)
        self._buffer = self._buffer[:, drop:]
        self._buffer_start += drop

    def result(self) -> tuple[float, float, list[tuple[float, float]]]:
        """As :func:`programme_peak_dbtp` of the whole bus."""
        self._scan(final=True)
        allowed, block, rate = self.allowed, self.block, self.sample_rate
        true_peaks = [loudness.true_peak(np.ascontiguousarray(self._segments[index]), rate) for index in self._indices.tolist()]
        ranked = sorted(zip(true_peaks, self._indices.tolist()), key=lambda pair: (-pair[0], pair[1]))
        if len(ranked) <= allowed:
            allowed = 0
        reference = ranked[allowed][0] * 10 ** (1 / 20)
        outliers = [(value, index) for value, index in ranked[:allowed] if value > reference]
        peak, where = ranked[len(outliers)]
        return (loudness.amplitude_to_db(peak), where * block / rate,
                [(index * block / rate, loudness.amplitude_to_db(value)) for value, index in outliers])


@dataclass(frozen=True, eq=False)
class StreamedRender:
    """What :func:`render_stream` did; ``mix`` is never held (see ``bus_frames``)."""

    stems: tuple[RenderedStem, ...]
    bus_gain_db: float
    bus_rule: str
    groups: dict = field(default_factory=dict)
    bus_frames: int = 0
    mix: None = None


def _map(pool, function, items):
    return list(pool.map(function, items)) if pool is not None else [function(item) for item in items]


class ChannelEnergies:
    """K-weighted energy per 100 ms granule of every pair of *channels* of N stems (the
    granules' Gram matrices), before the pan.

    The pan is a gain per output channel (:func:`pan_gains`), so the bus of any weighted
    sum of the panned stems is ``A @ channels`` for a ``(2, channels)`` matrix ``A``, and
    its K-weighted granule energy is ``sum over output channels of a G a^T`` (K-weighting
    is linear and time-invariant, so it commutes with every gain). A mono stem is then
    K-weighted once, not once per side.

    The K-weighting runs in float64, as the loudness meter's: in float32 its high-pass
    (a pole 0.011 from 1 at 44.1 kHz) reads a 55 Hz bass 0.001 LU off.
    """

    WEIGHTING_DTYPE = np.float64

    def __init__(self, sample_rate: int, channels: list[int]) -> None:
        self.sample_rate, self.channels = sample_rate, list(channels)
        self._offsets = np.concatenate(([0], np.cumsum(self.channels))).astype(int)
        self.size = int(self._offsets[-1])
        self._sos = loudness.k_weighting_sos(sample_rate).astype(self.WEIGHTING_DTYPE)
        self._zi = [np.zeros((self._sos.shape[0], c, 2), dtype=self.WEIGHTING_DTYPE) for c in self.channels]
        self._frames = 0
        self._next_edge = 1  # index of the next 100 ms granule edge
        self._partial = np.zeros((self.size, self.size))
        self._granules: list[np.ndarray] = []

    def _edge(self, index):
        return (np.asarray(index, dtype=np.int64) * 10 * self.sample_rate + 50) // 100  # as the meter's granule edges

    def weigh(self, index: int, block: np.ndarray) -> np.ndarray:
        """K-weight stem ``index``'s next ``(channels, n)`` block (each stem's filter state
        is its own: the stems may be weighed on different threads)."""
        y, self._zi[index] = iir.sosfilt_as(self._sos, block, self._zi[index], self.WEIGHTING_DTYPE)
        return y

    def add(self, weighted: list[np.ndarray]) -> None:
        """The blocks :meth:`weigh` returned for every stem, all the same length."""
        n = weighted[0].shape[1]
        if n == 0:
            return
        rows = np.concatenate(weighted, axis=0).astype(np.float64, copy=False)  # (all channels, n)
        start = 0
        while True:
            edge = int(self._edge(self._next_edge)) - self._frames
            stop = min(edge, n)
            if stop > start:
                part = rows[:, start:stop]
                self._partial += part @ part.T
            if edge > n:
                break
            self._granules.append(self._partial)
            self._partial = np.zeros((self.size, self.size))
            self._next_edge += 1
            start = stop
        self._frames += n

    def mixing_matrix(self, weights, pans: list[np.ndarray]) -> np.ndarray:
        """``(2, channels)``: stem ``i``'s channels scaled by ``weights[i]`` and panned by
        ``pans[i]`` (a :func:`pan_gains` matrix)."""
        matrix = np.zeros((2, self.size))
        for i, (weight, gains) in enumerate(zip(weights, pans)):
            matrix[:, self._offsets[i] : self._offsets[i + 1]] = float(weight) * gains
        return matrix

    def energies(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(granule energies, samples per granule) of the bus ``matrix @ channels``."""
        if not self._granules:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        stacked = np.stack(self._granules)
        energies = np.einsum("ci,gij,cj->g", matrix, stacked, matrix)
        edges = self._edge(np.arange(len(self._granules) + 1))
        return energies, np.diff(edges)

    def loudness(self, matrix: np.ndarray) -> float:
        energies, counts = self.energies(matrix)
        if energies.size == 0:
            return loudness.SILENCE_DB
        return loudness.integrated_from_granules(energies, counts, absolute_gate_lufs=ACTIVE_GATE_LUFS)


def _on_grid(source, frames: int) -> Iterator[np.ndarray]:
    """``source``'s blocks cut to the mix's common grid: ``BLOCK_FRAMES`` frames each, the
    last one shorter, ``frames`` in all (padded with silence past the source's end). A
    fixed grid, so each stem can be cut on its own, in either process, and still line up."""
    pending, done, held = [], 0, 0
    for block in source.blocks():
        pending.append(block)
        held += block.shape[1]
        while held >= BLOCK_FRAMES and done < frames:
            joined = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
            n = min(BLOCK_FRAMES, frames - done)
            yield joined[:, :n]
            done += n
            pending, held = [joined[:, n:]], joined.shape[1] - n
        if done >= frames:
            return
    rest = np.concatenate(pending, axis=1) if pending else np.zeros((source.channels, 0), dtype=np.float32)
    rest = np.pad(rest, ((0, 0), (0, max(0, frames - done - rest.shape[1]))))
    while done < frames:
        n = min(BLOCK_FRAMES, frames - done)
        yield rest[:, :n]
        rest = rest[:, n:]
        done += n


class StemChains:
    """Some of the mix's stems (any subset), each through its chain, one grid block at a
    time: the costliest part of :func:`render_stream`'s measuring pass, which the helper
    process (:mod:`automix.io.helper`) shares with this one -- it decodes and processes
    its stems and sends the blocks back, and this process keeps and K-weights them all."""

    def __init__(self, sources, plans, sample_rate: int, frames: int) -> None:
        self.sources = list(sources)
        self.chains = [StemChain(p, sample_rate, s.channels) for p, s in zip(plans, self.sources)]
        self._blocks = [iter(_on_grid(s, frames)) for s in self.sources]

    def process_next(self, pool=None) -> list[np.ndarray]:
        """Every stem's next grid block through its chain (before the pan), in order."""
        return _map(pool, lambda k: self.chains[k].process_unpanned(next(self._blocks[k])), range(len(self.sources)))

    def reductions_db(self) -> list[float]:
        """Each stem's compressor's deepest gain reduction so far."""
        return [chain.max_gain_reduction_db for chain in self.chains]


#: This process's share of the stems' chains when the helper process takes the rest: it
#: also keeps and K-weights every stem, measures the channels' energies and receives the
#: helper's blocks (measured on 8 stereo stems, 3.5 min: 0.2 evens the two processes).
OWN_SHARE = 0.2


def _helpers_stems(sources, plans) -> list[int]:
    """Indices of the stems whose chains the helper process runs: about ``1 - OWN_SHARE``
    of the estimated work (a stem's channels, its compressor the costliest stage)."""
    costs = [s.channels * (1.0 + (0.8 if p.compressor else 0.0) + (0.3 if p.eq_cuts else 0.0))
             for s, p in zip(sources, plans)]
    own = theirs = 0.0
    given = []
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        if own * (1.0 - OWN_SHARE) < theirs * OWN_SHARE:
            own += costs[index]
        else:
            theirs += costs[index]
            given.append(index)
    return sorted(given)


class _SharedChains:
    """:class:`StemChains` of all the stems, those of :func:`_helpers_stems` in the helper
    process when there is one (else all here, on the thread pool): each step gives every
    stem's block in plan order, whichever process made it."""

    DEPTH = 2  # blocks asked of the helper ahead of this process's own

    def __init__(self, sources, plans, sample_rate: int, frames: int, pool) -> None:
        from automix.io.helper import helper

        self.pool, self.count = pool, len(sources)
        self.steps = -(-frames // BLOCK_FRAMES)
        remote, self.theirs, self.remote = helper(), [], None
        if remote is not None and self.count > 1:
            given = _helpers_stems(sources, plans)
            try:
                self.remote = remote.hold(StemChains, [sources[i] for i in given], [plans[i] for i in given], sample_rate, frames)
                self.theirs = given
            except pickle.PicklingError:  # a source that reads an array in memory: every stem here
                pass
        self.mine = [i for i in range(self.count) if i not in self.theirs]
        self.local = StemChains([sources[i] for i in self.mine], [plans[i] for i in self.mine], sample_rate, frames)

    def blocks(self) -> Iterator[list[np.ndarray]]:
        asked: deque = deque()
        for step in range(self.steps):
            while self.remote is not None and len(asked) < min(self.DEPTH, self.steps - step):
                asked.append(self.remote.call("process_next"))
            own = self.local.process_next(self.pool if self.remote is None else None)
            yield self._ordered(own, asked.popleft().result() if self.remote is not None else [])

    def reductions_db(self) -> list[float]:
        theirs = self.remote.ask("reductions_db", last=True) if self.remote is not None else []
        self.remote = None
        return self._ordered(self.local.reductions_db(), theirs)

    def _ordered(self, own: list, theirs: list) -> list:
        own, theirs = iter(own), iter(theirs)
        return [next(theirs) if index in self.theirs else next(own) for index in range(self.count)]

    def drop(self) -> None:
        if self.remote is not None:
            self.remote.drop()


def render_stream(sources, sample_rate: int, plan: MixPlan, bus_sink, *, stem_sinks=None,
                  mastering_follows: bool = False, threads: int | None = None) -> StreamedRender:
    """:func:`render`, streaming: the stems come as :class:`automix.io.stream.BlockSource`\\ s
    (one rate; shorter ones are padded with silence at the end) and the bus goes, block by
    block, to ``bus_sink(block)``; with ``stem_sinks`` (one callable per stem), each
    processed stem too, after the bus gain -- the bus is summed from exactly those blocks.

    Each stem goes through its chain once: the measuring pass keeps what the chain made
    (before the pan) in a temporary file (:class:`automix.io.stream.SignalSpill`, nothing
    in memory), K-weights it and keeps the granule energies of every pair of channels;
    the make-up, group and bus gains follow from those without summing anything. The
    render then reads the kept stems back and gives each output channel of each stem one
    gain (pan, make-up, group and bus gains together); an unmastered bus's programme
    peak is one more read of them. A stem whose spill could not be written (a full disk)
    goes through its chain again. With a helper process (:mod:`automix.io.helper`) it
    runs a share of the stems' chains (:class:`StemChains`); which process runs a chain
    never changes the result. The result equals :func:`render` within float rounding.
    """
    from automix.io.stream import SignalSpill

    count = len(sources)
    workers = min(count, threads or loudness.THREADS)  # AUTOMIX_THREADS: the one thread setting
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    frames = max(s.frames for s in sources)
    spills = [SignalSpill(sample_rate, s.channels, s.name) for s in sources]
    chains = None
    try:
        # 1. every stem's chain once (a share of them in the helper process): kept,
        # K-weighted, the channels' granule energies
        chains = _SharedChains(sources, plan.stems, sample_rate, frames, pool)
        meter = ChannelEnergies(sample_rate, [s.channels for s in sources])

        def keep_and_weigh(k: int, x: np.ndarray) -> np.ndarray:
            spills[k].write(x)
            return meter.weigh(k, x)

        for processed in chains.blocks():
            meter.add(_map(pool, lambda k, processed=processed: keep_and_weigh(k, processed[k]), range(count)))
        reductions = chains.reductions_db()
        pans = [pan_gains(s.channels, p.pan) for p, s in zip(plan.stems, sources)]
        makeups_db = []
        for i, stem_plan in enumerate(plan.stems):
            unit = np.zeros(count)
            unit[i] = 1.0
            measured = meter.loudness(meter.mixing_matrix(unit, pans))
            makeups_db.append(stem_plan.target_lufs - measured if measured > loudness.SILENCE_DB else 0.0)
        makeup = np.array([float(np.float32(10 ** (m / 20))) for m in makeups_db])
        group_gains = [0.0] * count
        groups_report = {}
        members: dict[str, list[int]] = {}
        for index, stem_plan in enumerate(plan.stems):
            if getattr(stem_plan, "group", ""):
                members.setdefault(stem_plan.group, []).append(index)
        for group, indices in members.items():
            weights = np.zeros(count)  # without the user's gains, as group_gains_db measures
            weights[indices] = makeup[indices] * np.array([10 ** (-getattr(plan.stems[i], "user_gain_db", 0.0) / 20) for i in indices])
            measured = meter.loudness(meter.mixing_matrix(weights, pans))
            if measured <= loudness.SILENCE_DB:
                continue
            target = plan.stems[indices[0]].group_lufs - getattr(plan.stems[indices[0]], "group_user_db", 0.0)
            for index in indices:
                group_gains[index] = target - measured
            groups_report[group] = {"planned_lufs": round(target, 2), "summed_lufs": round(measured, 2),
                                    "gain_db": round(target - measured, 2), "stems": len(indices)}
        group_factor = np.array([float(np.float32(10 ** (g / 20))) if g != 0.0 else 1.0 for g in group_gains])
        weights = makeup * group_factor
        bus_lufs = meter.loudness(meter.mixing_matrix(weights, pans))
        bus_gain_db = plan.bus_lufs - bus_lufs
        bus_rule = f"sum set to {plan.bus_lufs:g} LUFS"

        def rendered_blocks(gain: float):
            """(bus block, stem blocks): each stem's kept channels times one gain per
            output channel (its pan, make-up, group gain and ``gain``)."""
            factors = [(g * w * gain).astype(np.float32) for g, w in zip(pans, weights)]
            inputs = [spill.source() if spill.usable else source for spill, source in zip(spills, sources)]
            again = {k: StemChain(plan.stems[k], sample_rate, sources[k].channels) for k in range(count) if not spills[k].usable}
            for blocks in zip(*(_on_grid(source, frames) for source in inputs)):
                def one(k, blocks=blocks):
                    x = again[k].process_unpanned(blocks[k]) if k in again else blocks[k]
                    f = factors[k]
                    if x.shape[0] == 1:
                        return np.concatenate([x * f[0, 0], x * f[1, 0]])
                    return np.stack([x[0] * f[0, 0], x[1] * f[1, 1]])
                stems = _map(pool, one, range(count))
                bus = stems[0].copy()
                for x in stems[1:]:
                    bus += x
                yield bus, stems

        if mastering_follows:
            bus_rule += " (float bus, not lowered for peaks: the master's limiter sets the true peak)"
        else:
            # 2. the unmastered bus's programme peak
            peaks = ProgrammePeakMeter(sample_rate, frames)
            for bus, _ in rendered_blocks(1.0):
                peaks.add(bus)
            bus_gain_db, bus_rule = held_under_bus_ceiling(bus_gain_db, bus_rule, *peaks.result())
        # 3. render. Exported stems carry the bus gain and the bus is their sum, as render() does.
        for bus, stems in rendered_blocks(float(np.float32(10 ** (bus_gain_db / 20)))):
            if stem_sinks is not None:
                for sink, x in zip(stem_sinks, stems):
                    sink(x)
            bus_sink(bus)
    except BaseException:
        if chains is not None:
            chains.drop()
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for spill in spills:
            spill.close()
    rendered = tuple(RenderedStem(p.name, None, m, r, g) for p, m, r, g in zip(plan.stems, makeups_db, reductions, group_gains))
    return StreamedRender(rendered, bus_gain_db, bus_rule, groups_report, frames)
