"""How a job writes its results (shared by ``master`` and ``mix``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from automix.io.metadata import Provenance

#: BS.1770 gating blocks are 0.4 s: a shorter signal has no measurable loudness (and a
#: stem raised to its role's level would get tens of dB of gain).
MIN_MEASURABLE_S = 0.4


@dataclass(frozen=True)
class OutputOptions:
    """How results are written."""

    bit_depth: str = "24"
    sample_rate: int | None = None  # None: keep the input's
    format_name: str | None = None  # None: from the output's extension
    over_limit: str = "fail"
    dry_run: bool = False
    codec_safe: str | None = None  # lossy codecs whose decoded true peak must hold the ceiling
    amount: float = 1.0  # 0..1: how much of the mastering's corrective moves to apply
    #: what made the output (options, preset and its digest); each job adds its inputs' digests
    provenance: Provenance | None = None
    album: bool = False  # master: keep the tracks' relative loudness, the loudest at the target
    reference: object | None = None  # a measured automix.master.reference.Reference to sound like
    #: master --report: a .html/.json file (one input), or a folder of <output name>.html
    report: Path | None = None
