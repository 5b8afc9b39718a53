"""``mix --amount``: automix's corrective moves of the mix scaled, the user's kept in full.

Checked on rendered audio (the mix and the exported stems written by ``mix_folder``),
with expected values that do not come from automix: amount 0 must be the plain sum of
the input files times one gain (the sum formed here with numpy, mono files upmixed by the
constant-power law the README states, a named stereo pair's files hard left and right);
levels are read with libebur128.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_loudness import ebur128

from automix.errors import AutomixError
from automix.io.audio import Audio
from automix.jobs.pipeline import OutputOptions, mix_folder
from automix.measure.analyzer import analyze
from automix.mix.amount import HIGHPASS_OFF_HZ, own_placements, scale_plan
from automix.mix.balancer import EqCut, StemInfo, balance
from automix.mix.roles import pair_key, role_from_name, stereo_side
from automix.mix.user_plan import parse_cli
from automix.presets import load_preset
from automix.report.html import render_html

RATE = 44100
SECONDS = 3.0
N = int(SECONDS * RATE)
T = np.arange(N) / RATE
POP = load_preset("pop")


def hits(period_s: float, offset_s: float, decay_s: float, seed: int, level: float) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(N)
    envelope = np.exp(-((T - offset_s) % period_s) / decay_s) * (T >= offset_s)
    return (level * noise * envelope).astype(np.float32)[None]


def tone(f0_hz: float, level: float, seed: int = 0) -> np.ndarray:
    phase = 2 * np.pi * f0_hz * T * (1 + 0.003 * np.sin(2 * np.pi * (5 + seed) * T))
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) + 0.02 * np.random.default_rng(seed).standard_normal(N)
    return (level * x / 3).astype(np.float32)[None]


def sparse_tom() -> np.ndarray:
    """One 0.4 s fill: a stem that rests most of the time, so its group's summed loudness
    is not the power sum of its members' (the renderer's group correction is not 0)."""
    x = np.zeros(N, dtype=np.float32)
    start, length = RATE, int(0.4 * RATE)
    x[start : start + length] = hits(0.4, 0.0, 0.1, 9, 0.4)[0, :length]
    return x[None]


#: Out of balance on purpose (a quiet vocal, loud hats), levels far apart: the plan moves
#: them by several dB, and the drums are a group of four (the group's correction counts).
SONG = {
    "lead_vox.wav": tone(330.0, 0.05, 1),
    "kick.wav": hits(0.5, 0.0, 0.08, 1, 0.6),
    "snare.wav": hits(0.5, 0.25, 0.1, 2, 0.2),
    "hats.wav": hits(0.125, 0.0, 0.02, 3, 0.5),
    "bass.wav": tone(55.0, 0.1, 2),
    "gtr_L.wav": tone(196.0, 0.3, 3),
    "gtr_R.wav": tone(247.0, 0.3, 4),
    "keys.wav": np.concatenate([tone(262.0, 0.15, 5), tone(392.0, 0.12, 6)]),  # a stereo stem
    "tom.wav": sparse_tom(),
}


def write_song(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, x in SONG.items():
        sf.write(folder / name, x.T, RATE, subtype="FLOAT")
    return folder


@pytest.fixture(scope="module")
def stems_folder(tmp_path_factory):
    return write_song(tmp_path_factory.mktemp("amount") / "stems")


def run(folder: Path, out: Path, amount: float, user=None) -> dict[str, np.ndarray]:
    """mix_folder, unmastered, stems exported; returns {stem file: exported stereo samples}
    and the mix under the key ``"mix"``."""
    export = out / "export"
    result = mix_folder(folder, out / "mix.wav", POP, OutputOptions(bit_depth="32f", amount=amount), no_master=True,
                        export_stems=export, report_path=out / "report.json", user=user)
    exported = {}
    for index, stem_plan in enumerate(result.plan.stems, start=1):
        data, _ = sf.read(export / f"{index:02d}_{Path(stem_plan.name).stem}.wav", dtype="float32", always_2d=True)
        exported[stem_plan.name] = data.T
    data, _ = sf.read(out / "mix.wav", dtype="float32", always_2d=True)
    exported["mix"] = data.T
    exported["report"] = result.report
    return exported


@pytest.fixture(scope="module")
def renders(stems_folder, tmp_path_factory):
    base = tmp_path_factory.mktemp("renders")
    return {amount: run(stems_folder, base / f"a{amount}", amount) for amount in (0.0, 0.5, 1.0)}


def plain_sum() -> np.ndarray:
    """The stems as they came in, summed to stereo: a mono file on both sides at 1/sqrt(2)
    (constant power: the same BS.1770 loudness), a stereo file as it is, the two files of a
    named stereo pair (gtr_L, gtr_R) hard left and right."""
    total = np.zeros((2, N))
    for name, x in SONG.items():
        x = x.astype(np.float64)
        if x.shape[0] == 2:
            total += x
        elif name == "gtr_L.wav":
            total[0] += x[0]
        elif name == "gtr_R.wav":
            total[1] += x[0]
        else:
            total += x / math.sqrt(2)
    return total


def residual_db(mix: np.ndarray, expected: np.ndarray) -> float:
    """Energy of what is left after removing the one best gain, relative to the mix."""
    mix = mix.astype(np.float64)
    gain = float(np.sum(mix * expected) / np.sum(expected * expected))
    rest = mix - gain * expected
    return 10 * math.log10(np.sum(rest**2) / np.sum(mix**2))


def levels(render: dict) -> dict[str, float]:
    return {name: ebur128(x, RATE)[0] for name, x in render.items() if name not in ("mix", "report")}


def balance_of(render: dict) -> dict[str, float]:
    """Each stem's level with the common part (the mean over the stems) removed: the bus is
    normalised after the stems are set, which moves every stem by one common gain."""
    lv = levels(render)
    mean = float(np.mean(list(lv.values())))
    return {name: value - mean for name, value in lv.items()}


def test_amount_zero_is_the_plain_sum_times_one_gain(renders):
    assert residual_db(renders[0.0]["mix"], plain_sum()) < -80.0
    # and the full plan is not (the test can fail): the balance moves the stems by dB
    assert residual_db(renders[1.0]["mix"], plain_sum()) > -20.0


def test_amount_half_moves_each_stem_half_as_far(renders):
    at0, at_half, at1 = (balance_of(renders[a]) for a in (0.0, 0.5, 1.0))
    full = {name: at1[name] - at0[name] for name in at0}
    assert max(abs(v) for v in full.values()) > 6.0  # the song really is out of balance
    for name in at0:
        # the issue asks within 0.2 dB; the interpolation is exact, so 0.05 (the drums group
        # correction of 0.4 dB left out would miss by 0.1)
        assert at_half[name] - at0[name] == pytest.approx(full[name] / 2, abs=0.05), name


def test_the_user_gain_applies_in_full_at_amount_zero(stems_folder, renders, tmp_path):
    moved = run(stems_folder, tmp_path, 0.0, user=parse_cli(["lead_vox=+3"]))
    before, after = levels(renders[0.0]), levels(moved)
    delta = {name: after[name] - before[name] for name in before}
    rest = [delta[name] for name in delta if name != "lead_vox.wav"]
    assert max(rest) - min(rest) < 0.01  # the others keep their levels between them
    for other in rest:
        assert delta["lead_vox.wav"] - other == pytest.approx(3.0, abs=0.02)
    # and the rest of the mix is still the plain sum (the user's move is the only one)
    sum_without = plain_sum() - SONG["lead_vox.wav"].astype(np.float64) / math.sqrt(2)
    vox = np.repeat(SONG["lead_vox.wav"].astype(np.float64) / math.sqrt(2), 2, axis=0)
    assert residual_db(moved["mix"], sum_without + 10 ** (3 / 20) * vox) < -80.0


def test_the_report_states_the_moves_at_the_amount(renders):
    for amount in (0.0, 0.5):
        report = renders[amount]["report"]
        assert report["mix"]["amount"] == amount and f"--amount {amount:g}" in report["mix"]["amount_rule"]
    full = {s["file"]: s["plan"] for s in renders[1.0]["report"]["stems"]}
    half = {s["file"]: s["plan"] for s in renders[0.5]["report"]["stems"]}
    zero = {s["file"]: s["plan"] for s in renders[0.0]["report"]["stems"]}
    assert renders[1.0]["report"]["mix"]["amount"] == 1.0
    for name, plan in full.items():
        if plan["compressor"]:
            assert half[name]["compressor"]["ratio"] == pytest.approx(1 + (plan["compressor"]["ratio"] - 1) / 2, abs=0.01)
            assert zero[name]["compressor"] is None
        if plan["highpass_hz"]:
            expected = math.sqrt(HIGHPASS_OFF_HZ * plan["highpass_hz"])  # halfway in octaves
            assert half[name]["highpass_hz"] == pytest.approx(expected, rel=1e-3)
            assert zero[name]["highpass_hz"] is None
        for cut_half, cut in zip(half[name]["eq_cuts"], plan["eq_cuts"]):
            assert cut_half["gain_db"] == pytest.approx(cut["gain_db"] / 2, abs=0.01)
        assert zero[name]["eq_cuts"] == []
    assert half["gtr_L.wav"]["pan"] == pytest.approx((-1 + full["gtr_L.wav"]["pan"]) / 2, abs=1e-3)
    page = render_html(renders[0.5]["report"])
    assert "Amount 0.5" in page and "--amount 0.5: automix" in page and "at amount 0.5" in page


# --- the plan function ------------------------------------------------------------------


def infos() -> list[StemInfo]:
    out = []
    for name, x in SONG.items():
        stem = name.rsplit(".", 1)[0]
        out.append(StemInfo(name, role_from_name(stem).role, "test", analyze(Audio(x, RATE)), stereo_side(stem), pair_key(stem)))
    return out


def test_scale_plan_keeps_the_users_pan_and_refuses_a_bad_amount():
    stems = infos()
    plan = balance(stems, POP, parse_cli(pans=["keys=0.7"], gains=["bass=-2"]))
    assert scale_plan(plan, 1.0) is plan
    zero = scale_plan(plan, 0.0, own_pans=own_placements(stems))
    by_name = {p.name: p for p in zero.stems}
    assert by_name["keys.wav"].pan == 0.7
    assert by_name["gtr_L.wav"].pan == -1.0 and by_name["gtr_R.wav"].pan == 1.0 and by_name["lead_vox.wav"].pan == 0.0
    gains = {p.name: p.gain_db - p.user_gain_db for p in zero.stems}
    assert max(gains.values()) - min(gains.values()) < 1e-9  # one common gain
    assert by_name["bass.wav"].user_gain_db == -2.0
    assert all(p.group == "" and p.compressor is None and p.highpass_hz is None and not p.eq_cuts for p in zero.stems)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(AutomixError, match="--amount"):
            scale_plan(plan, bad)
    assert replace(plan, amount=1.0).to_dict()["amount"] == 1.0


def test_scale_plan_at_half_keeps_every_cut_and_says_what_it_scaled():
    # the plan's rules are the report's explanation: each move at the amount, and only
    # the moves that were made (a user gain, a group correction) named
    plan = balance(infos(), POP, parse_cli(gains=["bass=-2"]))
    cut = EqCut(250.0, -4.0, 1.0, "mud")
    plan = replace(plan, stems=tuple(replace(p, eq_cuts=(cut,)) if p.name == "keys.wav" else p for p in plan.stems))
    group = next(p.group for p in plan.stems if p.group)
    half = scale_plan(plan, 0.5, group_gains_db={group: 1.5}, own_pans={"gtr_L.wav": -1.0})
    by_name = {p.name: p for p in half.stems}
    keys = by_name["keys.wav"]
    assert [c.gain_db for c in keys.eq_cuts] == [-2.0] and "at amount 0.5: -2.0 dB" in keys.eq_cuts[0].rule
    assert "the user's -2.00 dB in full" in by_name["bass.wav"].gain_rule
    assert all("the user's" not in p.gain_rule for name, p in by_name.items() if name != "bass.wav")
    grouped = {p.name for p in plan.stems if p.group == group}  # (the scaled plan has no groups left)
    assert all(f"with the {group} group's correction" in by_name[name].gain_rule for name in grouped)
    assert all("group's correction" not in p.gain_rule for name, p in by_name.items() if name not in grouped)
    assert "from its own placement -1.00 toward automix's" in by_name["gtr_L.wav"].pan_rule
