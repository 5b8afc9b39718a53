"""The report a person reads: one self-contained HTML page.

:func:`render_html` turns the JSON report (the dict :func:`automix.jobs.pipeline.build_report`
returns for ``automix mix``, or a master record, :meth:`automix.master.chain.MasterResult.to_dict`)
plus the curves the JSON does not carry (:class:`ReportCurves`) into a page that needs
nothing else: no network, no script, no external style sheet or font; the figures are
inline SVG drawn by :mod:`automix.report.plots`. Every string from the report is escaped.

What the page shows, each part only when the report (or the curves) has it:

* what was made: output file, preset, automix version; the final numbers (integrated
  loudness, true peak and the near-ideal true peak, loudness range, sample peak), the
  status and its message, every warning, note and skipped stem;
* loudness over time, before and after the master (momentary and short-term, with the
  target line);
* the long-term third-octave spectrum of input and output against the preset's target,
  and the tonal EQ's move per band;
* the limiter's (and the glue's) gain reduction over time with the deepest moment
  marked, and the true-peak margin (ceiling minus measured true peak);
* for a mix: the per-stem plan with each decision's rule, and a chart of the stems'
  levels in the mix;
* every ``rule`` / ``*_rule`` / ``reason`` / ``*_reason`` string in the report: those not
  shown beside their decision are listed in "Other reasons", so none is lost when the
  report grows.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automix.io.audio import atomic_output
from automix.measure.analyzer import NOMINAL_CENTRES, THIRD_OCTAVE_CENTRES_HZ

#: Figure ids, in page order. The browser test finds each figure by its id.
FIGURE_IDS = ("fig-loudness", "fig-spectrum", "fig-gain-reduction", "fig-stems")


@dataclass(frozen=True, eq=False)
class ReportCurves:
    """What the figures need beyond the JSON report. Every field may be None: that figure
    (or that curve of it) is left out, with a one-line note on the page.

    Attributes
    ----------
    input_momentary_lufs, input_short_term_lufs : numpy.ndarray or None
        Of the master's input (for a mix: the balanced mix, before the master):
        ``LoudnessMeasurement.momentary_lufs`` / ``.short_term_lufs`` of
        :func:`automix.measure.loudness.measure`, one value every ``hop_s`` seconds.
    output_momentary_lufs, output_short_term_lufs : numpy.ndarray or None
        The same of the output (the master, or the mix if it was not mastered).
    input_bands_db, output_bands_db : numpy.ndarray or None
        Long-term third-octave levels, dB relative to the total power:
        ``AudioAnalysis.band_levels_db`` of :func:`automix.measure.analyzer.analyze`
        (centres ``THIRD_OCTAVE_CENTRES_HZ``; a shorter array is the first bands).
    target_bands_db : numpy.ndarray or None
        The preset's target on the same bands and scale:
        ``automix.master.tonal.target_curve_db(centres, settings)``. If None, it is
        computed from the report's ``master.settings`` when they are there.
    limiter_gain_reduction_db : numpy.ndarray or None
        ``LimiterStats.timeline_db`` of the final render: the deepest reduction (positive
        dB) in each ``granule_s`` (= ``hop_s``) granule.
    glue_gain_reduction_db : numpy.ndarray or None
        The glue compressor's reduction (positive dB) every ``hop_s``, if it acted.
    hop_s : float
        Time step of every timeline above, seconds (the meter's and the limiter's 0.1 s).
    """

    input_momentary_lufs: np.ndarray | None = None
    input_short_term_lufs: np.ndarray | None = None
    output_momentary_lufs: np.ndarray | None = None
    output_short_term_lufs: np.ndarray | None = None
    input_bands_db: np.ndarray | None = None
    output_bands_db: np.ndarray | None = None
    target_bands_db: np.ndarray | None = None
    limiter_gain_reduction_db: np.ndarray | None = None
    glue_gain_reduction_db: np.ndarray | None = None
    hop_s: float = 0.1


#: The report file suffixes that mean "the HTML page" (anything else: the JSON).
HTML_SUFFIXES = (".html", ".htm")

#: The figure of reference, input and output side by side (``--reference`` only; not in
#: ``FIGURE_IDS``, whose figures every full report has).
REFERENCE_FIGURE_ID = "fig-reference"

#: The bands the distance to the reference is taken over, Hz: the issue's check of the
#: match (``tests/test_reference.py``), where a third-octave band of a few seconds of
#: music holds enough bins and cycles to be a stable long-term level.
COMPARISON_RANGE_HZ = (40.0, 16000.0)


def spectrum_distance_db(levels_db, reference_db, centres_hz=None) -> float:
    """How far one long-term spectrum's shape is from another's, dB.

    The RMS over the third-octave bands centred in ``COMPARISON_RANGE_HZ`` (where both
    are finite) of the per-band difference with its mean removed: the overall level
    does not count, only the balance between bands. NaN if no band is left.
    """
    a = np.asarray(levels_db, dtype=np.float64)
    b = np.asarray(reference_db, dtype=np.float64)
    count = min(a.size, b.size)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ if centres_hz is None else centres_hz, dtype=np.float64)[:count]
    a, b = a[:count], b[:count]
    keep = ((centres >= COMPARISON_RANGE_HZ[0] * 0.99) & (centres <= COMPARISON_RANGE_HZ[1] * 1.01)
            & np.isfinite(a) & np.isfinite(b))  # fmt: skip
    if not keep.any():
        return math.nan
    d = a[keep] - b[keep]
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def measure_for_comparison(signal, sample_rate: int | None = None) -> dict:
    """What the reference comparison reads from a signal, in one streaming pass.

    Parameters
    ----------
    signal : path, numpy.ndarray or automix.io.stream.BlockSource
        A file (read block by block: memory does not grow with its length), float32
        ``(channels, samples)`` audio (then give ``sample_rate``) or a block source.

    Returns
    -------
    dict
        ``mid_bands_db`` (numpy array: the long-term third-octave spectrum of the mid,
        ``(L + R) / 2``, relative to its total, ``-inf`` where empty: what the reference
        match compares, :class:`automix.master.reference.MidSideSpectrumMeter`),
        ``side_bands_db`` (the side's, ``(L - R) / 2``, on the mid's scale; None for mono),
        ``integrated_lufs``, ``true_peak_dbtp``, ``plr_db``, ``stereo_width`` (side energy
        over mid plus side), and ``analysis`` (the :class:`AudioAnalysis`, for the curves).
    """
    from automix.io.audio import Audio
    from automix.io.stream import BlockSource, array_source, file_source
    from automix.master.reference import measure_mid_side

    if isinstance(signal, BlockSource):
        source = signal
    elif isinstance(signal, np.ndarray):
        if sample_rate is None:
            raise ValueError("measure_for_comparison: give the sample_rate of an array")
        source = array_source(Audio(np.ascontiguousarray(signal, dtype=np.float32), int(sample_rate)))
    else:
        source = file_source(Path(signal))
    analyzer, spectrum = measure_mid_side(source)
    analysis = analyzer.result()
    mid_db, side_db = spectrum.spectra_db()
    meter = analyzer.meter.result()
    return {"mid_bands_db": np.asarray(mid_db, dtype=np.float64), "integrated_lufs": analysis.integrated_lufs,
            "side_bands_db": np.asarray(side_db, dtype=np.float64) if source.channels >= 2 else None,
            "momentary_lufs": meter.momentary_lufs, "short_term_lufs": meter.short_term_lufs,
            "true_peak_dbtp": analysis.true_peak_dbtp, "plr_db": analysis.plr_db,
            "stereo_width": analysis.stereo_width if analysis.channels >= 2 else 0.0, "analysis": analysis}


def _reference_numbers(reference) -> tuple[str, np.ndarray, dict]:
    """(name, mid band levels, numbers) of a :class:`automix.master.reference.Reference`
    or of its ``to_dict()`` (the ``reference`` of a master record)."""
    if isinstance(reference, dict):
        def bands(key):
            values = reference.get(key)
            if not isinstance(values, dict):
                return None
            return np.asarray([values.get(f"{c:.0f}", np.nan) for c in THIRD_OCTAVE_CENTRES_HZ], dtype=np.float64)

        mid, side = bands("mid_bands_db"), bands("side_bands_db")
        get = reference.get
        name = str(get("name") or "reference")
    else:
        mid = np.asarray(reference.mid_bands_db, dtype=np.float64)
        side = None if reference.side_bands_db is None else np.asarray(reference.side_bands_db, dtype=np.float64)
        name = reference.name

        def get(key):
            return getattr(reference, key)
    numbers = {key: get(key) for key in ("integrated_lufs", "true_peak_dbtp", "plr_db", "stereo_width")}
    return name, mid, side, numbers


def width_above(mid_db, side_db, above_hz: float) -> float:
    """Side energy over mid plus side in the third-octave bands centred above ``above_hz``
    (from band levels on one scale; 0 without a side). The master's mono bass takes the
    side out below its frequency whatever the reference does, so the width the reference
    match aims at is the one above it (:func:`automix.master.reference.reference_width`)."""
    if side_db is None:
        return 0.0
    mid, side = np.asarray(mid_db, dtype=np.float64), np.asarray(side_db, dtype=np.float64)
    count = min(mid.size, side.size)
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[:count])
    mid, side = mid[:count], side[:count]
    keep = (centres > above_hz) & np.isfinite(mid)
    mid_power = float((10 ** (mid[keep] / 10)).sum())
    side_power = float(np.where(np.isfinite(side[keep]), 10 ** (np.nan_to_num(side[keep], neginf=-300.0) / 10), 0.0).sum())
    total = mid_power + side_power
    return side_power / total if total > 0 else 0.0


def reference_comparison(reference, input_signal, output_signal, sample_rate: int | None = None, *,
                         measured_input: dict | None = None, measured_output: dict | None = None,
                         width_above_hz: float | None = None) -> dict:
    """Reference, input and output side by side, as data for the report (JSON-ready).

    Parameters
    ----------
    reference : Reference or dict
        :func:`automix.master.reference.analyze_reference`'s result, or its ``to_dict()``.
    input_signal, output_signal : path, array or BlockSource
        What the master started from (for a mix, the balanced bus) and what it wrote
        (:func:`measure_for_comparison`; arrays need ``sample_rate``). Either may be None
        if ``measured_input`` / ``measured_output`` are given instead.
    width_above_hz : float, optional
        The master's mono-bass frequency (``MasterResult.mono_below_hz``): the widths
        are then also given above it (``stereo_width_above``, :func:`width_above`), the
        width the match aims at.

    Returns
    -------
    dict
        ``reference`` (name), ``bands_hz`` (the third-octave centres), ``mid_bands_db``
        (``{"reference": [...], "input": [...], "output": [...]}``, null where empty or
        unknown), ``distance_db`` (``{"input": .., "output": ..}``:
        :func:`spectrum_distance_db` to the reference's mid spectrum), ``distance_range_hz``,
        ``measures`` (per signal: ``integrated_lufs``, ``true_peak_dbtp``, ``plr_db``,
        ``stereo_width``, and ``stereo_width_above`` with ``width_above_hz``) and ``rule``
        (how the distance is taken).
    """
    name, ref_mid, ref_side, ref_numbers = _reference_numbers(reference)
    measured = {"input": measured_input or measure_for_comparison(input_signal, sample_rate),
                "output": measured_output or measure_for_comparison(output_signal, sample_rate)}
    count = max(ref_mid.size, *(m["mid_bands_db"].size for m in measured.values()))
    centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ[:count], dtype=np.float64)

    def padded(values):
        values = np.asarray(values, dtype=np.float64)[:count]
        return np.concatenate([values, np.full(count - values.size, np.nan)])

    spectra = {"reference": padded(ref_mid), **{k: padded(m["mid_bands_db"]) for k, m in measured.items()}}
    # The distances use the same bands for input and output: those where all three have content.
    common = np.isfinite(spectra["reference"]) & np.isfinite(spectra["input"]) & np.isfinite(spectra["output"])
    distance = {k: spectrum_distance_db(np.where(common, spectra[k], np.nan), spectra["reference"], centres)
                for k in ("input", "output")}

    def rounded(value, digits=2):
        return round(float(value), digits) if _is_number(value) else None

    measures = {"reference": dict(ref_numbers), **{k: {key: m[key] for key in ("integrated_lufs", "true_peak_dbtp", "plr_db",
                                                                                 "stereo_width")}
                                                    for k, m in measured.items()}}
    if width_above_hz is not None:
        measures["reference"]["stereo_width_above"] = width_above(ref_mid, ref_side, width_above_hz)
        for k, m in measured.items():
            measures[k]["stereo_width_above"] = width_above(m["mid_bands_db"], m["side_bands_db"], width_above_hz)

    return {
        "reference": name,
        "bands_hz": [round(float(c), 1) for c in centres],
        "mid_bands_db": {k: [rounded(v) for v in values] for k, values in spectra.items()},
        "distance_db": {k: rounded(v, 3) for k, v in distance.items()},
        "distance_range_hz": list(COMPARISON_RANGE_HZ),
        "measures": {k: {key: rounded(v, 4 if key.startswith("stereo_width") else 2) for key, v in m.items()}
                     for k, m in measures.items()},
        "width_above_hz": width_above_hz,
        "rule": (f"distance: RMS over the third-octave bands {COMPARISON_RANGE_HZ[0]:g} Hz-{COMPARISON_RANGE_HZ[1] / 1000:g} kHz "
                 "(where all three have content) of the difference between the mid spectra (L+R)/2, each relative "
                 "to its own total, with the mean difference removed (shape, not level); PLR: true peak minus "
                 "integrated loudness; width: side energy over mid plus side"),
    }  # fmt: skip


def curves_from_files(before, after, settings=None, *, limiter_gain_reduction_db: np.ndarray | None = None,
                      glue_gain_reduction_db: np.ndarray | None = None, measured_before: dict | None = None,
                      measured_after: dict | None = None) -> ReportCurves:
    """:func:`curves_from_audio` streamed from files (or block sources): memory does not
    grow with the length, so an hour-long master gets its page. ``measured_before`` /
    ``measured_after`` (:func:`measure_for_comparison`'s results) save a pass."""
    def curves_of(signal, measured):
        if measured is None and signal is None:
            return None, None, None
        measured = measured or measure_for_comparison(signal)
        analysis = measured["analysis"]
        return measured["momentary_lufs"], measured["short_term_lufs"], np.asarray(analysis.band_levels_db, dtype=np.float64)

    in_momentary, in_short, in_bands = curves_of(before, measured_before)
    out_momentary, out_short, out_bands = curves_of(after, measured_after)
    target = None
    if settings is not None:
        from automix.master.tonal import target_curve_db

        target = target_curve_db(np.asarray(THIRD_OCTAVE_CENTRES_HZ, dtype=np.float64), settings)
    return ReportCurves(in_momentary, in_short, out_momentary, out_short, in_bands, out_bands, target,
                        limiter_gain_reduction_db, glue_gain_reduction_db, hop_s=0.1)


def write_master_report(result, path: str | Path, *, input_path=None, output_path=None, reference=None,
                        settings=None, extra: dict | None = None) -> dict:
    """The report of one ``automix master`` run: HTML for ``.html``/``.htm``, else JSON.

    Parameters
    ----------
    result : MasterResult
        :func:`automix.master.chain.master_to_file`'s result.
    path : path
        Where the report goes (written atomically).
    input_path, output_path : path, optional
        The input and the written master; their curves (loudness over time, spectra) are
        measured from them block by block. A missing output (target missed, dry run)
        leaves the "after" parts out.
    reference : Reference, optional
        The reference the master matched (``--reference``); else ``result.reference``.
        With a reference and both files, the report holds ``reference_comparison``
        (:func:`reference_comparison`): reference, input and output side by side.
    settings : MasterSettings, optional
        For the target spectrum; defaults to ``result.settings``.
    extra : dict, optional
        More keys for the record (e.g. ``{"preset": {"name": "pop"}}``).

    Returns
    -------
    dict
        The report as written (JSON) or as the page shows it.
    """
    import json

    from automix import __version__

    record = result.to_dict()
    record.update({"automix_version": __version__, "input": str(input_path) if input_path else None,
                   "output": str(output_path) if output_path and Path(output_path).exists() else None})
    record.update(extra or {})
    reference = reference if reference is not None else result.reference
    from automix.errors import AutomixError

    def measured(which, where):
        try:
            return measure_for_comparison(where) if where else None
        except AutomixError as error:  # e.g. a lossy output this build cannot decode: the rest of the report stands
            record.setdefault("notes", []).append(f"the {which} could not be measured for the report: {error}")
            return None

    before, after = measured("input", input_path), measured("output", record["output"])
    if reference is not None and before is not None and after is not None:
        record["reference_comparison"] = reference_comparison(reference, None, None, measured_input=before,
                                                              measured_output=after, width_above_hz=result.mono_below_hz)
    if Path(path).suffix.lower() in HTML_SUFFIXES:
        curves = curves_from_files(None, None, settings if settings is not None else result.settings,
                                   limiter_gain_reduction_db=result.limiter_timeline_db,
                                   measured_before=before, measured_after=after)
        write_html(record, curves, path)
    else:
        with atomic_output(path) as temp_name, open(temp_name, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, default=str)
            f.write("\n")
    return record


def curves_from_audio(before: np.ndarray | None, after: np.ndarray | None, sample_rate: int, settings=None, *,
                      limiter_gain_reduction_db: np.ndarray | None = None,
                      glue_gain_reduction_db: np.ndarray | None = None) -> ReportCurves:
    """Measure the curves of :class:`ReportCurves` from the audio before and after the master.

    Parameters
    ----------
    before, after : numpy.ndarray or None
        float32 ``(channels, samples)``: the master's input (for a mix, the balanced mix,
        ``RenderResult.mix``) and the output as written (the master, on the output grid).
    settings : MasterSettings or None
        The preset's mastering settings, for the target spectrum.
    limiter_gain_reduction_db, glue_gain_reduction_db : numpy.ndarray or None
        Passed through (``LimiterStats.timeline_db`` of the final render).

    Costs one loudness measurement and one analysis per signal (no true-peak scan).
    """
    from automix.io.audio import Audio
    from automix.measure.analyzer import analyze
    from automix.measure.loudness import measure

    def curves_of(samples):
        if samples is None or np.asarray(samples).size == 0:
            return None, None, None
        measured = measure(samples, sample_rate, true_peak=False)
        bands = np.asarray(analyze(Audio(samples, sample_rate)).band_levels_db, dtype=np.float64)
        return measured.momentary_lufs, measured.short_term_lufs, bands

    in_momentary, in_short, in_bands = curves_of(before)
    out_momentary, out_short, out_bands = curves_of(after)
    target = None
    if settings is not None:
        from automix.master.tonal import target_curve_db

        target = target_curve_db(np.asarray(THIRD_OCTAVE_CENTRES_HZ, dtype=np.float64), settings)
    return ReportCurves(in_momentary, in_short, out_momentary, out_short, in_bands, out_bands, target,
                        limiter_gain_reduction_db, glue_gain_reduction_db, hop_s=0.1)


def write_html(report: dict, curves: ReportCurves | None, path: str | Path) -> None:
    """Write :func:`render_html` to ``path`` atomically (UTF-8), like the audio.

    Raises
    ------
    AutomixError
        If the destination cannot be written (see :func:`automix.io.audio.atomic_output`).
    """
    page = render_html(report, curves)
    with atomic_output(path) as temp_name, open(temp_name, "w", encoding="utf-8", newline="\n") as f:
        f.write(page)


def render_html(report: dict, curves: ReportCurves | None = None) -> str:
    """The report as one self-contained HTML page (a string).

    Parameters
    ----------
    report : dict
        The JSON report of ``automix mix`` (keys ``stems``, ``mix``, ``master``,
        ``final``, ...) or a master record (``MasterResult.to_dict()``, with or without
        ``settings``, optionally with ``input`` / ``output`` file names added).
    curves : ReportCurves or None
        The timelines and spectra for the figures; None leaves out what the report alone
        cannot draw.
    """
    return _Page(report, curves or ReportCurves()).render()


# --- helpers --------------------------------------------------------------------------


def _e(value) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value, fmt: str = ".1f", unit: str = "") -> str:
    if not _is_number(value):
        return "&ndash;"
    text = format(value, fmt).replace("-", "\u2212")
    return _e(text) + (f"&nbsp;{_e(unit)}" if unit else "")


def _get(data, *keys):
    """``data[k1][k2]...`` or None when any level is missing."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _nominal_hz(name: str) -> float:
    """'1.25k' -> 1250.0."""
    name = str(name).strip().lower()
    return float(name[:-1]) * 1000.0 if name.endswith("k") else float(name)


def _pan_text(pan) -> str:
    if not _is_number(pan):
        return "&ndash;"
    return "C" if abs(pan) < 0.005 else f"{'L' if pan < 0 else 'R'}{abs(pan) * 100:.0f}"


def _array(values) -> np.ndarray | None:
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64).ravel()
    return values if values.size else None


#: Widest gain-reduction timeline drawn, in steps (a 10-minute programme at 100 ms is
#: 6000; the figure is at most 640 px wide).
MAX_STEPS = 800


def _pool_max(values: np.ndarray | None, pool: int) -> np.ndarray | None:
    """The maximum of each run of ``pool`` values (the last run may be shorter)."""
    if values is None or pool == 1:
        return values
    padded = np.concatenate((values, np.full(-values.size % pool, -np.inf)))
    return padded.reshape(-1, pool).max(axis=1)


_RULE_KEY = re.compile(r"(^|_)(rule|reason)$")


def _rule_strings(data, path: str = "") -> list[tuple[str, str]]:
    """Every (path, text) whose key is ``rule``, ``*_rule``, ``reason`` or ``*_reason``."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, str) and _RULE_KEY.search(str(key)) and value.strip():
                found.append((where, value))
            else:
                found.extend(_rule_strings(value, where))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.extend(_rule_strings(value, f"{path}[{index}]"))
    return found


CSS = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:#f4f5f7;color:#1d1f23;
 font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Liberation Sans",sans-serif}
main{max-width:1240px;margin:0 auto;padding:16px}
header h1{font-size:1.5rem;margin:.2em 0;overflow-wrap:anywhere}
header p{margin:.2em 0;color:#4a4f57;overflow-wrap:anywhere}
section{background:#fff;border-radius:8px;padding:12px 18px;margin:16px 0;box-shadow:0 1px 2px rgba(0,0,0,.1)}
h2{font-size:1.2rem;margin:.3em 0 .5em}
h3{font-size:1rem;margin:1em 0 .4em}
figure{margin:10px 0 14px;padding:0}
section>p,section>ul,figcaption{max-width:54em}
figure svg.plot{display:block;width:100%;height:auto;max-width:640px}
figcaption{font-size:.88rem;color:#4a4f57;margin-top:4px;max-width:640px}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;font-size:.9rem}
th,td{padding:5px 8px;border-bottom:1px solid #e3e5e8;text-align:left;vertical-align:top}
th{background:#f7f8fa;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.summary{width:100%;max-width:640px}
table.summary th{width:38%;background:none;font-weight:500;color:#4a4f57}
table.summary td{overflow-wrap:anywhere}
table.plan td,table.plan th{min-width:4.5em}
table.plan td.file{min-width:7em;overflow-wrap:break-word;font-weight:600}
.nowrap{white-space:nowrap}
.why{display:block;color:#5b616b;font-size:.8rem;line-height:1.3;min-width:7.5em;max-width:20em;
 font-weight:400;white-space:normal;text-align:left}
.status{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:.9rem}
.status-ok{background:#e3f4e8;color:#17632e}
.status-warn{background:#fff1d6;color:#7a4b00}
.status-bad{background:#fde2e2;color:#8a1c1c}
ul.warnings li{color:#7a4b00}
p.missing{color:#6b7079;font-style:italic;font-size:.9rem}
ul.reasons{padding-left:1.2em}
ul.reasons li{margin:.25em 0;overflow-wrap:anywhere}
code{font-size:.85em;background:#f1f2f4;padding:0 3px;border-radius:3px;overflow-wrap:anywhere}
details pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.75rem;max-height:40em;overflow:auto;
 background:#f7f8fa;padding:8px}
@media (max-width:600px){
 main{padding:8px}
 section{padding:10px 10px;margin:10px 0}
 header h1{font-size:1.25rem}
 table.summary th{width:42%}
 body{font-size:15px}
 /* the stem plan as one card per stem: each cell on its own line, labelled */
 table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
 table.cards thead{display:none}
 table.cards tr{border:1px solid #e3e5e8;border-radius:6px;margin:0 0 10px;padding:4px 8px}
 table.cards td{border:0;padding:3px 0 3px 7.2em;position:relative;min-width:0;text-align:left;white-space:normal}
 table.cards td::before{content:attr(data-label);position:absolute;left:0;width:6.8em;color:#5b616b;
  font-size:.8rem;font-weight:600;padding-top:.15em}
 table.cards td.file{padding-left:0;font-size:1.05rem}
 table.cards td.file::before{content:none}
 table.cards .why{min-width:0;max-width:none}
}
"""


class _Page:
    def __init__(self, report: dict, curves: ReportCurves):
        self.report = report if isinstance(report, dict) else {}
        self.curves = curves
        master = self.report.get("master")
        if master is None and "output_lufs" in self.report:
            master = self.report  # a master record
        self.master = master if isinstance(master, dict) else None
        self.settings = _get(self.master, "settings") or _get(self.report, "settings") or {}
        self.stems = self.report.get("stems") if isinstance(self.report.get("stems"), list) else []
        self.shown: set[str] = set()
        self.plotting_error: str | None = None

    # strings that carry a decision's reason: shown once, remembered so "Other reasons"
    # lists only the rest
    def why(self, text, block: bool = True) -> str:
        """A decision's reason: a small line under a table cell's value (``block``), or
        inline in prose."""
        if not text:
            return ""
        self.shown.add(str(text))
        return f'<span class="{"why" if block else "because"}">{_e(text)}</span>'

    def figure(self, figure_id: str, caption: str, draw) -> str:
        """A ``<figure>`` holding ``draw()``'s SVG, or a one-line note if it cannot be drawn."""
        if self.plotting_error is None:
            try:
                svg = draw()
            except ImportError as error:  # matplotlib is not installed
                self.plotting_error = f"figures left out: matplotlib is not installed ({error})"
            else:
                return f'<figure id="{figure_id}">{svg}<figcaption>{caption}</figcaption></figure>'
        return f'<p class="missing">{_e(self.plotting_error)}</p>'

    # --- the page ---------------------------------------------------------------------

    def render(self) -> str:
        body = [self.header(), self.summary(), self.loudness(), self.spectrum(), self.against_reference(), self.dynamics()]
        if self.stems or self.report.get("mix"):
            body.append(self.mix())
        body.append(self.other_reasons())
        body.append(self.settings_section())
        body.append(self.raw_json())
        title = f"automix report: {self.output_name() or 'no output'}"
        return ("<!DOCTYPE html>\n"
                '<html lang="en"><head><meta charset="utf-8">\n'
                '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f"<title>{_e(title)}</title>\n<style>{CSS}</style></head>\n"
                "<body><main>\n" + "\n".join(part for part in body if part) + "\n</main></body></html>\n")

    def output_name(self) -> str | None:
        output = self.report.get("output")
        return Path(str(output)).name if output else None

    def header(self) -> str:
        report = self.report
        lines = []
        made = "Mix" if self.stems else "Master"
        output = report.get("output")
        lines.append(f"<h1>{_e(made)} of {_e(self.output_name() or report.get('input') or report.get('folder') or 'audio')}</h1>")
        sources = []
        if report.get("folder"):
            sources.append(f"stems from <code>{_e(report['folder'])}</code>")
        if report.get("input"):
            sources.append(f"from <code>{_e(report['input'])}</code>")
        preset = report.get("preset")
        if isinstance(preset, dict) and preset.get("name"):
            sources.append(f"preset <strong>{_e(preset['name'])}</strong>")
        elif isinstance(preset, str):
            sources.append(f"preset <strong>{_e(preset)}</strong>")
        if report.get("automix_version"):
            sources.append(f"automix {_e(report['automix_version'])}")
        if sources:
            lines.append(f"<p>{', '.join(sources)}</p>")
        if isinstance(preset, dict) and preset.get("description"):
            lines.append(f"<p>{_e(preset['description'])}</p>")
        if output is None and "output" in report:
            lines.append("<p>No file was written.</p>")
        return "<header>" + "\n".join(lines) + "</header>"

    def final_numbers(self) -> dict:
        """The output's measured numbers: ``final`` (measured on the written audio) first,
        then the master's own measurements."""
        final = self.report.get("final") if isinstance(self.report.get("final"), dict) else {}
        master = self.master or {}
        return {
            "integrated_lufs": final.get("integrated_lufs", master.get("output_lufs")),
            "true_peak_dbtp": final.get("true_peak_dbtp", master.get("output_true_peak_dbtp")),
            "precise_true_peak_dbtp": master.get("output_precise_true_peak_dbtp"),
            "loudness_range_lu": final.get("loudness_range_lu", master.get("output_lra_lu")),
            "sample_peak_dbfs": final.get("sample_peak_dbfs"),
            "bit_depth": final.get("bit_depth"),
        }

    def ceiling_dbtp(self):
        return self.settings.get("ceiling_dbtp") if isinstance(self.settings, dict) else None

    def target_lufs(self):
        return self.settings.get("target_lufs") if isinstance(self.settings, dict) else None

    def margin_text(self) -> str | None:
        numbers = self.final_numbers()
        ceiling = self.ceiling_dbtp()
        peaks = [p for p in (numbers["true_peak_dbtp"], numbers["precise_true_peak_dbtp"]) if _is_number(p)]
        if not _is_number(ceiling) or not peaks:
            return None
        margin = ceiling - max(peaks)
        verdict = "under the ceiling" if margin >= 0 else "OVER the ceiling"
        return (f"{_num(margin, '.2f', 'dB')} {verdict} (ceiling {_num(ceiling, '.1f', 'dBTP')}, "
                f"highest measured true peak {_num(max(peaks), '.2f', 'dBTP')})")

    def summary(self) -> str:
        report, master, numbers = self.report, self.master or {}, self.final_numbers()
        rows = []
        if report.get("output"):
            rows.append(("Output file", f"<code>{_e(report['output'])}</code>"))
        status = master.get("status") or report.get("status")
        if status:
            kind = {"ok": "ok", "quieter": "warn", "forced": "warn"}.get(status, "bad")
            message = master.get("message") or report.get("error") or ""
            if message:
                self.shown.add(str(message))
            rows.append(("Status", f'<span class="status status-{kind}">{_e(status)}</span> {_e(message)}'))
        target = self.target_lufs()
        loudness = _num(numbers["integrated_lufs"], ".1f", "LUFS")
        if _is_number(target):
            loudness += f" (target {_num(target, 'g', 'LUFS')})"
        rows.append(("Integrated loudness", loudness))
        peak = _num(numbers["true_peak_dbtp"], ".2f", "dBTP")
        if _is_number(numbers["precise_true_peak_dbtp"]):
            peak += f"; near-ideal meter {_num(numbers['precise_true_peak_dbtp'], '.2f', 'dBTP')}"
        rows.append(("True peak", peak))
        margin = self.margin_text()
        if margin:
            rows.append(("True-peak margin", margin))
        rows.append(("Loudness range", _num(numbers["loudness_range_lu"], ".1f", "LU")))
        if _is_number(numbers["sample_peak_dbfs"]):
            rows.append(("Sample peak", _num(numbers["sample_peak_dbfs"], ".2f", "dBFS")))
        if _is_number(master.get("input_lufs")):
            into = (f"{_num(master['input_lufs'], '.1f', 'LUFS')}, true peak "
                    f"{_num(master.get('input_true_peak_dbtp'), '.2f', 'dBTP')}")
            rows.append(("Into the master", into))
        if _is_number(master.get("gain_db")):
            rows.append(("Master gain", _num(master["gain_db"], "+.2f", "dB")))
        format_bits = []
        if report.get("sample_rate"):
            format_bits.append(f"{_e(report['sample_rate'])} Hz")
        if numbers["bit_depth"]:
            format_bits.append(f"{_e(numbers['bit_depth'])}-bit")
        if format_bits:
            rows.append(("Format", ", ".join(format_bits)))
        table = "".join(f"<tr><th>{_e(name)}</th><td>{value}</td></tr>" for name, value in rows)
        warnings = self.warnings()
        warning_html = ""
        if warnings:
            warning_html = ("<h3>Warnings and notes</h3><ul class=\"warnings\">"
                            + "".join(f"<li>{item}</li>" for item in warnings) + "</ul>")
        return f'<section id="summary"><h2>Summary</h2><table class="summary">{table}</table>{warning_html}</section>'

    def warnings(self) -> list[str]:
        """Escaped HTML items: the master's warnings, each stem's, notes, skipped files."""
        items = [_e(w) for w in (self.master or {}).get("warnings") or []]
        for stem in self.stems:
            items.extend(f"<code>{_e(stem.get('file'))}</code>: {_e(w)}" for w in stem.get("warnings") or [])
        items.extend(_e(note) for note in self.report.get("notes") or [])
        for skipped in self.report.get("skipped") or []:
            if isinstance(skipped, dict):
                self.shown.add(str(skipped.get("reason")))
                items.append(f"skipped <code>{_e(skipped.get('file'))}</code> ({_e(skipped.get('kind'))}): "
                             f"{_e(skipped.get('reason'))}")
        return items

    # --- figures ----------------------------------------------------------------------

    def loudness(self) -> str:
        c, master = self.curves, self.master or {}
        before = "the mix into the master" if self.stems else "the input"
        panels = []
        if c.input_momentary_lufs is not None or c.input_short_term_lufs is not None:
            panels.append((f"Before: {before}", _array(c.input_momentary_lufs), _array(c.input_short_term_lufs),
                           master.get("input_lufs"), "#7f9bb3"))
        if c.output_momentary_lufs is not None or c.output_short_term_lufs is not None:
            panels.append(("After: the output", _array(c.output_momentary_lufs), _array(c.output_short_term_lufs),
                           self.final_numbers()["integrated_lufs"], "#1f77b4"))
        head = '<section id="loudness"><h2>Loudness over time</h2>'
        if not panels:
            return head + '<p class="missing">Loudness over time: no loudness curves were given to the report.</p></section>'
        from automix.report import plots

        target = self.target_lufs()
        caption = ("Momentary (400 ms window) and short-term (3 s) loudness every "
                   f"{_num(c.hop_s * 1000, '.0f', 'ms')}, ITU-R BS.1770-4; dotted: integrated loudness"
                   + ("; dashed: the target." if _is_number(target) else "."))
        figure = self.figure("fig-loudness", caption,
                             lambda: plots.loudness_svg("fig-loudness", c.hop_s, panels, target if _is_number(target) else None))
        return head + figure + "</section>"

    def spectrum(self) -> str:
        c, master = self.curves, self.master or {}
        centres = np.asarray(THIRD_OCTAVE_CENTRES_HZ)
        output = _array(c.output_bands_db)
        if output is None:
            bands = _get(self.report, "final", "third_octave_bands_db")
            if isinstance(bands, dict) and bands:
                by_name = dict(zip(NOMINAL_CENTRES, THIRD_OCTAVE_CENTRES_HZ))
                levels = {by_name.get(k, _nominal_hz(k)): v for k, v in bands.items() if _is_number(v)}
                output = np.asarray([levels.get(f, np.nan) for f in centres])
        target = _array(c.target_bands_db)
        if target is None and all(_is_number(self.settings.get(k)) for k in ("tilt_db_per_octave", "bass_db", "air_db")):
            from automix.master.tonal_targets import genre_curve_db

            target = genre_curve_db(centres, self.settings["tilt_db_per_octave"], self.settings["bass_db"],
                                    self.settings["air_db"])
        curves = []
        if _array(c.input_bands_db) is not None:
            curves.append(("input", _array(c.input_bands_db), "#7f9bb3", "-"))
        if output is not None:
            curves.append(("output", output, "#1f77b4", "-"))
        if master.get("reference"):
            # the reference replaced the preset's tonal target: its spectrum is drawn in
            # "Against the reference" (the preset's curve here would be a target not aimed at)
            target = None
        if target is not None:
            curves.append((f"target ({_get(self.report, 'preset', 'name') or 'preset'})", target, "#ff7f0e", "--"))
        head = '<section id="spectrum"><h2>Tonal balance</h2>'
        reason = master.get("tonal_eq_reason")
        reason_html = f"<p><strong>Tonal EQ:</strong> {self.why(reason, block=False)}.</p>" if reason else ""
        eq = master.get("tonal_eq_db") if isinstance(master.get("tonal_eq_db"), dict) else None
        eq_move = {_nominal_hz(k): float(v) for k, v in eq.items() if _is_number(v)} if eq is not None else None
        if not any(label in ("input", "output") for label, *_ in curves):
            return (head + reason_html + '<p class="missing">Spectrum: no third-octave levels were given to the '
                    "report.</p></section>")
        from automix.report import plots

        caption = ("Long-term third-octave spectrum, each curve relative to its own total power (its shape, not "
                   "its level)" + (", and below it the tonal EQ's gain per band." if eq_move is not None else "."))
        figure = self.figure("fig-spectrum", caption, lambda: plots.spectrum_svg("fig-spectrum", centres, curves, eq_move))
        return head + figure + reason_html + "</section>"

    def against_reference(self) -> str:
        """Reference, input and output side by side (``--reference``): their mid spectra
        in one figure, the distances to the reference, and a table of loudness, true
        peak, PLR and width."""
        comparison = self.report.get("reference_comparison")
        if not isinstance(comparison, dict):
            return ""
        name = comparison.get("reference") or "reference"
        distance = comparison.get("distance_db") if isinstance(comparison.get("distance_db"), dict) else {}
        spectra = comparison.get("mid_bands_db") if isinstance(comparison.get("mid_bands_db"), dict) else {}
        bands = _array(comparison.get("bands_hz"))
        head = f'<section id="reference"><h2>Against the reference: <code>{_e(name)}</code></h2>'
        numbers = (f"<p>Distance of the tonal balance from the reference's: the input "
                   f"<strong>{_num(distance.get('input'), '.2f', 'dB')}</strong>, the output "
                   f"<strong>{_num(distance.get('output'), '.2f', 'dB')}</strong> "
                   f"({self.why(comparison.get('rule'), block=False)}).</p>")
        figure = '<p class="missing">Spectra: the comparison holds no band levels.</p>'
        curves = []
        for key, label, colour, style in (("reference", f"reference ({name})", "#ff7f0e", "--"),
                                          ("input", "input", "#7f9bb3", "-"), ("output", "output", "#1f77b4", "-")):
            values = spectra.get(key)
            if isinstance(values, list) and values:
                levels = np.asarray([v if _is_number(v) else np.nan for v in values], dtype=np.float64)
                if key != "reference" and _is_number(distance.get(key)):
                    label = f"{label}, {distance[key]:.2f} dB from the reference"
                curves.append((label, levels, colour, style))
        if bands is not None and curves:
            from automix.report import plots

            caption = ("Long-term third-octave spectrum of the mid, (L+R)/2, of the reference, the input and the output, "
                       "each relative to its own total power (its shape, not its level).")
            figure = self.figure(REFERENCE_FIGURE_ID, caption,
                                 lambda: plots.reference_spectra_svg(REFERENCE_FIGURE_ID, bands, curves))
        measures = comparison.get("measures") if isinstance(comparison.get("measures"), dict) else {}
        above = comparison.get("width_above_hz")
        rows = []
        for key, label in (("reference", "reference"), ("input", "input"), ("output", "output")):
            m = measures.get(key) if isinstance(measures.get(key), dict) else {}
            rows.append(f"<tr><td>{_e(label)}</td><td class=\"n\">{_num(m.get('integrated_lufs'), '.1f', 'LUFS')}</td>"
                        f"<td class=\"n\">{_num(m.get('true_peak_dbtp'), '.2f', 'dBTP')}</td>"
                        f"<td class=\"n\">{_num(m.get('plr_db'), '.1f', 'dB')}</td>"
                        f"<td class=\"n\">{_num(m.get('stereo_width'), '.3f')}</td>"
                        + (f"<td class=\"n\">{_num(m.get('stereo_width_above'), '.3f')}</td>" if _is_number(above) else "")
                        + f"<td class=\"n\">{_num(distance.get(key), '.2f', 'dB') if key != 'reference' else '&ndash;'}</td></tr>")
        above_head = f"<th>width above {_num(above, '.0f', 'Hz')}</th>" if _is_number(above) else ""
        table = ('<div class="scroll"><table id="reference-table"><thead><tr><th></th><th>loudness</th><th>true peak</th>'
                 f"<th>PLR</th><th>width</th>{above_head}<th>distance</th></tr></thead><tbody>" + "".join(rows)
                 + "</tbody></table></div>")
        if _is_number(above):
            table += (f"<p>Width: side energy over mid plus side; above {_num(above, '.0f', 'Hz')} too, where the "
                      "master keeps the side (its mono bass takes it out below): the width the match aims at.</p>")
        return head + figure + numbers + table + "</section>"

    def dynamics(self) -> str:
        c, master = self.curves, self.master or {}
        glue = master.get("glue") if isinstance(master.get("glue"), dict) else {}
        head = '<section id="dynamics"><h2>Dynamics and peaks</h2>'
        items = []
        if _is_number(master.get("limiter_max_gain_reduction_db")):
            items.append(f"Limiter: deepest {_num(master['limiter_max_gain_reduction_db'], '.2f', 'dB')} at "
                         f"{_num(master.get('limiter_deepest_at_s'), '.1f', 's')}; exceeded 10% of the time "
                         f"{_num(master.get('limiter_programme_gain_reduction_db'), '.2f', 'dB')}; mean while acting "
                         f"{_num(master.get('limiter_mean_gain_reduction_db'), '.2f', 'dB')}; threshold "
                         f"{_num(master.get('limiter_threshold_db'), '.2f', 'dB')}, release "
                         f"{_num(master.get('limiter_release_ms'), '.0f', 'ms')}.")
        if glue.get("reason"):
            state = "acts" if glue.get("act") else "off"
            detail = ""
            if glue.get("act"):
                detail = (f" (ratio {_num(glue.get('ratio'), '.1f')}:1, aiming at "
                          f"{_num(glue.get('depth_db'), '.1f', 'dB')} on the loud passages)")
            items.append(f"Glue compressor {state}{detail}: {self.why(glue['reason'], block=False)}.")
        margin = self.margin_text()
        if margin:
            items.append(f"True-peak margin: {margin}.")
        codec = master.get("codec_true_peaks_dbtp")
        if isinstance(codec, dict) and codec:
            items.append("Decoded true peaks: " + ", ".join(f"{_e(k)} {_num(v, '.2f', 'dBTP')}" for k, v in codec.items()))
        text = "".join(f"<p>{item}</p>" for item in items)
        limiter, glue_curve = _array(c.limiter_gain_reduction_db), _array(c.glue_gain_reduction_db)
        if limiter is None and glue_curve is None:
            return head + text + '<p class="missing">Gain reduction over time: no limiter timeline was given to the report.</p></section>'
        from automix.report import plots

        # The mark sits on the drawn timeline (its deepest granule); without one, where the
        # report says.
        deepest = None
        if limiter is not None:
            if limiter.max() > 0:
                deepest = ((float(np.argmax(limiter)) + 0.5) * c.hop_s, float(limiter.max()))
        elif _is_number(master.get("limiter_max_gain_reduction_db")) and _is_number(master.get("limiter_deepest_at_s")):
            deepest = (float(master["limiter_deepest_at_s"]), float(master["limiter_max_gain_reduction_db"]))
        # A long programme is drawn at most MAX_STEPS steps wide, each the deepest of the
        # granules it covers (peaks kept; the page stays small).
        steps = max(x.size for x in (limiter, glue_curve) if x is not None)
        pool = max(1, math.ceil(steps / MAX_STEPS))
        limiter, glue_curve = _pool_max(limiter, pool), _pool_max(glue_curve, pool)
        hop_s = c.hop_s * pool
        caption = (f"Gain reduction, the deepest in each {_num(hop_s * 1000, '.0f', 'ms')}, drawn downward"
                   + ("; the triangle marks the deepest moment." if deepest else "."))
        figure = self.figure("fig-gain-reduction", caption,
                             lambda: plots.gain_reduction_svg("fig-gain-reduction", hop_s, limiter, glue_curve, deepest))
        return head + figure + text + "</section>"

    # --- the mix ----------------------------------------------------------------------

    def mix(self) -> str:
        mix = self.report.get("mix") if isinstance(self.report.get("mix"), dict) else {}
        parts = ['<section id="mix"><h2>The mix</h2>']
        facts = []
        if mix.get("lead"):
            facts.append(f"<li>Lead: <code>{_e(mix['lead'])}</code>: {self.why(mix.get('lead_rule'), block=False)}.</li>")
        if _is_number(mix.get("bus_gain_db")) or mix.get("bus_rule"):
            facts.append(f"<li>Sum: {_num(mix.get('bus_lufs'), 'g', 'LUFS')}, bus gain "
                         f"{_num(mix.get('bus_gain_db'), '+.2f', 'dB')}: {self.why(mix.get('bus_rule'), block=False)}.</li>")
        if _is_number(mix.get("amount")) and mix["amount"] != 1:
            # the per-stem table below shows every move as applied at this amount
            facts.append(f"<li>Amount {_num(mix['amount'], 'g')}: {self.why(mix.get('amount_rule'), block=False)}; "
                         "the table below shows each move as applied.</li>")
        if facts:
            parts.append('<ul class="reasons">' + "".join(facts) + "</ul>")
        if self.stems:
            parts.append(self.stem_figure(mix))
            parts.append(self.stem_table())
        groups = mix.get("groups") if isinstance(mix.get("groups"), list) else []
        if groups:
            rows = "".join(
                f"<tr><td class=\"file\">{_e(g.get('name'))}</td>"
                f"<td data-label=\"level\" class=\"n\">{_num(g.get('target_lufs'), '+.2f', 'LU')}</td>"
                f"<td data-label=\"stems\">{_e(', '.join(str(s) for s in g.get('stems') or []))}</td>"
                f"<td data-label=\"rule\">{self.why(g.get('rule'))}</td></tr>"
                for g in groups if isinstance(g, dict))
            parts.append("<h3>Groups (loudness relative to the lead)</h3><div class=\"scroll\"><table class=\"plan cards\">"
                         "<thead><tr><th>group</th><th>level</th><th>stems</th><th>rule</th></tr></thead>"
                         f"<tbody>{rows}</tbody></table></div>")
        parts.append("</section>")
        return "\n".join(parts)

    def stem_table(self) -> str:
        rows = []
        for stem in self.stems:
            plan = stem.get("plan") if isinstance(stem.get("plan"), dict) else {}
            measured = stem.get("measured") if isinstance(stem.get("measured"), dict) else {}
            rendered = stem.get("rendered") if isinstance(stem.get("rendered"), dict) else {}
            gain = plan.get("gain_db")
            if _is_number(gain) and _is_number(rendered.get("makeup_db")):
                gain_text = (f"{_num(gain + rendered['makeup_db'], '+.1f', 'dB')}"
                             f"<span class=\"why\">{_num(gain, '+.1f', 'dB')} level, "
                             f"{_num(rendered['makeup_db'], '+.1f', 'dB')} compressor make-up</span>")
            else:
                gain_text = _num(gain, "+.1f", "dB")
            highpass = plan.get("highpass_hz")
            highpass_text = (f"{_num(highpass, '.0f', 'Hz')}" + (f", order {_e(plan['highpass_order'])}"
                                                                   if plan.get("highpass_order") else "")
                             if _is_number(highpass) else "none")
            cuts = plan.get("eq_cuts") if isinstance(plan.get("eq_cuts"), list) else []
            cut_text = "<br>".join(f"{_num(cut.get('gain_db'), '.1f', 'dB')} at {_num(cut.get('frequency_hz'), '.0f', 'Hz')}, "
                                   f"Q {_num(cut.get('q'), '.1f')}{self.why(cut.get('rule'))}"
                                   for cut in cuts if isinstance(cut, dict)) or "none"
            comp = plan.get("compressor") if isinstance(plan.get("compressor"), dict) else None
            if comp:
                comp_rule = plan.get("compressor_rule") or comp.get("rule")
                if comp.get("rule") and comp.get("rule") != comp_rule:
                    self.shown.add(str(comp["rule"]))
                comp_text = (f"{_num(comp.get('ratio'), '.1f')}:1 at {_num(comp.get('threshold_db'), '.1f', 'dB')}, "
                             f"{_num(comp.get('attack_ms'), '.0f', 'ms')}/{_num(comp.get('release_ms'), '.0f', 'ms')}"
                             f"; deepest {_num(rendered.get('compressor_max_gain_reduction_db'), '.1f', 'dB')}"
                             f"{self.why(comp_rule)}")
            else:
                comp_text = "none" + self.why(plan.get("compressor_rule"))
            cells = [
                ("file", stem.get("file") and _e(stem.get("file")), "file"),
                ("role", f"{_e(stem.get('role'))}{self.why(stem.get('role_reason') or plan.get('role_reason'))}", ""),
                ("loudness in", _num(measured.get("active_lufs"), ".1f", "LUFS"), "n"),
                ("in the mix", _num(rendered.get("loudness_in_mix_lufs"), ".1f", "LUFS"), "n"),
                ("gain", f"{gain_text}{self.why(plan.get('gain_rule'))}", ""),
                ("high-pass", f'<span class="nowrap">{highpass_text}</span>{self.why(plan.get("highpass_rule"))}', ""),
                ("EQ cuts", cut_text, ""),
                ("compressor", comp_text, ""),
                ("pan", f"{_pan_text(plan.get('pan'))}{self.why(plan.get('pan_rule'))}", ""),
            ]
            rows.append("<tr>" + "".join(f'<td data-label="{_e(label)}"' + (f' class="{kind}"' if kind else "")
                                         + f">{value or ''}</td>" for label, value, kind in cells) + "</tr>")
        head = "".join(f"<th>{_e(h)}</th>" for h, *_ in cells) if rows else ""
        return ("<h3>Per stem: what was measured, decided and why</h3>"
                '<div class="scroll"><table class="plan cards" id="stem-plan">'
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")

    def stem_figure(self, mix: dict) -> str:
        stems = []
        for stem in self.stems:
            level = _get(stem, "rendered", "loudness_in_mix_lufs")
            if _is_number(level):
                stems.append((str(stem.get("file")), float(level), str(_get(stem, "plan", "group") or stem.get("role") or "")))
        if not stems:
            return '<p class="missing">Stem levels: the report has no loudness in the mix for the stems.</p>'
        from automix.report import plots

        bus = mix.get("bus_lufs") if _is_number(mix.get("bus_lufs")) else None
        caption = ("Each stem's loudness in the mix (BS.1770, its active part), coloured by group; the dashed line "
                   "is the sum before the master.")
        return self.figure("fig-stems", caption, lambda: plots.stem_levels_svg("fig-stems", stems, bus))

    # --- the rest ---------------------------------------------------------------------

    def other_reasons(self) -> str:
        rest = [(where, text) for where, text in _rule_strings(self.report) if text not in self.shown]
        if not rest:
            return ""
        items = "".join(f"<li><code>{_e(where)}</code>: {_e(text)}</li>" for where, text in rest)
        return f'<section id="reasons"><h2>Other reasons</h2><ul class="reasons">{items}</ul></section>'

    def settings_section(self) -> str:
        if not isinstance(self.settings, dict) or not self.settings:
            return ""
        origins = _get(self.report, "preset", "value_origins") or {}
        rows = "".join(
            f"<tr><td><code>{_e(key)}</code></td><td class=\"n\">{_e(value)}</td>"
            f"<td>{_e(origins.get('master.' + key, ''))}</td></tr>"
            for key, value in self.settings.items())
        mix_rows = "".join(f"<tr><td><code>{_e(key)}</code></td><td></td><td>{_e(origin)}</td></tr>"
                           for key, origin in origins.items() if not key.startswith("master."))
        return ('<section id="settings"><details><summary>Mastering settings and where each came from</summary>'
                '<div class="scroll"><table><thead><tr><th>setting</th><th>value</th><th>from</th></tr></thead>'
                f"<tbody>{rows}{mix_rows}</tbody></table></div></details></section>")

    def raw_json(self) -> str:
        text = json.dumps(self.report, indent=1, default=str, allow_nan=True)
        return ('<section id="json"><details><summary>The whole report as JSON</summary>'
                f"<pre>{_e(text)}</pre></details></section>")
