"""``mix --amount``: every corrective move of the mix plan, scaled between none and all.

The issue (12) asks: "0 leaves stems at their gains only". At amount ``a`` (0..1) the
plan :func:`automix.mix.balancer.balance` made (amount 1) is moved toward "each stem as
it came in" by :func:`scale_plan`, a pure function on the frozen plan:

* **level** -- each stem's balance gain (automix's, relative to the level it came in at,
  plus its group's correction, which the renderer measures on the summed group) is
  interpolated in dB between one common gain (amount 0: every stem keeps its own level,
  the mix is their plain sum times one gain) and the full move (amount 1). In dB
  because a balance is a set of level *differences*: at 0.5 every difference between two
  stems is halfway, so each stem's level relative to the others moves by half of what
  amount 1 moves it;
* **high-pass** -- its cutoff slides on a log scale (octaves, how pitch and the
  balancer's own "an octave under the content" rule count) toward ``HIGHPASS_OFF_HZ``
  and is off at amount 0;
* **masking cuts** -- each cut's depth in dB times ``a``; none at 0;
* **compression** -- the ratio's excess over 1:1 times ``a`` (``1 + (r - 1) a``); its
  threshold follows the stem's changed gain, so it still sits where automix put it
  relative to the stem's loud moments; none at 0;
* **pan** -- from the stem's own placement (centre; a named stereo pair's side, hard
  left or right, as the two files were recorded) toward automix's position.

The user's own moves (``--gain``, ``--focus``, ``--pan``, ``--mute``, ``--plan-file``)
apply in full at any amount: they are the user's say, not a correction.

At an amount under 1 the groups' level correction is folded into each stem's planned
level (pass the corrections measured at amount 1, :func:`group_corrections_db`), and the
renderer's group normalisation is switched off for the scaled plan (``group = ""``):
it would otherwise re-measure the group at the scaled levels and undo the scaling.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from automix.errors import AutomixError
from automix.measure import loudness
from automix.mix.balancer import MixPlan, StemInfo, StemPlan

#: Where the high-pass cutoff goes as the amount falls to 0, Hz: an octave under the
#: audible floor (20 Hz, the balancer's own lowest cutoff). The cutoff slides on a log
#: scale, ``HIGHPASS_OFF_HZ * (cutoff / HIGHPASS_OFF_HZ) ** amount`` (amount 0.5 keeps
#: half the octaves between it and the planned cutoff). At 10 Hz the renderer's 12 dB/oct
#: Butterworth takes 0.26 dB at 20 Hz and under 0.02 dB from 40 Hz up
#: (1 / sqrt(1 + (fc / f) ** 4)), so switching it off at amount 0 is no audible step.
HIGHPASS_OFF_HZ = 10.0


def _check_amount(amount: float) -> float:
    amount = float(amount)
    if not 0.0 <= amount <= 1.0 or math.isnan(amount):
        raise AutomixError(f"--amount must be between 0 and 1, not {amount:g}")
    return amount


def own_placements(stems: list[StemInfo]) -> dict[str, float]:
    """Each stem's own placement, where amount 0 pans it: the side of a named stereo pair
    split into two files (``OH_L``/``OH_R``, both present: recorded as hard left and
    right), else the centre (a stereo stem then keeps its own image)."""
    placements = {}
    for stem in stems:
        paired = stem.stereo_side and sum(1 for s in stems if s.pair_key == stem.pair_key) == 2
        placements[stem.name] = (-1.0 if stem.stereo_side == "L" else 1.0) if paired else 0.0
    return placements


def common_gain_db(plan: MixPlan, group_gains_db: dict[str, float] | None = None) -> float:
    """The one gain every stem gets at amount 0: the mean of automix's full level moves
    (balance gain plus group correction; the user's gains left out), so the scaled plan's
    levels stay near the full plan's. Any common gain gives the same mix: the bus sets
    the level."""
    moves = [_automix_move_db(p, group_gains_db) for p in plan.stems]
    return float(np.mean(moves)) if moves else 0.0


def _automix_move_db(stem: StemPlan, group_gains_db: dict[str, float] | None) -> float:
    """automix's full level move for a stem, dB: its balance gain (``gain_db`` less the
    user's part) and its group's correction measured at amount 1."""
    group = (group_gains_db or {}).get(stem.group, 0.0) if stem.group else 0.0
    return stem.gain_db - stem.user_gain_db + group


def scale_plan(plan: MixPlan, amount: float, *, group_gains_db: dict[str, float] | None = None,
               own_pans: dict[str, float] | None = None) -> MixPlan:
    """The plan with every corrective move of automix scaled by ``amount`` (see the module
    docstring); the user's moves kept in full.

    Parameters
    ----------
    plan : MixPlan
        :func:`automix.mix.balancer.balance`'s plan (amount 1), with the user's say in it.
    amount : float
        0..1. 1 returns ``plan`` itself (the renderer then normalises the groups as usual).
    group_gains_db : dict, optional
        Per group, the correction the renderer applies at amount 1
        (:func:`group_corrections_db`); scaled with the stems' levels. Without it the
        correction is taken as 0 (exact when no group holds more than one stem).
    own_pans : dict, optional
        Per stem name, its own placement (:func:`own_placements`); centre if missing.

    Returns
    -------
    MixPlan
        Stems with ``gain_db``/``target_lufs``, high-pass, cuts, compressor and pan at the
        amount, each rule saying so, no group normalisation (``group = ""``), and
        ``amount``/``amount_rule`` set.

    Raises
    ------
    AutomixError
        If ``amount`` is outside 0..1.
    """
    amount = _check_amount(amount)
    if amount == 1.0:
        return plan
    own_pans = own_pans or {}
    common = common_gain_db(plan, group_gains_db)
    stems = []
    for stem in plan.stems:
        full = _automix_move_db(stem, group_gains_db)
        automix_db = common + amount * (full - common)
        gain_db = automix_db + stem.user_gain_db
        change_db = gain_db - stem.gain_db
        user_pan = any(key == "pan" for key, _ in stem.decided_by_user)
        at = f"at amount {amount:g}"
        gain_rule = (f"{stem.gain_rule}; {at}: automix's move {full:+.2f} dB"
                     + (f" (with the {stem.group} group's correction {full - stem.gain_db + stem.user_gain_db:+.2f} dB)"
                        if stem.group and group_gains_db and stem.group in group_gains_db else "")
                     + f" scaled from the common {common:+.2f} dB to {automix_db:+.2f} dB")
        if stem.user_gain_db:
            gain_rule += f", the user's {stem.user_gain_db:+.2f} dB in full"
        highpass_hz, highpass_rule = stem.highpass_hz, stem.highpass_rule
        if highpass_hz:
            if amount > 0:
                highpass_hz = HIGHPASS_OFF_HZ * (highpass_hz / HIGHPASS_OFF_HZ) ** amount
                highpass_rule = f"{highpass_rule}; {at}: {highpass_hz:.0f} Hz (log scale toward {HIGHPASS_OFF_HZ:g} Hz)"
            else:
                highpass_hz, highpass_rule = None, f"off at amount 0 (automix: {stem.highpass_hz:.0f} Hz, {highpass_rule})"
        cuts = tuple(replace(cut, gain_db=cut.gain_db * amount, rule=f"{cut.rule}; {at}: {cut.gain_db * amount:.1f} dB")
                     for cut in stem.eq_cuts) if amount > 0 else ()
        compressor, compressor_rule = stem.compressor, stem.compressor_rule
        if compressor is not None:
            if amount > 0:
                ratio = 1.0 + (compressor.ratio - 1.0) * amount
                compressor_rule = f"{compressor_rule}; {at}: ratio {ratio:.2f}:1 (automix: {compressor.ratio:.2f}:1)"
                compressor = replace(compressor, ratio=ratio, threshold_db=compressor.threshold_db + change_db,
                                     rule=compressor_rule)
            else:
                compressor, compressor_rule = None, f"off at amount 0 (automix: {compressor.ratio:.2f}:1, {compressor_rule})"
        pan, pan_rule = stem.pan, stem.pan_rule
        if not user_pan:
            own = float(own_pans.get(stem.name, 0.0))
            pan = own + amount * (stem.pan - own)
            pan_rule = f"{pan_rule}; {at}: {pan:+.2f} from its own placement {own:+.2f} toward automix's {stem.pan:+.2f}"
        stems.append(replace(
            stem, target_lufs=stem.target_lufs + change_db, gain_db=gain_db, gain_rule=gain_rule,
            highpass_hz=highpass_hz, highpass_rule=highpass_rule, eq_cuts=cuts, compressor=compressor,
            compressor_rule=compressor_rule, pan=pan, pan_rule=pan_rule, group="", group_lufs=0.0, group_user_db=0.0,
        ))  # fmt: skip
    rule = (f"--amount {amount:g}: automix's corrective moves of the mix scaled (levels in dB between one common gain, "
            f"{common:+.2f} dB, and the full balance; high-pass, cuts, compression and pan toward none); "
            "the user's moves in full")
    groups = tuple(replace(g, rule=f"{g.rule}; at amount {amount:g}: folded into its stems' levels"
                                   + (f" (correction {group_gains_db[g.name]:+.2f} dB measured at amount 1)"
                                      if group_gains_db and g.name in group_gains_db else ""))
                   for g in plan.groups)
    return replace(plan, stems=tuple(stems), groups=groups, amount=amount, amount_rule=rule)


def group_corrections_db(sources, sample_rate: int, plan: MixPlan, *, threads: int | None = None) -> dict[str, float]:
    """Per group, the gain the renderer gives the group at amount 1 (its summed loudness
    onto the planned level, :func:`automix.mix.renderer.group_gains_db`), measured the
    way :func:`automix.mix.renderer.render_stream` does: one pass of each grouped stem's
    chain, K-weighted channel energies, so the group's sum is never formed.

    Only groups of two or more stems are measured (a lone stem's make-up already puts it
    on its group's level: 0 dB); ``sources`` are :class:`automix.io.stream.BlockSource`\\ s
    in the order of ``plan.stems``.
    """
    from automix.mix.renderer import (
        ChannelEnergies,
        StemChain,
        _map,
        _on_grid,
        pan_gains,
    )

    members: dict[str, list[int]] = {}
    for index, stem in enumerate(plan.stems):
        if stem.group:
            members.setdefault(stem.group, []).append(index)
    result = {group: 0.0 for group in members}
    measured = sorted(i for indices in members.values() if len(indices) > 1 for i in indices)
    if not measured:
        return result
    local = {index: k for k, index in enumerate(measured)}
    chains = [StemChain(plan.stems[i], sample_rate, sources[i].channels) for i in measured]
    meter = ChannelEnergies(sample_rate, [sources[i].channels for i in measured])
    pans = [pan_gains(sources[i].channels, plan.stems[i].pan) for i in measured]
    workers = min(len(measured), threads or loudness.THREADS)  # AUTOMIX_THREADS: the one thread setting
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        frames = max(sources[i].frames for i in measured)
        for blocks in zip(*(_on_grid(sources[i], frames) for i in measured)):
            meter.add(_map(pool, lambda k, blocks=blocks: meter.weigh(k, chains[k].process_unpanned(blocks[k])),
                           range(len(measured))))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    makeup = np.zeros(len(measured))
    for k, index in enumerate(measured):
        unit = np.zeros(len(measured))
        unit[k] = 1.0
        level = meter.loudness(meter.mixing_matrix(unit, pans))
        db = plan.stems[index].target_lufs - level if level > loudness.SILENCE_DB else 0.0
        makeup[k] = float(np.float32(10 ** (db / 20)))
    for group, indices in members.items():
        if len(indices) < 2:
            continue
        weights = np.zeros(len(measured))
        for index in indices:
            weights[local[index]] = makeup[local[index]] * 10 ** (-plan.stems[index].user_gain_db / 20)
        level = meter.loudness(meter.mixing_matrix(weights, pans))
        if level <= loudness.SILENCE_DB:
            continue
        first = plan.stems[indices[0]]
        result[group] = first.group_lufs - first.group_user_db - level
    return result
