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


# --------------------------------------------------------------------------- final_measures (jobs/mix_folder.py)
def _stereo_file(path, x: np.ndarray, rate: int):
    import soundfile as sf

    sf.write(path, x.T, rate, subtype="FLOAT")
    return path


def _analysis_of(x: np.ndarray, rate: int):
    from automix.measure.analyzer import analyze

    return analyze(Audio(x, rate))


def test_final_measures_read_the_file_only_without_the_masters_analysis(tmp_path):
    """Without the master's analysis the written file is analysed whole, true peak
    included (a tone at fs/4 sampled 45 degrees off its crests: samples at 0.5, true
    peak 0.5 * sqrt 2, +3.01 dB); with it, that analysis is the answer (here one of
    another signal, so a reading of the file would show)."""
    from test_mix import POP

    from automix.jobs.mix_folder import _final_measures
    from automix.mix.balancer import compare_to_reference

    n = np.arange(3 * RATE)
    tone = (0.5 * np.sqrt(2) * np.sin(np.pi / 2 * n + np.pi / 4)).astype(np.float32)
    x = np.stack([tone, tone * np.float32(0.5)])
    path = _stereo_file(tmp_path / "out.wav", x, RATE)
    final, against, excerpt = _final_measures(path, POP)
    assert final == _analysis_of(x, RATE)
    assert final.sample_peak_dbfs == pytest.approx(20 * np.log10(0.5), abs=1e-4)
    assert final.true_peak_dbtp == pytest.approx(20 * np.log10(0.5 * np.sqrt(2)), abs=0.2)  # the 4x meter's ripple
    assert against == compare_to_reference(final, POP, x)
    assert np.array_equal(excerpt, x[:, :RATE])
    other = _analysis_of(music_like(2.0, RATE, seed=1), RATE)
    given, against, _ = _final_measures(path, POP, analysis=other)
    assert given == other
    assert against == compare_to_reference(other, POP, x)


@pytest.mark.parametrize("peak_dbtp", [-20.0, -3.0])
def test_final_measures_take_the_masters_true_peak_never_under_the_samples(tmp_path, peak_dbtp):
    """The master's measured true peak replaces the scan, but never reads under the
    written sample peak (-6.02 dBFS here); the PLR follows it."""
    import dataclasses

    from test_mix import POP

    from automix.jobs.mix_folder import _final_measures

    x = music_like(2.0, RATE, seed=2)
    x = (x / np.abs(x).max() * 0.5).astype(np.float32)
    path = _stereo_file(tmp_path / "out.wav", x, RATE)
    meter = loudness.LoudnessMeter(RATE, 2)
    meter.add(x)
    measured = dataclasses.replace(meter.result(), true_peak_dbtp=peak_dbtp)
    for analysis in (None, _analysis_of(x, RATE)):
        final, _, _ = _final_measures(path, POP, measured=measured, analysis=analysis)
        expected = max(peak_dbtp, 20 * np.log10(0.5))
        assert final.true_peak_dbtp == pytest.approx(expected, abs=1e-4)
        assert final.plr_db == pytest.approx(expected - final.integrated_lufs, abs=1e-9)
        assert final.integrated_lufs == pytest.approx(loudness.integrated_loudness(x, RATE), abs=1e-6)


def test_final_measures_of_silence_have_no_plr(tmp_path):
    """Digital silence reads SILENCE_DB: no peak-to-loudness ratio (0), whatever peak the
    master measured."""
    import dataclasses

    from test_mix import POP

    from automix.jobs.mix_folder import _final_measures

    x = np.zeros((2, RATE), dtype=np.float32)
    path = _stereo_file(tmp_path / "out.wav", x, RATE)
    meter = loudness.LoudnessMeter(RATE, 2)
    meter.add(x)
    measured = dataclasses.replace(meter.result(), true_peak_dbtp=-10.0)
    final, _, _ = _final_measures(path, POP, measured=measured)
    assert final.integrated_lufs == loudness.SILENCE_DB
    assert final.plr_db == 0.0


PANNING_RATE = 8000


@pytest.mark.parametrize("count", [399, 400])
def test_the_panning_figure_reads_400_frames_of_a_long_output_and_a_short_one_whole(tmp_path, monkeypatch, count):
    """The comparison's panning figure is panning_similarity of the output: read whole
    while it has under 400 half-overlapping 4096-frame STFT frames, else just the 400
    frames panning_similarity reads (evenly spread, laid end to end): the same figure,
    bit for bit, from 400 x 4096 frames read. Frames counted by hand: 4096 + (count - 1)
    x 2048 (+ 2047 to stay at ``count``)."""
    from test_mix import POP

    from automix.jobs.mix_folder import _final_measures
    from automix.mix import balancer
    from automix.mix.reference_levels import panning_similarity

    frames = 4096 + (count - 1) * 2048 + (2047 if count == 399 else 0)
    rng = np.random.default_rng(count)
    x = rng.standard_normal((2, frames)).astype(np.float32) * np.float32(0.1)
    x[1] *= np.float32(0.3) + np.float32(0.7) * np.sin(np.arange(frames) / 9000.0).astype(np.float32) ** 2  # panning moves
    path = _stereo_file(tmp_path / "long.wav", x, PANNING_RATE)
    read = []
    compare = balancer.compare_to_reference
    monkeypatch.setattr(balancer, "compare_to_reference", lambda a, p, samples: read.append(samples) or compare(a, p, samples))
    analysis = _analysis_of(x[:, :PANNING_RATE], PANNING_RATE)  # any analysis: the file is not analysed
    final, _, excerpt = _final_measures(path, POP, analysis=analysis)
    assert final == analysis
    (panning,) = read
    if count < 400:
        assert np.array_equal(panning, x)
    else:
        assert panning.shape == (2, 400 * 4096)
        assert panning_similarity(panning) == panning_similarity(x)
    assert np.array_equal(excerpt, panning[:, :PANNING_RATE])  # the report's excerpt: the first second read


def _mixed(tmp_path, name: str, **options):
    from test_mix import POP, short_copy

    from automix.jobs.pipeline import OutputOptions, mix_folder

    stems = tmp_path / "stems"
    if not stems.exists():
        short_copy("pop_song", stems, seconds=5.0)
    preset = options.pop("preset", POP)
    return mix_folder(stems, tmp_path / name, preset, OutputOptions(**options))


def test_a_dry_run_mix_reports_the_master_a_written_mix_has(tmp_path):
    """A dry run masters into memory and reports what the written mix's report says (the
    same master), writing nothing."""
    written = _mixed(tmp_path, "mix.wav", bit_depth="24")
    dry = _mixed(tmp_path, "dry.wav", bit_depth="24", dry_run=True)
    assert dry.status == "ok" and dry.output is None and not (tmp_path / "dry.wav").exists()
    assert dry.master.output_lufs == written.master.output_lufs
    for key in ("integrated_lufs", "true_peak_dbtp", "loudness_range_lu", "sample_peak_dbfs"):
        assert dry.report["final"][key] == pytest.approx(written.report["final"][key], abs=0.011), key


def test_a_lossy_mix_masters_with_the_options_given_and_reports_the_decoded_file(tmp_path):
    """An MP3 mix gets every option (here --amount 0.5) and its report reads the file as
    decoded (libebur128 on the decoded MP3)."""
    from test_loudness import ebur128

    from automix.io.audio import read_audio

    result = _mixed(tmp_path, "mix.mp3", amount=0.5)
    assert result.status == "ok" and result.output == tmp_path / "mix.mp3"
    assert result.master.amount == 0.5
    decoded = read_audio(tmp_path / "mix.mp3")
    assert result.report["final"]["integrated_lufs"] == pytest.approx(ebur128(decoded.samples, decoded.sample_rate)[0], abs=0.05)


@pytest.mark.parametrize("name", ["mix.wav", "mix.mp3"])
def test_a_mix_whose_master_misses_writes_nothing_and_reports_the_master_it_made(tmp_path, name):
    import dataclasses

    from test_mix import POP

    preset = dataclasses.replace(POP, master=dataclasses.replace(POP.master, target_lufs=-4.0, max_limiting_db=1.0))
    result = _mixed(tmp_path, name, preset=preset)
    assert result.status == "target_missed" and result.output is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stems"]
    assert result.report["final"]["integrated_lufs"] == pytest.approx(result.master.output_lufs, abs=0.05)
    assert result.report["final"]["integrated_lufs"] < -4.5


# --------------------------------------------------------------------------- stem_share (mix/renderer.py)
def test_a_long_source_is_cut_to_the_grid_and_to_its_length():
    """A source longer than the grid, in one block far over BLOCK_FRAMES: cut to whole
    grid blocks and to ``frames`` exactly, no empty block after the last."""
    from automix.io.stream import BlockSource
    from automix.mix.renderer import _on_grid

    x = np.arange(2 * 3 * BLOCK_FRAMES, dtype=np.float32).reshape(2, -1)
    source = BlockSource(RATE, 2, x.shape[1], "x", lambda: iter([x]))
    for frames in (BLOCK_FRAMES, 2 * BLOCK_FRAMES, BLOCK_FRAMES + 5):
        cut = list(_on_grid(source, frames))
        assert [b.shape[1] for b in cut] == [BLOCK_FRAMES] * (frames // BLOCK_FRAMES) + ([frames % BLOCK_FRAMES] if frames % BLOCK_FRAMES else [])
        assert np.array_equal(np.concatenate(cut, axis=1), x[:, :frames])
    # a source a little longer than the grid, its last piece under a block: cut there too
    short = BlockSource(RATE, 2, BLOCK_FRAMES + 15, "x", lambda: iter([x[:, : BLOCK_FRAMES + 15]]))
    cut = list(_on_grid(short, BLOCK_FRAMES + 5))
    assert [b.shape[1] for b in cut] == [BLOCK_FRAMES, 5]
    assert np.array_equal(np.concatenate(cut, axis=1), x[:, : BLOCK_FRAMES + 5])


def _stream_case():
    from test_renderer import streaming_case

    return streaming_case()


def test_an_unmastered_mix_is_held_under_the_bus_ceiling_by_default():
    """render_stream without ``mastering_follows``: the bus is for listening as it is, so
    its programme peak is kept under BUS_CEILING_DBTP (measured here independently)."""
    from automix.mix.renderer import (
        BUS_CEILING_DBTP,
        programme_peak_dbtp,
        render_stream,
    )

    stems, plan = _stream_case()
    import dataclasses

    from test_loudness import ebur128

    loud = dataclasses.replace(plan, bus_lufs=-6.0)  # a bus target whose peaks would clip
    bus = []
    render_stream([array_source(Audio(x, 44100)) for x in stems], 44100, loud, bus.append)
    mix = np.concatenate(bus, axis=1)
    assert programme_peak_dbtp(mix, 44100)[0] <= BUS_CEILING_DBTP + 0.05
    assert ebur128(mix, 44100)[0] < -7.0  # lowered from the loudness target for it


class _Refused(Exception):
    pass


@pytest.mark.parametrize("with_helper", [False, True])
def test_a_mix_whose_bus_cannot_be_written_raises_that_error(tmp_path, monkeypatch, with_helper):
    """A failure while the bus is written (a full disk, say) is the error raised, with or
    without a helper process holding some of the stems' chains."""
    from automix.io import helper as helper_module
    from automix.mix.renderer import render_stream

    monkeypatch.setattr(helper_module, "ENABLED", with_helper)
    monkeypatch.setattr(loudness, "THREADS", 2)

    def refuse(block):
        raise _Refused("disk full")

    for _ in range(2):  # and the next mix runs as usual
        with pytest.raises(_Refused):
            render_stream(_stem_files(tmp_path), 44100, _stream_case()[1], refuse, mastering_follows=True)


def _stem_files(tmp_path):
    import soundfile as sf

    from automix.io.stream import file_source

    stems, plan = _stream_case()
    paths = []
    for x, stem_plan in zip(stems, plan.stems):
        paths.append(tmp_path / f"{stem_plan.name}.wav")
        if not paths[-1].exists():
            sf.write(paths[-1], x.T, 44100, subtype="FLOAT")
    return [file_source(p) for p in paths]


def test_the_helper_process_runs_a_share_of_the_stems_chains(tmp_path, monkeypatch):
    """With a helper process, some stems' chains run there (another process id) and the
    rest here, and the mix is the one-thread mix bit for bit."""
    import os

    from automix.io import helper as helper_module
    from automix.mix.renderer import StemChain, render_stream

    plan = _stream_case()[1]

    def mix():
        bus = []
        render_stream(_stem_files(tmp_path), 44100, plan, bus.append, mastering_follows=True)
        return np.concatenate(bus, axis=1)

    monkeypatch.setattr(loudness, "THREADS", 1)
    expected = mix()
    where = tmp_path / "where.txt"
    process = StemChain.process_unpanned

    def noted(self, block):
        with open(where, "a") as f:
            f.write(f"{os.getpid()}\n")
        return process(self, block)

    monkeypatch.setattr(StemChain, "process_unpanned", noted)
    made = helper_module.Helper()  # forked now: its chains note their process too
    try:
        monkeypatch.setattr(helper_module, "_helper", (os.getpid(), made))
        monkeypatch.setattr(loudness, "THREADS", 2)
        assert np.array_equal(mix(), expected)
        pids = [int(line) for line in where.read_text().split()]
        assert made._process.pid in pids and os.getpid() in pids
    finally:
        made.shutdown()


def test_the_grid_reads_the_source_only_as_far_as_it_needs():
    """Streaming: a grid block comes as soon as the source gave enough frames for it (one
    source block of BLOCK_FRAMES: one grid block), and the cut stops reading at
    ``frames``; a first block one frame short of the grid waits for the next."""
    from automix.io.stream import BlockSource
    from automix.mix.renderer import _on_grid

    x = np.arange(2 * 4 * BLOCK_FRAMES, dtype=np.float32).reshape(2, -1)
    for sizes in ((BLOCK_FRAMES,) * 4, (BLOCK_FRAMES - 1, 10, BLOCK_FRAMES - 9, 2 * BLOCK_FRAMES)):
        pulled = []

        def blocks(sizes=sizes, pulled=pulled):
            start = 0
            for size in sizes:
                pulled.append(size)
                yield x[:, start : start + size]
                start += size

        source = BlockSource(RATE, 2, x.shape[1], "x", blocks)
        grid = _on_grid(source, 2 * BLOCK_FRAMES)
        first = next(grid)
        assert np.array_equal(first, x[:, :BLOCK_FRAMES])
        assert len(pulled) == (1 if sizes[0] == BLOCK_FRAMES else 2)
        rest = list(grid)
        assert [b.shape[1] for b in rest] == [BLOCK_FRAMES]
        assert np.array_equal(rest[0], x[:, BLOCK_FRAMES : 2 * BLOCK_FRAMES])
        assert len(pulled) == (2 if sizes[0] == BLOCK_FRAMES else 3)  # not the blocks past 2 x BLOCK_FRAMES


def test_user_gains_and_a_silent_group_stream_as_the_whole_signal_render():
    """The user's gains (``user_gain_db`` inside the targets, ``group_user_db`` inside the
    group's level) are taken out when a group is measured, as the whole-signal render
    does; a silent stem gets no make-up (0 dB) and a silent group no gain and no report
    line; the groups' report is to 0.01 dB."""
    import dataclasses

    from automix.mix.renderer import render, render_stream

    stems, plan = _stream_case()
    frames = max(x.shape[1] for x in stems)
    stems = [np.pad(x, ((0, 0), (0, frames - x.shape[1]))) for x in stems] + [np.zeros((1, frames), dtype=np.float32)]
    moved = list(plan.stems)
    moved[0] = dataclasses.replace(moved[0], target_lufs=moved[0].target_lufs + 4.0, user_gain_db=4.0, group_user_db=2.2,
                                   group_lufs=-6.1234)
    moved[1] = dataclasses.replace(moved[1], group_user_db=2.2, group_lufs=-6.1234)
    moved[3] = dataclasses.replace(moved[3], target_lufs=moved[3].target_lufs - 3.0, user_gain_db=-3.0, group_user_db=-3.0)
    silent = dataclasses.replace(moved[2], name="silence", group="fx", group_lufs=-10.0)
    plan = dataclasses.replace(plan, stems=(*moved, silent))
    whole = render(stems, 44100, plan, mastering_follows=True)
    bus = []
    streamed = render_stream([array_source(Audio(x, 44100)) for x in stems], 44100, plan, bus.append, mastering_follows=True)
    assert np.abs(np.concatenate(bus, axis=1) - whole.mix).max() < 1e-5
    for a, b in zip(streamed.stems, whole.stems):
        assert a.makeup_db == pytest.approx(b.makeup_db, abs=1e-3)
        assert a.group_gain_db == pytest.approx(b.group_gain_db, abs=1e-3)
    assert streamed.stems[-1].makeup_db == 0.0 and streamed.stems[-1].group_gain_db == 0.0
    assert sorted(streamed.groups) == sorted(whole.groups) == ["drums", "vocals"]
    assert streamed.groups["drums"]["planned_lufs"] == -8.32  # -6.1234 - 2.2, to 0.01 dB
    for name, group in streamed.groups.items():
        for key, value in group.items():
            assert value == pytest.approx(whole.groups[name][key], abs=0.011), (name, key)
            assert value == round(value, 2), (name, key)


def test_a_stem_chain_that_cannot_be_made_fails_with_its_own_error(monkeypatch):
    """A chain refused as it is built (a high-pass above Nyquist) raises that error, not
    one from the clean-up of chains that never started."""
    import dataclasses

    from automix.io import helper as helper_module
    from automix.mix.renderer import render_stream

    monkeypatch.setattr(helper_module, "ENABLED", False)
    stems, plan = _stream_case()
    bad = dataclasses.replace(plan, stems=(dataclasses.replace(plan.stems[0], highpass_hz=30000.0), *plan.stems[1:]))
    with pytest.raises(ValueError, match="half the sample rate"):
        render_stream([array_source(Audio(x, 44100)) for x in stems], 44100, bad, lambda block: None, mastering_follows=True)


# --------------------------------------------------------------------------- analyzer_beside (measure/analyzer.py)
def _analysed(x: np.ndarray, rate: int = RATE, beside: bool = False):
    """An analyzer's result, its own loudness meter's or (``beside``) one run beside it."""
    from automix.measure.analyzer import Analyzer

    analyzer = Analyzer(rate, x.shape[0], loudness_meter=not beside)
    analyzer.add(x)
    if not beside:
        return analyzer.result()
    meter = loudness.LoudnessMeter(rate, x.shape[0])
    meter.add(x)
    return analyzer.result(measured=meter.result())


@pytest.mark.parametrize("beside", [False, True])
def test_an_analyzer_refuses_a_block_of_another_channel_count(beside):
    from automix.errors import AutomixError
    from automix.measure.analyzer import Analyzer

    analyzer = Analyzer(RATE, 2, loudness_meter=not beside)
    for block in (np.zeros((3, 100), dtype=np.float32), np.zeros((1, 100), dtype=np.float32), np.zeros(100, dtype=np.float32)):
        with pytest.raises(AutomixError, match="expected a"):
            analyzer.add(block)


@pytest.mark.parametrize("beside", [False, True])
def test_an_analyzer_of_nothing_reads_silence(beside):
    """No samples: no level (SILENCE_DB), no DC, no crest, no PLR."""
    result = _analysed(np.zeros((2, 0), dtype=np.float32), beside=beside)
    assert result.rms_dbfs == loudness.SILENCE_DB
    assert result.dc_offset == 0.0 and result.crest_factor_db == 0.0 and result.plr_db == 0.0
    assert result.duration_s == 0.0
    silence = _analysed(np.zeros((2, RATE), dtype=np.float32), beside=beside)
    assert silence.crest_factor_db == 0.0 and silence.plr_db == 0.0 and silence.rms_dbfs == loudness.SILENCE_DB


@pytest.mark.parametrize("beside", [False, True])
def test_the_plr_is_the_true_peak_over_the_loudness_and_none_under_the_gate(beside):
    """A -20 dBFS 997 Hz tone: PLR = true peak - integrated loudness, both as libebur128
    reads them; a tone at -80 dBFS is under the -70 LUFS gate (loudness SILENCE_DB), and
    has no PLR."""
    from signals import sine
    from test_loudness import ebur128

    tone = sine(-20, 2.0, RATE, 997.0, channels=2)
    result = _analysed(tone, beside=beside)
    lufs, true_peak, _ = ebur128(tone, RATE)
    assert result.plr_db == pytest.approx(true_peak - lufs, abs=0.1)
    assert result.plr_db == pytest.approx(result.true_peak_dbtp - result.integrated_lufs, abs=1e-9)
    quiet = _analysed(sine(-80, 2.0, RATE, 997.0, channels=2), beside=beside)
    assert quiet.integrated_lufs == loudness.SILENCE_DB
    assert quiet.true_peak_dbtp == pytest.approx(-80, abs=0.1)
    assert quiet.plr_db == 0.0


@pytest.mark.parametrize("beside", [False, True])
def test_clipped_runs_are_counted_to_the_end_of_the_signal(beside):
    """Runs of 3 or more samples at full scale count, whole: 4 in the middle, and 3 left
    open by the end of the signal (the second channel), 7 in all; a run of 2 does not."""
    x = np.zeros((2, RATE), dtype=np.float32)
    x[0, 1000:1004] = 1.0
    x[0, 2000:2002] = -1.0
    x[1, -3:] = 1.0
    assert _analysed(x, beside=beside).clipped_samples == 7


@pytest.mark.parametrize("beside", [False, True])
def test_the_dc_offset_is_the_larger_channels(beside):
    x = np.zeros((2, RATE), dtype=np.float32)
    x[0] += np.float32(0.1)
    x[1] += np.float32(-0.02)
    assert _analysed(x, beside=beside).dc_offset == pytest.approx(0.1, abs=1e-6)
