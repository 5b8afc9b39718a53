"""The mix's cheaper measurements against the straightforward ones (issue 11).

Each shortcut the mix takes for speed is checked here against the plain computation it
replaces, written out in the test (or an independent meter, libebur128 via pyebur128):
the channel energies that give every stem's and the bus's loudness without summing,
the kept stems the render reads back instead of running the chain again, the
compressor's subnormal guard, the analyzer's float32 spectrum and optional true peak,
and the pitch frames read by seeking.
"""

import math

import numpy as np
import pytest
import soundfile as sf
from scipy import signal
from signals import pink_noise, sine
from test_loudness import ebur128
from test_renderer import plan_for

import automix.io.stream as stream_module
from automix.dsp import dynamics
from automix.io.audio import Audio
from automix.io.stream import array_source, file_source
from automix.jobs.mix_folder import _fitted, _gather_frames, _read_frames, _seekable
from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ, Analyzer, analyze
from automix.mix.balancer import CompressorPlan, EqCut, MixPlan
from automix.mix.renderer import ChannelEnergies, pan, pan_gains, render_stream

RATE = 44100


def test_pan_gains_are_the_gains_pan_applies():
    x = pink_noise(0.2, RATE, channels=2, seed=1).astype(np.float32)
    for position in (-1.0, -0.4, 0.0, 0.3, 1.0):
        for channels in (1, 2):
            gains = pan_gains(channels, position).astype(np.float32)
            assert np.array_equal(pan(x[:channels], position), gains @ x[:channels] if channels == 2 else gains * x[0])


def test_channel_energies_give_the_loudness_of_panned_weighted_sums():
    """Mono and stereo stems, panned and weighted: the loudness from the channels' granule
    energies equals libebur128 on the bus actually summed."""
    mono = pink_noise(4.0, RATE, channels=1, seed=31).astype(np.float32) * np.float32(0.1)
    stereo = pink_noise(4.0, RATE, channels=2, seed=32).astype(np.float32) * np.float32(0.1)
    bass = sine(-18, 4.0, RATE, 55.0, channels=1)  # low: where float32 K-weighting would drift
    bass[:, : RATE] = 0  # starts late: the sum's gating differs from each part's
    stems, pans = [mono, stereo, bass], [-0.5, 0.3, 0.0]
    meter = ChannelEnergies(RATE, [x.shape[0] for x in stems])
    for start in range(0, mono.shape[1], 12345):
        meter.add([meter.weigh(k, x[:, start : start + 12345]) for k, x in enumerate(stems)])
    gains = [pan_gains(x.shape[0], p) for x, p in zip(stems, pans)]
    for weights in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.5, 2.0, 1.0), (1.0, -1.0, 0.7)):
        bus = sum(np.float32(w) * pan(x, p) for w, x, p in zip(weights, stems, pans))
        assert meter.loudness(meter.mixing_matrix(weights, gains)) == pytest.approx(ebur128(bus, RATE)[0], abs=0.01)


def _case():
    seconds = 4.0
    kick = pink_noise(seconds, RATE, channels=1, seed=41).astype(np.float32) * np.float32(0.2)
    kick[:, :: RATE // 2] += np.float32(0.8)
    keys = pink_noise(seconds, RATE, channels=2, seed=42).astype(np.float32) * np.float32(0.1)
    keys[:, RATE : 2 * RATE] = 0  # digital silence inside
    plans = (plan_for("kick", target_lufs=-9.0, group="drums", group_lufs=-8.0, highpass_hz=30.0,
                      compressor=CompressorPlan(-24.0, 4.0, 5.0, 60.0, "t")),
             plan_for("keys", target_lufs=-12.0, highpass_hz=150.0, pan_position=-0.4,
                      eq_cuts=[EqCut(frequency_hz=2500.0, gain_db=-2.0, q=2.0, rule="t")],
                      compressor=CompressorPlan(-30.0, 3.0, 10.0, 120.0, "t")))
    return [kick, keys], MixPlan(plans, "kick", "test", -16.0)


@pytest.mark.parametrize("mastering_follows", [True, False])
def test_a_stem_whose_kept_copy_failed_is_rendered_again_identically(monkeypatch, mastering_follows):
    """A full disk: the kept copy of a stem is unusable, so its chain runs again in the
    render: the same samples, bit for bit."""
    stems, plan = _case()

    def run():
        bus, exported = [], [[], []]
        result = render_stream([array_source(Audio(x, RATE), block_frames=30000) for x in stems], RATE, plan, bus.append,
                               stem_sinks=[e.append for e in exported], mastering_follows=mastering_follows)
        return result, np.concatenate(bus, axis=1), [np.concatenate(e, axis=1) for e in exported]

    kept, kept_bus, kept_stems = run()
    original = stream_module.SignalSpill.write
    failed = []

    def failing(self, block):
        if self.channels == 2:  # the keys stem's copy
            self.usable = False
            failed.append(self)
        return original(self, block)

    monkeypatch.setattr(stream_module.SignalSpill, "write", failing)
    again, again_bus, again_stems = run()
    assert failed
    assert np.array_equal(kept_bus, again_bus)
    assert all(np.array_equal(a, b) for a, b in zip(kept_stems, again_stems))
    assert kept.bus_gain_db == again.bus_gain_db and kept.bus_rule == again.bus_rule


def _reference_compress(x, rate, threshold_db, ratio, attack_ms, release_ms, knee_db=6.0):
    """The compressor as first written (no guard, numpy's mean of squares), in float32."""
    def one_pole(v, ms):
        c = math.exp(-1000.0 / (ms * rate))
        return signal.lfilter(np.array([1 - c], np.float32), np.array([1, -c], np.float32), v,
                              zi=np.array([c * v[0]], np.float32))[0]

    power = np.mean(np.square(x), axis=0, dtype=np.float32)
    smoothed = np.maximum(one_pole(power, attack_ms), np.float32(1e-20))
    over = np.log10(smoothed)
    over *= np.float32(10.0)
    over -= np.float32(threshold_db)
    slope, half = np.float32(1 - 1 / ratio), np.float32(knee_db / 2)
    reduction = np.where(over >= half, slope * over, slope * np.maximum(over + half, 0) ** 2 / np.float32(2 * knee_db))
    gain_db = -np.maximum(reduction, one_pole(reduction, release_ms))
    return x * np.power(np.float32(10.0), gain_db / np.float32(20.0), dtype=np.float32), float(-gain_db.min())


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_the_guarded_compressor_is_bit_identical_to_the_plain_one(channels):
    """The subnormal guard and the mean of squares without a copy change no sample, even
    across long digital silence (where the guard acts) and very quiet passages."""
    x = pink_noise(3.0, RATE, channels=channels, seed=7).astype(np.float32) * np.float32(0.3)
    x[:, RATE // 2 : 2 * RATE] = 0  # 1.5 s of digital silence: the filters' states decay to nothing
    x[:, 2 * RATE : 2 * RATE + 4410] *= np.float32(1e-7)  # -150 dB
    expected, reduction = _reference_compress(x, RATE, -24.0, 4.0, 5.0, 80.0)
    whole = dynamics.compress(x, RATE, threshold_db=-24.0, ratio=4.0, attack_ms=5.0, release_ms=80.0)
    assert np.array_equal(whole.samples, expected) and whole.max_gain_reduction_db == reduction
    streaming = dynamics.StreamingCompressor(RATE, channels, threshold_db=-24.0, ratio=4.0, attack_ms=5.0, release_ms=80.0)
    blocks = [streaming.process(x[:, s : s + 8192]) for s in range(0, x.shape[1], 8192)]
    assert np.abs(np.concatenate(blocks, axis=1) - expected).max() <= 1e-6  # carried state: float rounding only


def test_the_spectrum_equals_a_float64_welch_of_the_same_frames():
    x = pink_noise(6.0, RATE, channels=2, seed=9).astype(np.float32) * np.float32(0.2)
    x += sine(-30, 6.0, RATE, 1000.0, channels=2) + np.float32(0.01)  # a tone and a DC offset
    levels = np.array(analyze(Audio(x, RATE)).band_levels_db)
    segment = 8192
    starts = np.linspace(0, x.shape[1] - segment, min((x.shape[1] - segment) // (segment // 2) + 1, 512)).astype(np.int64)
    window = signal.get_window("hann", segment)
    frames = np.stack([x[:, s : s + segment].astype(np.float64) for s in starts], axis=1)
    frames = signal.detrend(frames, axis=-1, type="constant") * window
    psd = (np.abs(np.fft.rfft(frames, axis=-1)) ** 2).sum(axis=(0, 1))
    freqs = np.fft.rfftfreq(segment, 1 / RATE)
    total = psd[1:].sum()
    for level, centre in zip(levels, THIRD_OCTAVE_CENTRES_HZ):
        inside = (freqs >= centre / 2 ** (1 / 6)) & (freqs < centre * 2 ** (1 / 6))
        assert level == pytest.approx(10 * math.log10(psd[inside].sum() / total), abs=1e-3)


def test_the_analysis_without_true_peak_differs_only_there():
    x = pink_noise(3.0, RATE, channels=2, seed=12).astype(np.float32) * np.float32(0.25)
    full = analyze(Audio(x, RATE))
    quick = Analyzer(RATE, 2, total_frames=x.shape[1], true_peak=False)
    quick.add(x)
    quick = quick.result()
    peak_db = 20 * math.log10(float(np.abs(x).max()))
    assert quick.true_peak_dbtp == pytest.approx(peak_db, abs=1e-9) == pytest.approx(full.sample_peak_dbfs, abs=1e-9)
    assert full.true_peak_dbtp >= quick.true_peak_dbtp
    assert quick.plr_db == pytest.approx(quick.true_peak_dbtp - quick.integrated_lufs)
    differ = ("true_peak_dbtp", "plr_db", "true_peak_measured")
    same = {k: v for k, v in vars(full).items() if k not in differ}
    assert same == {k: v for k, v in vars(quick).items() if k not in differ}
    assert full.true_peak_measured and not quick.true_peak_measured


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_pitch_frames_read_in_place_equal_a_second_pass(tmp_path, suffix):
    x = pink_noise(3.0, RATE, channels=2, seed=3).astype(np.float32) * np.float32(0.3)
    path = tmp_path / f"stem{suffix}"
    sf.write(str(path), x.T, RATE, subtype="PCM_24")
    source = _fitted(file_source(path), x.shape[1] + RATE)  # padded with a second of silence
    size = 2048
    chosen = np.array([0, 3, 17, x.shape[1] // size - 1, x.shape[1] // size, x.shape[1] // size + 5])  # into the padding
    assert _seekable(path, source)
    assert np.array_equal(_read_frames(path, 2, chosen, size), _gather_frames(source, chosen, size))
