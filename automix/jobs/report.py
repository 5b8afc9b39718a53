"""The JSON report of a mix: per stem what was measured, decided and why; then the
master's settings and measurements."""

from __future__ import annotations

import json
from pathlib import Path

from automix.io.audio import Audio, atomic_output
from automix.measure.analyzer import analyze
from automix.mix.balancer import compare_to_reference


def build_report(folder, preset, stems, analyses, infos, kept, skipped, plan, rendered, master_result, out,
                 sample_rate, written, options) -> dict:
    """The JSON report: per stem what was measured, decided and why; then the master.

    ``out``: samples of the output to analyse (the whole output or an excerpt), or None
    when the output was not analysed (nobody reads it): ``final`` then holds the master's
    measurement of what it wrote and ``against_genre_average`` is None.
    """
    from automix import __version__

    final = analyze(Audio(out, sample_rate)) if out is not None else None
    stem_reports = []
    for info, index, stem_plan, stem in zip(infos, kept, plan.stems, rendered.stems):
        a = analyses[index]
        warnings = []
        if a.clipped_samples:
            warnings.append(f"input is clipped ({a.clipped_samples} samples at full scale); automix cannot undo that")
        if a.dc_offset > 0.01:
            warnings.append(f"DC offset {a.dc_offset:.3f}; the high-pass or mastering removes most of it")
        stem_reports.append({
            "file": info.name,
            "role": info.role,
            "role_reason": info.role_reason,
            "measured": {
                "active_lufs": round(a.active_lufs, 2), "integrated_lufs": round(a.integrated_lufs, 2),
                "true_peak_dbtp": round(a.true_peak_dbtp, 2) if a.true_peak_measured else None, "crest_factor_db": round(a.crest_factor_db, 2),
                "loudness_range_lu": round(a.loudness_range_lu, 2), "spectral_centroid_hz": round(a.spectral_centroid_hz, 1),
                "low_share_below_160hz_db": round(a.band_level_db(20, 160), 1),
                "presence_share_1_5khz_db": round(a.band_level_db(1000, 5000), 1),
                "air_share_above_8khz_db": round(a.band_level_db(8000, 20000), 1),
                "channels": a.channels, "duration_s": round(a.duration_s, 3),
            },
            "plan": stem_plan.to_dict(),
            "rendered": {"makeup_db": round(stem.makeup_db, 2), "compressor_max_gain_reduction_db": round(stem.compressor_max_gain_reduction_db, 2),
                         "loudness_in_mix_lufs": round(stem_plan.target_lufs + stem.group_gain_db + rendered.bus_gain_db, 2)},
            "warnings": warnings,
        })  # fmt: skip
    return {
        "automix_version": __version__,
        "folder": str(folder),
        "output": str(written) if written else None,
        "sample_rate": sample_rate,
        "preset": {"name": preset.name, "description": preset.description,
                   "value_origins": {key: origin for key, origin in sorted(preset.origins.items())
                                     if key.startswith(("master.", "mix."))}},
        "stems": stem_reports,
        "skipped": [{"file": name, "reason": reason, "kind": kind} for name, reason, kind in skipped],
        "notes": list(stems.notes),
        "mix": {**{k: v for k, v in plan.to_dict().items() if k != "stems"},
                "bus_gain_db": round(rendered.bus_gain_db, 2), "bus_rule": rendered.bus_rule,
                "groups": rendered.groups},
        # the finished mix's spectrum and width against what the genre's mixes measure
        "against_genre_average": compare_to_reference(final, preset, out) if final is not None else None,
        "master": master_result.to_dict() if master_result else None,
        "final": _final(final, master_result, options.bit_depth),
    }


def _final(final, master_result, bit_depth: str) -> dict:
    """The report's numbers for the output: from its analysis, or (not analysed) from the
    master's measurement of what it wrote, with no band levels."""
    if final is not None:
        numbers = (final.integrated_lufs, final.true_peak_dbtp, final.loudness_range_lu, final.sample_peak_dbfs)
        bands = final.to_dict()["third_octave_bands_db"]
    else:
        measured = master_result.output_measurement
        numbers = (measured.integrated_lufs, max(measured.true_peak_dbtp, measured.sample_peak_dbfs),  # as the analysis reads it
                   measured.loudness_range_lu, measured.sample_peak_dbfs)
        bands = None
    lufs, peak, lra, sample = (round(value, 2) for value in numbers)
    return {"integrated_lufs": lufs, "true_peak_dbtp": peak, "loudness_range_lu": lra, "sample_peak_dbfs": sample,
            "bit_depth": bit_depth, "third_octave_bands_db": bands}


def write_report(report: dict, path: Path) -> None:
    """Write the report atomically, like the audio."""
    with atomic_output(path) as temp_name, open(temp_name, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
