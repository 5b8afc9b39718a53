"""master/chain.py SourceMeter: a signal measured as it is written reads exactly as the
written file does, so the mix's bus master can skip its analysis pass.

The reference is ``measure_source`` over the written 32-bit float file (the pass the
meter replaces); libebur128 checks that both read the signal right.
"""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import soundfile as sf
from signals import music_like
from test_loudness import ebur128
from test_mix import POP, short_copy

from automix.io.helper import beside
from automix.io.stream import BLOCK_FRAMES, file_source
from automix.jobs import mix_folder as mix_module
from automix.jobs.pipeline import OutputOptions, mix_folder
from automix.master import chain

RATE = 48000


def _same(a: chain.InputMeasurements, b: chain.InputMeasurements) -> None:
    assert a.analysis == b.analysis
    assert np.array_equal(a.band_uncertainty_db, b.band_uncertainty_db)
    assert pickle.dumps(a.glue_detector) == pickle.dumps(b.glue_detector)
    assert pickle.dumps(a.mid_side) == pickle.dumps(b.mid_side)


def _written(tmp_path, x: np.ndarray):
    path = tmp_path / "bus.wav"
    sf.write(path, x.T, RATE, subtype="FLOAT")
    return path


# Irregular pieces: smaller than a block, straddling block edges, one larger than two
# blocks, and single frames; 3 whole blocks and a tail in all.
PIECES = (1000, 70000, 3, 1, 2 * BLOCK_FRAMES + 17, 5)


@pytest.mark.parametrize("with_mid_side", [False, True])
def test_a_signal_measured_as_written_reads_as_the_written_file(tmp_path, with_mid_side):
    x = music_like(3 * BLOCK_FRAMES / RATE + 0.5, RATE, seed=4)
    x[1] *= 0.7  # some side, for the mid/side spectra
    frames = x.shape[1]
    from_file = chain.measure_source(file_source(_written(tmp_path, x)), with_mid_side=with_mid_side)
    meter = chain.SourceMeter(RATE, 2, frames, with_mid_side)
    edges = np.cumsum((0, *PIECES))
    assert edges[-1] < frames
    for start, stop in itertools.pairwise(edges):
        meter.add(x[:, start:stop])
    meter.add(x[:, edges[-1] :])
    measured = meter.result()
    _same(measured, from_file)
    assert (measured.mid_side is not None) == with_mid_side
    # and both read the signal right (an independent meter)
    lufs, true_peak, _ = ebur128(x, RATE)
    assert measured.analysis.integrated_lufs == pytest.approx(lufs, abs=0.02)
    assert measured.analysis.true_peak_measured
    assert measured.analysis.true_peak_dbtp == pytest.approx(true_peak, abs=0.2)


def test_the_meter_in_the_helper_process_gives_the_same_result(tmp_path, remote):
    x = music_like(BLOCK_FRAMES / RATE + 0.5, RATE, seed=5)
    from_file = chain.measure_source(file_source(_written(tmp_path, x)))
    meter = beside(chain.SourceMeter, RATE, 2, x.shape[1], False, threaded=True)
    for start in range(0, x.shape[1], 40000):
        meter.send("add", x[:, start : start + 40000])
    _same(meter.ask("result", last=True), from_file)


@pytest.mark.parametrize("fed", [0.5, 1.5])
def test_the_meter_refuses_a_signal_of_another_length(fed):
    x = music_like(1.0, RATE, seed=6)
    meter = chain.SourceMeter(RATE, 2, x.shape[1])
    meter.add(np.tile(x, 2)[:, : int(fed * x.shape[1])])
    with pytest.raises(Exception, match="internal error: measured"):
        meter.result()


def test_the_mix_measures_its_bus_as_it_renders_and_masters_it_as_before(tmp_path, monkeypatch):
    """The bus master no longer reads the bus for its analysis; the mix is byte for byte
    the one it was when it did."""
    stems = short_copy("pop_song", tmp_path / "stems", seconds=5.0)
    options = OutputOptions(bit_depth="24")
    passes = []
    measure = chain.measure_source
    monkeypatch.setattr(chain, "measure_source", lambda *a, **k: passes.append(1) or measure(*a, **k))
    mix_folder(stems, tmp_path / "measured.wav", POP, options)
    assert passes == []  # the bus was measured while it was written
    master_bus = mix_module._master_bus
    monkeypatch.setattr(mix_module, "_master_bus", lambda *a, **k: master_bus(*a[:5], **k))  # the master measures the bus itself
    mix_folder(stems, tmp_path / "read.wav", POP, options)
    assert passes == [1]
    assert (tmp_path / "measured.wav").read_bytes() == (tmp_path / "read.wav").read_bytes()


def test_a_mix_to_match_a_reference_measures_the_bus_mid_and_side(tmp_path):
    """A reference match needs the bus's mid/side spectra: the meter takes them."""
    stems = short_copy("pop_song", tmp_path / "stems", seconds=5.0)
    reference = tmp_path / "reference.wav"
    sf.write(reference, music_like(6.0, RATE, seed=7).T, RATE, subtype="FLOAT")
    from automix.master.reference import analyze_reference

    options = OutputOptions(bit_depth="24", reference=analyze_reference(reference))
    result = mix_folder(stems, tmp_path / "mix.wav", POP, options)
    assert result.master is not None and result.master.status == "ok"
    with pytest.raises(Exception, match="mid/side"):
        x = music_like(1.0, RATE, seed=8)
        meter = chain.SourceMeter(RATE, 2, x.shape[1])
        meter.add(x)
        chain.master_stream(file_source(_written(tmp_path, x)), POP.master, chain.NullSink(),
                            reference=options.reference, measured=meter.result())


# --- the output analysed as it is written (analyse_output) -------------------------------


@pytest.mark.parametrize("bit_depth", ["16", "24"])
def test_a_master_analysed_as_written_reads_as_the_written_file(tmp_path, bit_depth):
    """A render's analysis of what it writes (the analyzer beside the output meters, its
    loudness theirs) equals the analysis of the written file read back, field for field,
    and libebur128 agrees on the loudness."""
    import dataclasses

    from automix.io.audio import read_audio
    from automix.measure.analyzer import Analyzer, analyze

    x = music_like(2 * BLOCK_FRAMES / RATE + 0.7, RATE, seed=9)
    out = tmp_path / "master.wav"
    result = chain.master_to_file(file_source(_written(tmp_path, x)), out, POP.master, bit_depth=bit_depth)
    assert result.output_analysis is None  # only when asked for
    source = file_source(_written(tmp_path, x))
    sink = chain.FileSink(str(tmp_path / "again.wav"), tmp_path / "again.wav", RATE, 2, bit_depth)
    analysed = chain.master_stream(source, POP.master, sink, bit_depth=bit_depth, analyse_output=True)
    written = read_audio(out)
    assert np.array_equal(read_audio(tmp_path / "again.wav").samples, written.samples)  # the same master
    # the pass it replaces: the streaming analyzer over the written file
    reader = Analyzer(RATE, 2, total_frames=written.frames)
    for block in file_source(out).blocks():
        reader.add(block)
    # equal within float rounding: numpy's float64 sums of the same samples can differ in
    # the last bits with the arrays' memory alignment (the rms and the stereo image)
    for reference in (reader.result(), analyze(written)):  # and the whole-array analysis
        for name, value in dataclasses.asdict(reference).items():
            ours = getattr(analysed.output_analysis, name)
            if isinstance(value, str):
                assert ours == value, name
            else:
                assert np.allclose(ours, value, rtol=1e-12, atol=1e-12), name
    lufs, _, _ = ebur128(written.samples, RATE)
    assert analysed.output_analysis.integrated_lufs == pytest.approx(lufs, abs=0.02)
    assert analysed.output_analysis.integrated_lufs == pytest.approx(POP.master.target_lufs, abs=0.1)


def test_an_analyzer_reads_its_own_loudness_meter_or_the_one_given():
    from automix.measure import loudness
    from automix.measure.analyzer import Analyzer

    x = music_like(1.0, RATE, seed=10)
    own = Analyzer(RATE, 2)
    own.add(x)
    meter = loudness.LoudnessMeter(RATE, 2)
    meter.add(x)
    beside_meter = Analyzer(RATE, 2, loudness_meter=False)
    beside_meter.add(x)
    assert beside_meter.result(measured=meter.result()) == own.result()
    with pytest.raises(Exception, match="internal error"):
        own.result(measured=meter.result())
    with pytest.raises(Exception, match="internal error"):
        beside_meter.result()


def test_the_mix_reports_its_output_as_analysed_while_written(tmp_path, monkeypatch):
    """The mix's report takes the master's analysis of what it wrote, and says what a
    reading of the written file says."""
    stems = short_copy("pop_song", tmp_path / "stems", seconds=5.0)
    given = []
    final_measures = mix_module._final_measures
    monkeypatch.setattr(mix_module, "_final_measures",
                        lambda *a, **k: given.append(k.get("analysis")) or final_measures(*a, **k))
    out = tmp_path / "mix.wav"
    result = mix_folder(stems, out, POP, OutputOptions(bit_depth="24"))
    assert len(given) == 1 and given[0] is not None  # not read back
    final, against, _ = final_measures(out, POP, measured=result.master.output_measurement)  # read back
    assert result.report["against_genre_average"] == against
    for key, value in (("integrated_lufs", final.integrated_lufs), ("true_peak_dbtp", final.true_peak_dbtp),
                       ("loudness_range_lu", final.loudness_range_lu), ("sample_peak_dbfs", final.sample_peak_dbfs)):
        assert result.report["final"][key] == round(value, 2), key
