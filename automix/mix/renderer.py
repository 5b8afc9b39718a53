"""Stage 3 of the pipeline: apply the mix plan to the stems and sum them.

Per stem, in order: gain, high-pass (12 dB/oct Butterworth), masking cuts (pedalboard
peak filters), compression (automix's linked RMS compressor, whose threshold is on the
same loudness scale the balancer plans in), a make-up gain measured so that the stem
lands exactly on its planned loudness, and pan to stereo. The stems are summed and the
bus is set to the plan's loudness, with its true peak kept under -1 dBTP so an
unmastered mix can be written without clipping.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pedalboard
from scipy import signal

from automix.dsp import dynamics
from automix.measure import loudness
from automix.measure.analyzer import ACTIVE_GATE_LUFS
from automix.mix.balancer import MixPlan, StemPlan

BUS_CEILING_DBTP = -1.0


@dataclass(frozen=True, eq=False)
class RenderedStem:
    name: str
    samples: np.ndarray | None  # stereo, after the bus gain; None unless kept
    makeup_db: float
    compressor_max_gain_reduction_db: float


@dataclass(frozen=True, eq=False)
class RenderResult:
    mix: np.ndarray  # stereo float32, the sum of the processed stems
    stems: tuple[RenderedStem, ...]
    bus_gain_db: float
    bus_rule: str


def render(stems: list[np.ndarray], sample_rate: int, plan: MixPlan, keep_stems: bool = False) -> RenderResult:
    """Process and sum the stems.

    Parameters
    ----------
    stems : list of numpy.ndarray
        ``(channels, samples)`` per stem, in the order of ``plan.stems``, all the same
        length and sample rate.
    keep_stems : bool
        Keep each processed stem (after the bus gain), whose plain sum is the mix.
    """
    frames = stems[0].shape[1]
    mix = np.zeros((2, frames), dtype=np.float32)
    processed: list[np.ndarray] = []
    infos = []
    # Stems are processed two at a time (scipy and numpy release the GIL on big arrays)
    # and summed in plan order, so the result does not depend on which finishes first.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = pool.map(lambda pair: process_stem(pair[0], sample_rate, pair[1]), zip(stems, plan.stems))
        for stem_plan, (stereo, makeup_db, reduction_db) in zip(plan.stems, results):
            mix += stereo
            if keep_stems:
                processed.append(stereo)
            infos.append((stem_plan.name, makeup_db, reduction_db))

    bus_lufs = loudness.integrated_loudness(mix, sample_rate, absolute_gate_lufs=ACTIVE_GATE_LUFS)
    bus_gain_db = plan.bus_lufs - bus_lufs
    bus_rule = f"sum set to {plan.bus_lufs:g} LUFS"
    peak_after = loudness.true_peak_dbtp(mix, sample_rate) + bus_gain_db
    if peak_after > BUS_CEILING_DBTP:
        bus_gain_db -= peak_after - BUS_CEILING_DBTP
        bus_rule += f", lowered {peak_after - BUS_CEILING_DBTP:.1f} dB to keep the bus under {BUS_CEILING_DBTP:g} dBTP"
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
        RenderedStem(name, processed[i] if keep_stems else None, makeup, reduction)
        for i, (name, makeup, reduction) in enumerate(infos)
    )
    return RenderResult(mix, rendered, bus_gain_db, bus_rule)


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
    # Filters and compression change the level: measure and restore the planned loudness.
    measured = loudness.integrated_loudness(x, sample_rate, absolute_gate_lufs=ACTIVE_GATE_LUFS)
    makeup_db = plan.target_lufs - measured if measured > loudness.SILENCE_DB else 0.0
    x = x * np.float32(10 ** (makeup_db / 20))
    return pan(x, plan.pan), makeup_db, reduction_db


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
