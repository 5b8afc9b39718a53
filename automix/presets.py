"""Genre presets: TOML files loaded into frozen dataclasses and validated on load.

A preset file holds a name, a one-line description, optional ``extends = "other"``, and
three tables:

* ``[master]`` -- loudness target, true-peak ceiling, tonal target, glue compression,
  low-end mono and stereo width (:class:`MasterSettings`);
* ``[mix]`` -- mix-bus settings (:class:`MixSettings`);
* ``[groups]`` -- the loudness of each group of stems (vocals, drums, bass, harmony)
  relative to the vocals, measured on professional mixes (:class:`GroupSettings`);
* ``[roles.<role>]`` -- the mixing rules for each stem role (:class:`RoleRules`),
  including the role's share of its group's loudness.

Every value is checked against its type and allowed range; an unknown key, a wrong type
or a value out of range is an :class:`AutomixError` naming the file, the key and what is
allowed. Every resolved value remembers where it came from (which preset file, or the
command line), and the report prints that.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from automix.errors import AutomixError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Stem roles automix knows. Role detection (``automix.roles``) assigns one to each stem.
ROLES = (
    "vocal", "backing_vocal", "kick", "snare", "hats", "toms", "overheads", "room", "drums",
    "percussion", "bass", "guitar", "keys", "piano", "synth", "pad", "strings", "brass",
    "woodwinds", "fx", "other",
)  # fmt: skip

#: Groups of roles. A group's stems together sit at the group's loudness (``[groups]``),
#: however many stems it has; the MUSDB18 stem classes map onto them (vocals, drums,
#: bass, and "other" = harmony). Without a vocal, the lead instrument takes the vocals'
#: place (see :func:`automix.mix.balancer.choose_lead`).
GROUPS = ("vocals", "drums", "bass", "harmony")
ROLE_GROUPS = {
    "vocal": "vocals", "backing_vocal": "vocals",
    "kick": "drums", "snare": "drums", "toms": "drums", "hats": "drums", "overheads": "drums", "room": "drums",
    "percussion": "drums", "drums": "drums",
    "bass": "bass",
    "guitar": "harmony", "keys": "harmony", "piano": "harmony", "synth": "harmony", "pad": "harmony",
    "strings": "harmony", "brass": "harmony", "woodwinds": "harmony", "fx": "harmony", "other": "harmony",
}  # fmt: skip


def _setting(low: float, high: float, doc: str, kind: type = float) -> Any:
    return field(metadata={"range": (low, high), "doc": doc, "kind": kind})


@dataclass(frozen=True)
class MasterSettings:
    """How the mastering chain treats the mix (the ``[master]`` table)."""

    target_lufs: float = _setting(-40.0, -5.0, "integrated loudness of the master")
    ceiling_dbtp: float = _setting(-9.0, 0.0, "highest true peak allowed")
    max_limiting_db: float = _setting(0.0, 20.0, "most gain reduction the limiter may apply")
    tilt_db_per_octave: float = _setting(-8.0, 0.0, "slope of the target spectrum (third-octave power)")
    bass_db: float = _setting(-6.0, 8.0, "target lift below 120 Hz, relative to the slope")
    air_db: float = _setting(-6.0, 6.0, "target lift above 8 kHz, relative to the slope")
    tonal_amount: float = _setting(0.0, 1.0, "how far the EQ moves toward the target (0 = off)")
    tonal_max_db: float = _setting(0.0, 8.0, "largest boost or cut of any tonal band")
    glue_ratio: float = _setting(1.0, 10.0, "bus compressor ratio (1 = off)")
    glue_threshold_lu: float = _setting(-20.0, 10.0, "bus threshold relative to the mix's loudness")
    glue_attack_ms: float = _setting(0.1, 200.0, "bus compressor attack")
    glue_release_ms: float = _setting(10.0, 2000.0, "bus compressor release")
    mono_below_hz: float = _setting(0.0, 300.0, "make the low end mono below this frequency (0 = off)")
    stereo_width: float = _setting(0.0, 2.0, "side-signal gain (1 = unchanged)")


@dataclass(frozen=True)
class MixSettings:
    """Mix-bus settings (the ``[mix]`` table)."""

    bus_lufs: float = _setting(-40.0, -12.0, "loudness the summed mix is set to before mastering")
    masking_max_cut_db: float = _setting(0.0, 12.0, "deepest cut on an accompaniment where it masks the lead")
    pan_width: float = _setting(0.0, 1.0, "scale of all pan positions (0 = everything centred)")


@dataclass(frozen=True)
class GroupSettings:
    """Loudness of each group of stems, LU relative to the vocals (the ``[groups]`` table).

    Defaults (pop.toml) are the MUSDB18 averages (:mod:`automix.mix.reference_levels`);
    genre presets move from them where the genre's practice says so.
    """

    vocals_lu: float = _setting(-30.0, 10.0, "vocals (or, without a vocal, the lead instrument): the reference, normally 0")
    drums_lu: float = _setting(-30.0, 10.0, "the whole drum kit together, relative to the vocals")
    bass_lu: float = _setting(-30.0, 10.0, "all bass stems together, relative to the vocals")
    harmony_lu: float = _setting(-30.0, 10.0, "all other instruments together, relative to the vocals")

    def as_dict(self) -> dict[str, float]:
        """``{"vocals": 0.0, "drums": -3.45, ...}``"""
        return {f.name.removesuffix("_lu"): getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class RoleRules:
    """Mixing rules for one stem role (a ``[roles.<role>]`` table)."""

    loudness_lu: float = _setting(-40.0, 10.0, "level within its group (ROLE_GROUPS), relative to the group's main role at 0")
    hpf_max_hz: float = _setting(0.0, 1000.0, "highest high-pass cutoff (0 = no high-pass)")
    compression_ratio: float = _setting(1.0, 20.0, "compressor ratio (1 = none)")
    compression_depth_db: float = _setting(0.0, 24.0, "threshold below the stem's loud passages")
    attack_ms: float = _setting(0.1, 200.0, "compressor attack")
    release_ms: float = _setting(10.0, 2000.0, "compressor release")
    pan_spread: float = _setting(0.0, 1.0, "how far from centre stems of this role are placed")


@dataclass(frozen=True)
class Preset:
    """A fully resolved preset."""

    name: str
    description: str
    master: MasterSettings
    mix: MixSettings
    roles: Mapping[str, RoleRules]
    groups: GroupSettings = field(default_factory=lambda: _DEFAULT_GROUPS)
    #: where each value came from: ``"master.target_lufs" -> "presets/pop.toml"``
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    def with_overrides(self, master: Mapping[str, float], origin: str = "command line") -> Preset:
        """Return a copy with some ``[master]`` values replaced (e.g. CLI flags)."""
        if not master:
            return self
        for key, value in master.items():
            _check_value(origin, f"master.{key}", MasterSettings, key, value)
        origins = dict(self.origins)
        origins.update({f"master.{key}": origin for key in master})
        return replace(self, master=replace(self.master, **master), origins=origins)


SECTIONS = {"master": MasterSettings, "mix": MixSettings, "groups": GroupSettings}

#: MUSDB18 averages relative to the vocals (automix.mix.reference_levels), for a Preset
#: built in code without a [groups] table.
_DEFAULT_GROUPS = GroupSettings(vocals_lu=0.0, drums_lu=-3.45, bass_lu=1.0, harmony_lu=-0.44)


def preset_dir() -> Path:
    """Where the shipped presets are: inside the installed package, or the source tree."""
    packaged = Path(str(resources.files("automix"))) / "presets"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "presets"


def available_presets() -> dict[str, Path]:
    """Shipped preset names and their files."""
    return {path.stem: path for path in sorted(preset_dir().glob("*.toml"))}


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a shipped preset by name, or a preset file by path, resolving ``extends``.

    Raises
    ------
    AutomixError
        If the preset does not exist, is not valid TOML, or breaks a rule.
    """
    path = _find(name_or_path)
    merged, origins = _resolve(path, chain=())
    return _build(path, merged, origins)


def _find(name_or_path: str | Path) -> Path:
    shipped = available_presets()
    if isinstance(name_or_path, str) and name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or path.suffix != "" or len(path.parts) > 1
    if not looks_like_path:
        names = ", ".join(shipped) or "none installed"
        raise AutomixError(f"unknown preset '{name_or_path}' (available: {names}; or give a .toml file)")
    if not path.exists():
        raise AutomixError(f"{path}: no such file (a preset file path, or one of: {', '.join(shipped)})")
    if not path.is_file():
        raise AutomixError(f"{path}: not a file (give a .toml preset file)")
    return path


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise AutomixError(f"{path}: not valid TOML ({error})") from None
    except UnicodeDecodeError as error:
        raise AutomixError(f"{path}: not UTF-8 text (byte {error.start} is 0x{error.object[error.start]:02x}); "
                           "save the preset file as UTF-8") from None
    except OSError as error:
        raise AutomixError(f"{path}: cannot read ({error.strerror})") from None


def _resolve(path: Path, chain: tuple[Path, ...]) -> tuple[dict, dict[str, str]]:
    """Merge a preset over the one it extends; return the values and their origins."""
    if path in chain:
        raise AutomixError(f"{path}: 'extends' forms a loop ({' -> '.join(p.stem for p in chain + (path,))})")
    data = _read_toml(path)
    parent = data.get("extends")
    if parent is None:
        base: dict = {}
        origins: dict[str, str] = {}
    else:
        if not isinstance(parent, str):
            raise AutomixError(f"{path}: 'extends' must be a preset name in quotes")
        parent_path = _find(parent) if parent in available_presets() else path.parent / f"{parent}.toml"
        if not parent_path.is_file():
            raise AutomixError(f"{path}: extends unknown preset '{parent}'")
        base, origins = _resolve(parent_path, chain + (path,))
    for key, value in data.items():
        if key == "extends":
            continue
        if isinstance(value, dict):
            for sub_key, sub_value in _flatten(value, key).items():
                _set_nested(base, sub_key, sub_value)
                origins[sub_key] = str(path)
        else:
            base[key] = value
            origins[key] = str(path)
    return base, origins


def _flatten(table: dict, prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _set_nested(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise AutomixError(f"'{dotted}' cannot be both a value and a table")
    data[last] = value


def _build(path: Path, data: dict, origins: dict[str, str]) -> Preset:
    allowed_top = {"name", "description", "master", "mix", "groups", "roles"}
    for key in data:
        if key not in allowed_top:
            raise AutomixError(f"{path}: unknown key '{key}' (allowed: {', '.join(sorted(allowed_top | {'extends'}))})")
    name = data.get("name", path.stem)
    description = data.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise AutomixError(f"{path}: 'name' and 'description' must be text in quotes")
    sections = {}
    for section, cls in SECTIONS.items():
        sections[section] = _build_section(path, section, cls, data.get(section, {}))
    roles_data = data.get("roles", {})
    if not isinstance(roles_data, dict):
        raise AutomixError(f"{path}: 'roles' must be a table of [roles.<role>] tables")
    roles = {}
    for role, table in roles_data.items():
        if role not in ROLES:
            raise AutomixError(f"{path}: unknown role 'roles.{role}' (known roles: {', '.join(ROLES)})")
        roles[role] = _build_section(path, f"roles.{role}", RoleRules, table)
    missing = [role for role in ROLES if role not in roles]
    if missing:
        raise AutomixError(f"{path}: no rules for role(s) {', '.join(missing)} (add [roles.<role>] tables or extend a preset that has them)")
    return Preset(name=name, description=description, master=sections["master"], mix=sections["mix"], roles=roles,
                  groups=sections["groups"], origins=origins)


def _build_section(path: Path, section: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise AutomixError(f"{path}: '{section}' must be a table")
    names = {f.name for f in fields(cls)}
    for key in table:
        if key not in names:
            raise AutomixError(f"{path}: unknown key '{section}.{key}' (allowed: {', '.join(sorted(names))})")
    missing = sorted(names - set(table))
    if missing:
        raise AutomixError(f"{path}: missing '{section}.{missing[0]}'" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    for key, value in table.items():
        _check_value(str(path), f"{section}.{key}", cls, key, value)
    return cls(**{key: float(value) for key, value in table.items()})


def _check_value(where: str, dotted: str, cls: type, key: str, value: Any) -> None:
    spec = {f.name: f for f in fields(cls)}.get(key)
    if spec is None:
        raise AutomixError(f"{where}: unknown setting '{dotted}'")
    low, high = spec.metadata["range"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AutomixError(f"{where}: '{dotted}' must be a number from {low:g} to {high:g}, not {value!r}")
    if not low <= value <= high:
        raise AutomixError(f"{where}: '{dotted}' = {value:g} is out of range ({spec.metadata['doc']}; allowed {low:g} to {high:g})")


def describe_settings(cls: type) -> list[tuple[str, str, str]]:
    """(key, allowed range, meaning) for each setting of a section, for help output."""
    return [(f.name, f"{f.metadata['range'][0]:g} .. {f.metadata['range'][1]:g}", f.metadata["doc"]) for f in fields(cls)]
