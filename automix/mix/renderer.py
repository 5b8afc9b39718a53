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
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pedalboard
from scipy import signal

from automix.dsp import dynamics
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
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
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
        peak_db, where_s, outliers = programme_peak_dbtp(mix, sample_rate)
        peak_after = peak_db + bus_gain_db
        if peak_after > BUS_CEILING_DBTP:
            bus_gain_db -= peak_after - BUS_CEILING_DBTP
            bus_rule += (f", lowered {peak_after - BUS_CEILING_DBTP:.1f} dB to keep its programme peak (at {where_s:.2f} s) "
                         f"under {BUS_CEILING_DBTP:g} dBTP")
        outliers = [(t, db) for t, db in outliers if db + bus_gain_db > BUS_CEILING_DBTP]
        if outliers:
            bus_rule += (f"; {len(outliers)} isolated peak(s) ignored for the bus level, loudest at {outliers[0][0]:.2f} s "
                         f"({outliers[0][1] + bus_gain_db:+.1f} dBTP after the bus gain)")
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
        total = np.zeros_like(processed[indices[0]])
        for index in indices:
            total += processed[index]
        measured = loudness.integrated_loudness(total, sample_rate, absolute_gate_lufs=ACTIVE_GATE_LUFS)
        if measured <= loudness.SILENCE_DB:
            continue
        target = plans[indices[0]].group_lufs
        for index in indices:
            gains[index] = target - measured
        report[group] = {"planned_lufs": round(target, 2), "summed_lufs": round(measured, 2),
                         "gain_db": round(target - measured, 2), "stems": len(indices)}
    return gains, report


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
        sos = signal.butter(plan.highpass_order, plan.highpass_hz, "highpass", fs=sample_rate, output="sos")
        x = signal.sosfilt(sos, x, axis=-1).astype(np.float32)
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
