"""Mastering stage 4: gain and true-peak limiting in a closed loop on the written result."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from automix.errors import AutomixError
from automix.io.audio import quantize
from automix.master import limiter
from automix.measure import loudness
from automix.measure.analyzer import ACTIVE_GATE_LUFS
from automix.presets import MasterSettings

LOUDNESS_TOLERANCE_LU = 0.03  # the loop aims inside +-0.03 LU; the promise is +-0.1
#: The loop's own true-peak reading must sit this far under the ceiling: our meter can
#: under-read a tone near Nyquist by up to ~0.05 dB, and other meters must agree too.
PEAK_MARGIN_DB = 0.02
MAX_ITERATIONS = 24
#: The limiter starts with a smooth release; dense material that cannot get louder with
#: it gets faster ones (halved each time), down to this.
LIMITER_RELEASE_MS, LIMITER_HOLD_MS, FASTEST_RELEASE_MS = 60.0, 5.0, 5.0
#: Ways to handle a target that needs more limiting than ``max_limiting_db`` allows.
OVER_LIMIT_CHOICES = ("fail", "quieter", "force")


@dataclass(frozen=True)
class _Loop:
    status: str
    message: str
    gain_db: float
    limiter: limiter.LimiterResult
    iterations: int
    measured: loudness.LoudnessMeasurement
    release_ms: float


def normalize(samples: np.ndarray, sample_rate: int, settings: MasterSettings, bit_depth: str,
              over_limit: str) -> tuple[np.ndarray, _Loop]:
    """Gain plus true-peak limiting, corrected until loudness and ceiling both hold.

    Each pass measures the quantised output: its integrated loudness corrects the gain
    (a secant step, since limiting makes loudness grow slower than gain) and any true
    peak over the ceiling lowers the limiter's own threshold by the excess. When more
    gain no longer makes the output louder -- dense material pinned under the ceiling,
    the limiter never recovering between peaks -- the release is made faster instead
    (program-dependent release, as mastering limiters do).
    """
    target, ceiling_db = settings.target_lufs, settings.ceiling_dbtp
    gain_db = target - loudness.integrated_loudness(samples, sample_rate, absolute_gate_lufs=ACTIVE_GATE_LUFS)
    threshold_db = ceiling_db - 0.05  # head-room for the dither and the gain modulation
    previous: tuple[float, float] | None = None
    status, message = "ok", ""
    max_gain_db = math.inf
    release_ms, hold_ms = LIMITER_RELEASE_MS, LIMITER_HOLD_MS
    for iteration in range(1, MAX_ITERATIONS + 1):
        gain_db = min(gain_db, max_gain_db)
        limited = limiter.limit(samples * np.float32(10 ** (gain_db / 20)), sample_rate, 10 ** (threshold_db / 20),
                                 release_ms=release_ms, hold_ms=hold_ms)
        out = quantize(limited.samples, bit_depth)
        measured = loudness.measure(out, sample_rate)
        out_lufs, out_peak = measured.integrated_lufs, measured.true_peak_dbtp
        loud_ok = abs(out_lufs - target) <= LOUDNESS_TOLERANCE_LU
        peak_ok = out_peak <= ceiling_db - PEAK_MARGIN_DB
        too_much = limited.max_gain_reduction_db > settings.max_limiting_db + 0.05
        if too_much and over_limit != "force":
            # Back the gain off by the excess limiting: peaks fall dB for dB.
            max_gain_db = gain_db - (limited.max_gain_reduction_db - settings.max_limiting_db)
            previous = None
            if over_limit == "fail":
                message = (f"reaching {target:g} LUFS needs {limited.max_gain_reduction_db:.1f} dB of limiting, more than "
                           f"the allowed {settings.max_limiting_db:g} dB (use --over-limit quieter or force, or raise --max-limiting-db)")
                return out, _Loop("target_missed", message, gain_db, limited, iteration, measured, release_ms)
            gain_db = max_gain_db
            continue
        if peak_ok and (loud_ok or (over_limit == "quieter" and gain_db >= max_gain_db - 0.01 and out_lufs < target)):
            if not loud_ok:
                status = "quieter"
                message = f"stopped at {settings.max_limiting_db:g} dB of limiting: {out_lufs:.1f} LUFS instead of {target:g}"
            elif limited.max_gain_reduction_db > settings.max_limiting_db + 0.05:
                status = "forced"
                message = f"target reached with {limited.max_gain_reduction_db:.1f} dB of limiting (allowed {settings.max_limiting_db:g})"
            return out, _Loop(status, message, gain_db, limited, iteration, measured, release_ms)
        if not peak_ok:
            threshold_db -= out_peak - (ceiling_db - PEAK_MARGIN_DB) + 0.01
        if not loud_ok:
            slope = 1.0
            if previous is not None and abs(gain_db - previous[0]) > 1e-6:
                slope = (out_lufs - previous[1]) / (gain_db - previous[0])
            if slope < 0.3 and out_lufs < target and release_ms > FASTEST_RELEASE_MS:
                release_ms = max(FASTEST_RELEASE_MS, release_ms / 2)
                hold_ms /= 2
                previous = None  # a new limiter curve: measure its slope afresh
                continue
            if slope < 0.02 and out_lufs < target and previous is not None:
                # Saturated even at the fastest release: only clipping the waveform could
                # make it louder. Say so, and keep the gain that first got this loud.
                gain_db = previous[0]
                limited = limiter.limit(samples * np.float32(10 ** (gain_db / 20)), sample_rate, 10 ** (threshold_db / 20),
                                         release_ms=release_ms, hold_ms=hold_ms)
                out = quantize(limited.samples, bit_depth)
                measured = loudness.measure(out, sample_rate)
                message = (f"{target:g} LUFS is out of reach under {ceiling_db:g} dBTP: this audio saturates at "
                           f"{measured.integrated_lufs:.2f} LUFS (more gain would only clip it)")
                status = "target_missed" if over_limit == "fail" else "quieter"
                return out, _Loop(status, message, gain_db, limited, iteration, measured, release_ms)
            previous = (gain_db, out_lufs)
            gain_db += (target - out_lufs) / float(np.clip(slope, 0.1, 1.0))
    raise AutomixError(f"the loudness loop did not converge in {MAX_ITERATIONS} passes "
                       f"(last: {out_lufs:.2f} LUFS, {out_peak:.2f} dBTP); please report this input")
