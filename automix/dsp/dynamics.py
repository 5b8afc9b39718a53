"""Linked feed-forward compressor, shared by the stem chains and the master's glue.

Array operations only (scipy's IIR filters), so it runs at C speed. Why not
pedalboard's ``Compressor``: it runs one detector per channel, so a loud event on one
side would shift the stereo image; a bus compressor must be linked.

:func:`compress` takes a whole signal (the stem renderer's call). :class:`StreamingCompressor`
is the same compressor block by block, with every filter's state (sidechain high-pass,
detector, release) carried across block edges: fed one block it is bit-identical to
:func:`compress`, fed many it gives the same samples. It adds two options the master's
glue uses against pumping: a sidechain high-pass (the kick's low end does not drive the
gain) and gain smoothing, a second time constant in series with the release that
averages the reduction in both directions (program-dependent: a single hit's short
reduction is averaged away, a loud passage's sustained one is applied in full); and,
for such a slow gain, a control path run once per group of samples
(``control_decimation``) at a third less cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from automix.dsp import design, iir


def one_pole(x: np.ndarray, time_ms: float, sample_rate: int) -> np.ndarray:
    """First-order low-pass with time constant ``time_ms``, started at the first value."""
    coefficient = math.exp(-1000.0 / (time_ms * sample_rate))
    b = np.array([1.0 - coefficient], dtype=x.dtype)
    a = np.array([1.0, -coefficient], dtype=x.dtype)
    return iir.lfilter(b, a, x, np.array([coefficient * x[0]], dtype=x.dtype))[0]



# The full-rate detector filters are fed iir.guarded(...) (iir.SUBNORMAL_GUARD, 1e-20).
# Silence (a vocal stem between its phrases) otherwise decays their state into subnormal
# floats, where lfilter runs three times slower (measured: 18 against 6 ms per million
# samples). 1e-20 is lost in the rounding of any power over 2e-13 (-127 dBFS) and of any
# reduction over 2e-13 dB, so the gain is bit for bit what it was: under those, the curve
# gives no reduction and ``10 ** (-1e-20 / 20)`` is 1.0 in float32.


def _mean_square(samples: np.ndarray) -> np.ndarray:
    """``np.mean(np.square(samples), axis=0, dtype=np.float32)``, bit for bit (numpy adds
    along the channel axis in order, then divides), without the squared copy of every
    channel: a third of the time."""
    total = np.square(samples[0], dtype=np.float32)
    for channel in samples[1:]:
        total += np.square(channel, dtype=np.float32)
    total /= np.float32(samples.shape[0])
    return total


@dataclass(frozen=True)
class CompressorResult:
    samples: np.ndarray
    max_gain_reduction_db: float
    mean_gain_reduction_db: float


def compress(samples: np.ndarray, sample_rate: int, *, threshold_db: float, ratio: float, attack_ms: float,
             release_ms: float, knee_db: float = 6.0) -> CompressorResult:
    """Linked feed-forward RMS compressor with a soft knee.

    The detector is the mean square over all channels, smoothed with the attack time;
    the static curve gives the gain reduction, which then releases at the release
    time. ``threshold_db`` is on the detector's scale (dB RMS, about LUFS for music).
    """
    if ratio <= 1.0:
        return CompressorResult(samples, 0.0, 0.0)
    power = _mean_square(samples)
    smoothed = np.maximum(one_pole(iir.guarded(power), attack_ms, sample_rate), np.float32(1e-20))
    over = np.log10(smoothed)
    over *= np.float32(10.0)
    over -= np.float32(threshold_db)
    slope = np.float32(1.0 - 1.0 / ratio)
    half_knee = np.float32(knee_db / 2)
    # soft knee: quadratic over [-knee/2, knee/2], straight line above, zero below
    reduction = np.where(over >= half_knee, slope * over, slope * (np.maximum(over + half_knee, 0)) ** 2 / np.float32(2 * knee_db))
    # Reduction rises at the detector's (attack) speed and falls at the release speed.
    released = one_pole(iir.guarded(reduction), release_ms, sample_rate)
    gain_db = -np.maximum(reduction, released)
    out = samples * np.power(np.float32(10.0), gain_db / np.float32(20.0), dtype=np.float32)
    acting = gain_db < -0.01
    return CompressorResult(out, float(-gain_db.min()), float(-gain_db[acting].mean()) if acting.any() else 0.0)


class StreamingCompressor:
    """:func:`compress` block by block, plus a sidechain high-pass and gain smoothing.

    Parameters
    ----------
    sample_rate, channels : int
    threshold_db, ratio, attack_ms, release_ms, knee_db : float
        As in :func:`compress` (``threshold_db`` on the detector's scale: dB of the mean
        square over channels of the -- possibly high-passed -- sidechain).
    sidechain_highpass_hz : float
        Cutoff of a 2nd-order Butterworth high-pass on the detector's input (0 = none).
    gain_smoothing_ms : float
        Time constant of a one-pole low-pass on the gain reduction (after the release),
        rising and falling alike (0 = none).
    initial_gain_reduction_db : float
        Where the gain smoothing starts (dB of reduction, >= 0): the programme's settled
        reduction, if known, so a track that starts loud does not start a second too
        loud while the smoothing catches up. Only with ``gain_smoothing_ms``.
    control_decimation : int
        1 (default): every stage at the sample rate, exactly :func:`compress`. ``D > 1``:
        the detector's power is averaged over groups of ``D`` samples on a grid fixed
        from the start of the stream, the rest of the control path (attack, curve,
        release, smoothing) runs once per group in float64, and each group gets the
        gain computed from the group before it (one group of lag, held). For a slow,
        smoothed gain (the glue: 30 ms attack, 500 ms smoothing) this changes the gain
        by far less than 0.01 dB per group, at about a third of the cost.

    Notes
    -----
    No latency: ``process`` returns as many samples as it is given and ``flush`` returns
    nothing; any blocking gives the same samples. ``max_gain_reduction_db`` and
    ``mean_gain_reduction_db`` (over the samples where it acted by more than 0.01 dB)
    accumulate over the stream.
    """

    latency = 0

    def __init__(self, sample_rate: int, channels: int, *, threshold_db: float, ratio: float, attack_ms: float,
                 release_ms: float, knee_db: float = 6.0, sidechain_highpass_hz: float = 0.0,
                 gain_smoothing_ms: float = 0.0, initial_gain_reduction_db: float = 0.0,
                 control_decimation: int = 1):
        self.sample_rate, self.channels = sample_rate, channels
        self.control_decimation = max(1, int(control_decimation))
        self._partial = np.zeros(0, dtype=np.float32)  # detector power of an unfinished group
        self._position = 0  # samples received
        self._last_control_db = float(max(initial_gain_reduction_db, 0.0)) if gain_smoothing_ms > 0 else 0.0
        self.gain_smoothing_ms = gain_smoothing_ms
        self._smooth_zi = None
        self.initial_gain_reduction_db = initial_gain_reduction_db
        self.threshold_db, self.ratio, self.knee_db = threshold_db, ratio, knee_db
        self.attack_ms, self.release_ms = attack_ms, release_ms
        self._sidechain = (design.butter_sos(2, sidechain_highpass_hz, "highpass", sample_rate)
                           if sidechain_highpass_hz > 0 else None)  # fmt: skip
        self._sidechain_zi = None
        self._attack_zi = self._release_zi = None
        self._max_reduction = 0.0
        self._acting_sum = 0.0
        self._acting_count = 0

    @property
    def max_gain_reduction_db(self) -> float:
        return self._max_reduction

    @property
    def mean_gain_reduction_db(self) -> float:
        return self._acting_sum / self._acting_count if self._acting_count else 0.0

    def process(self, block: np.ndarray) -> np.ndarray:
        """Compress one ``(channels, samples)`` float32 block."""
        if self.ratio <= 1.0 or block.shape[1] == 0:
            return block
        if self.control_decimation > 1:
            return self._process_decimated(block)
        if self._sidechain is not None:
            if self._sidechain_zi is None:  # start at rest, as a filter run over the whole signal
                self._sidechain_zi = np.zeros((self._sidechain.shape[0], block.shape[0], 2))
            detector, self._sidechain_zi = iir.sosfilt(self._sidechain, block, self._sidechain_zi)
            power = np.mean(np.square(detector), axis=0).astype(np.float32)
        else:
            power = _mean_square(block)
        smoothed, self._attack_zi = _one_pole_state(iir.guarded(power), self.attack_ms, self.sample_rate, self._attack_zi)
        smoothed = np.maximum(smoothed, np.float32(1e-20))
        # Same operations, in the same order and precision, as compress().
        over = np.log10(smoothed)
        over *= np.float32(10.0)
        over -= np.float32(self.threshold_db)
        slope = np.float32(1.0 - 1.0 / self.ratio)
        half_knee = np.float32(self.knee_db / 2)
        reduction = np.where(over >= half_knee, slope * over,
                             slope * (np.maximum(over + half_knee, 0)) ** 2 / np.float32(2 * self.knee_db))  # fmt: skip
        released, self._release_zi = _one_pole_state(iir.guarded(reduction), self.release_ms, self.sample_rate, self._release_zi)
        held = np.maximum(reduction, released)
        if self.gain_smoothing_ms > 0:
            if self._smooth_zi is None:
                start = np.float32(max(self.initial_gain_reduction_db, 0.0))
                self._smooth_zi = np.array([math.exp(-1000.0 / (self.gain_smoothing_ms * self.sample_rate)) * start],
                                           dtype=held.dtype)  # fmt: skip
            held, self._smooth_zi = _one_pole_state(held, self.gain_smoothing_ms, self.sample_rate, self._smooth_zi)
        gain_db = -held
        out = block * np.power(np.float32(10.0), gain_db / np.float32(20.0), dtype=np.float32)
        acting = gain_db < -0.01
        if acting.any():
            self._max_reduction = max(self._max_reduction, float(-gain_db.min()))
            self._acting_sum += float(-gain_db[acting].sum(dtype=np.float64))
            self._acting_count += int(acting.sum())
        return out

    def flush(self) -> np.ndarray:
        return np.zeros((self.channels, 0), dtype=np.float32)

    def _process_decimated(self, block: np.ndarray) -> np.ndarray:
        decimation = self.control_decimation
        if self._sidechain is not None:
            if self._sidechain_zi is None:
                self._sidechain_zi = np.zeros((self._sidechain.shape[0], block.shape[0], 2), dtype=np.float32)
            sos = self._sidechain.astype(np.float32)  # a detector needs no more than float32
            detector, self._sidechain_zi = iir.sosfilt(sos, block, self._sidechain_zi)
            power = _mean_square(detector)
        else:
            power = _mean_square(block)
        if self._partial.size:
            power = np.concatenate([self._partial, power])
        groups = power.size // decimation
        self._partial = power[groups * decimation :].copy()
        group_power = power[: groups * decimation].reshape(groups, decimation).mean(axis=1, dtype=np.float64)
        controls = self._control(group_power) if groups else np.zeros(0)
        # Group j of the stream is given the gain computed from group j - 1 (causal, held).
        lagged = np.concatenate(([self._last_control_db], controls))
        if groups:
            self._last_control_db = float(controls[-1])
        start = self._position
        self._position += block.shape[1]
        index = np.arange(start, self._position) // decimation - start // decimation
        reduction = lagged[index]
        linear = np.power(10.0, -lagged / 20.0).astype(np.float32)[index]
        acting = reduction > 0.01
        if acting.any():
            self._max_reduction = max(self._max_reduction, float(reduction.max()))
            self._acting_sum += float(reduction[acting].sum())
            self._acting_count += int(acting.sum())
        return block * linear

    def _control(self, group_power: np.ndarray) -> np.ndarray:
        """Attack, static curve, release and smoothing at the group rate (float64)."""
        rate = self.sample_rate / self.control_decimation
        smoothed, self._attack_zi = _one_pole_state(group_power, self.attack_ms, rate, self._attack_zi)
        over = 10.0 * np.log10(np.maximum(smoothed, 1e-20)) - self.threshold_db
        reduction = static_curve_db(over, self.ratio, self.knee_db)
        released, self._release_zi = _one_pole_state(reduction, self.release_ms, rate, self._release_zi)
        held = np.maximum(reduction, released)
        if self.gain_smoothing_ms > 0:
            if self._smooth_zi is None:
                coefficient = math.exp(-1000.0 / (self.gain_smoothing_ms * rate))
                self._smooth_zi = np.array([coefficient * max(self.initial_gain_reduction_db, 0.0)])
            held, self._smooth_zi = _one_pole_state(held, self.gain_smoothing_ms, rate, self._smooth_zi)
        return held


def static_curve_db(over_db: np.ndarray, ratio: float, knee_db: float) -> np.ndarray:
    """Gain reduction (dB, >= 0) for a detector ``over_db`` above the threshold: soft knee
    (quadratic over +-knee/2), slope ``1 - 1/ratio`` above it, 0 below."""
    slope = 1.0 - 1.0 / ratio
    half_knee = knee_db / 2
    return np.where(over_db >= half_knee, slope * over_db, slope * np.maximum(over_db + half_knee, 0.0) ** 2 / (2 * knee_db))


def compress_in_blocks(samples: np.ndarray, compressor: StreamingCompressor, block_size: int = 1 << 16) -> CompressorResult:
    """Run ``compressor`` over a whole signal block by block into one preallocated output.

    Memory: the output plus one block's temporaries (the control path never exists for
    the whole signal at once).
    """
    if compressor.ratio <= 1.0:
        return CompressorResult(samples, 0.0, 0.0)
    out = np.empty(samples.shape, dtype=np.float32)
    for start in range(0, samples.shape[1], block_size):
        out[:, start : start + block_size] = compressor.process(samples[:, start : start + block_size])
    return CompressorResult(out, compressor.max_gain_reduction_db, compressor.mean_gain_reduction_db)


def _one_pole_state(x: np.ndarray, time_ms: float, sample_rate: float, zi: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`one_pole` with its state returned: started at the first value, then carried."""
    coefficient = math.exp(-1000.0 / (time_ms * sample_rate))
    b = np.array([1.0 - coefficient], dtype=x.dtype)
    a = np.array([1.0, -coefficient], dtype=x.dtype)
    if zi is None:
        zi = np.array([coefficient * x[0]], dtype=x.dtype)
    return iir.lfilter(b, a, x, zi)
