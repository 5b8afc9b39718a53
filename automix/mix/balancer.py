"""Stage 2 of the pipeline: decide, per stem, gain, EQ, compression and pan.

Rule-based and transparent: every number in a :class:`StemPlan` comes from one short
function below, and the plan keeps the sentence that says which rule chose it. The
rules read only the *shape* of each stem (its loudness relative to itself, its
spectrum's shape, its crest factor), never its absolute level: the same stems fed in
at other levels get the same plan apart from their input gains, and so the same mix.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ, AudioAnalysis
from automix.presets import Preset, RoleRules

#: Roles that are never the "lead", and never get masking cuts for it: the rhythm
#: section's low end and transients carry their own bands.
RHYTHM_ROLES = frozenset({"kick", "snare", "toms", "hats", "overheads", "room", "drums", "percussion", "bass"})
#: Which role leads when there is no vocal: the first present in this order.
LEAD_ORDER = ("vocal", "woodwinds", "brass", "guitar", "piano", "synth", "keys", "strings", "backing_vocal")
#: The band where a lead's intelligibility and presence live (speech-intelligibility range).
PRESENCE_BAND_HZ = (250.0, 5000.0)


@dataclass(frozen=True)
class StemInfo:
    """What the balancer knows about one stem (stage 1's output plus its role)."""

    name: str
    role: str
    role_reason: str
    analysis: AudioAnalysis
    stereo_side: str | None = None  # "L" or "R" for one side of a named stereo pair
    pair_key: str | None = None


@dataclass(frozen=True)
class EqCut:
    frequency_hz: float
    gain_db: float
    q: float
    rule: str


@dataclass(frozen=True)
class CompressorPlan:
    threshold_db: float
    ratio: float
    attack_ms: float
    release_ms: float
    rule: str


@dataclass(frozen=True)
class StemPlan:
    """Everything the renderer does to one stem, and why."""

    name: str
    role: str
    role_reason: str
    target_lufs: float  # active loudness after processing, before the bus gain
    gain_db: float
    gain_rule: str
    highpass_hz: float | None
    highpass_order: int
    highpass_rule: str
    eq_cuts: tuple[EqCut, ...]
    compressor: CompressorPlan | None
    compressor_rule: str
    pan: float  # -1 hard left .. +1 hard right
    pan_rule: str

    def to_dict(self) -> dict:
        return _rounded(asdict(self))


@dataclass(frozen=True)
class MixPlan:
    stems: tuple[StemPlan, ...]
    lead: str | None
    lead_rule: str
    bus_lufs: float

    def to_dict(self) -> dict:
        return {"lead": self.lead, "lead_rule": self.lead_rule, "bus_lufs": self.bus_lufs,
                "stems": [stem.to_dict() for stem in self.stems]}


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def balance(stems: list[StemInfo], preset: Preset) -> MixPlan:
    """Plan the mix of ``stems`` by the rules of ``preset``.

    Parameters
    ----------
    stems : list of StemInfo
        Non-silent stems with their analyses and roles.
    preset : Preset

    Returns
    -------
    MixPlan
    """
    role_counts = Counter(stem.role for stem in stems)
    lead, lead_rule = choose_lead(stems)
    targets = {stem.name: target_loudness(stem, preset.roles[stem.role], role_counts[stem.role]) for stem in stems}
    pans = pan_positions(stems, preset, lead)
    lead_stem = next((s for s in stems if s.name == lead), None)
    plans = []
    for stem in stems:
        rules = preset.roles[stem.role]
        target, gain_rule = targets[stem.name]
        cutoff, highpass_rule = highpass_cutoff(stem, rules)
        cuts = masking_cuts(stem, target, lead_stem, targets[lead][0] if lead else 0.0, preset.mix.masking_max_cut_db)
        compressor, compressor_rule = compressor_settings(stem, target, rules)
        pan, pan_rule = pans[stem.name]
        plans.append(StemPlan(
            name=stem.name, role=stem.role, role_reason=stem.role_reason,
            target_lufs=target, gain_db=target - stem.analysis.active_lufs, gain_rule=gain_rule,
            highpass_hz=cutoff, highpass_order=2, highpass_rule=highpass_rule,
            eq_cuts=cuts, compressor=compressor, compressor_rule=compressor_rule,
            pan=pan, pan_rule=pan_rule,
        ))  # fmt: skip
    return MixPlan(tuple(plans), lead, lead_rule, preset.mix.bus_lufs)


def choose_lead(stems: list[StemInfo]) -> tuple[str | None, str]:
    """The stem everything else is balanced and cleared around.

    The vocal when there is one (the loudest-measured vocal if several, as the lead is
    usually the one recorded hottest); else the first melodic role present in
    ``LEAD_ORDER``; else none.
    """
    for role in LEAD_ORDER:
        candidates = [s for s in stems if s.role == role]
        if candidates:
            chosen = max(candidates, key=lambda s: (s.analysis.active_lufs, s.name))
            why = "the only" if len(candidates) == 1 else "the most present"
            return chosen.name, f"{why} {role} stem" + ("" if role == "vocal" else " (no vocal)")
    return None, "no melodic stem: no lead, no masking cuts"


def target_loudness(stem: StemInfo, rules: RoleRules, stems_in_role: int) -> tuple[float, str]:
    """Active loudness the stem is set to, in LUFS on the relative scale of the plan.

    The role's loudness (relative to the lead) is for the whole role: n stems of the
    same role share it, each 10 log10(n) dB lower, so two guitars together sit where
    one would. Absolute levels do not matter: the bus is normalised afterwards.
    """
    share_db = 10.0 * math.log10(stems_in_role)
    target = rules.loudness_lu - share_db
    rule = f"{stem.role}: {rules.loudness_lu:+.1f} LU relative to the lead"
    if stems_in_role > 1:
        rule += f", shared by {stems_in_role} {stem.role} stems ({-share_db:+.1f} dB each)"
    return target, rule


def highpass_cutoff(stem: StemInfo, rules: RoleRules) -> tuple[float | None, str]:
    """High-pass cutoff adapted to the stem's own low-frequency extent.

    The lowest third-octave band within 30 dB of the stem's strongest band marks where
    its useful content starts; the cutoff goes an octave below that (so the fundamental
    is untouched), never above the role's limit, never below 20 Hz. Below the content
    there is only rumble, bleed and handling noise, which eat headroom in the mix.
    Kick and bass get none (``hpf_max_hz = 0``): the low end is theirs.
    """
    if rules.hpf_max_hz <= 0:
        return None, f"none for {stem.role} (its low end is the point)"
    levels = np.asarray(stem.analysis.band_levels_db)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[: levels.size])
    useful = np.nonzero(levels >= levels.max() - 30.0)[0]
    lowest = float(centres[useful[0]]) if useful.size else 20.0
    cutoff = min(rules.hpf_max_hz, max(20.0, lowest / 2.0))
    if cutoff == rules.hpf_max_hz:
        return cutoff, f"{cutoff:.0f} Hz, the {stem.role} limit (content starts at {lowest:.0f} Hz)"
    return cutoff, f"{cutoff:.0f} Hz, an octave under where the content starts ({lowest:.0f} Hz)"


def masking_cuts(stem: StemInfo, target_lufs: float, lead: StemInfo | None, lead_target_lufs: float,
                 max_cut_db: float) -> tuple[EqCut, ...]:
    """Cut an accompaniment where it competes with the lead, never the lead itself.

    The lead's two strongest third-octave bands in its presence range (250 Hz - 5 kHz)
    are where it must be heard. In each, if the accompaniment (at its planned level)
    comes within 6 dB of the lead, it is cut there by half the excess, at most
    ``max_cut_db`` -- the "carve a pocket" practice of mixing engineers, bounded so the
    accompaniment keeps its own character. Rhythm-section stems are left alone.
    """
    if lead is None or stem.name == lead.name or stem.role in RHYTHM_ROLES or max_cut_db <= 0:
        return ()
    lead_levels = np.asarray(lead.analysis.band_levels_db) + lead_target_lufs
    levels = np.asarray(stem.analysis.band_levels_db) + target_lufs
    count = min(lead_levels.size, levels.size)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[:count])
    presence = np.nonzero((centres >= PRESENCE_BAND_HZ[0]) & (centres <= PRESENCE_BAND_HZ[1]))[0]
    strongest = presence[np.argsort(-lead_levels[presence], kind="stable")]
    chosen: list[int] = []
    for band in strongest:  # two strongest bands at least an octave apart
        if all(abs(band - other) >= 3 for other in chosen):
            chosen.append(int(band))
        if len(chosen) == 2:
            break
    cuts = []
    for band in sorted(chosen):
        excess = levels[band] - (lead_levels[band] - 6.0)
        if excess <= 0:
            continue
        depth = min(max_cut_db, excess / 2.0)
        if depth < 0.5:
            continue
        cuts.append(EqCut(
            frequency_hz=float(centres[band]), gain_db=-depth, q=2.0,
            rule=(f"{stem.role} at {levels[band] - lead_levels[band]:+.1f} dB against the lead at {centres[band]:.0f} Hz "
                  f"(more than -6 dB competes): cut half the excess, at most {max_cut_db:g} dB"),
        ))  # fmt: skip
    return tuple(cuts)


def compressor_settings(stem: StemInfo, target_lufs: float, rules: RoleRules) -> tuple[CompressorPlan | None, str]:
    """Compressor adapted to how dynamic the stem is.

    The threshold sits ``compression_depth_db`` below the level the compressor's own
    detector reaches in the stem's loud moments (the 95th percentile of its 10 ms RMS,
    at the planned gain), so only the loudest few percent of the time goes far over it,
    whether the stem is a sustained pad or a kick drum. The ratio grows with the
    loudness range (x0.75 at 2 LU up to x1.5 at 14 LU and beyond); below 1.05:1 there
    is no compressor. A very transient stem (crest factor over 18 dB) gets a slower
    attack so its hits keep their snap.
    """
    if rules.compression_ratio <= 1.0:
        return None, f"none for {stem.role}"
    a = stem.analysis
    gain_db = target_lufs - a.active_lufs
    threshold = a.loud_rms_dbfs + gain_db - rules.compression_depth_db
    range_scale = float(np.clip(0.75 + (a.loudness_range_lu - 2.0) * (0.75 / 12.0), 0.75, 1.5))
    ratio = rules.compression_ratio * range_scale
    if ratio < 1.05:
        return None, f"none: {stem.role} ratio {rules.compression_ratio:g} x{range_scale:.2f} for a steady part is below 1.05:1"
    attack = rules.attack_ms * (2.0 if a.crest_factor_db > 18 else 1.0)
    rule = (f"threshold {rules.compression_depth_db:g} dB under the loud moments (95th percentile of 10 ms RMS)"
            f"; ratio {rules.compression_ratio:g} x{range_scale:.2f} for {a.loudness_range_lu:.1f} LU of range"
            + ("; slower attack for a crest factor over 18 dB" if a.crest_factor_db > 18 else ""))
    return CompressorPlan(threshold, ratio, attack, rules.release_ms, rule), rule


def pan_positions(stems: list[StemInfo], preset: Preset, lead: str | None = None) -> dict[str, tuple[float, str]]:
    """Pan per stem.

    Named stereo pairs (``OH_L``/``OH_R``) go left and right at the role's spread (at
    least 0.8). Kick, snare, bass and the lead stay centred (``pan_spread = 0``); other
    vocals than the lead spread like backing vocals instead of stacking on it. Other
    stems of one role spread evenly across +-spread; a role with a single stem is set
    off-centre by half its spread, alternating sides from role to role so the image
    stays balanced. Positions are scaled by the preset's ``pan_width``.
    """
    width = preset.mix.pan_width
    positions: dict[str, tuple[float, str]] = {}
    by_role: dict[str, list[StemInfo]] = defaultdict(list)
    for stem in stems:
        if stem.stereo_side and sum(1 for s in stems if s.pair_key == stem.pair_key) == 2:
            spread = max(preset.roles[stem.role].pan_spread, 0.8) * width
            side = -1.0 if stem.stereo_side == "L" else 1.0
            positions[stem.name] = (side * spread, f"{stem.stereo_side} side of a stereo pair")
        else:
            by_role[stem.role].append(stem)
    if lead and len(by_role.get("vocal", [])) > 1:
        by_role["vocal"] = [s for s in by_role["vocal"] if s.name != lead]
        positions[lead] = (0.0, "centre: the lead")
        spread = preset.roles["backing_vocal"].pan_spread * width
        others = sorted(by_role.pop("vocal"), key=lambda s: s.name)
        offsets = np.linspace(-spread, spread, len(others)) if len(others) > 1 else np.array([-spread / 2])
        for stem, pan in zip(others, offsets):
            positions[stem.name] = (float(pan), f"vocal besides the lead: spread like backing vocals (+-{spread:g})")
    next_side = -1.0
    for role in sorted(by_role):
        group = sorted(by_role[role], key=lambda s: s.name)
        spread = preset.roles[role].pan_spread * width
        if spread == 0:
            for stem in group:
                positions[stem.name] = (0.0, f"centre: {role} anchors the middle")
        elif len(group) == 1:
            positions[group[0].name] = (next_side * spread / 2, f"single {role}: half its spread ({spread:g}) to one side")
            next_side = -next_side
        else:
            for stem, pan in zip(group, np.linspace(-spread, spread, len(group))):
                positions[stem.name] = (float(pan), f"{len(group)} {role} stems spread across +-{spread:g}")
    return positions
