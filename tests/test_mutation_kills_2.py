"""Tests written for the mutants that survived the second round of mutation analysis
(bench/mutation.py, /work/notes/mutation_report_2.md): the modules added or changed for
``mix --amount``, the subnormal guard, the threaded stages, ``--skip-existing`` /
``--manifest`` and the choice of limiter.

Every expected value comes from outside the code under test: a hand-made file whose
container sizes are known, a sum whose loudness is known (two identical signals: +6.02
dB), libebur128 through pyebur128 (via test_pumping), a scipy band-pass, numpy on the kept envelope, a
thread's name or a counter.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import struct
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from signals import music_like
from sound_metrics import true_peak_8x_db
from test_pumping import PUMPING_GOAL_DB, band_swing_db, ebur128_lufs, kick_and_pad
from typer.testing import CliRunner

from automix.io import overlap
from automix.io.audio import Audio
from automix.io.stream import array_source
from automix.jobs import manifest
from automix.master import chain, limiter
from automix.mix.amount import group_corrections_db, scale_plan
from automix.mix.balancer import MixPlan, StemPlan
from automix.presets import load_preset

RATE = 44100


def _within(seconds: float, function, *args):
    """Run ``function`` in a daemon thread; fail (instead of hanging) if it has not
    returned after ``seconds``."""
    box: dict = {}

    def run():
        try:
            box["value"] = function(*args)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{getattr(function, '__name__', function)} still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --- io/overlap.py: the stages keep their promises ---------------------------------------


def test_ahead_produces_in_its_own_thread_at_most_two_items_ahead_by_default():
    produced, where = [], set()

    def items():
        for i in range(50):
            where.add(threading.current_thread().name)
            produced.append(i)
            yield i

    stream = overlap.ahead(items())
    assert next(stream) == 0
    time.sleep(0.5)  # the producer runs as far as the hand-over lets it
    # one item taken, two waiting in the hand-over (depth 2), one made and waiting to go in
    assert len(produced) == 4
    assert where == {"automix-ahead"}
    stream.close()


def test_ahead_closes_a_generator_the_caller_still_holds_in_the_producer_thread():
    closed_in = []

    def reader():  # like a decoder holding a file open
        try:
            yield from range(100)
        finally:
            closed_in.append(threading.current_thread().name)

    source = reader()  # the caller keeps a reference: only an explicit close() ends it
    for item in overlap.ahead(source, depth=1):
        if item == 2:
            break
    assert closed_in == ["automix-ahead"]
    del source


def test_behind_raises_the_consumer_failure_from_the_put_it_blocked():
    release = threading.Event()

    def consume(item):
        if item == 0:
            release.wait(5)
            raise ValueError("disk full")

    stage = overlap.Behind(consume, depth=1)
    threading.Timer(0.3, release.set).start()
    returned = []
    with pytest.raises(ValueError, match="disk full"):
        # 0 is being consumed, 1 waits in the hand-over, put(2) blocks until the failure
        for i in range(3):
            stage.put(i)
            returned.append(i)
    assert returned == [0, 1]
    stage.abandon()


def test_behind_keeps_consuming_after_the_producer_paused_longer_than_its_poll():
    consumed = []
    stage = overlap.Behind(consumed.append, depth=2)
    stage.put(0)
    time.sleep(4 * overlap._POLL_S)  # a slow decoder: the consumer sits idle for a while

    def rest():
        for i in range(1, 6):
            stage.put(i)
        stage.close()

    _within(10, rest)
    assert consumed == [0, 1, 2, 3, 4, 5]


def test_behind_abandon_returns_with_its_worker_stopped():
    consumed = []

    def slow(item):
        time.sleep(0.1)
        consumed.append(item)

    stage = overlap.Behind(slow, depth=3)
    for i in range(4):
        stage.put(i)
    _within(10, stage.abandon)
    count = len(consumed)
    time.sleep(0.5)
    assert len(consumed) == count  # nothing consumed once abandon() returned
    # (measured: count is 4 -- the worker still consumes every queued item before it sees
    # the stop, although abandon()'s docstring says it does not wait for them)
    overlap.Behind(slow, threaded=False).abandon()  # nothing to stop: no error


def test_beside_inline_returns_the_results_and_close_waits_for_a_running_call():
    inline = overlap.Beside(lambda a, b: a * b, threaded=False)
    assert inline.submit(6, 7).result() == 42
    inline.close()  # nothing to shut down: no error
    finished = []

    def slow():
        time.sleep(0.3)
        finished.append(True)

    threaded = overlap.Beside(slow)
    threaded.submit()
    threaded.close()
    assert finished == [True]


def test_dropping_a_beside_neither_blocks_nor_raises(monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    closed = overlap.Beside(len)
    closed.submit("abc").result()
    closed.close()
    del closed  # its __del__ sees the pool already gone
    gc.collect()
    assert unraisable == []

    busy = overlap.Beside(time.sleep)
    busy.submit(1.0)
    start = time.monotonic()
    del busy  # a limiter dropped half-way: its call finishes on its own, the caller goes on
    gc.collect()
    assert time.monotonic() - start < 0.5
    assert unraisable == []


# --- master/limiter.py: EnvelopeSpill ----------------------------------------------------


def test_a_kept_envelope_reads_back_one_value_per_frame_scaled_with_no_latency():
    rng = np.random.default_rng(5)
    envelope = rng.uniform(0.0, 2.0, 1001).astype(np.float32)
    with limiter.EnvelopeSpill() as spill:
        assert isinstance(spill, limiter.EnvelopeSpill)
        for part in (envelope[:1], envelope[1:1], envelope[1:500], envelope[500:]):  # a 1-frame block too
            spill.write(part)
        assert spill.usable and spill.frames == 1001
        detector = spill.detector(0.5)
        assert detector.latency_frames == 0
        out = [detector.process(np.zeros((2, n), dtype=np.float32)) for n in (1, 0, 700, 300)]
        out.append(detector.flush())
        got = np.concatenate(out)
    assert got.size == 1001  # every frame in gives one value out, nothing more at the end
    np.testing.assert_array_equal(got, envelope * np.float32(0.5))


def test_a_spill_that_cannot_write_turns_unusable_and_stops_counting(monkeypatch):
    import tempfile

    class FullDisk:
        def __init__(self):
            self.data, self.calls = b"", 0

        def write(self, data):
            self.calls += 1
            if self.calls == 2:
                raise OSError(28, "No space left on device")
            self.data += bytes(memoryview(data))  # any buffer, as a file takes it

        def close(self):
            pass

    disk = FullDisk()
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **kwargs: disk)
    spill = limiter.EnvelopeSpill()
    spill.write(np.ones(10, dtype=np.float32))
    assert spill.usable and spill.frames == 10
    spill.write(np.ones(20, dtype=np.float32))  # the disk is full
    assert not spill.usable
    spill.write(np.ones(30, dtype=np.float32))  # a hole before it: never written after one
    assert spill.frames == 10 and len(disk.data) == 40 and disk.calls == 2
    spill.close()


# --- master/loop.py: where the split-band limiter starts ---------------------------------


def test_split_band_where_the_wideband_limiter_would_already_break_the_pumping_goal(monkeypatch):
    """0.3 LU louder than a kick-and-pad at -1 dBTP: the wideband limiter takes ~0.74 dB
    over the programme and adds ~0.71 dB of swing to the pad (over issue 10's 0.6 dB, the
    swing read here with a scipy band-pass); the split-band limiter must be chosen."""
    x = kick_and_pad(4.0)
    x = (x * 10 ** ((-1.0 - true_peak_8x_db(x)) / 20)).astype(np.float32)
    settings = dataclasses.replace(load_preset("pop").master, target_lufs=round(ebur128_lufs(x) + 0.3, 2))
    monkeypatch.setattr(chain, "SPLIT_BAND_FROM_DB", math.inf)  # wideband whatever it does
    wide, result = chain.master(Audio(x, RATE), settings, amount=0.0, over_limit="force")
    assert result.limiter_design == "wideband"
    assert band_swing_db(wide) - band_swing_db(x) > PUMPING_GOAL_DB + 0.05
    monkeypatch.undo()
    y, result = chain.master(Audio(x, RATE), settings, amount=0.0, over_limit="force")
    assert result.limiter_design == "split-band"
    assert band_swing_db(y) - band_swing_db(x) <= PUMPING_GOAL_DB
    assert abs(ebur128_lufs(y) - settings.target_lufs) <= 0.1


# --- mix/amount.py: the group corrections and the rule text ------------------------------


def _stem(name: str, target_lufs: float, *, user_gain_db: float = 0.0, group: str = "kit") -> StemPlan:
    return StemPlan(name=name, role="drums", role_reason="test", target_lufs=target_lufs, gain_db=user_gain_db,
                    gain_rule="test", highpass_hz=None, highpass_order=2, highpass_rule="", eq_cuts=(), compressor=None,
                    compressor_rule="", pan=0.0, pan_rule="centre", group=group, group_lufs=-14.0, group_user_db=1.0,
                    user_gain_db=user_gain_db)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_group_correction_is_measured_without_the_users_gains(threads):
    """Two identical stems, planned at -30 and -24 LUFS (the second with the user's +6 dB):
    without the user's gain both sit at -30, so their sum reads -30 + 20 log10 2 and the
    group's correction is group_lufs - group_user_db - that."""
    x = (np.random.default_rng(11).standard_normal(2 * RATE) * 0.1).astype(np.float32)[None]
    plan = MixPlan(stems=(_stem("a", -30.0), _stem("b", -24.0, user_gain_db=6.0)), lead=None, lead_rule="", bus_lufs=-14.0)
    sources = [array_source(Audio(x, RATE)), array_source(Audio(x.copy(), RATE))]
    got = group_corrections_db(sources, RATE, plan, threads=threads)
    assert got["kit"] == pytest.approx(-14.0 - 1.0 - (-30.0 + 20 * math.log10(2.0)), abs=0.01)


def test_a_lone_stem_group_is_not_corrected_and_the_rule_names_a_groups_correction():
    x = (np.random.default_rng(13).standard_normal(RATE) * 0.1).astype(np.float32)[None]
    plan = MixPlan(stems=(_stem("a", -30.0, group="solo"), _stem("b", -24.0, group="")), lead=None, lead_rule="",
                   bus_lufs=-14.0)
    assert group_corrections_db([array_source(Audio(x, RATE))] * 2, RATE, plan) == {"solo": 0.0}
    grouped = MixPlan(stems=(_stem("a", -30.0), _stem("b", -30.0)), lead=None, lead_rule="", bus_lufs=-14.0)
    half = scale_plan(grouped, 0.5, group_gains_db={"kit": 1.5})
    for stem in half.stems:
        assert "kit group's correction +1.50 dB" in stem.gain_rule
        assert stem.gain_db == pytest.approx(1.5)  # both moved +1.5: the common gain is +1.5 as well


# --- jobs/manifest.py: is an output whole? -----------------------------------------------


def test_a_file_that_cannot_be_opened_is_not_whole(tmp_path):
    assert manifest.incomplete_reason(tmp_path / "missing.wav").startswith("cannot read")


def test_rf64_and_a_wav_without_audio(tmp_path):
    path = tmp_path / "big.wav"
    sf.write(path, np.zeros((1000, 2)), RATE, format="RF64", subtype="PCM_24")
    data = path.read_bytes()
    assert data[:4] == b"RF64" and data[4:8] == b"\xff\xff\xff\xff"  # the size is in ds64
    assert manifest.incomplete_reason(path) is None
    path.write_bytes(data[:-6])
    assert manifest.incomplete_reason(path)
    # RIFF sizes that add up, but no data chunk: a header with no audio behind it
    fmt = struct.pack("<HHIIHH", 1, 2, RATE, RATE * 4, 4, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert manifest.incomplete_reason(path) == "no data chunk"


def test_an_mp4_whose_last_box_runs_to_the_end_of_the_file_is_whole(tmp_path):
    """ISO/IEC 14496-12 4.2: a box size of 0 means "to the end of the file" (last box only)."""
    payload = bytes(range(256)) * 4
    ftyp = struct.pack(">I", 20) + b"ftypM4A " + struct.pack(">I", 0) + b"isom"
    path = tmp_path / "open.m4a"
    path.write_bytes(ftyp + struct.pack(">I", 0) + b"mdat" + payload)
    assert manifest.incomplete_reason(path) is None


def _ogg_page(flags: int, lacing: bytes, body: bytes) -> bytes:
    # RFC 3533 section 6: 27 header bytes, then the lacing values, then the body (the CRC
    # is left 0: the check reads sizes only)
    return b"OggS" + bytes([0, flags]) + bytes(8) + struct.pack("<I", 1) + struct.pack("<I", 0) + bytes(4) \
        + bytes([len(lacing)]) + lacing + body


def test_an_ogg_stream_ending_with_an_empty_end_of_stream_page_is_whole(tmp_path):
    first = _ogg_page(0x02, bytes([19]), b"OpusHead" + bytes(11))  # beginning of stream
    path = tmp_path / "a.opus"
    path.write_bytes(first + _ogg_page(0x04, b"", b""))  # an EOS page of no segments: 27 bytes
    assert manifest.incomplete_reason(path) is None
    path.write_bytes(first + _ogg_page(0x04, b"", b"")[:26])
    assert manifest.incomplete_reason(path)
    path.write_bytes(first)  # whole pages, but the stream never ends
    assert manifest.incomplete_reason(path)


def test_an_mp3_with_an_id3v1_tag_after_its_audio_is_whole(tmp_path):
    from automix.io import lossy

    path = tmp_path / "a.mp3"
    lossy.write_lossy(music_like(1.0, 48000, seed=4), 48000, path, "mp3")
    data = path.read_bytes()
    assert manifest.incomplete_reason(path) is None
    path.write_bytes(data + b"TAG" + b"title".ljust(125, b"\0"))  # ID3v1: 128 bytes at the very end
    assert manifest.incomplete_reason(path) is None
    path.write_bytes(data + b"XYZ" + bytes(125))  # 128 bytes that are not a tag
    assert manifest.incomplete_reason(path)


def test_an_output_whose_input_url_is_gone_is_redone(tmp_path):
    from automix.cli import app
    from automix.io.metadata import Provenance, read_metadata

    source = tmp_path / "in" / "a.wav"
    source.parent.mkdir()
    sf.write(source, music_like(1.5, RATE, seed=6).T, RATE, subtype="PCM_24")
    out = tmp_path / "out"
    assert CliRunner().invoke(app, ["master", str(source), "-o", str(out)]).exit_code == 0
    output = out / "a.wav"
    expected = Provenance.from_text(read_metadata(output)["provenance"])
    assert manifest.check_existing(str(source), output, expected)["status"] == "skipped"  # the control
    gone = manifest.check_existing((tmp_path / "in" / "gone.wav").as_uri(), output, expected)
    assert gone["status"] == "redo" and "missing" in gone["reason"]


def test_a_manifest_in_a_folder_two_levels_down_is_created(tmp_path):
    path = tmp_path / "runs" / "today" / "manifest.jsonl"
    book = manifest.Manifest(path)
    book.start([])
    line = {"input": "/a.wav", "output": "/b.wav", "status": "done"}
    book.append(line)
    book.close()
    assert [json.loads(raw) for raw in path.read_text().splitlines()] == [line]

