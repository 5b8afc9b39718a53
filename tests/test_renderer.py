"""The renderer, checked on rendered audio against answers worked out by hand.

Every expected number here comes from the signal or from textbook formulas (pan law,
Butterworth magnitude, compressor static curve), never from the code under test.
"""

import math

import numpy as np
import pytest
from signals import pink_noise, sine
from test_loudness import ebur128

from automix.io.audio import Audio
from automix.io.stream import array_source
from automix.measure import loudness
from automix.mix.balancer import CompressorPlan, EqCut, MixPlan, StemPlan
from automix.mix.renderer import (
    BUS_CEILING_DBTP,
    ChannelEnergies,
    ProgrammePeakMeter,
    pan,
    process_stem,
    programme_peak_dbtp,
    render,
    render_stream,
)

RATE = 44100


def plan_for(name="x", *, target_lufs=-20.0, gain_db=0.0, highpass_hz=None, eq_cuts=(), compressor=None, pan_position=0.0,
             group="", group_lufs=0.0) -> StemPlan:
    return StemPlan(name=name, role="other", role_reason="test", target_lufs=target_lufs, gain_db=gain_db, gain_rule="test",
                    highpass_hz=highpass_hz, highpass_order=2, highpass_rule="test", eq_cuts=tuple(eq_cuts),
                    compressor=compressor, compressor_rule="test", pan=pan_position, pan_rule="test",
                    group=group, group_lufs=group_lufs)


def rms_db(x: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.square(x, dtype=np.float64))))


def tone_level_db(x: np.ndarray, frequency_hz: float) -> float:
    """Level of one sine component (Hann-windowed FFT, bin power around the peak)."""
    window = np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x * window)) ** 2
    k = round(frequency_hz * x.size / RATE)
    return 10 * math.log10(spectrum[k - 3 : k + 4].sum())


# --------------------------------------------------------------------------- pan law
def test_mono_hard_left_has_no_right_channel_and_centre_is_minus_3_db_per_side():
    mono = sine(-10, 1.0, RATE, 440.0, channels=1)
    left = pan(mono, -1.0)
    assert np.all(left[1] == 0.0)
    assert rms_db(left[0]) == pytest.approx(rms_db(mono), abs=0.01)
    centre = pan(mono, 0.0)
    assert rms_db(centre[0]) - rms_db(mono) == pytest.approx(-3.01, abs=0.02)  # constant power: cos(pi/4)
    assert rms_db(centre[1]) - rms_db(mono) == pytest.approx(-3.01, abs=0.02)
    # half left: cos / sin of 3pi/8... measured against the formula's numbers
    half = pan(mono, -0.5)
    assert rms_db(half[0]) - rms_db(mono) == pytest.approx(20 * math.log10(math.cos(math.pi / 8)), abs=0.02)
    assert rms_db(half[1]) - rms_db(mono) == pytest.approx(20 * math.log10(math.sin(math.pi / 8)), abs=0.02)
    # constant power: loudness of the centred stereo equals the mono original (BS.1770)
    assert ebur128(centre, RATE)[0] == pytest.approx(ebur128(mono, RATE)[0], abs=0.05)


def test_stereo_stem_keeps_its_sides_when_panned():
    left_tone = sine(-12, 1.0, RATE, 440.0, channels=1)[0]
    right_tone = sine(-12, 1.0, RATE, 1900.0, channels=1)[0]
    stereo = np.stack([left_tone, right_tone])
    for position in (-0.6, 0.0, 0.6):
        out = pan(stereo, position)
        # left output holds only the left input's tone, right only the right's: no swap
        assert tone_level_db(out[0], 440.0) - tone_level_db(out[0], 1900.0) > 60
        assert tone_level_db(out[1], 1900.0) - tone_level_db(out[1], 440.0) > 60
    out = pan(stereo, 0.6)  # panned right: the left side is turned down, the right kept
    assert rms_db(out[1]) == pytest.approx(rms_db(right_tone), abs=0.01)
    assert rms_db(out[0]) < rms_db(left_tone) - 3


def test_rendered_stem_is_panned_and_lands_on_its_loudness():
    mono = sine(-20, 2.0, RATE, 440.0, channels=1)
    out, _, _ = process_stem(mono, RATE, plan_for(target_lufs=-18.0, pan_position=1.0))
    assert np.abs(out[0]).max() < 1e-6  # hard right: nothing on the left
    assert ebur128(out, RATE)[0] == pytest.approx(-18.0, abs=0.1)


# --------------------------------------------------------------------------- filters and dynamics
def test_highpass_is_3_db_down_at_its_cutoff_and_12_db_an_octave_below():
    cutoff = 200.0
    probe = (sine(-20, 2.0, RATE, cutoff, channels=1) + sine(-20, 2.0, RATE, 4000.0, channels=1)
             + sine(-20, 2.0, RATE, cutoff / 2, channels=1))
    out, _, _ = process_stem(probe, RATE, plan_for(highpass_hz=cutoff, pan_position=-1.0))
    left = out[0][RATE // 2 :]
    reference = probe[0][RATE // 2 :]
    def attenuation(f):  # relative to the 4 kHz tone, which a 200 Hz high-pass leaves alone
        return (tone_level_db(left, f) - tone_level_db(left, 4000.0)) - (tone_level_db(reference, f) - tone_level_db(reference, 4000.0))
    # 2nd-order Butterworth: |H|^2 = 1 / (1 + (fc/f)^4)
    assert attenuation(cutoff) == pytest.approx(-10 * math.log10(2), abs=0.2)
    assert attenuation(cutoff / 2) == pytest.approx(-10 * math.log10(17), abs=0.3)


def test_masking_cut_depth_is_measured_on_the_rendered_spectrum():
    probe = sine(-20, 2.0, RATE, 1000.0, channels=1) + sine(-20, 2.0, RATE, 8000.0, channels=1)
    cut = EqCut(frequency_hz=1000.0, gain_db=-4.0, q=2.0, rule="test")
    out, _, _ = process_stem(probe, RATE, plan_for(eq_cuts=[cut], pan_position=-1.0))
    dry, wet = probe[0][RATE // 2 :], out[0][RATE // 2 :]
    depth = (tone_level_db(wet, 1000.0) - tone_level_db(wet, 8000.0)) - (tone_level_db(dry, 1000.0) - tone_level_db(dry, 8000.0))
    assert depth == pytest.approx(-4.0, abs=0.3)


def test_compressor_ratio_measured_on_a_stepped_tone():
    """A tone 10 dB under, then 10 dB over the threshold: 4:1 leaves 2.5 dB of the 10 over."""
    threshold, ratio = -20.0, 4.0
    quiet = sine(-30 + 3.0103, 2.0, RATE, 1000.0, channels=1)  # RMS -30 dB
    loud = sine(-10 + 3.0103, 2.0, RATE, 1000.0, channels=1)  # RMS -10 dB
    stepped = np.concatenate([quiet, loud], axis=1)
    plan = plan_for(compressor=CompressorPlan(threshold, ratio, 5.0, 50.0, "test"), pan_position=-1.0)
    out, _, reduction_db = process_stem(stepped, RATE, plan)
    steady_quiet = rms_db(out[0][RATE : 2 * RATE])
    steady_loud = rms_db(out[0][3 * RATE : 4 * RATE])
    assert steady_loud - steady_quiet == pytest.approx(10 + 10 / ratio, abs=0.3)
    assert reduction_db == pytest.approx(10 * (1 - 1 / ratio), abs=0.5)


# --------------------------------------------------------------------------- groups and the bus
def test_group_is_scaled_together_onto_its_level():
    """Two stems of one group that play at different moments: their sum, not each,
    lands on the group's loudness; their balance inside the group is kept."""
    a = sine(-20, 4.0, RATE, 300.0, channels=1)
    b = sine(-20, 4.0, RATE, 600.0, channels=1)
    a[:, 2 * RATE :] = 0  # a plays the first half, b the second
    b[:, : 2 * RATE] = 0
    vocal = sine(-20, 4.0, RATE, 1000.0, channels=1)
    stems = [a, b, vocal]
    plans = (plan_for("a", target_lufs=-6.0, group="drums", group_lufs=-3.0),
             plan_for("b", target_lufs=-9.0, group="drums", group_lufs=-3.0),
             plan_for("v", target_lufs=0.0, group="vocals", group_lufs=0.0))
    result = render(stems, RATE, MixPlan(plans, "v", "test", -20.0), keep_stems=True, mastering_follows=True)
    drums = result.stems[0].samples + result.stems[1].samples
    vocals = result.stems[2].samples
    assert ebur128(drums, RATE)[0] - ebur128(vocals, RATE)[0] == pytest.approx(-3.0, abs=0.1)
    assert ebur128(result.stems[0].samples, RATE)[0] - ebur128(result.stems[1].samples, RATE)[0] == pytest.approx(3.0, abs=0.1)
    assert result.groups["drums"]["stems"] == 2


def with_clicks(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[:, 0] = 1.0  # a click at 0 dBFS at the very start and end (a badly cut excerpt)
    x[:, -1] = -1.0
    return x


def test_a_click_at_each_end_does_not_set_the_bus_level():
    music = [pink_noise(6.0, RATE, channels=2, seed=s).astype(np.float32) * np.float32(0.05) for s in (1, 2)]
    plans = (plan_for("a", target_lufs=-3.0), plan_for("b", target_lufs=-3.0))
    plan = MixPlan(plans, None, "test", -14.0)  # loud enough that the programme peak matters
    clean = render(music, RATE, plan)
    clicked = render([with_clicks(x) for x in music], RATE, plan)
    assert clicked.bus_gain_db == pytest.approx(clean.bus_gain_db, abs=0.5)
    # the unmastered bus stays safe: its programme peak under the ceiling
    assert programme_peak_dbtp(clicked.mix, RATE)[0] <= BUS_CEILING_DBTP + 0.05
    # mastering follows: the float bus goes on at its loudness, never lowered for peaks
    mastered = render([with_clicks(x) for x in music], RATE, plan, mastering_follows=True)
    assert loudness.integrated_loudness(mastered.mix, RATE, absolute_gate_lufs=-120) == pytest.approx(-14.0, abs=0.05)


def test_programme_peak_follows_recurring_hits_not_one_event():
    x = np.zeros((1, 5 * RATE), np.float32)
    x[0, :: RATE // 4] = 0.25  # recurring hits at -12 dBFS, 20 of them
    x[0, RATE + 7] = 1.0  # one event at 0 dBFS
    peak_db, _, outliers = programme_peak_dbtp(x, RATE)
    assert peak_db == pytest.approx(-12.0, abs=0.7)  # true peak of an impulse reads a little over its sample
    assert len(outliers) == 1 and outliers[0][0] == pytest.approx(1.0, abs=0.011)


def test_render_is_deterministic():
    music = [pink_noise(2.0, RATE, channels=2, seed=s).astype(np.float32) * np.float32(0.1) for s in (3, 4)]
    plans = (plan_for("a", target_lufs=-3.0, group="harmony", group_lufs=0.0,
                      compressor=CompressorPlan(-12.0, 3.0, 5.0, 80.0, "t")),
             plan_for("b", target_lufs=-6.0, group="harmony", group_lufs=0.0, highpass_hz=100.0, pan_position=0.4))
    plan = MixPlan(plans, None, "test", -20.0)
    assert np.array_equal(render(music, RATE, plan).mix, render(music, RATE, plan).mix)


# --------------------------------------------------------------------------- streaming render
def streaming_case():
    """Mono and stereo stems, one shorter (padded with silence), with every stage of the
    chain and a group, so the streaming render has every kind of state to carry."""
    seconds = 7.0
    kick = pink_noise(seconds, RATE, channels=1, seed=11).astype(np.float32) * np.float32(0.2)
    kick[:, :: RATE // 2] += np.float32(0.8)  # hits
    bass = sine(-14, seconds, RATE, 55.0, channels=1) + sine(-20, seconds, RATE, 110.0, channels=1)
    keys = pink_noise(5.3, RATE, channels=2, seed=12).astype(np.float32) * np.float32(0.1)  # shorter
    vocal = (sine(-16, seconds, RATE, 440.0, channels=1) * (1 + np.sin(np.arange(int(seconds * RATE)) * 2 * np.pi * 4 / RATE))
             ).astype(np.float32)
    plans = (plan_for("kick", target_lufs=-9.0, group="drums", group_lufs=-6.0, highpass_hz=30.0,
                      compressor=CompressorPlan(-24.0, 4.0, 5.0, 60.0, "t")),
             plan_for("bass", target_lufs=-8.0, group="drums", group_lufs=-6.0,
                      eq_cuts=[EqCut(frequency_hz=110.0, gain_db=-3.0, q=1.5, rule="t")]),
             plan_for("keys", target_lufs=-12.0, highpass_hz=150.0, pan_position=-0.4,
                      eq_cuts=[EqCut(frequency_hz=2500.0, gain_db=-2.0, q=2.0, rule="t")]),
             plan_for("vocal", target_lufs=-6.0, group="vocals", group_lufs=-6.0, highpass_hz=90.0, pan_position=0.1,
                      compressor=CompressorPlan(-20.0, 3.0, 10.0, 120.0, "t")))
    return [kick, bass, keys, vocal], MixPlan(plans, "vocal", "test", -16.0)


@pytest.mark.parametrize("mastering_follows", [True, False])
@pytest.mark.parametrize("keep_stems", [False, True])
def test_streaming_render_equals_the_whole_signal_render(mastering_follows, keep_stems):
    stems, plan = streaming_case()
    frames = max(x.shape[1] for x in stems)
    whole = render([np.pad(x, ((0, 0), (0, frames - x.shape[1]))) for x in stems], RATE, plan, keep_stems=keep_stems,
                   mastering_follows=mastering_follows)
    # odd block sizes, different per stem: the render cuts them to one grid
    sources = [array_source(Audio(x, RATE), block_frames=size) for x, size in zip(stems, (10007, 65536, 4096, 33333))]
    bus, exported = [], [[] for _ in stems]
    streamed = render_stream(sources, RATE, plan, bus.append, stem_sinks=[e.append for e in exported] if keep_stems else None,
                             mastering_follows=mastering_follows)
    mix = np.concatenate(bus, axis=1)
    assert mix.shape == whole.mix.shape == (2, frames)
    assert np.abs(mix - whole.mix).max() < 1e-5
    assert streamed.bus_gain_db == pytest.approx(whole.bus_gain_db, abs=1e-3)
    assert streamed.bus_rule == whole.bus_rule
    assert streamed.bus_frames == frames
    for a, b in zip(streamed.stems, whole.stems):
        assert (a.name, a.samples) == (b.name, None)
        assert a.makeup_db == pytest.approx(b.makeup_db, abs=1e-3)
        assert a.group_gain_db == pytest.approx(b.group_gain_db, abs=1e-3)
        assert a.compressor_max_gain_reduction_db == pytest.approx(b.compressor_max_gain_reduction_db, abs=1e-3)
    assert streamed.groups.keys() == whole.groups.keys()
    for name, group in whole.groups.items():
        for key, value in group.items():
            assert streamed.groups[name][key] == pytest.approx(value, abs=0.011)
    if keep_stems:
        stems_out = [np.concatenate(e, axis=1) for e in exported]
        total = np.zeros_like(mix)
        for x in stems_out:
            total += x
        assert np.array_equal(total, mix)  # the bus is the plain sum of the exported stems
        for x, reference in zip(stems_out, whole.stems):
            assert np.abs(x - reference.samples).max() < 1e-5
    if not mastering_follows:  # the unmastered bus is kept under the ceiling, measured independently
        assert programme_peak_dbtp(mix, RATE)[0] <= BUS_CEILING_DBTP + 0.05


def _render_files(paths, plan, keep_stems: bool, mastering_follows: bool):
    from automix.io.stream import file_source

    bus, exported = [], [[] for _ in paths]
    streamed = render_stream([file_source(p) for p in paths], RATE, plan, bus.append,
                             stem_sinks=[e.append for e in exported] if keep_stems else None,
                             mastering_follows=mastering_follows)
    return streamed, np.concatenate(bus, axis=1), [np.concatenate(e, axis=1) for e in exported if e]


@pytest.mark.parametrize("way", ["helper", "threads"])
@pytest.mark.parametrize(("keep_stems", "mastering_follows"), [(False, True), (True, False)])
def test_stems_shared_with_the_helper_give_the_one_thread_mix(tmp_path, monkeypatch, way, keep_stems, mastering_follows):
    """With a helper process the measuring pass runs most stems' chains there (their
    blocks sent back); without one, the stems run on the thread pool. Either way the
    bus, the exported stems and every gain are the one-thread render's, bit for bit."""
    import soundfile as sf

    from automix.io import helper as helper_module
    from automix.mix import renderer as renderer_module

    stems, plan = streaming_case()
    paths = []
    for x, stem_plan in zip(stems, plan.stems):
        paths.append(tmp_path / f"{stem_plan.name}.wav")
        sf.write(paths[-1], x.T, RATE, subtype="FLOAT")
    monkeypatch.setattr(loudness, "THREADS", 1)
    expected = _render_files(paths, plan, keep_stems, mastering_follows)
    monkeypatch.setattr(loudness, "THREADS", 2)
    monkeypatch.setattr(helper_module, "ENABLED", way == "helper")
    shared = []
    split = renderer_module._helpers_stems
    monkeypatch.setattr(renderer_module, "_helpers_stems", lambda *a: shared.extend(split(*a)) or split(*a))
    got = _render_files(paths, plan, keep_stems, mastering_follows)
    assert (len(shared) > 0) == (way == "helper")  # the helper ran some of the chains
    assert len(shared) < len(stems)  # and this process some
    assert np.array_equal(got[1], expected[1])
    assert len(got[2]) == len(expected[2]) == (len(stems) if keep_stems else 0)
    for a, b in zip(got[2], expected[2]):
        assert np.array_equal(a, b)
    def gains(streamed):
        return ([(x.name, x.makeup_db, x.compressor_max_gain_reduction_db, x.group_gain_db) for x in streamed.stems],
                streamed.bus_gain_db, streamed.bus_rule, streamed.groups, streamed.bus_frames)

    assert gains(got[0]) == gains(expected[0])
    assert got[0].stems[0].compressor_max_gain_reduction_db > 1.0  # the kick's compressor, measured there or here


def test_a_source_that_cannot_cross_to_the_helper_is_rendered_here(monkeypatch):
    """Array sources cannot be pickled to the helper: every chain runs here, same mix."""
    from automix.io import helper as helper_module

    stems, plan = streaming_case()
    def mix():
        bus = []
        render_stream([array_source(Audio(x, RATE)) for x in stems], RATE, plan, bus.append, mastering_follows=True)
        return np.concatenate(bus, axis=1)

    monkeypatch.setattr(loudness, "THREADS", 1)
    expected = mix()
    monkeypatch.setattr(loudness, "THREADS", 2)
    monkeypatch.setattr(helper_module, "ENABLED", True)
    assert np.array_equal(mix(), expected)


@pytest.mark.parametrize("sizes", [(65536,), (1000, 70000, 3), (200000,), (12345, 65536)])
def test_a_source_is_cut_to_the_common_grid(sizes):
    """Every stem on the same grid whatever its own blocks: BLOCK_FRAMES each, the last
    shorter, exactly ``frames`` in all, silence past the source's end."""
    from automix.io.stream import BLOCK_FRAMES, BlockSource
    from automix.mix.renderer import _on_grid

    x = np.arange(2 * 150_000, dtype=np.float32).reshape(2, -1)

    def blocks():
        start, k = 0, 0
        while start < x.shape[1]:
            size = sizes[k % len(sizes)]
            yield x[:, start : start + size]
            start, k = start + size, k + 1

    source = BlockSource(RATE, 2, x.shape[1], "x", blocks)
    for frames in (150_000, 100_000, 2 * BLOCK_FRAMES, 200_003):
        cut = list(_on_grid(source, frames))
        assert [b.shape[1] for b in cut[:-1]] == [BLOCK_FRAMES] * (len(cut) - 1)
        assert 0 < cut[-1].shape[1] <= BLOCK_FRAMES
        joined = np.concatenate(cut, axis=1)
        assert joined.shape == (2, frames)
        kept = min(frames, x.shape[1])
        assert np.array_equal(joined[:, :kept], x[:, :kept])
        assert not joined[:, kept:].any()


def test_the_helper_takes_its_share_of_the_stems():
    """The split gives this process about OWN_SHARE of the estimated work (within one
    stem's cost), the heaviest stems first."""
    from automix.io.stream import BlockSource
    from automix.mix import renderer as renderer_module

    compressor = CompressorPlan(-24.0, 4.0, 5.0, 60.0, "t")
    plans = [plan_for(f"s{i}", compressor=compressor if i % 3 == 0 else None) for i in range(10)]
    sources = [BlockSource(RATE, 1 + i % 2, 100, f"s{i}", lambda: iter(())) for i in range(10)]
    given = renderer_module._helpers_stems(sources, plans)
    costs = [s.channels * (1.8 if p.compressor else 1.0) for s, p in zip(sources, plans)]
    own = sum(c for i, c in enumerate(costs) if i not in given)
    assert abs(own / sum(costs) - renderer_module.OWN_SHARE) <= max(costs) / sum(costs)
    assert given == sorted(given) and 0 < len(given) < 10


def test_channel_energies_give_the_loudness_of_any_weighted_sum():
    signals = [pink_noise(4.0, RATE, channels=2, seed=s).astype(np.float32) * np.float32(0.1) for s in (21, 22, 23)]
    signals[1][:, : RATE] = 0  # one starts late: the sum's gating differs from each part's
    pairs = ChannelEnergies(RATE, [2, 2, 2])
    for start in range(0, signals[0].shape[1], 12345):
        pairs.add([pairs.weigh(k, x[:, start : start + 12345]) for k, x in enumerate(signals)])
    unpanned = [np.eye(2)] * 3  # each stereo signal as it is
    for weights in ((1.0, 0.0, 0.0), (0.5, 2.0, 0.0), (1.0, 1.0, 1.0), (0.3, -1.0, 0.7)):
        total = sum(np.float32(w) * x for w, x in zip(weights, signals))
        assert pairs.loudness(pairs.mixing_matrix(weights, unpanned)) == pytest.approx(ebur128(total, RATE)[0], abs=0.02)


@pytest.mark.parametrize("block", [441, 1000, 65536])
def test_programme_peak_meter_equals_the_whole_signal_measure(block):
    music = pink_noise(6.0, RATE, channels=2, seed=5).astype(np.float32) * np.float32(0.1)
    music[:, :: RATE // 3] *= np.float32(4.0)  # recurring hits
    music = with_clicks(music[:, : 6 * RATE - 123])  # a partial last block
    music[1, 3 * RATE + 440] = 0.9  # an event at a 10 ms block's last sample
    meter = ProgrammePeakMeter(RATE, music.shape[1])
    for start in range(0, music.shape[1], block):
        meter.add(music[:, start : start + block])
    peak_db, where_s, outliers = meter.result()
    expected = programme_peak_dbtp(music, RATE)
    assert peak_db == pytest.approx(expected[0], abs=1e-6)
    assert where_s == pytest.approx(expected[1])
    assert outliers == expected[2]
    assert outliers  # a click was set aside
