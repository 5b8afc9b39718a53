"""Tests written for the sixth mutation round (``bench/mutation.py``, keys ``stem_share``,
``render_analysis``, ``analyzer_beside``, ``final_measures``): each kills mutants the
suite let live, and each checks an answer worked out from the signal or the format,
never one read from the code under test.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from signals import music_like

from automix.io.audio import Audio
from automix.io.stream import BLOCK_FRAMES, array_source
from automix.master import chain
from automix.measure import loudness

RATE = 48000


# --------------------------------------------------------------------------- render_analysis (master/chain.py render)
def _flat_plan() -> chain.ChainPlan:
    """A chain that passes the signal untouched before the limiter: flat EQ, width 1, no
    mono bass, no glue (so the render is gain, limiter and dither alone)."""
    from automix.master.glue import GlueDecision
    from automix.master.tonal import TonalMove

    glue = GlueDecision(False, 0.0, 1.0, 10.0, 100.0, 50.0, 100.0, 0.0, "none")
    return chain.ChainPlan(TonalMove((1000.0,), (0.0,), "flat"), 0.0, 1.0, glue)


def _loud(seconds: float = 1.5, peak: float = 0.9) -> np.ndarray:
    x = music_like(seconds, RATE, seed=3)
    return (x / np.abs(x).max() * peak).astype(np.float32)


def _render(x: np.ndarray, gain_db: float, threshold_db: float, **options):
    sink = chain.ArraySink(2, x.shape[1])
    rendered = chain.render(array_source(Audio(x, RATE)), _flat_plan(), gain_db, threshold_db, 100.0, "32f", sink, **options)
    return sink.samples, rendered


def _limited_directly(x: np.ndarray, limiter) -> np.ndarray:
    """The limiter run by hand over the same blocks: what the render must write (32-bit
    float output: no dither)."""
    parts = [limiter.process(x[:, start : start + BLOCK_FRAMES]) for start in range(0, x.shape[1], BLOCK_FRAMES)]
    return np.concatenate([*parts, limiter.flush()], axis=1)


def test_a_render_applies_its_gain_and_by_default_no_analysis():
    """Under the limiter's threshold a flat render is the input times 10^(gain/20), and
    only ``analyse=True`` makes an analysis."""
    x = _loud(peak=0.25)
    out, rendered = _render(x, -6.0, 0.0)
    assert np.array_equal(out, x * np.float32(10 ** (-6.0 / 20)))
    assert rendered.max_gain_reduction_db == 0.0
    assert rendered.analysis is None


@pytest.mark.parametrize("split_band", [None, False, True])
def test_a_render_runs_the_limiter_asked_for(split_band):
    """The wideband limiter by default (and with ``split_band=False``), the split-band one
    with ``split_band=True``: each render equals that limiter run by hand, and the two
    differ on this bass-heavy signal 6 dB over the threshold."""
    from automix.master.limiter import SplitBandLimiter, TruePeakLimiter

    x = _loud()
    options = {} if split_band is None else {"split_band": split_band}
    out, rendered = _render(x, 0.0, -6.0, **options)
    expected = _limited_directly(x, (SplitBandLimiter if split_band else TruePeakLimiter)(RATE, 2, -6.0, 100.0))
    other = _limited_directly(x, (TruePeakLimiter if split_band else SplitBandLimiter)(RATE, 2, -6.0, 100.0))
    assert np.array_equal(out, expected)
    assert np.abs(other - expected).max() > 0.01
    assert rendered.max_gain_reduction_db > 3.0


def test_a_render_reads_a_kept_envelope_that_holds_the_whole_signal():
    """A kept detector envelope is read instead of detecting (scaled by the render's
    gain): a constant envelope of 4.0 read at gain 1/2 is 2.0, 6.02 dB over a 0 dB
    threshold, so the output is the input times 1/4 -- though the signal itself never
    reaches the threshold. An envelope one frame short is not used."""
    from automix.master.limiter import EnvelopeSpill

    x = _loud(peak=0.45)
    half = np.float32(0.5)
    gain_db = 20 * np.log10(0.5)
    for frames, expected in ((x.shape[1], x * half * half), (x.shape[1] - 1, x * half)):
        with EnvelopeSpill() as envelope:
            envelope.write(np.full(frames, 4.0, dtype=np.float32))
            out, _ = _render(x, gain_db, 0.0, envelope=envelope)
        assert np.abs(out - expected).max() < 1e-6, frames


def test_a_split_band_render_reads_its_kept_band_envelopes():
    """The split-band limiter reads its kept (high band, whole signal) envelopes too: the
    same constant 4.0 (2.0 at gain 1/2, over a 0 dB threshold) makes it limit a signal
    that never reaches the threshold; envelopes one frame short are not used (the signal
    passes as it is, times 1/2)."""
    from automix.master.limiter import EnvelopeSpill

    x = _loud(peak=0.45)
    gain_db = 20 * np.log10(0.5)
    for frames in (x.shape[1], x.shape[1] - 1):
        with EnvelopeSpill() as high, EnvelopeSpill() as whole:
            for spill in (high, whole):
                spill.write(np.full(frames, 4.0, dtype=np.float32))
            out, rendered = _render(x, gain_db, 0.0, split_band=True, band_envelopes=(high, whole))
        away = np.abs(out - x * np.float32(0.5)).max()
        if frames == x.shape[1]:
            assert rendered.max_gain_reduction_db > 3.0 and away > 0.05
        else:
            assert rendered.max_gain_reduction_db == 0.0 and away < 1e-6


def test_renders_leave_no_thread_behind(monkeypatch):
    """Without a helper process the output meters run on a thread of their own: each
    render ends it (a long album renders hundreds of times)."""
    from automix.io import helper as helper_module

    monkeypatch.setattr(helper_module, "ENABLED", False)
    monkeypatch.setattr(loudness, "THREADS", 2)
    x = _loud(0.6)
    _render(x, 0.0, -6.0)  # pools a render starts once
    before = {t.ident for t in threading.enumerate()}
    for _ in range(3):
        _render(x, 0.0, -6.0, analyse=True)
    assert {t.ident for t in threading.enumerate()} - before == set()
