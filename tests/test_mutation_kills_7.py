"""Tests aimed at the mutants of the seventh round (issue 11): the limiter detector's
refinement by flat index, one spill file per channel, the dither added by channel, the
render's loudness measured in this process, and the inputs hashed at the lowest priority
(see ``bench/mutation.py``, keys refine_rows, spill_rows, dither_rows, render_meters and
digests_beside).

Expected values come from outside the code under test: the amplitude of a sinusoid
whose grid points miss its crests, hashlib, the file's own bytes, libebur128 and a full
``LoudnessMeter`` over what was written, the limiters run by hand, the threads Python
sees and the niceness the kernel reports.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import threading

import numpy as np
import pyebur128
import pytest
from signals import music_like

from automix.io import helper as helper_module
from automix.io import metadata
from automix.io.audio import Audio
from automix.io.stream import BLOCK_FRAMES, array_source
from automix.master import chain, limiter
from automix.measure import loudness

RATE = 48000


# --------------------------------------------------------------------------- refine_rows (master/limiter.py)
# Each channel is one sinusoid A cos(w (t - c)) on the oversampled grid (t in grid steps,
# 1/factor of a sample; w under the input Nyquist, pi / factor per step). The 3-point
# refinement of a crest's largest grid point gives A exactly, so the peak of a row is known
# from the signal: the largest of its own points and of the crests whose largest point is
# one of them.


def _grid_signal(specs, factor: int, first: int, last: int) -> np.ndarray:
    """``x`` of each channel at grid points ``first .. last`` (float32, signed as the
    interpolator's branches are)."""
    t = np.arange(first, last + 1, dtype=np.float64)
    return np.stack([amplitude * np.cos(w * math.pi / factor * (t - crest)) for amplitude, w, crest in specs]).astype(np.float32)


def _crest_points(specs, factor: int, first: int, last: int, values: np.ndarray) -> list[tuple[int, float]]:
    """(grid point, amplitude) of every crest of ``|x|`` between ``first`` and ``last``: the
    larger of the two grid points around it (``values``: ``|x|`` from ``first`` on)."""
    found = []
    for channel, (amplitude, w, crest) in enumerate(specs):
        spacing = factor / w  # |cos| peaks every pi / (w pi / factor) grid steps
        for k in range(math.floor((first - crest) / spacing) - 1, math.ceil((last - crest) / spacing) + 2):
            at = crest + k * spacing
            low = math.floor(at)
            if first <= low and low + 1 <= last:
                a, b = abs(values[channel, low - first]), abs(values[channel, low + 1 - first])
                found.append((low if a >= b else low + 1, amplitude))
    return found


def _rows_expected(specs, factor: int, rows: int, hot: np.ndarray):
    """The inputs of ``_refine_rows`` for ``rows`` rows of the signal and, per hot row, its
    grid peak (the floor) and its refined peak. Row 0's left neighbour is unknown, so a
    crest on its own sample is not refined."""
    values = _grid_signal(specs, factor, 0, rows * factor)
    grid = np.stack([values[:, k * factor + 1 : k * factor + factor] for k in range(rows)], axis=-1)
    samples = np.abs(values[:, ::factor])  # rows + 1 samples: each row's own and the next one's
    own = np.abs(values[:, : rows * factor]).reshape(values.shape[0], rows, factor).max(axis=(0, 2))
    expected = own.astype(np.float64)
    for point, amplitude in _crest_points(specs, factor, 0, rows * factor, values):
        if 0 < point < rows * factor:
            expected[point // factor] = max(expected[point // factor], amplitude)
    return grid, samples, own[hot], expected[hot]


# (amplitude, frequency as a fraction of the input Nyquist, crest position in grid steps)
ROW_SIGNALS = {
    "crest on row 1's sample": [(0.9, 0.9, "f+0.3"), (0.6, 0.7, 2.7)],
    "crest on row 0's sample": [(1.0, 0.9, 0.3)],
    "crest on row 0's first grid point": [(1.0, 0.9, 1.3)],
    "two channels, crests everywhere": [(0.8, 0.93, 5.41), (0.75, 0.61, 17.83)],
}


@pytest.mark.parametrize("factor", [8, 4])
@pytest.mark.parametrize("name", list(ROW_SIGNALS))
def test_refining_hot_rows_finds_every_crest_whose_largest_grid_point_they_hold(factor, name):
    """``_refine_rows`` over rows laid out as the detector's chunk holds them: each hot
    row's peak is its grid peak or the amplitude of a crest whose largest grid point is in
    the row (its left neighbour the last point of the row before, also when that row is not
    hot), whatever rows are hot and whichever comes first; row 0's own sample is never
    refined (its left neighbour lies in the chunk before)."""
    specs = [(a, w, factor + 0.3 if c == "f+0.3" else c) for a, w, c in ROW_SIGNALS[name]]
    rows = 24
    for hot in (np.arange(rows), np.arange(1, rows), np.arange(2, rows, 3), np.array([1, 2, 9]), np.array([0, 5])):
        grid, samples, floor, expected = _rows_expected(specs, factor, rows, hot)
        peak = limiter._refine_rows(grid, samples, hot, floor, factor)
        assert peak.dtype == np.float32
        np.testing.assert_allclose(peak, expected, rtol=2e-6, atol=0, err_msg=f"{name}, hot rows {hot}")


def test_refining_hot_rows_lifts_the_rows_that_miss_their_crests():
    """The signals above are worth testing: refining lifts those rows by 0.56 % (8x grid)
    and 2.3 % (4x grid)."""
    for factor in (8, 4):
        for crest, hot in ((factor + 0.3, np.arange(1, 4)), (1.3, np.arange(4))):
            *_, floor, expected = _rows_expected([(1.0, 0.9, crest)], factor, 4, hot)
            assert expected[0] / floor[0] > 1.001, (factor, crest)


@pytest.mark.parametrize("factor", [8, 4])
def test_refining_points_beside_a_higher_floor_finds_a_crest_just_above_it(factor):
    """``_refine_points`` with a floor: a point under the floor is still refined when its
    crest can pass it. Channel 0 peaks on a grid point (0.999: its point is the floor);
    channel 1's crest (1.0) falls between two points that read under cos(pi / 3 factor) of
    the floor, but within cos(pi / 2 factor), the reach of the refinement."""
    rows = 3
    specs = [(0.999, 0.6, factor + 3.0), (1.0, 0.98, factor + 3.47)]
    values = _grid_signal(specs, factor, -1, rows * factor)
    points = np.stack([np.abs(values[:, k * factor : k * factor + factor + 2]) for k in range(rows)], axis=1)
    own = points[..., 1:-1].max(axis=(0, 2))
    expected = own.astype(np.float64)
    for point, amplitude in _crest_points(specs, factor, -1, rows * factor, values):
        if 0 <= point < rows * factor:
            expected[point // factor] = max(expected[point // factor], amplitude)
    second = np.abs(values[1, factor + 4 : factor + 6])  # channel 1's two points around its crest
    assert own[1] == np.float32(0.999) and second.max() < 0.999 * math.cos(math.pi / (3 * factor))
    assert expected[1] == 1.0
    for floor in (own, None):
        peak = limiter._refine_points(points, factor, floor=floor)
        np.testing.assert_allclose(peak, expected, rtol=2e-6, atol=0)


# --------------------------------------------------------------------------- render_meters (master/chain.py render)
def _flat_plan() -> chain.ChainPlan:
    """A chain that passes the signal untouched before the limiter (flat EQ, width 1, no
    mono bass, no glue): the render is gain, limiter and dither alone."""
    from automix.master.glue import GlueDecision
    from automix.master.tonal import TonalMove

    glue = GlueDecision(False, 0.0, 1.0, 10.0, 100.0, 50.0, 100.0, 0.0, "none")
    return chain.ChainPlan(TonalMove((1000.0,), (0.0,), "flat"), 0.0, 1.0, glue)


def _music(seconds: float, peak: float) -> np.ndarray:
    x = music_like(seconds, RATE, seed=7)
    return (x / np.abs(x).max() * peak).astype(np.float32)


def _ebur128(x: np.ndarray, rate: int = RATE) -> float:
    state = pyebur128.R128State(x.shape[0], rate, pyebur128.MeasurementMode.MODE_I)
    state.add_frames(np.ascontiguousarray(x.T).ravel().astype(np.float64), x.shape[1])
    return pyebur128.get_loudness_global(state)


def _by_hand(x: np.ndarray, peak_limiter) -> np.ndarray:
    parts = [peak_limiter.process(x[:, start : start + BLOCK_FRAMES]) for start in range(0, x.shape[1], BLOCK_FRAMES)]
    return np.concatenate([*parts, peak_limiter.flush()], axis=1)


def _assert_measured_as_written(rendered, written: np.ndarray, rate: int = RATE) -> None:
    full = loudness.LoudnessMeter(rate, written.shape[0])
    full.add(written)
    expected = full.result()
    assert rendered.measured.integrated_lufs == expected.integrated_lufs
    assert rendered.measured.true_peak_dbtp == expected.true_peak_dbtp
    assert rendered.measured.sample_peak_dbfs == expected.sample_peak_dbfs
    np.testing.assert_array_equal(rendered.measured.momentary_lufs, expected.momentary_lufs)
    np.testing.assert_array_equal(rendered.measured.short_term_lufs, expected.short_term_lufs)
    assert rendered.measured.integrated_lufs == pytest.approx(_ebur128(written, rate), abs=0.05)


def test_a_quiet_render_is_its_gain_and_is_measured_as_written():
    """Under the threshold a flat render is the input times 10^(gain / 20): its measured
    loudness is the input's 6 dB down (libebur128), one full meter's over what was
    written; no analysis unless asked for."""
    x = _music(1.5, 0.3)
    sink = chain.ArraySink(2, x.shape[1])
    rendered = chain.render(array_source(Audio(x, RATE)), _flat_plan(), -6.0, 0.0, 100.0, "32f", sink)
    written = sink.read()
    np.testing.assert_allclose(written, x * 10 ** (-6.0 / 20), rtol=1e-6, atol=1e-9)
    assert rendered.measured.integrated_lufs == pytest.approx(_ebur128(x) - 6.0, abs=0.05)
    _assert_measured_as_written(rendered, written)
    assert rendered.analysis is None


@pytest.mark.parametrize("envelopes", ["none", "kept", "one short", "both short"])
@pytest.mark.parametrize("split_band", [None, False, True])
def test_a_limited_render_is_the_limiter_asked_for_and_is_measured_as_written(split_band, envelopes):
    """The render's output is the limiter asked for (the wideband one by default) run by
    hand, reading the kept envelopes only when they hold the whole signal (a constant 4.0,
    12 dB over the signal's own peak, read at the render's gain); its measurement is one
    full meter's over what was written."""
    from automix.master.limiter import EnvelopeSpill, SplitBandLimiter, TruePeakLimiter

    x = _music(1.0, 0.5)
    gain_db, threshold_db = 6.0, -3.0
    gain = np.float32(10 ** (gain_db / 20))
    frames = {"kept": (x.shape[1],) * 2, "one short": (x.shape[1], x.shape[1] - 1), "both short": (x.shape[1] - 1,) * 2}
    with EnvelopeSpill() as high, EnvelopeSpill() as whole, EnvelopeSpill() as wideband:
        options = {} if split_band is None else {"split_band": split_band}
        if envelopes != "none":
            for spill, count in zip((high, whole), frames[envelopes]):
                spill.write(np.full(count, 4.0, dtype=np.float32))
            wideband.write(np.full(frames[envelopes][1], 4.0, dtype=np.float32))
            options.update(band_envelopes=(high, whole), envelope=wideband)
        sink = chain.ArraySink(2, x.shape[1])
        rendered = chain.render(array_source(Audio(x, RATE)), _flat_plan(), gain_db, threshold_db, 100.0, "32f", sink, **options)
        used = envelopes == "kept"
        if split_band:
            detectors = (high.detector(gain), whole.detector(gain)) if used else None
            by_hand = SplitBandLimiter(RATE, 2, threshold_db, 100.0, detectors=detectors)
        else:
            by_hand = TruePeakLimiter(RATE, 2, threshold_db, 100.0, detector=wideband.detector(gain) if used else None)
        expected = _by_hand(x * gain, by_hand)
    written = sink.read()
    np.testing.assert_array_equal(written, expected)
    # the kept envelope reads 8.0 at this gain: 21 dB over the threshold, where the signal
    # itself (1.0 at this gain) is 3 dB over it
    reduction = rendered.max_gain_reduction_db
    assert (reduction > 15.0) if used else (2.0 < reduction < 12.0), reduction
    _assert_measured_as_written(rendered, written)
    assert rendered.analysis is None


def _behind() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.name == "automix-behind"}


@pytest.mark.parametrize("analyse", [False, True])
def test_a_render_lets_its_output_meters_go(monkeypatch, analyse):
    """Without a helper process the output meters take their blocks on a thread: the
    render ends it once it has their reading (an album renders hundreds of times)."""
    monkeypatch.setattr(helper_module, "ENABLED", False)
    monkeypatch.setattr(loudness, "THREADS", 2)
    x = _music(0.6, 0.5)
    before = _behind()
    for _ in range(2):
        sink = chain.ArraySink(2, x.shape[1])
        rendered = chain.render(array_source(Audio(x, RATE)), _flat_plan(), 0.0, -6.0, 100.0, "32f", sink, analyse=analyse)
        _assert_measured_as_written(rendered, sink.read())
    assert _behind() - before == set()


# --------------------------------------------------------------------------- digests_beside (io/metadata.py)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own niceness is Linux's")
def test_the_digest_thread_asks_the_kernel_for_the_lowest_priority_for_itself(tmp_path, monkeypatch):
    """The hashing thread sets its own niceness to 19 (the kernel reports it so), and only
    its own: the test process may already run at 19 (``nice``), so the call itself is
    watched too."""
    calls = []
    real = os.setpriority

    def watched(which, who, priority):
        calls.append((threading.current_thread().name, which, who, threading.get_native_id()))
        real(which, who, priority)
        calls.append(os.getpriority(which, who))

    monkeypatch.setattr(os, "setpriority", watched)
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF" + bytes(range(256)) * 41)
    digest = metadata.input_digest_beside(path)
    assert digest() == hashlib.sha256(path.read_bytes()).hexdigest()
    (name, which, who, native), nice = calls
    assert (name, which, who, nice) == ("automix-digest", os.PRIO_PROCESS, native, 19)
    assert native != threading.get_native_id()


def _wav_bytes(path) -> bytes:
    import soundfile as sf

    sf.write(path, np.zeros((4410, 2), dtype=np.float32), 44100, subtype="PCM_16")
    return path.read_bytes()


def test_nothing_to_tag_leaves_the_file_as_it_was_and_warns_of_nothing(tmp_path):
    """No loudness and no provenance (also a provenance callable that gives none): no
    warning, and the file's bytes are untouched."""
    path = tmp_path / "plain.wav"
    before = hashlib.sha256(_wav_bytes(path)).hexdigest()
    asked = []
    assert metadata.write_metadata(path, "WAV", None, None) == ()
    assert metadata.write_metadata(path, None, None, lambda: asked.append(1)) == ()
    assert asked == [1]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_container_with_no_tags_is_named_in_a_warning_and_left_alone(tmp_path):
    """A file whose kind has no tags here (an unknown container, or one named that has
    none) gets one warning naming it, and its bytes stay as they were."""
    from automix.io.metadata import LoudnessTags

    path = tmp_path / "take.raw"
    path.write_bytes(bytes(range(256)) * 8)
    before = path.read_bytes()
    assert metadata.write_metadata(path, None, LoudnessTags(-14.0)) == ("take.raw: no loudness metadata for a unknown file",)
    assert metadata.write_metadata(path, "W64", LoudnessTags(-14.0)) == ("take.raw: no loudness metadata for a W64 file",)
    assert path.read_bytes() == before
