"""Stage 2 of the pipeline: decide, per stem, gain, EQ, compression and pan.

Levels are set the way a mixing engineer balances groups: each group of stems (vocals,
drums, bass, harmony; ``automix.presets.ROLE_GROUPS``) sits at the loudness measured for
that group in professional mixes (the preset's ``[groups]``, MUSDB18 averages in
``automix.mix.reference_levels``), and its stems share that loudness by role (kick and
snare carry a kit, room mics less), however many stems the group has. Without a vocal,
the instrument a listener follows -- found from the audio -- takes the vocal's place.

Rule-based and transparent: every number in a :class:`StemPlan` comes from one short
function below, and the plan keeps the sentence that says which rule chose it. The
rules read only the *shape* of each stem (its loudness relative to itself, its
spectrum's shape, its crest factor), never its absolute level: the same stems fed in
at other levels get the same plan apart from their input gains, and so the same mix.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace

import numpy as np

from automix.errors import AutomixError
from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ, AudioAnalysis
from automix.mix import reference_levels, user_plan
from automix.presets import GROUPS, ROLE_GROUPS, Preset, RoleRules

#: Roles that are never the "lead", and never get masking cuts for it: the rhythm
#: section's low end and transients carry their own bands.
RHYTHM_ROLES = frozenset({"kick", "snare", "toms", "hats", "overheads", "room", "drums", "percussion", "bass"})
#: Roles that can lead without a vocal, most likely first (a melody instrument's name is
#: a prior; the audio decides between them, see :func:`choose_lead`).
LEAD_ORDER = ("vocal", "woodwinds", "brass", "guitar", "piano", "synth", "keys", "strings", "backing_vocal", "other")
#: Words in a file name that say the stem leads (a strong prior, not a rule).
LEAD_WORDS = frozenset({"lead", "solo", "melody", "main", "leadsynth", "leadvox"})
#: The band where a lead's intelligibility and presence live (speech-intelligibility range).
PRESENCE_BAND_HZ = (250.0, 5000.0)
#: The "presence" band mixing engineers mean: where a lead line cuts through (1-5 kHz).
LEAD_PRESENCE_HZ = (1000.0, 5000.0)


@dataclass(frozen=True)
class LeadFeatures:
    """How much a stem sounds like the part a listener follows (each 0 .. 1).

    continuity: share of 100 ms frames where it sounds (within 30 dB of its loud moments);
    presence: its power share in 1-5 kHz, mapped from -20 dB (0) to 0 dB (1);
    melodic: how clearly one pitch dominates (normalised autocorrelation peak).
    """

    continuity: float
    presence: float
    melodic: float


@dataclass(frozen=True)
class StemInfo:
    """What the balancer knows about one stem (stage 1's output plus its role)."""

    name: str
    role: str
    role_reason: str
    analysis: AudioAnalysis
    stereo_side: str | None = None  # "L" or "R" for one side of a named stereo pair
    pair_key: str | None = None
    lead_features: LeadFeatures | None = None  # from the audio (roles.lead_features); else estimated


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
    group: str = ""  # the group whose summed loudness the renderer sets ("" = none)
    group_lufs: float = 0.0  # that group's loudness on the plan's scale
    #: The user's part of ``target_lufs`` (``--gain`` plus a ``--focus``), dB; the rest
    #: is automix's level. Already included in ``target_lufs`` and ``gain_db``.
    user_gain_db: float = 0.0
    #: The user's part of ``group_lufs``: how much the user's gains raise the group's
    #: planned power sum (0 when nobody in the group was moved).
    group_user_db: float = 0.0
    #: Which decisions were the user's: ((setting, where it came from), ...), e.g.
    #: (("gain_db", "--gain vox=+1.5"), ("pan", "song.toml")).
    decided_by_user: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        data = _rounded(asdict(self))
        data["decided_by_user"] = dict(self.decided_by_user)
        data["decided_by"] = {key: "user" if key in data["decided_by_user"] else "automix"
                              for key in ("gain_db", "pan", "focus")}
        return data


@dataclass(frozen=True)
class GroupPlan:
    """One group of stems and the loudness they sit at together."""

    name: str
    target_lufs: float
    rule: str
    stems: tuple[str, ...]


@dataclass(frozen=True)
class MutedStem:
    """A stem the user left out of the mix (``--mute``): not planned, not rendered."""

    name: str
    rule: str  # "muted by the user (--mute fx)"


@dataclass(frozen=True)
class MixPlan:
    stems: tuple[StemPlan, ...]
    lead: str | None
    lead_rule: str
    bus_lufs: float
    groups: tuple[GroupPlan, ...] = ()
    muted: tuple[MutedStem, ...] = ()
    #: the focus the user asked for, and what it moved ("" = none)
    focus_rule: str = ""
    #: what combining the command line and the plan file replaced
    user_notes: tuple[str, ...] = ()
    #: share of automix's corrective moves the plan applies (``mix --amount``, 0..1;
    #: :func:`automix.mix.amount.scale_plan`), and what that scaled ("" at 1)
    amount: float = 1.0
    amount_rule: str = ""

    def to_dict(self) -> dict:
        return {"lead": self.lead, "lead_rule": self.lead_rule, "bus_lufs": self.bus_lufs,
                "amount": self.amount, "amount_rule": self.amount_rule,
                "groups": [_rounded(asdict(group)) for group in self.groups],
                "stems": [stem.to_dict() for stem in self.stems],
                "muted": [asdict(stem) for stem in self.muted],
                "focus_rule": self.focus_rule, "user_notes": list(self.user_notes)}


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def balance(stems: list[StemInfo], preset: Preset, user=None) -> MixPlan:
    """Plan the mix of ``stems`` by the rules of ``preset``, then the user's say over it.

    Parameters
    ----------
    stems : list of StemInfo
        Non-silent stems with their analyses and roles.
    preset : Preset
    user : automix.mix.user_plan.UserPlan, optional
        The user's decisions (:func:`apply_user_plan`): muted stems are left out before
        anything is planned (the rest is balanced as if they were not there); then the
        user's gains and focus move the planned levels, and the user's pans replace
        automix's.

    Returns
    -------
    MixPlan
        Only the stems that are mixed, in the order given (muted ones removed; they are
        listed in ``MixPlan.muted``).

    Raises
    ------
    AutomixError
        If the user's plan names a stem that is not there, or mutes every stem.
    """
    says, muted = {}, []
    if user is not None:
        says = user_plan.resolve(user, [s.name for s in stems])
        for name, say in says.items():
            if say.mute:
                muted.append(MutedStem(name, f"muted by the user ({say.origins.get('mute', '--mute')})"))
        if muted:
            names = {m.name for m in muted}
            stems = [s for s in stems if s.name not in names]
            if not stems:
                raise AutomixError("every stem is muted: nothing to mix (" + ", ".join(m.rule for m in muted) + ")")
    lead, lead_rule = choose_lead(stems)
    targets, groups = group_targets(stems, preset, lead)
    pans = pan_positions(stems, preset, lead)
    lead_stem = next((s for s in stems if s.name == lead), None)
    plans = []
    for stem in stems:
        rules = preset.roles[stem.role]
        target, gain_rule, group, group_lufs = targets[stem.name]
        cutoff, highpass_rule = highpass_cutoff(stem, rules)
        cuts = masking_cuts(stem, target, lead_stem, targets[lead][0] if lead else 0.0, preset.mix.masking_max_cut_db)
        compressor, compressor_rule = compressor_settings(stem, target, rules)
        pan, pan_rule = pans[stem.name]
        plans.append(StemPlan(
            name=stem.name, role=stem.role, role_reason=stem.role_reason,
            target_lufs=target, gain_db=target - stem.analysis.active_lufs, gain_rule=gain_rule,
            highpass_hz=cutoff, highpass_order=2, highpass_rule=highpass_rule,
            eq_cuts=cuts, compressor=compressor, compressor_rule=compressor_rule,
            pan=pan, pan_rule=pan_rule, group=group, group_lufs=group_lufs,
        ))  # fmt: skip
    plan = MixPlan(tuple(plans), lead, lead_rule, preset.mix.bus_lufs, groups, tuple(muted))
    if user is None:
        return plan
    return apply_user_plan(plan, stems, user, says)


def apply_user_plan(plan: MixPlan, stems: list[StemInfo], user, says: dict | None = None) -> MixPlan:
    """Move automix's plan by the user's gains, pans and focus; every change is marked.

    * ``gain_db``: added to the stem's planned loudness (``target_lufs``, ``gain_db``,
      and the compressor's threshold, so the compressor acts on the stem exactly as
      automix planned it). The EQ, the high-pass and the masking cuts stay as automix
      planned them: a gain changes the level and nothing else.
    * ``pan``: replaces automix's pan.
    * focus (a stem, a role, a group or ``"lead"``): its stems come ``focus_lu``
      forward (on top of any gain); the bus is normalised afterwards, so the rest of
      the mix ends up lower around them.

    The group a moved stem belongs to is raised by the power sum of its members' new
    levels (``group_lufs``, ``group_user_db``), so the renderer's group normalisation
    keeps the move instead of undoing it. The mix bus keeps its loudness: relative to
    the rest of the mix, a stem moves by exactly the requested dB.
    """
    if says is None:
        says = user_plan.resolve(user, [s.name for s in stems])
    focus_names, focus_rule = _focus_stems(plan, stems, user)
    group_power: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    moved = []
    for stem_plan in plan.stems:
        say = says.get(stem_plan.name)
        decided: list[tuple[str, str]] = []
        gain_rule, pan_value, pan_rule = stem_plan.gain_rule, stem_plan.pan, stem_plan.pan_rule
        raise_db = 0.0
        if say is not None and say.gain_db is not None and say.gain_db != 0.0:
            raise_db += say.gain_db
            where = say.origins.get("gain_db", "--gain")
            gain_rule += f"; {say.gain_db:+.1f} dB by the user ({where})"
            decided.append(("gain_db", where))
        if stem_plan.name in focus_names:
            raise_db += user.focus_lu
            gain_rule += f"; {user.focus_lu:+.1f} LU: the user's focus ({user.focus_origin or 'focus'} -> {user.focus})"
            decided.append(("focus", user.focus_origin or "focus"))
        if say is not None and say.pan is not None:
            where = say.origins.get("pan", "--pan")
            pan_value = float(say.pan)
            pan_rule = f"user: {where} (automix: {_pan_text(stem_plan.pan)}, {stem_plan.pan_rule})"
            decided.append(("pan", where))
        compressor = stem_plan.compressor
        if compressor is not None and raise_db:
            compressor = replace(compressor, threshold_db=compressor.threshold_db + raise_db)
        if stem_plan.group:
            power = group_power[stem_plan.group]
            power[0] += 10 ** (stem_plan.target_lufs / 10)
            power[1] += 10 ** ((stem_plan.target_lufs + raise_db) / 10)
        moved.append(replace(
            stem_plan, target_lufs=stem_plan.target_lufs + raise_db, gain_db=stem_plan.gain_db + raise_db,
            gain_rule=gain_rule, compressor=compressor, pan=pan_value, pan_rule=pan_rule,
            user_gain_db=stem_plan.user_gain_db + raise_db, decided_by_user=stem_plan.decided_by_user + tuple(decided),
        ))  # fmt: skip
    group_raise = {group: 10.0 * math.log10(after / before) for group, (before, after) in group_power.items()
                   if before > 0 and after != before}
    if group_raise:
        moved = [replace(p, group_lufs=p.group_lufs + group_raise[p.group], group_user_db=p.group_user_db + group_raise[p.group])
                 if p.group in group_raise else p for p in moved]
    groups = tuple(
        replace(g, target_lufs=g.target_lufs + group_raise[g.name],
                rule=g.rule + f"; {group_raise[g.name]:+.2f} LU from the user's gains on its stems")
        if g.name in group_raise else g for g in plan.groups)
    return replace(plan, stems=tuple(moved), groups=groups, focus_rule=focus_rule, user_notes=tuple(user.notes))


def _pan_text(position: float) -> str:
    return "C" if abs(position) < 0.005 else f"{'L' if position < 0 else 'R'}{abs(position) * 100:.0f}"


def _focus_stems(plan: MixPlan, stems: list[StemInfo], user) -> tuple[set[str], str]:
    """The stems the focus names: a stem (file name with or without extension), else a
    role, else a group, else ``"lead"`` (automix's lead)."""
    if not user.focus:
        return set(), ""
    focus, where = user.focus, user.focus_origin or "focus"
    names = [p.name for p in plan.stems]
    found = user_plan.match_stem(focus, names)
    if len(found) == 1:
        chosen, what = set(found), f"the stem {found[0]}"
    elif focus == user_plan.LEAD_FOCUS:
        if plan.lead is None:
            raise AutomixError(f"{where}: there is no lead to focus on ({plan.lead_rule}); name a stem, role or group")
        chosen, what = {plan.lead}, f"the lead, {plan.lead}"
    elif any(p.role == focus for p in plan.stems):
        chosen = {p.name for p in plan.stems if p.role == focus}
        what = f"the {focus} role ({', '.join(sorted(chosen))})"
    elif focus in GROUPS and any(p.group == focus for p in plan.stems):
        chosen = {p.name for p in plan.stems if p.group == focus}
        what = f"the {focus} group ({', '.join(sorted(chosen))})"
    else:
        roles = sorted({p.role for p in plan.stems})
        muted = f"; muted: {', '.join(m.name for m in plan.muted)}" if plan.muted else ""
        raise AutomixError(f"{where}: '{focus}' names no stem, role or group in this mix (the stems: {', '.join(names)}; "
                           f"their roles: {', '.join(roles)}; groups: {', '.join(sorted({p.group for p in plan.stems if p.group}))}"
                           f"{muted}; or '{user_plan.LEAD_FOCUS}')")
    rule = (f"focus on {what} ({where}): {user.focus_lu:+.1f} LU on its planned level, the bus normalised after, "
            "so the rest of the mix sits lower around it")
    return chosen, rule


def estimated_lead_features(analysis: AudioAnalysis) -> LeadFeatures:
    """Lead features from the analysis alone, when the audio was not measured for them.

    Continuity: the stem's mean power over its whole length against the power of its
    active part (``sample peak - crest factor``): 1 when it plays throughout, 0.5 when
    it rests half the time. Melodic: unknown from an analysis, so 0.5 for every stem
    (the role's name and the other two features decide).
    """
    active_rms_db = analysis.sample_peak_dbfs - analysis.crest_factor_db
    continuity = float(np.clip(10 ** ((analysis.rms_dbfs - active_rms_db) / 10), 0.0, 1.0))
    return LeadFeatures(continuity, presence_score(analysis), 0.5)


def presence_score(analysis: AudioAnalysis) -> float:
    """Power share in 1-5 kHz: -20 dB or less -> 0, all of it -> 1."""
    share_db = analysis.band_level_db(*LEAD_PRESENCE_HZ)
    return float(np.clip((share_db + 20.0) / 20.0, 0.0, 1.0))


def choose_lead(stems: list[StemInfo]) -> tuple[str | None, str]:
    """The stem everything else is balanced and cleared around.

    The vocal when there is one (the loudest-measured vocal if several, as the lead is
    usually the one recorded hottest). Without a vocal, the instrument a listener
    follows: among the melodic roles of ``LEAD_ORDER`` the stem with the highest sum of
    three audio scores -- it plays most of the time (continuity), it has the most of its
    energy in the 1-5 kHz presence band, and one clear pitch at a time (melodic) -- plus
    a small prior from the role's name (0.3 for a horn or woodwind down to 0 for
    "other"), which only decides between stems that sound alike, and 0.5 more when the
    file name says so ("lead", "solo", "melody"). Else none.
    """
    vocals = [s for s in stems if s.role == "vocal"]
    if vocals:
        chosen = max(vocals, key=lambda s: (s.analysis.active_lufs, s.name))
        why = "the only" if len(vocals) == 1 else "the most present"
        return chosen.name, f"{why} vocal stem"
    candidates = [s for s in stems if s.role in LEAD_ORDER]
    if not candidates:
        return None, "no melodic stem: no lead, no masking cuts"
    scored = []
    for stem in candidates:
        features = stem.lead_features or estimated_lead_features(stem.analysis)
        prior = 0.3 * (1.0 - LEAD_ORDER.index(stem.role) / (len(LEAD_ORDER) - 1))
        if LEAD_WORDS & set(re.split(r"[^a-z]+", stem.name.lower())):
            prior += 0.5  # "lead_synth", "solo gtr": the name says who leads
        total = features.continuity + features.presence + features.melodic + prior
        scored.append((total, stem.name, stem, features, prior))
    scored.sort(key=lambda item: (-item[0], item[1]))
    total, name, stem, f, prior = scored[0]
    source = "measured" if stem.lead_features else "estimated from the analysis"
    rule = (f"no vocal: {name} ({stem.role}) is the part a listener follows -- continuity {f.continuity:.2f}, "
            f"presence 1-5 kHz {f.presence:.2f}, melodic {f.melodic:.2f} ({source}), name prior {prior:.2f}: "
            f"score {total:.2f}")
    if len(scored) > 1:
        rule += "; then " + ", ".join(f"{n} {t:.2f}" for t, n, *_ in scored[1:4])
    return name, rule


def stem_group(stem: StemInfo, lead: str | None) -> str:
    """The group a stem is balanced in: the lead joins the vocals' place."""
    if stem.name == lead:
        return "vocals"
    return ROLE_GROUPS.get(stem.role, "harmony")


def group_targets(stems: list[StemInfo], preset: Preset, lead: str | None
                  ) -> tuple[dict[str, tuple[float, str, str, float]], tuple[GroupPlan, ...]]:
    """Planned loudness per stem: the group's level, shared inside the group by role.

    A group's level is the preset's ``[groups]`` value (LU relative to the vocals; the
    lead instrument takes the vocals' level when there is no vocal). Inside a group each
    stem gets its role's ``loudness_lu`` (relative to the group's main role), a role
    with n stems each 10 log10(n) dB less, and the shares are scaled so their powers add
    up to the group's level; the renderer then measures the summed group and corrects
    the rest. The lead counts as its group's main role (0 LU); another stem of the vocal
    role beside the lead vocal is balanced like a backing vocal.

    Returns
    -------
    ({stem name: (target LUFS, rule, group, group LUFS)}, group plans)
    """
    group_levels = preset.groups.as_dict()
    members: dict[str, list[StemInfo]] = defaultdict(list)
    for stem in stems:
        members[stem_group(stem, lead)].append(stem)
    role_counts = Counter((stem_group(s, lead), s.role if s.name != lead else "lead") for s in stems)
    targets: dict[str, tuple[float, str, str, float]] = {}
    plans = []
    for group in sorted(members):
        group_lufs = group_levels[group]
        origin = preset.origins.get(f"groups.{group}_lu", "preset")
        shares = {}
        for stem in members[group]:
            if stem.name == lead:
                role_lu, label = 0.0, "the lead"
            elif stem.role == "vocal" and lead is not None:
                role_lu, label = preset.roles["backing_vocal"].loudness_lu, "a vocal beside the lead (as backing_vocal)"
            else:
                role_lu, label = preset.roles[stem.role].loudness_lu, stem.role
            count = role_counts[(group, stem.role if stem.name != lead else "lead")]
            shares[stem.name] = (role_lu - 10.0 * math.log10(count), role_lu, label, count)
        total_db = 10.0 * math.log10(sum(10 ** (share / 10) for share, *_ in shares.values()))
        for stem in members[group]:
            share, role_lu, label, count = shares[stem.name]
            target = group_lufs + share - total_db
            rule = (f"{group} group at {group_lufs:+.2f} LU relative to the vocals ({origin}); "
                    f"{label} {role_lu:+.1f} LU within the group")
            if count > 1:
                rule += f", shared by {count} stems ({-10 * math.log10(count):+.1f} dB each)"
            if len(members[group]) > 1:
                rule += f", {len(members[group])} stems scaled together onto the group's level"
            targets[stem.name] = (target, rule, group, group_lufs)
        plans.append(GroupPlan(group, group_lufs, f"[groups] {group}_lu = {group_lufs:+.2f} ({origin})",
                               tuple(s.name for s in members[group])))
    return targets, tuple(plans)


def target_loudness(stem: StemInfo, rules: RoleRules, stems_in_role: int) -> tuple[float, str]:
    """Role level shared by ``stems_in_role`` stems (kept for callers of the old API).

    n stems of one role share its loudness, each 10 log10(n) dB lower. :func:`balance`
    now plans by group (:func:`group_targets`).
    """
    share_db = 10.0 * math.log10(stems_in_role)
    target = rules.loudness_lu - share_db
    rule = f"{stem.role}: {rules.loudness_lu:+.1f} LU"
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
    if lead and lead not in positions:  # the lead (voice or soloist) is the centre of the image
        lead_role = next(s.role for s in stems if s.name == lead)
        by_role[lead_role] = [s for s in by_role[lead_role] if s.name != lead]
        if not by_role[lead_role]:
            del by_role[lead_role]
        positions[lead] = (0.0, "centre: the lead")
    if lead and by_role.get("vocal"):  # vocals besides the lead vocal
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


def compare_to_reference(analysis: AudioAnalysis, preset: Preset, samples: np.ndarray | None = None) -> dict:
    """The finished mix's third-octave balance and width against the preset's average.

    The expected spectrum is the MUSDB18 class spectra added at the preset's group
    levels (:func:`automix.mix.reference_levels.compare_to_reference`); pass the mix's
    ``samples`` to also compare its panning similarity.
    """
    result = reference_levels.compare_to_reference(analysis, preset.groups.as_dict(), samples)
    result["preset"] = preset.name
    return result
