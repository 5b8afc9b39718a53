"""The user's say over the mix plan: --gain, --pan, --mute, --focus and --plan-file.

Expected values come from the request itself (a +2 dB gain moves the stem 2 dB) or from
the constant-power pan law written out here (left cos, right sin of (p + 1) pi / 4), and
levels of rendered audio are read with libebur128, never with automix's own meter.
"""

import inspect
import math

import numpy as np
import pytest
from test_loudness import ebur128

from automix.errors import AutomixError
from automix.io.audio import Audio
from automix.measure.analyzer import analyze
from automix.mix import renderer
from automix.mix.balancer import StemInfo, balance
from automix.mix.renderer import render
from automix.mix.roles import pair_key, role_from_name, stereo_side
from automix.mix.user_plan import (
    FOCUS_LU,
    UserPlan,
    build,
    check_names,
    combine,
    load_plan_file,
    parse_cli,
    resolve,
    restrict,
)
from automix.presets import load_preset

RATE = 44100
SECONDS = 2.0
POP = load_preset("pop")
N = int(SECONDS * RATE)
T = np.arange(N) / RATE


def hits(period_s: float, offset_s: float, decay_s: float, seed: int) -> np.ndarray:
    """Decaying noise bursts every ``period_s`` (a drum), mono."""
    noise = np.random.default_rng(seed).standard_normal(N)
    envelope = np.exp(-((T - offset_s) % period_s) / decay_s) * (T >= offset_s)
    return (0.3 * noise * envelope).astype(np.float32)[None]


def tone(f0_hz: float, amplitude: float = 0.2) -> np.ndarray:
    """A held harmonic note with a little vibrato (a voice, a bass, a guitar), mono."""
    phase = 2 * np.pi * f0_hz * T * (1 + 0.003 * np.sin(2 * np.pi * 5 * T))
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (amplitude * x / 3).astype(np.float32)[None]


def sparse_tom() -> np.ndarray:
    """One 0.4 s fill in a 2 s song: a stem that rests most of the time."""
    x = np.zeros(N, dtype=np.float32)
    burst = hits(0.4, 0.0, 0.1, 9)[0]
    x[int(0.5 * RATE):int(0.9 * RATE)] = burst[: int(0.4 * RATE)]
    return x[None]


SONG = {"lead_vox.wav": tone(330.0), "kick.wav": hits(0.5, 0.0, 0.08, 1), "snare.wav": hits(0.5, 0.25, 0.1, 2),
        "bass.wav": tone(55.0, 0.3), "gtr_L.wav": tone(196.0, 0.1), "gtr_R.wav": tone(247.0, 0.1),
        "keys.wav": tone(262.0, 0.1)}


def stem_infos(stems: dict) -> list[StemInfo]:
    infos = []
    for name, x in stems.items():
        stem = name.rsplit(".", 1)[0]
        infos.append(StemInfo(name, role_from_name(stem).role, "test", analyze(Audio(x, RATE)),
                              stereo_side(stem), pair_key(stem)))
    return infos


@pytest.fixture(scope="module")
def song():
    return stem_infos(SONG)


def rendered_levels(stems: dict, infos, user=None):
    """Plan, render (stems kept) and read each exported stem with libebur128."""
    plan = balance(infos, POP, user)
    result = render([stems[p.name] for p in plan.stems], RATE, plan, keep_stems=True, mastering_follows=True)
    return plan, {p.name: r.samples for p, r in zip(plan.stems, result.stems)}


def lufs(samples: np.ndarray) -> float:
    return ebur128(samples, RATE)[0]


def moves(before: dict, after: dict) -> dict:
    """Each stem's level change between two runs, in dB, read on the rendered stems."""
    return {name: lufs(after[name]) - lufs(before[name]) for name in after}


@pytest.fixture(scope="module")
def baseline(song):
    return rendered_levels(SONG, song)


# --- parsing the command line -------------------------------------------------------


def test_cli_values_are_parsed_with_their_origins():
    plan = parse_cli(["vox=+1.5", "bass.wav=-2dB"], ["gtr_L=-0.8"], ["fx"], "vocal")
    assert plan.stems["vox"].gain_db == 1.5 and plan.stems["bass.wav"].gain_db == -2.0
    assert plan.stems["gtr_L"].pan == -0.8 and plan.stems["fx"].mute is True
    assert plan.stems["vox"].origins == {"gain_db": "--gain vox=+1.5"}
    assert plan.focus == "vocal" and plan.focus_lu == 3.0 and plan.focus_origin == "--focus vocal"
    assert parse_cli(focus="drums=+4.5").focus_lu == 4.5
    assert parse_cli().is_empty and not plan.is_empty


@pytest.mark.parametrize("gains, pans, mutes, focus, words", [
    (["vox=+30"], [], [], None, ["--gain", "vox=+30", "out of range", "-24", "+24", "dB"]),
    (["vox=-24.1"], [], [], None, ["--gain", "out of range", "-24 to +24"]),
    (["vox=loud"], [], [], None, ["--gain", "'loud' is not a number", "-24 to +24"]),
    (["vox"], [], [], None, ["--gain", "NAME=DB", "-24 to +24"]),
    (["vox=nan"], [], [], None, ["--gain", "out of range"]),
    ([], ["gtr=1.2"], [], None, ["--pan", "gtr=1.2", "out of range", "-1 to +1"]),
    ([], ["gtr=left"], [], None, ["--pan", "not a number", "-1 to +1"]),
    ([], [], ["fx=1"], None, ["--mute", "file name"]),
    ([], [], [], "vocal=20", ["--focus", "out of range", "0 to +12 LU"]),
    (["vox=1", "vox=2"], [], [], None, ["--gain", "vox", "twice"]),
])  # fmt: skip
def test_bad_cli_values_name_the_option_and_the_range(gains, pans, mutes, focus, words):
    with pytest.raises(AutomixError) as error:
        parse_cli(gains, pans, mutes, focus)
    for word in words:
        assert word in str(error.value)


# --- the plan file ------------------------------------------------------------------


def write(tmp_path, text: str | bytes, name="song.toml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_plan_file_is_read(tmp_path):
    path = write(tmp_path, 'focus = "vocal"\nfocus_lu = 4\n[stems."lead_vox.wav"]\ngain_db = 1.5\npan = 0.0\n'
                           'mute = false\n[stems.fx]\nmute = true\n')
    plan = load_plan_file(path)
    assert plan.focus == "vocal" and plan.focus_lu == 4.0 and plan.focus_origin == "song.toml"
    vox = plan.stems["lead_vox.wav"]
    assert (vox.gain_db, vox.pan, vox.mute) == (1.5, 0.0, False)
    assert vox.origins == {"gain_db": "song.toml", "pan": "song.toml", "mute": "song.toml"}
    assert plan.stems["fx"].mute is True


@pytest.mark.parametrize("text, words", [
    ('[stems.vox]\ngain_db = 30\n', ['stems."vox".gain_db', "= 30", "out of range", "-24 to +24 dB"]),
    ('[stems.vox]\ngain_db = "+3"\n', ['stems."vox".gain_db', "must be a number", "-24 to +24 dB"]),
    ('[stems.vox]\npan = -1.5\n', ['stems."vox".pan', "out of range", "-1 to +1"]),
    ('[stems.vox]\npan = true\n', ['stems."vox".pan', "must be a number", "-1 to +1"]),
    ('[stems.vox]\nmute = 1\n', ['stems."vox".mute', "true or false"]),
    ('[stems.vox]\nvolume = 3\n', ['stems."vox".volume', "unknown key", "gain_db", "pan", "mute", "-24 to +24"]),
    ('gain = 3\n', ["unknown key 'gain'", "focus", "stems"]),
    ('focus = 3\n', ["'focus'", "stem, a role, a group"]),
    ('focus = "vocal"\nfocus_lu = 13\n', ["'focus_lu'", "out of range", "0 to +12 LU"]),
    ('focus_lu = 2\n', ["'focus_lu' without 'focus'"]),
    ('stems = 3\n', ["'stems'", "table"]),
    ('[stems]\nvox = 3\n', ['stems."vox"', "must be a table", "gain_db"]),
    ('focus = "vocal\n', ["not valid TOML"]),
])  # fmt: skip
def test_bad_plan_files_name_the_file_the_key_and_the_range(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(AutomixError) as error:
        load_plan_file(path)
    message = str(error.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message


def test_unreadable_plan_files_are_refused_with_the_reason(tmp_path):
    latin1 = write(tmp_path, 'focus = "voix \xe9"\n'.encode("latin-1"))
    with pytest.raises(AutomixError, match=r"song\.toml: not UTF-8 text \(byte 14 is 0xe9\)"):
        load_plan_file(latin1)
    with pytest.raises(AutomixError, match="--plan-file .*missing.toml: no such file"):
        load_plan_file(tmp_path / "missing.toml")
    with pytest.raises(AutomixError, match="not a file"):
        load_plan_file(tmp_path)


def test_the_command_line_wins_over_the_file_and_says_so(tmp_path):
    path = write(tmp_path, 'focus = "drums"\n[stems.vox]\ngain_db = 1.5\npan = -0.5\n[stems."bass.wav"]\ngain_db = -1\n')
    plan = build(gains=["vox=+3"], focus="vocal", plan_file=path)
    assert plan.stems["vox"].gain_db == 3.0 and plan.stems["vox"].pan == -0.5  # the file's pan stays
    assert plan.stems["vox"].origins == {"gain_db": "--gain vox=+3", "pan": "song.toml"}
    assert plan.focus == "vocal" and plan.focus_origin == "--focus vocal"
    assert any("--gain vox=+3 replaces vox: gain_db = 1.5 from song.toml" in note for note in plan.notes)
    assert any("--focus vocal replaces focus = \"drums\"" in note for note in plan.notes)
    # The same stem spelt two ways ("bass" on the command line, "bass.wav" in the file):
    # matched to the file, the command line still wins.
    merged = resolve(combine(load_plan_file(path), parse_cli(["bass=+2"])), ["vox.wav", "bass.wav"])
    assert merged["bass.wav"].gain_db == 2.0


# --- names ----------------------------------------------------------------------------


def test_names_match_file_names_with_or_without_extension():
    names = ["lead_vox.wav", "gtr_L.flac", "fx.wav"]
    says = resolve(parse_cli(["lead_vox.wav=1", "gtr_L=2"], mutes=["FX"]), names)
    assert set(says) == {"lead_vox.wav", "gtr_L.flac", "fx.wav"}
    check_names(parse_cli(focus="gtr_L"), names)
    check_names(parse_cli(focus="vocal"), names)  # a role: checked against the roles once known


def test_a_name_matching_no_stem_is_refused_listing_the_stems():
    with pytest.raises(AutomixError) as error:
        check_names(parse_cli(["voxx=+1"]), ["vox.wav", "bass.wav"])
    assert "--gain voxx=+1" in str(error.value) and "'voxx'" in str(error.value)
    assert "vox.wav, bass.wav" in str(error.value)
    with pytest.raises(AutomixError, match="could be any of vox.wav, vox.flac"):
        check_names(parse_cli(["vox=+1"]), ["vox.wav", "vox.flac"])
    with pytest.raises(AutomixError, match="'singer' names no stem, role or group .*roles: vocal"):
        check_names(parse_cli(focus="singer"), ["vox.wav"])


# --- the plan -------------------------------------------------------------------------


def test_a_user_gain_moves_exactly_that_stems_planned_level(song):
    before = {p.name: p for p in balance(song, POP).stems}
    plan = balance(song, POP, parse_cli(["gtr_L=+2.5"]))
    after = {p.name: p for p in plan.stems}
    for name, planned in before.items():
        expected = 2.5 if name == "gtr_L.wav" else 0.0
        assert after[name].target_lufs - planned.target_lufs == pytest.approx(expected, abs=1e-9)
        assert after[name].gain_db - planned.gain_db == pytest.approx(expected, abs=1e-9)
        assert after[name].eq_cuts == planned.eq_cuts and after[name].highpass_hz == planned.highpass_hz
    gtr = after["gtr_L.wav"]
    assert "+2.5 dB by the user (--gain gtr_L=+2.5)" in gtr.gain_rule
    assert gtr.user_gain_db == 2.5 and gtr.to_dict()["decided_by_user"] == {"gain_db": "--gain gtr_L=+2.5"}
    assert gtr.to_dict()["decided_by"] == {"gain_db": "user", "pan": "automix", "focus": "automix"}
    assert after["keys.wav"].to_dict()["decided_by_user"] == {}
    if before["gtr_L.wav"].compressor:  # the compressor sees the stem as automix planned it
        assert gtr.compressor.threshold_db - before["gtr_L.wav"].compressor.threshold_db == pytest.approx(2.5)


def test_a_user_pan_replaces_automixs_and_nothing_else(song):
    before = {p.name: p for p in balance(song, POP).stems}
    after = {p.name: p for p in balance(song, POP, parse_cli(pans=["keys=+0.6"])).stems}
    assert after["keys.wav"].pan == 0.6 and before["keys.wav"].pan != 0.6
    assert after["keys.wav"].pan_rule.startswith("user: --pan keys=+0.6")
    assert after["keys.wav"].to_dict()["decided_by"]["pan"] == "user"
    for name, planned in before.items():
        assert after[name].target_lufs == planned.target_lufs
        if name != "keys.wav":
            assert after[name].pan == planned.pan


def test_a_muted_stem_is_left_out_and_reported(song):
    plan = balance(song, POP, parse_cli(mutes=["keys"]))
    assert "keys.wav" not in [p.name for p in plan.stems] and len(plan.stems) == len(song) - 1
    assert [(m.name, m.rule) for m in plan.muted] == [("keys.wav", "muted by the user (--mute keys)")]
    assert plan.to_dict()["muted"] == [{"name": "keys.wav", "rule": "muted by the user (--mute keys)"}]
    # the rest is planned as if it had never been there
    without = balance([s for s in song if s.name != "keys.wav"], POP)
    assert [p.to_dict() for p in plan.stems] == [p.to_dict() for p in without.stems]
    with pytest.raises(AutomixError, match="every stem is muted"):
        balance(song, POP, parse_cli(mutes=list(SONG)))


def test_muting_the_lead_vocal_hands_the_lead_on(song):
    plan = balance(song, POP, parse_cli(mutes=["lead_vox"]))
    assert plan.lead not in (None, "lead_vox.wav")


@pytest.mark.parametrize("focus, moved", [
    ("lead_vox", {"lead_vox.wav"}), ("vocal", {"lead_vox.wav"}), ("lead", {"lead_vox.wav"}),
    ("guitar", {"gtr_L.wav", "gtr_R.wav"}), ("drums", {"kick.wav", "snare.wav"}),
])  # fmt: skip
def test_focus_raises_what_it_names_by_the_stated_lu(song, focus, moved):
    before = {p.name: p.target_lufs for p in balance(song, POP).stems}
    plan = balance(song, POP, parse_cli(focus=focus))
    for p in plan.stems:
        assert p.target_lufs - before[p.name] == pytest.approx(3.0 if p.name in moved else 0.0, abs=1e-9)
        assert (p.to_dict()["decided_by"]["focus"] == "user") == (p.name in moved)
    assert f"--focus {focus}" in plan.focus_rule and "+3.0 LU" in plan.focus_rule
    assert FOCUS_LU == 3.0


def test_a_focus_on_nothing_in_the_mix_is_refused(song):
    with pytest.raises(AutomixError, match="'piano' names no stem, role or group in this mix .*roles: .*guitar"):
        balance(song, POP, parse_cli(focus="piano"))


def test_no_user_plan_and_an_empty_one_give_automixs_plan(song):
    plain = balance(song, POP)
    assert [p.to_dict() for p in balance(song, POP, UserPlan()).stems] == [p.to_dict() for p in plain.stems]
    assert plain.muted == () and plain.focus_rule == ""


# --- on rendered audio ------------------------------------------------------------------


@pytest.mark.parametrize("gain", ["lead_vox=+3", "snare=+3", "keys=-4", "gtr_L=+1.5"])
def test_the_named_stem_moves_by_the_requested_db_in_the_rendered_stems(song, baseline, gain):
    """Relative to an unmodified run, the named stem moves by the requested dB against
    every other stem, and the others keep their balance (the bus is normalised, so all
    of them move together by the same small amount)."""
    name, _, db = gain.partition("=")
    name, db = f"{name}.wav", float(db)
    _, before = baseline
    _, after = rendered_levels(SONG, song, parse_cli([gain]))
    delta = moves(before, after)
    rest = [delta[n] for n in delta if n != name]
    assert max(rest) - min(rest) < 0.02
    for other in rest:
        assert delta[name] - other == pytest.approx(db, abs=0.1)


def test_a_focus_moves_the_named_group_forward_in_the_rendered_stems(song, baseline):
    _, before = baseline
    _, after = rendered_levels(SONG, song, parse_cli(focus="drums"))
    delta = moves(before, after)
    for drum in ("kick.wav", "snare.wav"):
        for other in ("lead_vox.wav", "bass.wav", "keys.wav"):
            assert delta[drum] - delta[other] == pytest.approx(3.0, abs=0.1)
    assert delta["lead_vox.wav"] < -0.1  # the rest adjusts around it: the bus is normalised


def test_a_pan_moves_the_left_right_balance_as_the_pan_law_says(song, baseline):
    """keys.wav is mono: at position p the constant-power law gives it left cos and right
    sin of (p + 1) pi / 4, so right minus left is 20 log10(tan((p + 1) pi / 4)) dB."""
    for position in (-0.8, 0.5, 1.0):
        _, after = rendered_levels(SONG, song, parse_cli(pans=[f"keys={position}"]))
        left, right = after["keys.wav"]
        angle = (position + 1) * math.pi / 4
        if math.sin(angle) < 1e-6 or math.cos(angle) < 1e-6:
            quiet = left if position > 0 else right
            assert np.abs(quiet).max() < 1e-6  # hard-panned: nothing on the far side
            continue
        measured = 10 * math.log10(np.mean(right.astype(np.float64) ** 2) / np.mean(left.astype(np.float64) ** 2))
        assert measured == pytest.approx(20 * math.log10(math.tan(angle)), abs=0.05)
    # the stem's loudness is automix's: the pan moves it, it does not turn it up or down
    _, before = baseline
    _, after = rendered_levels(SONG, song, parse_cli(pans=["keys=0.5"]))
    delta = moves(before, after)
    assert delta["keys.wav"] == pytest.approx(delta["bass.wav"], abs=0.1)


def test_a_muted_stem_is_not_in_the_rendered_mix(song):
    _, after = rendered_levels(SONG, song, parse_cli(mutes=["snare.wav"]))
    assert "snare.wav" not in after and len(after) == len(SONG) - 1


def test_the_user_gain_is_exact_within_its_group_for_a_stem_that_rests(song):
    """A tom that plays 0.4 s of 2 s, in the drums with kick and snare: against its own
    group the move is exact whatever the renderer does with the group's level."""
    stems = {**SONG, "tom.wav": sparse_tom()}
    infos = [*song, *stem_infos({"tom.wav": stems["tom.wav"]})]
    _, before = rendered_levels(stems, infos)
    _, after = rendered_levels(stems, infos, parse_cli(["tom=+6"]))
    delta = moves(before, after)
    assert delta["tom.wav"] - delta["kick.wav"] == pytest.approx(6.0, abs=0.1)
    assert delta["tom.wav"] - delta["snare.wav"] == pytest.approx(6.0, abs=0.1)


_RENDERER_KEEPS_USER_GAINS = "user_gain_db" in inspect.getsource(renderer.group_gains_db)


@pytest.mark.xfail(not _RENDERER_KEEPS_USER_GAINS, strict=True,
                   reason="renderer.group_gains_db measures the group with the user's gains in it: a stem that "
                          "rests adds less to the measured sum than its planned share (0.8 dB off for this tom)")
def test_the_user_gain_is_exact_against_other_groups_for_a_stem_that_rests(song):
    stems = {**SONG, "tom.wav": sparse_tom()}
    infos = [*song, *stem_infos({"tom.wav": stems["tom.wav"]})]
    _, before = rendered_levels(stems, infos)
    _, after = rendered_levels(stems, infos, parse_cli(["tom=+6"]))
    delta = moves(before, after)
    for other in ("lead_vox.wav", "bass.wav", "keys.wav"):
        assert delta["tom.wav"] - delta[other] == pytest.approx(6.0, abs=0.1)


def test_settings_for_a_stem_left_out_later_are_dropped_with_a_note(song):
    """check_names passed on the folder; then fx.wav was silent: the mix goes on."""
    plan = parse_cli(["fx=+2", "keys=+1"], focus="fx")
    check_names(plan, [*SONG, "fx.wav"])
    kept = restrict(plan, SONG, {"fx.wav": "silent: nothing to mix"})
    assert set(kept.stems) == {"keys"} and kept.focus is None
    assert any("fx.wav is not in the mix (silent: nothing to mix)" in note for note in kept.notes)
    mixed = balance(song, POP, kept)
    assert any("fx.wav" in note for note in mixed.user_notes)
    with pytest.raises(AutomixError, match="no stem named 'fx'"):
        balance(song, POP, plan)  # without restrict, a library caller's typo is an error
