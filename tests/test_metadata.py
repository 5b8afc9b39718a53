"""Loudness and provenance metadata (issue 13 items 2 and 3), checked from outside.

The WAV checks walk the RIFF chunks and unpack the bext fields by their EBU Tech 3285 v2
offsets with a parser written here (not automix's reader); the expected loudness comes
from libebur128 (pyebur128) measuring the very samples in the file; tags are read with
mutagen.
"""

import hashlib
import math
import struct

import mutagen
import numpy as np
import pyebur128
import pytest
import soundfile as sf
from signals import pink_noise

from automix import __version__
from automix.errors import AutomixError
from automix.io import metadata
from automix.io.audio import quantize, write_audio
from automix.io.metadata import (
    LoudnessTags,
    Provenance,
    input_digest,
    read_metadata,
    tagged_loudness,
    write_metadata,
)
from automix.io.paths import is_automix_output
from automix.measure.loudness import measure

RATE = 48000


# --- an independent RIFF / bext parser (Tech 3285 v2 byte offsets) ---------------------


def riff_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(id, body offset, size) of every top-level chunk; checks the sizes add up."""
    assert data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE"
    chunks, at = [], 12
    while at < len(data):
        chunk_id, size = data[at : at + 4], struct.unpack("<I", data[at + 4 : at + 8])[0]
        if chunk_id == b"data" and size == 0xFFFFFFFF:
            size = len(data) - at - 8
        chunks.append((chunk_id, at + 8, size))
        at += 8 + size + (size & 1)  # RIFF: an odd chunk is followed by a pad byte
    assert at == len(data), "the chunk sizes do not add up to the file size"
    return chunks


def chunk(data: bytes, wanted: bytes) -> bytes:
    found = [data[at : at + size] for chunk_id, at, size in riff_chunks(data) if chunk_id == wanted]
    assert len(found) == 1, f"{len(found)} {wanted!r} chunks"
    return found[0]


def bext_fields(body: bytes) -> dict:
    return {
        "description": body[0:256].rstrip(b"\0"),
        "originator": body[256:288].rstrip(b"\0"),
        "origination_date": body[320:330],
        "origination_time": body[330:338],
        "time_reference": struct.unpack("<II", body[338:346]),
        "version": struct.unpack("<H", body[346:348])[0],
        "umid": body[348:412],
        "loudness_value": struct.unpack("<h", body[412:414])[0],
        "loudness_range": struct.unpack("<h", body[414:416])[0],
        "max_true_peak_level": struct.unpack("<h", body[416:418])[0],
        "max_momentary_loudness": struct.unpack("<h", body[418:420])[0],
        "max_short_term_loudness": struct.unpack("<h", body[420:422])[0],
        "reserved": body[422:602],
        "coding_history": body[602:].rstrip(b"\0").decode("ascii"),
    }


def libebur128(samples: np.ndarray, sample_rate: int) -> dict:
    """Integrated, LRA, true peak, and the highest momentary and short-term loudness
    (read every 100 ms, as EBU Tech 3341 defines the maxima)."""
    mode = pyebur128.MeasurementMode
    state = pyebur128.R128State(samples.shape[0], sample_rate,
                                mode.MODE_I | mode.MODE_LRA | mode.MODE_TRUE_PEAK | mode.MODE_M | mode.MODE_S)
    interleaved = np.ascontiguousarray(samples.T).astype(np.float64)
    hop = sample_rate // 10
    max_m = max_s = -math.inf
    for start in range(0, samples.shape[1] - hop + 1, hop):
        state.add_frames(interleaved[start : start + hop].ravel(), hop)
        if start + hop >= 0.4 * sample_rate:
            max_m = max(max_m, pyebur128.get_loudness_momentary(state))
        if start + hop >= 3 * sample_rate:
            max_s = max(max_s, pyebur128.get_loudness_shortterm(state))
    peak = max(pyebur128.get_true_peak(state, c) for c in range(samples.shape[0]))
    return {"integrated": pyebur128.get_loudness_global(state), "lra": pyebur128.get_loudness_range(state),
            "true_peak": 20 * np.log10(peak), "max_momentary": max_m, "max_short_term": max_s}


def loud_then_soft(seconds: float = 10.0) -> np.ndarray:
    """Pink noise fading by 12 dB: a loudness range of about 7 LU. A smooth fade, so
    the LRA's percentiles do not hinge on how each meter interpolates between a few
    short-term values (a step between two levels differed by 0.4 LU)."""
    x = pink_noise(seconds, RATE, seed=3) * 0.2
    x *= 10 ** (np.linspace(0, -12, x.shape[1]) / 20)
    return x.astype(np.float32)


def provenance(*inputs) -> Provenance:
    return Provenance.build({"target_lufs": -14.0, "bit_depth": "24", "jobs": 4, "quiet": True, "json": True},
                            preset="pop", changed={"master.target_lufs": -14.0}, inputs=inputs)


# --- WAV: bext -------------------------------------------------------------------------


@pytest.mark.parametrize("bit_depth", ["16", "24", "32f"])
def test_bext_loudness_fields_agree_with_libebur128_and_audio_is_unchanged(tmp_path, bit_depth):
    samples = quantize(loud_then_soft(), bit_depth)
    tags = LoudnessTags.from_measurement(measure(samples, RATE))
    plain = write_audio(samples, RATE, tmp_path / "plain.wav", bit_depth)
    tagged = write_audio(samples, RATE, tmp_path / "tagged.wav", bit_depth, loudness=tags, provenance=provenance())
    data = tagged.read_bytes()

    ids = [c[0] for c in riff_chunks(data)]
    assert ids.index(b"bext") == ids.index(b"data") - 1  # just before the audio
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    fields = bext_fields(chunk(data, b"bext"))
    assert fields["version"] == 2
    assert fields["originator"] == b"automix"
    assert fields["origination_date"] == b"\0" * 10 and fields["origination_time"] == b"\0" * 8  # no clock in the bytes
    assert fields["time_reference"] == (0, 0) and fields["umid"] == b"\0" * 64 and fields["reserved"] == b"\0" * 180

    ref = libebur128(samples, RATE)
    assert ref["lra"] > 3  # the signal does have a range to measure
    for field, key in (("loudness_value", "integrated"), ("loudness_range", "lra"), ("max_true_peak_level", "true_peak"),
                       ("max_momentary_loudness", "max_momentary"), ("max_short_term_loudness", "max_short_term")):
        assert fields[field] != 0x7FFF, field
        assert abs(fields[field] / 100 - ref[key]) <= 0.1, (field, fields[field], ref[key])

    history = fields["coding_history"]
    bits = "32" if bit_depth == "32f" else bit_depth
    assert history.startswith(f"A=PCM,F={RATE},W={bits},M=stereo,T=automix {__version__}")
    assert all(line.endswith("\r") or not line for line in history.split("\n")[:-1])  # CR/LF lines (EBU R 98)
    assert "preset=pop\r\n" in history and "option.target_lufs=-14.0\r\n" in history
    assert "jobs" not in history and "quiet" not in history and "json" not in history

    # the audio is what libsndfile reads back, bit for bit, and the data chunk's bytes are the plain file's
    back, rate = sf.read(tagged, dtype="float32", always_2d=True)
    assert rate == RATE and np.array_equal(back.T, samples)
    assert chunk(data, b"data") == chunk(plain.read_bytes(), b"data")
    assert is_automix_output(tagged) and is_automix_output(plain)
    assert sf.info(str(tagged)).extra_info  # libsndfile parses the header with the new chunk


def test_unknown_loudness_is_0x7fff(tmp_path):
    """Shorter than 3 s: no short-term loudness; Tech 3285 marks it 0x7FFF."""
    samples = quantize(pink_noise(1.0, RATE) * 0.1, "24")
    path = write_audio(samples, RATE, tmp_path / "short.wav", "24", loudness=LoudnessTags.from_measurement(measure(samples, RATE)))
    fields = bext_fields(chunk(path.read_bytes(), b"bext"))
    assert fields["max_short_term_loudness"] == 0x7FFF
    assert fields["loudness_value"] != 0x7FFF
    assert read_metadata(path)["loudness"]["max_short_term_lufs"] is None


def test_deterministic_bytes_and_no_time_stamp(tmp_path):
    samples = quantize(loud_then_soft(4.0), "24")
    tags = LoudnessTags.from_measurement(measure(samples, RATE))
    for ext, depth in (("wav", "24"), ("wav", "32f"), ("flac", "24"), ("aiff", "24")):
        a = write_audio(samples, RATE, tmp_path / f"a.{ext}", depth, loudness=tags, provenance=provenance())
        b = write_audio(samples, RATE, tmp_path / f"b.{ext}", depth, loudness=tags, provenance=provenance())
        assert a.read_bytes() == b.read_bytes(), ext
    # libsndfile stamps the float PEAK chunk with the clock; the rewrite zeroes it
    peak = chunk((tmp_path / "a.wav").read_bytes(), b"PEAK")
    assert peak[4:8] == b"\0\0\0\0"


def test_odd_sized_chunks_keep_their_pad_byte(tmp_path):
    """The bext is made even whatever its text (libsndfile's RF64 reader skips no pad
    byte); an odd chunk already in the file keeps its pad byte."""
    samples = quantize(pink_noise(0.5, RATE, channels=1) * 0.1, "16")
    for name in ("a.wav", "ab.wav"):  # CodingHistory lengths of both parities
        path = write_audio(samples, RATE, tmp_path / name, "16", loudness=LoudnessTags(-20.0), provenance=Provenance(inputs=((name, "0" * 64),)))
        body = chunk(path.read_bytes(), b"bext")
        assert len(body) % 2 == 0 and body[602:].rstrip(b"\0").endswith(f" {name}\r\n".encode())
        assert np.array_equal(sf.read(path, dtype="float32", always_2d=True)[0].T, samples)

    # a hand-made WAV with a 7-byte chunk (plus pad) between fmt and data
    pcm = (samples[0] * 32768).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, RATE * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"odd7" + struct.pack("<I", 7) + b"1234567\0"
    body += b"data" + struct.pack("<I", len(pcm)) + pcm
    path = tmp_path / "odd.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    write_metadata(path, "WAV", LoudnessTags(-20.0, 5.0, -3.0, -18.0, -19.0), None)
    data = path.read_bytes()
    assert chunk(data, b"odd7") == b"1234567"
    assert chunk(data, b"data") == pcm
    assert bext_fields(chunk(data, b"bext"))["loudness_range"] == 500
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8


def test_larger_than_the_copy_block_and_rewriting_twice(tmp_path, monkeypatch):
    """The audio is moved in blocks: cross many block boundaries (an odd block size),
    then replace the bext by a shorter one (the audio moves back down)."""
    samples = quantize(pink_noise(3.0, RATE) * 0.1, "24")  # 864 kB of audio
    plain = write_audio(samples, RATE, tmp_path / "plain.wav", "24")
    monkeypatch.setattr(metadata, "COPY_BYTES", 4099)
    path = write_audio(samples, RATE, tmp_path / "x.wav", "24", loudness=LoudnessTags(-20.0),
                       provenance=provenance(plain))
    assert chunk(path.read_bytes(), b"data") == chunk(plain.read_bytes(), b"data")
    write_metadata(path, "WAV", LoudnessTags(-21.0), None)  # shorter CodingHistory
    data = path.read_bytes()
    assert [c[0] for c in riff_chunks(data)].count(b"bext") == 1
    assert bext_fields(chunk(data, b"bext"))["loudness_value"] == -2100
    assert chunk(data, b"data") == chunk(plain.read_bytes(), b"data")
    assert np.array_equal(sf.read(path, dtype="float32", always_2d=True)[0].T, samples)

    monkeypatch.undo()  # and a file past the real 1 MB block size
    big = quantize(pink_noise(4.0, RATE) * 0.1, "24")
    path = write_audio(big, RATE, tmp_path / "big.wav", "24", loudness=LoudnessTags(-20.0))
    assert path.stat().st_size > metadata.COPY_BYTES
    assert np.array_equal(sf.read(path, dtype="float32", always_2d=True)[0].T, big)


def test_rf64_gets_its_ds64_size_fixed(tmp_path):
    samples = quantize(pink_noise(0.5, RATE) * 0.1, "24")
    path = tmp_path / "x.wav"
    sf.write(path, samples.T, RATE, subtype="PCM_24", format="RF64")
    assert path.read_bytes()[:4] == b"RF64"
    write_metadata(path, "WAV", LoudnessTags(-20.0), None)
    data = path.read_bytes()
    ds64 = chunk(data, b"ds64")
    assert struct.unpack("<Q", ds64[:8])[0] == len(data) - 8
    assert bext_fields(chunk(data, b"bext"))["loudness_value"] == -2000
    assert np.array_equal(sf.read(path, dtype="float32", always_2d=True)[0].T, samples)


# --- tags --------------------------------------------------------------------------------


def test_flac_and_aiff_replaygain_tags_agree_with_libebur128(tmp_path):
    samples = quantize(loud_then_soft(4.0), "24")
    tags = LoudnessTags.from_measurement(measure(samples, RATE))
    ref = libebur128(samples, RATE)
    flac = write_audio(samples, RATE, tmp_path / "x.flac", "24", loudness=tags, provenance=provenance())
    f = mutagen.File(flac)
    assert abs(float(f["REPLAYGAIN_TRACK_GAIN"][0].removesuffix(" dB")) - (-18 - ref["integrated"])) <= 0.1
    assert abs(20 * math.log10(float(f["REPLAYGAIN_TRACK_PEAK"][0])) - ref["true_peak"]) <= 0.1
    assert len(f["REPLAYGAIN_TRACK_PEAK"][0].split(".")[1]) == 6
    assert f["REPLAYGAIN_REFERENCE_LOUDNESS"] == ["-18.00 LUFS"]
    assert Provenance.from_text(f["AUTOMIX_PROVENANCE"][0]) == provenance()
    assert is_automix_output(flac)
    assert np.array_equal(sf.read(flac, dtype="float32", always_2d=True)[0].T, samples)

    aiff = write_audio(samples, RATE, tmp_path / "x.aiff", "24", loudness=tags, provenance=provenance())
    a = mutagen.File(aiff)
    assert abs(float(a.tags["TXXX:REPLAYGAIN_TRACK_GAIN"].text[0].split()[0]) - (-18 - ref["integrated"])) <= 0.1
    assert is_automix_output(aiff)
    assert np.array_equal(sf.read(aiff, dtype="float32", always_2d=True)[0].T, samples)


def test_album_gain(tmp_path):
    samples = quantize(pink_noise(1.0, RATE) * 0.1, "24")
    tags = LoudnessTags(-12.0, 4.0, -1.0, album_lufs=-10.5, album_true_peak_dbtp=-0.5)
    f = mutagen.File(write_audio(samples, RATE, tmp_path / "x.flac", "24", loudness=tags))
    assert f["REPLAYGAIN_ALBUM_GAIN"] == ["-7.50 dB"] and f["REPLAYGAIN_TRACK_GAIN"] == ["-6.00 dB"]
    assert f["REPLAYGAIN_ALBUM_PEAK"] == [f"{10 ** (-0.5 / 20):.6f}"]


def _encoded(tmp_path, name, fmt, subtype):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
    path = tmp_path / name
    sf.write(path, (pink_noise(1.0, RATE) * 0.1).T, RATE, format=fmt, subtype=subtype)
    return path


def test_opus_gets_r128_gain_not_replaygain(tmp_path):
    path = _encoded(tmp_path, "x.opus", "OGG", "OPUS")
    write_metadata(path, None, LoudnessTags(-14.3, true_peak_dbtp=-1.0, album_lufs=-13.0), provenance())
    f = mutagen.File(path)
    assert type(f).__name__ == "OggOpus"
    assert f["R128_TRACK_GAIN"] == [str(round(256 * (-23 + 14.3)))]  # RFC 7845: Q7.8 relative to -23 LUFS
    assert f["R128_ALBUM_GAIN"] == [str(round(256 * (-23 + 13.0)))]
    assert not [k for k in f.tags.keys() if k.upper().startswith("REPLAYGAIN")]  # noqa: SIM118 - VComment iterates pairs
    assert read_metadata(path)["r128"]["track_gain_db"] == pytest.approx(-23 + 14.3, abs=1 / 256)


def test_vorbis_and_mp3_get_replaygain(tmp_path):
    tags = LoudnessTags(-9.87, true_peak_dbtp=-1.0)
    vorbis = _encoded(tmp_path, "x.ogg", "OGG", "VORBIS")
    write_metadata(vorbis, None, tags, provenance())
    assert mutagen.File(vorbis)["REPLAYGAIN_TRACK_GAIN"] == ["-8.13 dB"]
    mp3 = _encoded(tmp_path, "x.mp3", "MP3", "MPEG_LAYER_III")
    write_metadata(mp3, None, tags, provenance())
    id3 = mutagen.File(mp3).tags
    assert id3["TXXX:REPLAYGAIN_TRACK_GAIN"].text == ["-8.13 dB"]
    assert id3["TXXX:REPLAYGAIN_TRACK_PEAK"].text == [f"{10 ** (-1 / 20):.6f}"]
    assert Provenance.from_text(id3["TXXX:AUTOMIX_PROVENANCE"].text[0]) == provenance()
    assert read_metadata(mp3)["replaygain"]["track_gain_db"] == -8.13
    assert tagged_loudness(read_metadata(vorbis)) == {"integrated_lufs": -9.87, "true_peak_dbtp": pytest.approx(-1.0, abs=1e-5),
                                                      "source": "replaygain"}


def test_m4a_gets_itunes_replaygain_atoms(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "x.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=RATE, layout="stereo")
        x = (pink_noise(0.5, RATE) * 0.1).astype(np.float32)
        for start in range(0, x.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, start : start + 1024]), format="fltp", layout="stereo")
            frame.sample_rate = RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    write_metadata(path, None, LoudnessTags(-14.0, true_peak_dbtp=-1.0), provenance())
    tags = mutagen.File(path).tags
    assert bytes(tags["----:com.apple.iTunes:replaygain_track_gain"][0]) == b"-4.00 dB"
    assert Provenance.from_text(bytes(tags["----:com.apple.iTunes:AUTOMIX_PROVENANCE"][0]).decode()) == provenance()


# --- provenance --------------------------------------------------------------------------


def test_provenance_digests_and_inputs_untouched(tmp_path):
    inputs = []
    for i in range(2):
        p = tmp_path / f"in{i}.wav"
        sf.write(p, (pink_noise(0.5, RATE, seed=i) * 0.1).T, RATE, subtype="PCM_16")
        inputs.append(p)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in inputs}
    prov = provenance(*inputs)
    assert prov.inputs == tuple((p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in inputs)
    assert input_digest(inputs[0]) == hashlib.sha256(inputs[0].read_bytes()).hexdigest()
    samples, _ = sf.read(inputs[0], dtype="float32", always_2d=True)
    write_audio(np.ascontiguousarray(samples.T), RATE, tmp_path / "out.wav", "24", loudness=LoudnessTags(-20.0),
                provenance=prov, protected=tuple(inputs))
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in inputs} == before
    assert Provenance.from_text(read_metadata(tmp_path / "out.wav")["provenance"]) == prov


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_a_master_tags_its_inputs_digest_taken_beside_the_passes(tmp_path, subtype):
    """master_job hashes the input on a thread and waits for the digest only when it
    writes the tags (an integer WAV is not decoded to be validated, so nothing else
    would hide the hash): the tag and the record carry the file's sha256, and the passes
    still ran in the helper process (forked before the hashing thread started)."""
    from automix.io import helper as helper_module
    from automix.jobs.master_files import master_job
    from automix.jobs.options import OutputOptions
    from automix.presets import load_preset

    source = tmp_path / "in.wav"
    sf.write(source, (pink_noise(3.0, RATE, channels=2, seed=3) * 0.1).T, RATE, subtype=subtype)
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    helped = []
    hold = helper_module.Helper.hold
    helper_module.Helper.hold = lambda self, *a: helped.append(1) or hold(self, *a)
    try:
        record = master_job(source, tmp_path / "out.wav", load_preset("pop").master,
                            OutputOptions(bit_depth="24", provenance=Provenance(preset="pop")))
    finally:
        helper_module.Helper.hold = hold
    assert record["status"] == "ok", record
    assert record["input_sha256"] == expected
    tagged = Provenance.from_text(read_metadata(tmp_path / "out.wav")["provenance"])
    assert tagged.inputs == (("in.wav", expected),)
    assert helped  # the meters ran beside, in the helper


def test_provenance_text_is_deterministic_and_leaves_out_job_options():
    a = Provenance.build({"quiet": True, "--jobs": 3, "target_lufs": -9, "bit_depth": "16", "platform": None},
                         preset="rock", changed={"master.ceiling_dbtp": -2.0})
    b = Provenance.build({"bit_depth": "16", "target_lufs": -9}, preset="rock", changed={"master.ceiling_dbtp": -2.0})
    assert a == b and a.to_text() == b.to_text()
    assert a.to_text() == (f"automix={__version__}\npreset=rock\noption.bit_depth=16\noption.target_lufs=-9\n"
                           "changed.master.ceiling_dbtp=-2.0\n")
    odd = Provenance(options={"name": "a\nb=c\\u00e9"}, inputs=(("é x 🎵.wav", "f" * 64),))
    assert Provenance.from_text(odd.to_text()) == odd
    assert len(odd.to_text().splitlines()) == 3 and odd.to_text().isascii()


def test_non_ascii_names_round_trip_through_bext(tmp_path):
    prov = Provenance(preset="café", inputs=(("vocals – take 2.wav", "a" * 64),))
    path = write_audio(quantize(pink_noise(0.5, RATE) * 0.1, "24"), RATE, tmp_path / "x.wav", "24", provenance=prov)
    history = bext_fields(chunk(path.read_bytes(), b"bext"))["coding_history"]  # decodes as ASCII
    assert "preset=caf\\u00e9\r\n" in history
    assert Provenance.from_text(read_metadata(path)["provenance"]) == prov
    assert bext_fields(chunk(path.read_bytes(), b"bext"))["description"] == b"automix " + __version__.encode() + b" preset=caf\\u00e9"


def test_float_wav_without_metadata_has_no_clock_either(tmp_path):
    samples = (pink_noise(0.5, RATE) * 0.1).astype(np.float32)
    path = write_audio(samples, RATE, tmp_path / "x.wav", "32f")
    assert chunk(path.read_bytes(), b"PEAK")[4:8] == b"\0\0\0\0"
    assert np.array_equal(sf.read(path, dtype="float32", always_2d=True)[0].T, samples)


def test_read_metadata_of_a_plain_file(tmp_path):
    path = write_audio(quantize(pink_noise(0.5, RATE) * 0.1, "24"), RATE, tmp_path / "x.wav", "24")
    found = read_metadata(path)
    assert found["container"] == "WAV" and found["software"].startswith("automix ")
    assert "loudness" not in found and "provenance" not in found
    assert tagged_loudness(found) == {}
    write_metadata(path, "WAV", LoudnessTags(-14.004, true_peak_dbtp=-1.006), None)
    assert tagged_loudness(read_metadata(path)) == {"integrated_lufs": -14.0, "true_peak_dbtp": -1.01, "source": "bext"}


def test_a_digest_taken_beside_is_the_files_sha256_and_its_failure_is_the_callers(tmp_path):
    """input_digest_beside hashes on a thread while the caller decodes the same file: the
    same hex digest as hashlib's, the thread gone once asked, an unreadable file's error
    raised where the digest is asked for."""
    import threading

    path = tmp_path / "in.wav"
    path.write_bytes(np.random.default_rng(3).bytes(3 * 2**20 + 17))  # several of its 1 MB reads
    digest = metadata.input_digest_beside(path)
    assert digest() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest() == hashlib.sha256(path.read_bytes()).hexdigest()  # asked twice: the same
    assert not [t for t in threading.enumerate() if t.name == "automix-digest"]
    missing = metadata.input_digest_beside(tmp_path / "gone.wav")
    with pytest.raises(AutomixError, match="gone.wav: cannot read"):
        missing()


def test_a_lossy_master_tags_its_inputs_digest_taken_beside_the_passes(tmp_path):
    """The same for an MP3 master: the digest callable reaches the lossy writer's tags
    (write_metadata calls it when it writes them)."""
    from automix.jobs.master_files import master_job
    from automix.jobs.options import OutputOptions
    from automix.presets import load_preset

    source = tmp_path / "in.wav"
    sf.write(source, (pink_noise(3.0, RATE, channels=2, seed=4) * 0.1).T, RATE, subtype="PCM_16")
    record = master_job(source, tmp_path / "out.mp3", load_preset("pop").master,
                        OutputOptions(provenance=Provenance(preset="pop")))
    assert record["status"] == "ok", record
    tagged = Provenance.from_text(read_metadata(tmp_path / "out.mp3")["provenance"])
    assert tagged.inputs == (("in.wav", hashlib.sha256(source.read_bytes()).hexdigest()),)


def test_digests_taken_beside_hash_one_file_after_another_at_the_lowest_priority(tmp_path, monkeypatch):
    """input_digests_beside: one thread for every file, each digest hashlib's; a file that
    cannot be read raises only where its own digest is asked for (a stem set aside is
    never asked); on Linux the thread runs at niceness 19, so it takes idle time only."""
    import os
    import sys
    import threading

    paths = [tmp_path / "a.wav", tmp_path / "gone.wav", tmp_path / "c.wav"]
    for index in (0, 2):
        paths[index].write_bytes(np.random.default_rng(index).bytes(2**20 + 5 + index))
    seen = []
    real = metadata.input_digest

    def recording(path):
        seen.append((threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return real(path)

    monkeypatch.setattr(metadata, "input_digest", recording)
    digests = metadata.input_digests_beside(paths)
    assert digests(paths[2]) == hashlib.sha256(paths[2].read_bytes()).hexdigest()
    assert digests(paths[0]) == hashlib.sha256(paths[0].read_bytes()).hexdigest()
    with pytest.raises(AutomixError, match="gone.wav: cannot read"):
        digests(paths[1])
    assert [name for name, _ in seen] == ["automix-digest"] * 3  # one thread, every file
    if sys.platform.startswith("linux"):
        assert {nice for _, nice in seen} == {19}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != 19 or os.nice(0) == 19  # this thread untouched


def test_a_mix_tags_the_digest_of_every_stem_it_mixed(tmp_path):
    """mix_folder hashes the stems beside its passes: the tag lists the name and sha256 of
    every stem it read, in the order of the folder (a silent one, read and set aside,
    too), and none of a file it could not read."""
    from automix.jobs.mix_folder import mix_folder
    from automix.jobs.options import OutputOptions
    from automix.presets import load_preset

    folder = tmp_path / "stems"
    folder.mkdir()
    sf.write(folder / "bass.wav", (pink_noise(3.0, RATE, channels=1, seed=1) * 0.2).T, RATE, subtype="PCM_16")
    sf.write(folder / "keys.wav", (pink_noise(3.0, RATE, channels=2, seed=2) * 0.1).T, RATE, subtype="PCM_24")
    sf.write(folder / "quiet.wav", np.zeros((3 * RATE, 2), dtype=np.float32), RATE, subtype="PCM_16")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 64)
    mix_folder(folder, tmp_path / "mix.wav", load_preset("pop"), OutputOptions(bit_depth="24", provenance=Provenance(preset="pop")))
    tagged = Provenance.from_text(read_metadata(tmp_path / "mix.wav")["provenance"])
    assert tagged.inputs == tuple((name, hashlib.sha256((folder / name).read_bytes()).hexdigest())
                                  for name in ("bass.wav", "keys.wav", "quiet.wav"))
