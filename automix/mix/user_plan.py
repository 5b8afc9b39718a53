"""The user's say over the mix plan: per-stem gain, pan and mute, and a focus.

automix balances the stems by its rules (:mod:`automix.mix.balancer`); a user who
disagrees with one decision changes that decision only, from the command line::

    automix mix stems/ -o mix.wav --gain vox=+1.5 --pan gtr_L=-0.8 --mute fx --focus vocal

or in a TOML file kept beside the stems (``--plan-file song.toml``)::

    focus = "vocal"          # a stem, a role, a group (vocals, drums, bass, harmony) or "lead"
    focus_lu = 3.0           # optional, how far forward (0 .. 12 LU, default 3)
    [stems."lead_vox.wav"]   # the file name, or the stem name without its extension
    gain_db = 1.5            # added on top of automix's level, -24 .. +24 dB
    pan = 0.0                # replaces automix's pan, -1 (left) .. +1 (right)
    mute = false             # true: leave the stem out of the mix (reported)

The file is validated like a preset: an unknown key, a wrong type or a value out of
range is one :class:`AutomixError` naming the file, the key and what is allowed. Both
together combine per stem and per setting, the command line winning over the file (the
plan's ``notes`` say which values it replaced). Names are matched against the stems'
file names, with or without the extension (:func:`check_names`, before any audio is
read); the balancer applies the plan (``balance(stems, preset, user=plan)``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from automix.errors import AutomixError
from automix.presets import GROUPS, ROLES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Allowed user gain (issue 12): a stem 24 dB under the rest of a mix is as good as
#: muted (``--mute`` says that better), and beyond +24 dB a typo is likelier than intent.
GAIN_RANGE_DB = (-24.0, 24.0)
PAN_RANGE = (-1.0, 1.0)
#: How far the focus comes forward by default. A choice, not a measurement: 3 LU is
#: about the distance between the vocals and the drums in the average MUSDB18 mix
#: (drums -3.4 LU relative to the vocals, ../shared/data/reference_stats stem
#: ``loudness``; ``automix.mix.reference_levels``), so a focused part moves clearly
#: forward by one step of a real mix's balance and the result stays a plausible mix.
FOCUS_LU = 3.0
FOCUS_RANGE_LU = (0.0, 12.0)
#: The focus word meaning "whatever automix chose as the lead".
LEAD_FOCUS = "lead"

_STEM_KEYS = {
    "gain_db": f"number, added on top of automix's level, {GAIN_RANGE_DB[0]:g} to {GAIN_RANGE_DB[1]:+g} dB",
    "pan": f"number, replaces automix's pan, {PAN_RANGE[0]:g} (left) to {PAN_RANGE[1]:+g} (right)",
    "mute": "true or false: leave the stem out of the mix",
}
_TOP_KEYS = {
    "focus": f"text: a stem, a role, a group ({', '.join(GROUPS)}) or \"{LEAD_FOCUS}\"",
    "focus_lu": f"number, how far the focus comes forward, {FOCUS_RANGE_LU[0]:g} to {FOCUS_RANGE_LU[1]:g} LU",
    "stems": 'a table of [stems."<file name>"] tables',
}


@dataclass(frozen=True)
class StemSay:
    """The user's decisions for one stem; ``None`` leaves that decision to automix.

    ``origins`` maps each decided setting (``gain_db``, ``pan``, ``mute``) to where it
    came from (``--gain vox=+1.5``, ``song.toml``), for the rules and the report.
    """

    gain_db: float | None = None
    pan: float | None = None
    mute: bool | None = None
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class UserPlan:
    """Everything the user decided over automix's plan.

    stems : {name as the user wrote it: StemSay}
        Names are file names with or without the extension (see :func:`match_stem`).
    focus : a stem name, a role, a group or ``"lead"``; None for no focus.
    focus_lu : how far the focus comes forward (LU, on top of any ``gain_db``).
    focus_origin : where the focus came from (``--focus``, the plan file).
    notes : what combining the command line and the file replaced.
    """

    stems: Mapping[str, StemSay] = field(default_factory=dict)
    focus: str | None = None
    focus_lu: float = FOCUS_LU
    focus_origin: str = ""
    notes: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return self.focus is None and not any(
            say.gain_db is not None or say.pan is not None or say.mute for say in self.stems.values())

    def to_dict(self) -> dict:
        """For the report: what the user asked for, and where each came from."""
        stems = {}
        for name, say in self.stems.items():
            entry = {key: getattr(say, key) for key in _STEM_KEYS if getattr(say, key) is not None}
            if entry:
                stems[name] = {**entry, "from": dict(say.origins)}
        return {"focus": self.focus, "focus_lu": self.focus_lu if self.focus else None,
                "focus_from": self.focus_origin or None, "stems": stems, "notes": list(self.notes)}


# --- the command line -------------------------------------------------------------


def parse_cli(gains: Iterable[str] = (), pans: Iterable[str] = (), mutes: Iterable[str] = (),
              focus: str | None = None) -> UserPlan:
    """The plan from ``--gain NAME=DB``, ``--pan NAME=POS``, ``--mute NAME`` and
    ``--focus NAME[=LU]`` (each repeatable except ``--focus``).

    Raises
    ------
    AutomixError
        For a malformed value, a value out of range, or a stem given twice to one option.
    """
    stems: dict[str, dict[str, Any]] = {}
    origins: dict[str, dict[str, str]] = {}

    def put(option: str, name: str, key: str, value: Any, text: str) -> None:
        if key in stems.setdefault(name, {}):
            raise AutomixError(f"{option} {name}: given twice ({origins[name][key]} and {text}); give each stem once")
        stems[name][key] = value
        origins.setdefault(name, {})[key] = text

    for text in gains:
        name, value = _name_value("--gain", text, "NAME=DB", "vox=+1.5", "gain_db")
        put("--gain", name, "gain_db", _number("--gain", text, value, GAIN_RANGE_DB, "dB", "gain_db"), f"--gain {text}")
    for text in pans:
        name, value = _name_value("--pan", text, "NAME=POSITION", "gtr_L=-0.8", "pan")
        put("--pan", name, "pan", _number("--pan", text, value, PAN_RANGE, "", "pan"), f"--pan {text}")
    for text in mutes:
        name = str(text).strip()
        if not name or "=" in name:
            raise AutomixError(f"--mute {text!r}: expected a stem's file name, e.g. --mute fx (no '=')")
        put("--mute", name, "mute", True, f"--mute {name}")
    focus_name, focus_lu = None, FOCUS_LU
    if focus is not None:
        focus_name, sep, amount = str(focus).partition("=")
        focus_name = focus_name.strip()
        if not focus_name:
            raise AutomixError(f"--focus {focus!r}: expected a stem, a role, a group ({', '.join(GROUPS)}) or "
                               f"'{LEAD_FOCUS}', optionally =LU (e.g. --focus vocal or --focus vocal=+4)")
        if sep:
            focus_lu = _number("--focus", focus, amount, FOCUS_RANGE_LU, "LU", "focus_lu")
    plan_stems = {name: StemSay(**values, origins=origins[name]) for name, values in stems.items()}
    return UserPlan(plan_stems, focus_name, focus_lu, f"--focus {focus}" if focus_name else "")


def _name_value(option: str, text: str, form: str, example: str, key: str) -> tuple[str, str]:
    name, sep, value = str(text).rpartition("=")
    name = name.strip()
    if not sep or not name or not value.strip():
        raise AutomixError(f"{option} {text!r}: expected {form} ({_STEM_KEYS[key]}), e.g. {option} {example}")
    return name, value.strip()


def _number(option: str, text: str, value: str, allowed: tuple[float, float], unit: str, key: str) -> float:
    cleaned = value.strip()
    if unit and cleaned.lower().endswith(unit.lower()):  # "+1.5dB", "4 LU"
        cleaned = cleaned[: -len(unit)].strip()
    low, high = allowed
    where = f"{option} {text!r}"
    try:
        number = float(cleaned)
    except ValueError:
        raise AutomixError(f"{where}: {value!r} is not a number (allowed {low:g} to {high:+g}{' ' + unit if unit else ''})") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise AutomixError(f"{where}: {value} is out of range ({_meaning(key)}; allowed {low:g} to {high:+g}"
                           f"{' ' + unit if unit else ''})")
    return number


def _meaning(key: str) -> str:
    return {"gain_db": "gain relative to automix's level", "pan": "position, -1 left to +1 right",
            "focus_lu": "how far the focus comes forward"}[key]


# --- the plan file ----------------------------------------------------------------


def load_plan_file(path: str | Path) -> UserPlan:
    """Read and validate a plan file (see the module docstring for its form).

    Raises
    ------
    AutomixError
        Naming the file, the key and what is allowed, for a missing or unreadable file,
        text that is not UTF-8 or not TOML, an unknown key, a wrong type, or a value out
        of range.
    """
    path = Path(path)
    if not path.exists():
        raise AutomixError(f"--plan-file {path}: no such file")
    if not path.is_file():
        raise AutomixError(f"--plan-file {path}: not a file (give a .toml plan file)")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise AutomixError(f"{path}: cannot read ({error.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AutomixError(f"{path}: not UTF-8 text (byte {error.start} is 0x{raw[error.start]:02x}); "
                           "save the plan file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise AutomixError(f"{path}: not valid TOML ({error})") from None
    origin = path.name
    for key in data:
        if key not in _TOP_KEYS:
            raise AutomixError(f"{path}: unknown key '{key}' (allowed: {_allowed(_TOP_KEYS)})")
    focus = data.get("focus")
    if focus is not None and (not isinstance(focus, str) or not focus.strip()):
        raise AutomixError(f"{path}: 'focus' must be {_TOP_KEYS['focus']} in quotes, not {focus!r}")
    focus_lu = data.get("focus_lu", FOCUS_LU)
    focus_lu = _file_number(path, "focus_lu", focus_lu, FOCUS_RANGE_LU, "LU")
    if "focus_lu" in data and focus is None:
        raise AutomixError(f"{path}: 'focus_lu' without 'focus' (say what to focus on: {_TOP_KEYS['focus']})")
    tables = data.get("stems", {})
    if not isinstance(tables, dict):
        raise AutomixError(f"{path}: 'stems' must be {_TOP_KEYS['stems']}, e.g. [stems.\"lead_vox.wav\"]")
    stems = {}
    for name, table in tables.items():
        where = f'stems."{name}"'
        if not isinstance(table, dict):
            raise AutomixError(f"{path}: '{where}' must be a table of settings ({_allowed(_STEM_KEYS)}), "
                               f"e.g. [{where}] then gain_db = 1.5")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in _STEM_KEYS:
                raise AutomixError(f"{path}: unknown key '{where}.{key}' (allowed: {_allowed(_STEM_KEYS)})")
            if key == "mute":
                if not isinstance(value, bool):
                    raise AutomixError(f"{path}: '{where}.mute' must be true or false, not {value!r}")
                values[key] = value
            elif key == "gain_db":
                values[key] = _file_number(path, f"{where}.gain_db", value, GAIN_RANGE_DB, "dB")
            else:
                values[key] = _file_number(path, f"{where}.pan", value, PAN_RANGE, "")
        stems[name] = StemSay(**values, origins={key: origin for key in values})
    return UserPlan(stems, focus.strip() if focus else None, focus_lu, origin if focus else "")


def _file_number(path: Path, dotted: str, value: Any, allowed: tuple[float, float], unit: str) -> float:
    low, high = allowed
    unit_text = f" {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AutomixError(f"{path}: '{dotted}' must be a number from {low:g} to {high:+g}{unit_text}, not {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise AutomixError(f"{path}: '{dotted}' = {value:g} is out of range "
                           f"({_meaning(dotted.rpartition('.')[2])}; allowed {low:g} to {high:+g}{unit_text})")
    return float(value)


def _allowed(keys: Mapping[str, str]) -> str:
    return "; ".join(f"{key} ({meaning})" for key, meaning in keys.items())


# --- combining and matching --------------------------------------------------------


def combine(file_plan: UserPlan | None, cli_plan: UserPlan | None) -> UserPlan:
    """The plan file's decisions with the command line's over them, setting by setting.

    A stem named differently in the two (``vox`` and ``vox.wav``) is one stem only once
    the names are matched to files (:func:`resolve`), so this merges by the name as
    written; :func:`resolve` merges the rest, also command line first.
    """
    if file_plan is None:
        return cli_plan or UserPlan()
    if cli_plan is None:
        return file_plan
    stems = dict(file_plan.stems)
    notes = list(file_plan.notes) + list(cli_plan.notes)
    for name, say in cli_plan.stems.items():
        stems[name] = _merge_say(name, stems.get(name), say, notes)
    focus, focus_lu, focus_origin = file_plan.focus, file_plan.focus_lu, file_plan.focus_origin
    if cli_plan.focus is not None:
        if focus is not None:
            notes.append(f"{cli_plan.focus_origin} replaces focus = \"{focus}\" ({focus_lu:g} LU) from {focus_origin}")
        focus, focus_lu, focus_origin = cli_plan.focus, cli_plan.focus_lu, cli_plan.focus_origin
    return UserPlan(stems, focus, focus_lu, focus_origin, tuple(notes))


def _merge_say(name: str, under: StemSay | None, over: StemSay, notes: list[str]) -> StemSay:
    """``over``'s settings replace ``under``'s; each replacement is noted."""
    if under is None:
        return over
    values = {key: getattr(under, key) for key in _STEM_KEYS}
    origins = dict(under.origins)
    for key in _STEM_KEYS:
        value = getattr(over, key)
        if value is None:
            continue
        if values[key] is not None and values[key] != value:
            notes.append(f"{over.origins.get(key, 'the command line')} replaces {name}: {key} = "
                         f"{_show(values[key])} from {under.origins.get(key, 'the plan file')}")
        values[key] = value
        origins[key] = over.origins.get(key, "")
    return StemSay(**values, origins=origins)


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"


def build(gains: Iterable[str] = (), pans: Iterable[str] = (), mutes: Iterable[str] = (), focus: str | None = None,
          plan_file: str | Path | None = None) -> UserPlan:
    """The user's plan from the command line and an optional plan file (CLI wins)."""
    file_plan = load_plan_file(plan_file) if plan_file is not None else None
    return combine(file_plan, parse_cli(gains, pans, mutes, focus))


def match_stem(name: str, stem_names: Iterable[str]) -> list[str]:
    """The stems ``name`` means: an exact file name, else file names whose stem (name
    without the extension) is ``name``; case-sensitive first, then case-insensitive."""
    names = list(stem_names)
    if name in names:
        return [name]
    found = [n for n in names if Path(n).stem == name]
    if not found:
        found = [n for n in names if n.lower() == name.lower()] or [n for n in names if Path(n).stem.lower() == name.lower()]
    return found


def resolve(plan: UserPlan, stem_names: Iterable[str]) -> dict[str, StemSay]:
    """Each stem's decisions, keyed by its file name.

    Raises
    ------
    AutomixError
        For a name matching no stem (the message lists the stems) or several.
    """
    names = list(stem_names)
    resolved: dict[str, StemSay] = {}
    notes: list[str] = []
    # File-plan entries first, so a command-line entry for the same stem under another
    # spelling ("vox" vs "vox.wav") still wins.
    ordered = sorted(plan.stems.items(), key=lambda item: 0 if _from_file(item[1]) else 1)
    for written, say in ordered:
        found = match_stem(written, names)
        if not found:
            raise AutomixError(f"{_said_where(written, say)}: no stem named '{written}' "
                               f"(the stems: {', '.join(names) or 'none'})")
        if len(found) > 1:
            raise AutomixError(f"{_said_where(written, say)}: '{written}' could be any of {', '.join(found)}; "
                               "give the file name with its extension")
        resolved[found[0]] = _merge_say(found[0], resolved.get(found[0]), say, notes)
    return resolved


def _from_file(say: StemSay) -> bool:
    return any(not origin.startswith("--") for origin in say.origins.values())


def _said_where(name: str, say: StemSay) -> str:
    origins = sorted(set(say.origins.values()))
    return ", ".join(origins) if origins else name


def check_names(plan: UserPlan, stem_names: Iterable[str]) -> None:
    """Check, before any audio is read, that every stem the plan names exists and the
    focus names a stem, a role, a group or the lead.

    Raises
    ------
    AutomixError
        Listing the stems (and for the focus, the roles and groups too).
    """
    names = list(stem_names)
    resolve(plan, names)
    if plan.focus is not None and plan.focus not in (*ROLES, *GROUPS, LEAD_FOCUS):
        found = match_stem(plan.focus, names)
        if len(found) != 1:
            what = "could be any of " + ", ".join(found) if found else "names no stem, role or group"
            raise AutomixError(f"{plan.focus_origin or 'focus'}: '{plan.focus}' {what} (the stems: {', '.join(names)}; "
                               f"roles: {', '.join(ROLES)}; groups: {', '.join(GROUPS)}; or '{LEAD_FOCUS}')")


def restrict(plan: UserPlan, present: Iterable[str], left_out: Mapping[str, str] | None = None) -> UserPlan:
    """The plan for the stems that are ``present``: entries (and a focus) naming a stem
    that was left out of the mix after :func:`check_names` (unreadable, silent) are
    dropped with a note, so the mix goes on as it would without the user's plan.

    ``left_out`` maps such stems' file names to the reason, for the note.
    """
    names = list(present)
    gone = dict(left_out or {})
    stems, notes = {}, list(plan.notes)
    for written, say in plan.stems.items():
        if match_stem(written, names) or not match_stem(written, list(gone)):
            stems[written] = say  # present, or unknown: balance() says so
            continue
        found = match_stem(written, list(gone))[0]
        notes.append(f"{_said_where(written, say)}: {found} is not in the mix ({gone[found]}); setting left unused")
    focus, origin = plan.focus, plan.focus_origin
    # A stem's name comes before a role's (as in the balancer): a focus naming a stem
    # that is gone goes with it.
    if focus is not None and focus != LEAD_FOCUS and not match_stem(focus, names):
        found = match_stem(focus, list(gone))
        if found:
            notes.append(f"{origin or 'focus'}: {found[0]} is not in the mix ({gone[found[0]]}); no focus")
            focus, origin = None, ""
    return UserPlan(stems, focus, plan.focus_lu, origin, tuple(notes))


def with_focus(plan: UserPlan, focus: str | None, focus_lu: float = FOCUS_LU, origin: str = "") -> UserPlan:
    """A copy with another focus (for library callers)."""
    return replace(plan, focus=focus, focus_lu=focus_lu, focus_origin=origin)
