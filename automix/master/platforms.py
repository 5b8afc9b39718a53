"""Loudness targets of streaming platforms and broadcast standards: the one table."""

from __future__ import annotations

from dataclasses import replace

from automix.errors import AutomixError
from automix.presets import MasterSettings

#: What to do when a target needs more limiting than ``max_limiting_db`` allows:
#: refuse (nothing written, exit 3), accept a quieter master, or reach it anyway.
OVER_LIMIT_CHOICES = ("fail", "quieter", "force")

#: Streaming and broadcast loudness targets (integrated LUFS, true-peak ceiling dBTP),
#: as the platforms document them.
PLATFORMS = {
    "spotify": (-14.0, -1.0),
    "apple": (-16.0, -1.0),
    "youtube": (-14.0, -1.0),
    "tidal": (-14.0, -1.0),
    "amazon": (-14.0, -2.0),
    "deezer": (-15.0, -1.0),
    "soundcloud": (-14.0, -1.0),
    "ebu-r128": (-23.0, -1.0),
    "atsc-a85": (-24.0, -2.0),
    "podcast": (-16.0, -1.0),
}


def resolve_targets(settings: MasterSettings, platform: str | None) -> MasterSettings:
    """Apply a platform shortcut's loudness and ceiling to ``settings``."""
    if not platform:
        return settings
    if platform not in PLATFORMS:
        raise AutomixError(f"unknown platform '{platform}' (choose from {', '.join(PLATFORMS)})")
    target, ceiling = PLATFORMS[platform]
    return replace(settings, target_lufs=target, ceiling_dbtp=ceiling)
