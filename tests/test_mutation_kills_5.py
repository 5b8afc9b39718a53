"""Tests written for the mutants that survived the fifth round of mutation analysis
(bench/mutation.py keys kernels, design, iir_kernel, source_meter, mix_bus, choose; the
equivalent survivors and why are in its EQUIVALENT table): scipy's compiled kernels
loaded by file, the filter designs in numpy, and the bus measured as it is rendered.

Expected values come from outside the code under test: scipy's public functions
(scipy.fft, scipy.ndimage, scipy.signal.firwin2 / butter / sosfreqz / zpk2sos), the
module objects Python's import system holds, files read back by soundfile and decoded by
PyAV, libebur128, the threads and calls Python sees, arithmetic on the signal.
"""

from __future__ import annotations

import dataclasses
import pickle
import sys
import threading
import time
import types

import numpy as np
import pytest
import scipy.fft
import soundfile as sf
from scipy import ndimage, signal
from signals import music_like, pink_noise
from sound_metrics import true_peak_8x_db
from test_loudness import ebur128
from test_mix import POP, short_copy
from test_pumping import FS, ebur128_lufs, kick_and_pad

from automix.dsp import design, kernels
from automix.errors import AutomixError
from automix.io import helper as helper_module
from automix.io.audio import Audio
from automix.io.stream import array_source
from automix.jobs.pipeline import OutputOptions, mix_folder
from automix.master import chain
from automix.measure import loudness
from automix.presets import load_preset

EPS = np.finfo(np.float64).eps


# --- kernels: compiled() -----------------------------------------------------------------


def test_a_module_already_imported_is_the_one_returned(monkeypatch):
    """A compiled module already in sys.modules (a user's own ``import scipy.signal``
    first) is shared, never loaded a second time."""
    registered = types.ModuleType("scipy.signal._sosfilt")
    monkeypatch.setitem(sys.modules, "scipy.signal._sosfilt", registered)
    assert kernels.compiled("scipy.signal._sosfilt") is registered


# --- kernels: the known answers each kernel is checked on -------------------------------


def test_a_kernel_right_in_one_half_of_its_known_answer_is_not_taken():
    """Output and state (or both running filters) must be right: a kernel that gets
    only one of them right gives way to its public function."""

    def output_only(sos, x, zi):  # the impulse response right, the state left at zero
        x[...] = [[1.0, 1.0, 0.5, 0.25]]

    assert kernels._answers_sosfilt(kernels._sosfilt_public)
    assert not kernels._answers_sosfilt(output_only)
    assert kernels._answers_linear_filter(kernels._linear_filter_public)
    assert not kernels._answers_linear_filter(lambda b, a, x, axis, zi: (np.array([1.0, 0.5, 0.25]), np.array([0.0])))

    def minimum_only(x, size, axis, output, mode, cval, origin, minimum):
        if minimum:
            kernels._min_or_max_public(x, size, axis, output, mode, cval, origin, minimum)

    assert kernels._answers_min_or_max(kernels._min_or_max_public)
    assert not kernels._answers_min_or_max(minimum_only)


@pytest.mark.parametrize(("name", "use", "flags"), [
    ("r2c", lambda: kernels.rfft(np.ones(4)), slice(2, None)),  # forward, normalisation, out, threads
    ("c2r", lambda: kernels.irfft(np.ones(3, complex)), slice(3, None)),  # the same after n
    ("min_or_max", lambda: kernels.minimum_filter1d(np.ones(4), 3), slice(7, None)),  # minimum
])
def test_each_kernel_is_checked_as_its_wrapper_calls_it(name, use, flags, monkeypatch):
    """A known answer only vouches for the kernel called the way the wrapper calls it:
    the same direction, normalisation, output, threads (or minimum) flags."""
    _, answers, public = kernels._KERNELS[name]
    seen = []

    def spy(*args):
        seen.append(args)
        return public(*args)

    monkeypatch.setattr(kernels, f"_{name}", spy)
    use()
    assert answers(spy)
    used, checked = seen[0], seen[1]
    assert used[flags] == checked[flags]


# --- kernels: rfft / irfft edge cases ----------------------------------------------------


def _bits(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Same type, shape and bits (signed zeros included) as scipy's."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours.view(np.uint8), theirs.view(np.uint8))


def test_a_one_point_transform_is_scipys():
    x = np.array([0.75, -2.0, 3.0])
    _bits(kernels.rfft(x[:1]), scipy.fft.rfft(x[:1]))  # a one-point signal
    _bits(kernels.rfft(x, 1), scipy.fft.rfft(x, 1))  # cut to one point
    _bits(kernels.irfft(x + 1j, 1), scipy.fft.irfft(x + 1j, 1))  # one point out


def test_a_real_spectrum_is_taken_as_scipy_takes_it():
    """scipy adds +0j to a real spectrum: negative zeros become positive, and so the
    samples' signs of zero are scipy's."""
    spectrum = np.array([-0.0, -0.0, -0.0, 1.5, -0.0])
    _bits(kernels.irfft(spectrum), scipy.fft.irfft(spectrum))
    _bits(kernels.irfft(spectrum[:3]), scipy.fft.irfft(spectrum[:3]))


def test_a_big_endian_signal_is_transformed_as_scipy_does():
    x = np.random.default_rng(11).standard_normal((2, 300))
    for dtype in (">f8", ">f4"):
        swapped = x.astype(dtype)
        assert swapped.flags.aligned and not swapped.dtype.isnative
        _bits(kernels.rfft(swapped), scipy.fft.rfft(swapped))
        _bits(kernels.rfft(swapped, 256), scipy.fft.rfft(swapped, 256))


# --- kernels: the running filters' defaults ----------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), [
    (kernels.minimum_filter1d, ndimage.minimum_filter1d),
    (kernels.maximum_filter1d, ndimage.maximum_filter1d),
    (kernels.uniform_filter1d, ndimage.uniform_filter1d),
])
def test_constant_mode_pads_with_scipys_default_value(ours, theirs):
    """mode="constant" without cval: scipy pads with 0.0."""
    x = np.array([[3.0, 5.0, 4.0, 6.0, 7.0], [-3.0, -5.0, -4.0, -6.0, -7.0]])
    _bits(ours(x, 3, mode="constant"), theirs(x, 3, axis=-1, mode="constant"))
    assert ours(x, 3, mode="constant")[0, 0] == (0.0 if ours is kernels.minimum_filter1d
                                                  else 5.0 if ours is kernels.maximum_filter1d else 8.0 / 3.0)


# --- design.firwin2 ----------------------------------------------------------------------


def test_firwin2_of_two_points_is_scipys():
    """Only 0 and Nyquist given: a straight line from one gain to the other."""
    for numtaps, gains in ((31, [1.0, 0.5]), (32, [1.0, 0.0])):
        np.testing.assert_allclose(design.firwin2(numtaps, [0.0, 1.0], gains, 6.0),
                                   signal.firwin2(numtaps, [0.0, 1.0], gains, window=("kaiser", 6.0)),
                                   rtol=0, atol=1e-14)


def test_firwin2_leaves_the_callers_frequencies_alone():
    freqs = np.array([0.0, 0.2, 0.2, 0.5, 1.0])  # float64: np.asarray gives this very array
    gains = np.array([1.0, 1.0, 0.5, 0.5, 0.0])
    before = freqs.copy()
    taps = design.firwin2(65, freqs, gains, 6.0)
    assert np.array_equal(freqs, before)
    np.testing.assert_allclose(taps, signal.firwin2(65, before, gains, window=("kaiser", 6.0)), rtol=0, atol=1e-14)


def test_firwin2_refuses_a_value_within_eps_of_a_step():
    """The step at 0.5 moves its lower copy down by eps, onto the value before it:
    scipy refuses that too."""
    freqs, gains = [0.0, 0.5 - EPS, 0.5, 0.5, 1.0], [1.0, 1.0, 1.0, 0.5, 0.5]
    with pytest.raises(ValueError):
        signal.firwin2(31, freqs, gains, window=("kaiser", 6.0))
    with pytest.raises(ValueError, match="within"):
        design.firwin2(31, freqs, gains, 6.0)


def test_firwin2_says_gains_must_be_one_dimensional():
    with pytest.raises(ValueError, match="1-D"):
        design.firwin2(31, [0.0, 0.5, 1.0], [[1.0, 1.0, 1.0]], 6.0)


# --- design: sample rates ----------------------------------------------------------------


def test_butter_and_its_response_at_a_sample_rate_under_one_hertz():
    """Any positive sample rate is a sample rate (scipy takes fs=0.5 too), and a cutoff
    under 1 Hz is a cutoff."""
    ours = design.butter_sos(1, 0.1, "lowpass", 0.5)
    reference = signal.butter(1, 0.1, "lowpass", fs=0.5, output="sos")
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=0)
    np.testing.assert_allclose(design.sos_response(ours, [0.05, 0.2], 0.5),
                               signal.sosfreqz(reference, worN=[0.05, 0.2], fs=0.5)[1], rtol=1e-12)
    np.testing.assert_allclose(design.butter_sos(2, 0.5, "highpass", 44100),
                               signal.butter(2, 0.5, "highpass", fs=44100, output="sos"), rtol=1e-12, atol=0)


@pytest.mark.parametrize("sample_rate", [0.0, float("inf"), float("nan"), -48000.0])
def test_a_sample_rate_that_is_no_rate_is_refused(sample_rate):
    with pytest.raises(ValueError, match="sample rate must be a positive number"):
        design.butter_sos(2, 100.0, "highpass", sample_rate)
    with pytest.raises(ValueError, match="sample rate must be a positive number"):
        design.sos_response(np.array([1.0, 0, 0, 1, 0, 0]), [100.0], sample_rate)


# --- design._pair_sections: scipy's zpk2sos(pairing="nearest") ---------------------------


def _pole_sets():
    """Poles (conjugate pairs and reals, some outside the unit circle) and as many real
    zeros, drawn so that no two distances tie."""
    rng = np.random.default_rng(12)
    for pairs, reals in ((0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (2, 4), (2, 5), (3, 1), (0, 6)):
        for _ in range(3):
            radii = rng.uniform(0.2, 1.6, pairs)
            angles = rng.uniform(0.1, 3.0, pairs)
            upper = radii * np.exp(1j * angles)
            real = rng.uniform(-1.5, 1.5, reals)
            poles = np.concatenate((upper, upper.conj(), real + 0j))
            zeros = rng.uniform(-1.5, 1.5, 2 * pairs + reals)
            yield poles, zeros


def test_pairing_is_scipys_for_any_real_zeros():
    for poles, zeros in _pole_sets():
        ours = design._pair_sections(poles, zeros)
        reference = signal.zpk2sos(zeros, poles, 1.0, pairing="nearest")
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-15)


def test_pairing_refuses_more_zeros_than_poles():
    pair = 0.5 * np.exp(1j * np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="conjugate pairs"):
        design._pair_sections(pair, np.array([0.1, 0.2, 0.3]))


# --- master/chain.py: master_to_file and master_stream -----------------------------------

RATE = 44100
POP_MASTER = load_preset("pop").master


def _song(seconds: float = 3.0, seed: int = 21) -> np.ndarray:
    return music_like(seconds, RATE, seed=seed)


def _decoded(path) -> tuple[np.ndarray, int]:
    """The file read from disk without automix: soundfile for PCM, PyAV for the rest."""
    if str(path).endswith(".wav"):
        data, rate = sf.read(path, dtype="float64", always_2d=True)
        return data.T, rate
    from test_lossy_output import decode_file

    return decode_file(path)


def test_master_to_file_writes_a_24_bit_master_by_default(tmp_path):
    output = tmp_path / "master.wav"
    result = chain.master_to_file(array_source(Audio(_song(), RATE)), output, POP_MASTER)
    assert result.status == "ok" and result.amount == 1.0  # every corrective move, in full
    assert sf.info(output).subtype == "PCM_24"
    lufs, peak, _ = ebur128(*_decoded(output))
    assert lufs == pytest.approx(POP_MASTER.target_lufs, abs=0.05)
    assert peak <= POP_MASTER.ceiling_dbtp + 0.05
    assert result.output_lufs == pytest.approx(lufs, abs=0.02)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.wav"]  # no temporary file left


def test_a_dry_run_writes_nothing_and_says_what_it_would_write(tmp_path):
    output = tmp_path / "master.wav"
    result = chain.master_to_file(array_source(Audio(_song(), RATE)), output, POP_MASTER, dry_run=True)
    assert result.status == "ok" and result.output_lufs == pytest.approx(POP_MASTER.target_lufs, abs=0.05)
    assert list(tmp_path.iterdir()) == []


def _out_of_reach() -> tuple[np.ndarray, object]:
    """A stereo sine's loudness is about its peak level: under a -8 dBTP ceiling it
    cannot read -5 LUFS."""
    t = np.arange(2 * RATE) / RATE
    tone = (0.1 * np.sin(2 * np.pi * 997.0 * t)).astype(np.float32)
    return np.stack([tone, tone]), dataclasses.replace(POP_MASTER, target_lufs=-5.0, ceiling_dbtp=-8.0)


@pytest.mark.parametrize("name", ["master.wav", "master.mp3"])
def test_a_missed_target_writes_nothing(tmp_path, name):
    pytest.importorskip("av")
    tone, settings = _out_of_reach()
    result = chain.master_to_file(array_source(Audio(tone, RATE)), tmp_path / name, settings)
    assert result.status == "target_missed" and result.output_lufs <= -8.0 + 0.1
    assert list(tmp_path.iterdir()) == []  # neither the output nor a scratch file


def test_a_lossy_master_decodes_on_target_and_is_made_in_constant_memory(tmp_path, monkeypatch):
    """A bright master loses about 1 LU to MP3's low-pass: the loop aims the render
    higher so that the file *as decoded* (PyAV, libebur128) reads the target. The render
    is judged from its scratch file, never held whole in memory, and encoded once per
    render."""
    pytest.importorskip("av")
    from automix.io import lossy

    x = _song()
    hiss = signal.sosfilt(signal.butter(8, 16000, "highpass", fs=RATE, output="sos"),
                          np.random.default_rng(3).standard_normal(x.shape))
    bright = (x + 0.2 * hiss).astype(np.float32)

    def whole(self):
        raise AssertionError("the whole render was read into memory")

    monkeypatch.setattr(chain.FileSink, "read", whole)
    encodes = []
    verdict_file = lossy.DecodedCheck.verdict_file
    monkeypatch.setattr(lossy.DecodedCheck, "verdict_file", lambda self, *a, **k: encodes.append(1) or verdict_file(self, *a, **k))
    output = tmp_path / "new" / "folder" / "master.mp3"  # its folders made too
    result = chain.master_to_file(array_source(Audio(bright, RATE)), output, POP_MASTER)
    assert result.status == "ok" and result.decoded["codec"] == "mp3"
    assert 1 <= len(encodes) <= result.renders
    lufs, peak, _ = ebur128(*_decoded(output))
    assert lufs == pytest.approx(POP_MASTER.target_lufs, abs=0.05)
    assert result.decoded["integrated_lufs"] == pytest.approx(lufs, abs=0.02)
    assert result.output_lufs > POP_MASTER.target_lufs + 0.5  # the render itself louder: MP3 takes it back
    assert peak <= POP_MASTER.ceiling_dbtp + 0.1
    assert sorted(p.name for p in output.parent.iterdir()) == ["master.mp3"]


def test_a_reference_match_measures_the_sources_mid_and_side(tmp_path):
    from automix.master.reference import analyze_reference

    reference_path = tmp_path / "reference.wav"
    sf.write(reference_path, _song(6.0, seed=7).T, RATE, subtype="FLOAT")
    reference = analyze_reference(reference_path)
    x = _song(seed=22)
    x[1] *= 0.6
    _, result = chain.master(Audio(x, RATE), POP_MASTER, reference=reference)
    assert result.status == "ok" and result.reference is not None and result.side_eq is not None


@pytest.mark.parametrize("frames", [int(0.4 * RATE), int(0.6 * RATE)])
def test_the_shortest_masters(frames):
    """One 400 ms loudness block is enough (BS.1770's gating block): 0.4 s and more is
    mastered."""
    y, result = chain.master(Audio(_song(1.0)[:, :frames], RATE), POP_MASTER)
    assert y.shape == (2, frames) and result.status in ("ok", "quieter")
    assert ebur128(y, RATE)[0] == pytest.approx(result.output_lufs, abs=0.05)


@pytest.mark.parametrize(("louder_lu", "design"), [(0.1, "wideband"), (2.0, "split-band")])
def test_the_limiter_chosen_and_the_reduction_reported_are_the_renders(louder_lu, design):
    """A kick under a pad, the kicks at -1 dBTP: 0.1 LU louder takes 0.4 dB of limiting
    (wideband), 2 LU louder 5.4 dB (split-band, tests/test_limiter_choice.py). Every kick
    is limited alike, so the programme reduction the result reports (the chosen model's)
    is the deepest one the render's limiter measured."""
    x = kick_and_pad(4.0)
    x = (x * 10 ** ((-1.0 - true_peak_8x_db(x)) / 20)).astype(np.float32)
    settings = dataclasses.replace(POP_MASTER, target_lufs=round(ebur128_lufs(x) + louder_lu, 2))
    y, result = chain.master(Audio(x, FS), settings, amount=0.0, over_limit="force")
    assert result.limiter_design == design
    assert result.limiter_programme_gain_reduction_db == pytest.approx(result.limiter_max_gain_reduction_db, abs=0.1)
    assert ebur128_lufs(y) == pytest.approx(settings.target_lufs, abs=0.05)


class _Counting:
    """A sink that counts the blocks it is given."""

    def __init__(self) -> None:
        self.blocks = 0

    def start(self) -> None:
        pass

    def write(self, block) -> None:
        self.blocks += 1

    def finish(self) -> None:
        pass

    def read(self):
        raise AssertionError("not asked")


def test_an_unknown_codec_is_refused_before_any_render():
    sink = _Counting()
    with pytest.raises(AutomixError, match="nosuchcodec"):
        chain.master_stream(array_source(Audio(_song(1.0), RATE)), POP_MASTER, sink, codec_safe="nosuchcodec")
    assert sink.blocks == 0


def test_codec_safe_lowers_the_limiter_for_decoded_overs_and_encodes_each_render_once(monkeypatch):
    """Pink noise mastered loud: MP3 decodes it over the ceiling at first, so the limiter
    is lowered until it does not; the loop re-renders anyway, so each render is
    encoded once (codec_safe_gain_db with verify=False), never twice in a row."""
    pytest.importorskip("av")
    from automix.master import codecs

    x = (0.1 * pink_noise(2.0, RATE, seed=2)).astype(np.float32)
    settings = dataclasses.replace(POP_MASTER, target_lufs=-10.0, max_limiting_db=20.0)
    events = []

    class Logged(chain.ArraySink):
        def start(self) -> None:
            events.append("render")
            super().start()

    peaks = codecs._peaks
    monkeypatch.setattr(codecs, "_peaks", lambda *a, **k: events.append("encode") or peaks(*a, **k))
    sink = Logged(2, x.shape[1])
    result = chain.master_stream(array_source(Audio(x, RATE)), settings, sink, codec_safe="mp3", over_limit="force")
    assert result.codec_attenuation_db > 0 and set(result.codec_true_peaks_dbtp) == {"mp3@320"}  # its default bitrate
    assert max(result.codec_true_peaks_dbtp.values()) <= settings.ceiling_dbtp
    assert events.count("encode") >= 2 and "encode encode" not in " ".join(events)
    assert ebur128(sink.samples, RATE)[1] <= settings.ceiling_dbtp + 0.05


# --- master/loop.py: choose --------------------------------------------------------------


def test_a_sine_is_not_chosen_louder_than_the_limiters_threshold():
    """A stereo 997 Hz sine reads its peak level (libebur128), and a limiter holds its
    peak at its threshold, ceiling - LIMITER_HEADROOM_DB: under a -8 dBTP ceiling it
    can read -8.15 LUFS unlimited, but not -8.05."""
    from automix.master.loop import LIMITER_HEADROOM_DB, choose, collect_features

    tone, _ = _out_of_reach()
    assert ebur128(tone, RATE)[0] == pytest.approx(-20.0, abs=0.05)
    features = collect_features(tone, RATE)
    below = choose(features, dataclasses.replace(POP_MASTER, target_lufs=-8.15, ceiling_dbtp=-8.0), "fail")
    assert below.status == "ok" and below.prediction.programme_gain_reduction_db == pytest.approx(0.0, abs=0.01)
    above = choose(features, dataclasses.replace(POP_MASTER, target_lufs=-8.05, ceiling_dbtp=-8.0), "fail")
    assert above.status == "target_missed" and "out of reach" in above.message
    assert above.prediction.integrated_lufs == pytest.approx(-8.0 - LIMITER_HEADROOM_DB, abs=0.02)


# --- jobs/mix_folder.py: the bus measured as it is rendered, and its master -------------


def _short_stems(tmp_path, shorter: str | None = None):
    """The first 2.5 s of the sample pop song's stems (``shorter``: that one 1 s shorter)."""
    stems = short_copy("pop_song", tmp_path / "stems", seconds=2.5)
    if shorter is not None:
        data, rate = sf.read(stems / shorter, dtype="float32", always_2d=True)
        sf.write(stems / shorter, data[: int(1.5 * rate)], rate, subtype="FLOAT")
    return stems


def test_a_mix_of_stems_of_two_lengths_to_mp3_with_its_stems_exported(tmp_path, monkeypatch):
    """The bus is as long as the longest stem (the shorter one padded) and measured as it
    is written (the master reads it once less); an MP3 is judged as decoded; the exported
    stems hold the rendered stems; --amount reaches the master."""
    pytest.importorskip("av")
    stems = _short_stems(tmp_path, shorter="bass.wav")
    passes = []
    measure = chain.measure_source
    monkeypatch.setattr(chain, "measure_source", lambda *a, **k: passes.append(1) or measure(*a, **k))
    result = mix_folder(stems, tmp_path / "mix.mp3", POP, OutputOptions(amount=0.5), export_stems=tmp_path / "out")
    assert result.status == "ok" and result.output == tmp_path / "mix.mp3" and passes == []
    assert result.master.amount == 0.5 and result.master.decoded["codec"] == "mp3"
    decoded, decoded_rate = _decoded(tmp_path / "mix.mp3")
    assert decoded.shape[1] >= 2.5 * decoded_rate
    assert ebur128(decoded, decoded_rate)[0] == pytest.approx(POP.master.target_lufs, abs=0.05)
    exported = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in exported] == [f"{i:02d}_{p.stem}.wav" for i, p in enumerate(sorted(stems.iterdir()), 1)]
    for path in exported:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        assert data.shape[0] == int(2.5 * rate) and np.abs(data).max() > 1e-3


def test_a_loud_bus_is_not_lowered_for_its_peaks_when_a_master_follows(tmp_path):
    """Set to -12 LUFS, the bus's peaks pass -1 dBTP: a bus that is mastered keeps the
    planned level (the master's limiter sets the true peak), so the master reads it at
    -12 LUFS."""
    stems = _short_stems(tmp_path)
    preset = dataclasses.replace(POP, mix=dataclasses.replace(POP.mix, bus_lufs=-12.0))
    result = mix_folder(stems, tmp_path / "mix.wav", preset, OutputOptions(bit_depth="16"))
    assert result.master.input_true_peak_dbtp > -1.0
    assert result.master.input_lufs == pytest.approx(-12.0, abs=0.01)
    assert result.master.status == "ok"
    assert ebur128(*_decoded(tmp_path / "mix.wav"))[0] == pytest.approx(POP.master.target_lufs, abs=0.05)


def _behind_threads() -> int:
    return sum(t.name == "automix-behind" for t in threading.enumerate())


def test_a_dry_run_mix_writes_nothing_and_its_bus_meter_leaves_no_thread(tmp_path, monkeypatch):
    """Without a helper process the bus's meter runs on a thread of this one; its last
    question ends that thread."""
    monkeypatch.setattr(helper_module, "ENABLED", False)
    monkeypatch.setattr(loudness, "THREADS", 2)
    stems = _short_stems(tmp_path)
    before = _behind_threads()
    result = mix_folder(stems, tmp_path / "mix.wav", POP, OutputOptions(dry_run=True))
    time.sleep(0.1)
    assert _behind_threads() == before
    assert result.status == "ok" and result.output is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stems"]
    assert result.report["final"]["integrated_lufs"] == pytest.approx(POP.master.target_lufs, abs=0.05)


def test_a_mix_whose_master_misses_its_target_writes_nothing_and_reports_the_miss(tmp_path):
    stems = _short_stems(tmp_path)
    preset = dataclasses.replace(POP, master=dataclasses.replace(POP.master, target_lufs=-4.0, max_limiting_db=1.0))
    result = mix_folder(stems, tmp_path / "mix.wav", preset, OutputOptions())
    assert result.status == "target_missed" and result.output is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stems"]
    # the report reads the master that was not written (its samples)
    assert result.report["final"]["integrated_lufs"] == pytest.approx(result.master.output_lufs, abs=0.02)
    assert result.report["final"]["integrated_lufs"] < -4.5


# --- master/chain.py: SourceMeter --------------------------------------------------------


def test_a_signal_measured_in_whole_blocks_and_a_tail_reads_as_the_file_and_can_be_asked_twice(tmp_path):
    """Whole blocks in one piece, then a tail shorter than a block: the result is the
    file's (as measure_source reads it), and asked again it is the same."""
    from automix.io.stream import BLOCK_FRAMES, file_source

    x = music_like((2 * BLOCK_FRAMES + 1000) / RATE, RATE, seed=23)
    assert x.shape[1] == 2 * BLOCK_FRAMES + 1000
    path = tmp_path / "bus.wav"
    sf.write(path, x.T, RATE, subtype="FLOAT")
    from_file = chain.measure_source(file_source(path))
    meter = chain.SourceMeter(RATE, 2, x.shape[1])
    meter.add(x[:, : 2 * BLOCK_FRAMES])
    meter.add(x[:, 2 * BLOCK_FRAMES :])
    for measured in (meter.result(), meter.result()):
        assert measured.analysis == from_file.analysis
        assert np.array_equal(measured.band_uncertainty_db, from_file.band_uncertainty_db)
        assert pickle.dumps(measured.glue_detector) == pickle.dumps(from_file.glue_detector)
