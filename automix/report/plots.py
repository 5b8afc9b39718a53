"""The report's figures, drawn with matplotlib and returned as inline SVG text.

matplotlib is imported inside :func:`_pyplot` (Agg backend), so importing this module,
and so ``automix --help``, stays fast. Every function returns the ``<svg>`` element
only (no XML prologue, DOCTYPE or metadata), without a fixed width or height, so the
page's CSS scales it; the text stays text (``svg.fonttype = none``), which keeps the
page small and the labels sharp at any width. Output is deterministic: the element ids
matplotlib makes are salted with the figure's id (also keeping ids unique when several
figures share one page) and no date is written.
"""

from __future__ import annotations

import io
import re

import numpy as np

#: Below this a loudness reading is left out of the plots: the BS.1770 absolute gate
#: (-70 LUFS); a meter reads digital silence as -200.
PLOT_FLOOR_LUFS = -70.0

#: The meters' windows (ITU-R BS.1770-4 / EBU Tech 3341): momentary and short-term.
MOMENTARY_WINDOW_S = 0.4
SHORT_TERM_WINDOW_S = 3.0

#: A band this far under the total power is plotted as empty (the analyzer reads an
#: empty band as -200 dB).
PLOT_FLOOR_BAND_DB = -90.0

#: Figure width in inches at 72 pt per inch. With 11 pt text and the page's 640 px cap,
#: labels are about 20 px on a desktop and 10-11 px on a 375 px phone (about 340 px of
#: figure): small enough for a desktop, large enough to read on a phone.
FIGURE_WIDTH_IN = 4.8

# Colours: the "before" is grey-blue, the "after" a strong blue, the target orange
# (matplotlib's tab10 palette, which stays distinct for colour-blind readers).
BEFORE = "#7f9bb3"
AFTER = "#1f77b4"
TARGET = "#ff7f0e"
REDUCTION = "#d62728"
GLUE = "#9467bd"

_RC = {
    "svg.fonttype": "none",
    "font.size": 11,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 10,
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return matplotlib, plt


def _to_svg(fig, figure_id: str) -> str:
    """The figure as a bare, scalable ``<svg>`` element."""
    matplotlib, plt = _pyplot()
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": figure_id}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", pad_inches=0.05,
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    # Drop the fixed size (points) so CSS scales the figure; the viewBox keeps its shape.
    head_end = text.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    return head + f' class="plot" role="img" id="{figure_id}-svg"' + text[head_end:]


def _plain(text: str) -> str:
    """Text shown as typed: a ``$`` would start matplotlib's mathtext."""
    return str(text).replace("$", r"\$")


def _shorten(text: str, limit: int = 24) -> str:
    """Long file names are cut in the middle (the table beside the figure has them whole)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit // 2 - 1] + "\u2026" + text[-(limit // 2) :]


def _finite_above(values, floor: float) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel().copy()
    values[~np.isfinite(values) | (values <= floor)] = np.nan
    return values


def loudness_svg(figure_id: str, hop_s: float, panels: list[tuple[str, object, object, float | None, str]],
                 target_lufs: float | None) -> str:
    """Momentary and short-term loudness over time, one panel per signal.

    Parameters
    ----------
    hop_s : float
        Step between readings. Reading ``i`` is the window that starts at ``i * hop_s``
        (as :func:`automix.measure.loudness.measure` returns them); it is drawn at the
        window's end, where a loudness meter would show it.
    panels : list of (title, momentary_lufs, short_term_lufs, integrated_lufs, colour)
        Either curve may be None. Readings at or under ``PLOT_FLOOR_LUFS`` are gaps.
    target_lufs : float or None
        Drawn as a dashed line on every panel.
    """
    matplotlib, plt = _pyplot()
    with matplotlib.rc_context(_RC):
        fig, axes = plt.subplots(len(panels), 1, figsize=(FIGURE_WIDTH_IN, 1.8 * len(panels) + 0.4),
                                 sharex=True, sharey=True, squeeze=False)
        finite = []
        handles = {}
        for ax, (title, momentary, short_term, integrated, colour) in zip(axes[:, 0], panels):
            for values, window_s, label, style in (
                    (momentary, MOMENTARY_WINDOW_S, "momentary (400 ms)", {"lw": 0.6, "alpha": 0.6}),
                    (short_term, SHORT_TERM_WINDOW_S, "short-term (3 s)", {"lw": 1.7})):
                if values is None:
                    continue
                values = _finite_above(values, PLOT_FLOOR_LUFS)
                finite.append(values[np.isfinite(values)])
                (line,) = ax.plot(np.arange(values.size) * hop_s + window_s, values, color=colour, label=label, **style)
                handles.setdefault(label, line)
            if integrated is not None and integrated > PLOT_FLOOR_LUFS:
                handles.setdefault("integrated", ax.axhline(integrated, color="#444444", lw=0.9, ls=":"))
                title = f"{title}, integrated {integrated:.1f} LUFS".replace("-", "\u2212")
            if target_lufs is not None:
                handles.setdefault(f"target {target_lufs:g} LUFS".replace("-", "\u2212"),
                                   ax.axhline(target_lufs, color=TARGET, lw=1.2, ls="--"))
            ax.set_title(title, loc="left", fontsize=11)
            ax.set_ylabel("LUFS")
        values = np.concatenate(finite) if finite else np.zeros(0)
        if values.size:
            top = max(float(values.max()), target_lufs if target_lufs is not None else -np.inf) + 3.0
            bottom = min(float(np.percentile(values, 2)), target_lufs if target_lufs is not None else np.inf) - 8.0
            axes[0, 0].set_ylim(max(bottom, top - 45.0), top)
        axes[-1, 0].set_xlabel("time (s)")
        axes[-1, 0].set_xlim(left=0.0)
        fig.align_ylabels()
        fig.tight_layout()
        fig.legend(list(handles.values()), list(handles), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=2)
        return _to_svg(fig, figure_id)


def spectrum_svg(figure_id: str, centres_hz, curves: list[tuple[str, object, str, str]],
                 eq_move_db: dict[float, float] | None) -> str:
    """Long-term third-octave spectra (top) and the tonal EQ's move per band (bottom).

    Parameters
    ----------
    centres_hz : array
        Band centres, Hz; each curve uses the first ``len(curve)`` of them.
    curves : list of (label, levels_db, colour, linestyle)
    eq_move_db : dict of centre Hz -> gain dB, or None to leave the lower panel out
    """
    matplotlib, plt = _pyplot()
    centres_hz = np.asarray(centres_hz, dtype=np.float64)
    with matplotlib.rc_context(_RC):
        if eq_move_db is None:
            fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN, 3.0))
            eq_ax = None
        else:
            fig, (ax, eq_ax) = plt.subplots(2, 1, figsize=(FIGURE_WIDTH_IN, 4.3), sharex=True,
                                            gridspec_kw={"height_ratios": [2.3, 1]})
        for label, levels, colour, style in curves:
            levels = _finite_above(levels, PLOT_FLOOR_BAND_DB)
            ax.plot(centres_hz[: levels.size], levels, color=colour, ls=style, lw=1.6 if style == "-" else 1.3,
                    marker="o" if style == "-" else None, ms=2.5, label=label)
        ax.set_xscale("log")
        ax.set_ylabel("dB re total power")
        ax.legend(loc="upper right")  # music's spectrum falls to the right: that corner is free
        bottom_ax = ax
        if eq_ax is not None:
            if eq_move_db:
                bands = np.asarray(sorted(eq_move_db), dtype=np.float64)
                gains = np.asarray([eq_move_db[b] for b in sorted(eq_move_db)], dtype=np.float64)
                low, high = bands * 2 ** (-1 / 6), bands * 2 ** (1 / 6)
                colours = [AFTER if g >= 0 else REDUCTION for g in gains]
                eq_ax.bar(low, gains, width=(high - low) * 0.9, align="edge", color=colours)
                limit = max(1.0, float(np.abs(gains).max()) * 1.25)
            else:
                eq_ax.text(0.5, 0.5, "no tonal EQ move", transform=eq_ax.transAxes, ha="center", va="center",
                           color="#555555")
                limit = 1.0
            eq_ax.axhline(0.0, color="#444444", lw=0.8)
            eq_ax.set_ylim(-limit, limit)
            eq_ax.set_ylabel("EQ dB")
            bottom_ax = eq_ax
        bottom_ax.set_xlim(20.0, 22000.0)
        ticks = [31.5, 63, 125, 250, 500, 1000, 2000, 4000, 8000, 16000]
        bottom_ax.set_xticks(ticks)
        bottom_ax.set_xticklabels(["31", "63", "125", "250", "500", "1k", "2k", "4k", "8k", "16k"])
        bottom_ax.minorticks_off()
        ax.minorticks_off()
        bottom_ax.set_xlabel("frequency (Hz)")
        fig.align_ylabels()
        return _to_svg(fig, figure_id)


def gain_reduction_svg(figure_id: str, hop_s: float, limiter_db, glue_db, deepest: tuple[float, float] | None) -> str:
    """Gain reduction over time, drawn downward from 0 dB, with the deepest moment marked.

    Parameters
    ----------
    limiter_db, glue_db : array or None
        Positive dB of reduction, one value per ``hop_s``.
    deepest : (time s, reduction dB) or None
    """
    matplotlib, plt = _pyplot()
    with matplotlib.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN, 2.6))
        deepest_db = 0.0
        for values, label, colour in ((limiter_db, "limiter", REDUCTION), (glue_db, "glue compressor", GLUE)):
            if values is None:
                continue
            values = np.nan_to_num(np.asarray(values, dtype=np.float64).ravel(), nan=0.0)
            times = np.arange(values.size) * hop_s
            ax.fill_between(times, 0.0, -values, step="post", color=colour, alpha=0.35 if label == "limiter" else 0.2,
                            lw=0)
            ax.step(times, -values, where="post", color=colour, lw=0.9, label=label)
            deepest_db = max(deepest_db, float(values.max()) if values.size else 0.0)
        if deepest is not None:
            at_s, depth_db = deepest
            deepest_db = max(deepest_db, depth_db)
            ax.plot([at_s], [-depth_db], marker="v", color="black", ms=7, ls="none",
                    label=f"deepest {depth_db:.2f} dB at {at_s:.1f} s")
        ax.axhline(0.0, color="#444444", lw=0.8)
        ax.set_ylim(-max(1.0, deepest_db * 1.3), max(0.1, deepest_db * 0.08))
        ax.set_ylabel("gain reduction (dB)")
        ax.set_xlabel("time (s)")
        ax.set_xlim(left=0.0)
        ax.legend(loc="lower right", ncol=3)
        return _to_svg(fig, figure_id)


def stem_levels_svg(figure_id: str, stems: list[tuple[str, float, str]], bus_lufs: float | None) -> str:
    """Each stem's loudness in the mix, one bar per stem coloured by its group.

    Parameters
    ----------
    stems : list of (label, loudness in the mix LUFS, group)
    bus_lufs : float or None
        The sum's level, drawn as a dashed line.
    """
    matplotlib, plt = _pyplot()
    from matplotlib.patches import Patch

    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
    groups = list(dict.fromkeys(group for *_, group in stems))
    colour_of = {group: palette[i % len(palette)] for i, group in enumerate(groups)}
    with matplotlib.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN, 0.7 + 0.3 * max(1, len(stems))))
        levels = np.asarray([s[1] for s in stems], dtype=np.float64)
        floor = float(np.floor((levels.min() - 4.0) / 5.0) * 5.0)
        top = float(max(levels.max(), bus_lufs if bus_lufs is not None else -np.inf)) + 3.0
        rows = np.arange(len(stems))[::-1]
        ax.barh(rows, levels - floor, left=floor, height=0.68, color=[colour_of[s[2]] for s in stems])
        for row, level in zip(rows, levels):
            ax.text(level + 0.3, row, f"{level:.1f}".replace("-", "\u2212"), va="center", fontsize=9.5, color="#333333")
        extra = []
        if bus_lufs is not None:
            extra.append(ax.axvline(bus_lufs, color=TARGET, ls="--", lw=1.2,
                                    label=f"the sum, {bus_lufs:g} LUFS".replace("-", "\u2212")))
        ax.set_yticks(rows)
        ax.set_yticklabels([_plain(_shorten(s[0])) for s in stems])
        ax.set_ylim(-0.6, len(stems) - 0.4)
        ax.set_xlim(floor, top)
        ax.set_xlabel("loudness in the mix (LUFS)")
        ax.grid(axis="y", visible=False)
        handles = [Patch(color=colour_of[g], label=_plain(g)) for g in groups] + extra
        fig.tight_layout()
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(handles)))
        return _to_svg(fig, figure_id)


def reference_spectra_svg(figure_id: str, centres_hz, curves: list[tuple[str, object, str, str]]) -> str:
    """Reference, input and output long-term third-octave spectra in one plot, the legend
    (which carries each curve's distance from the reference) under it, clear of the curves.

    Parameters
    ----------
    centres_hz : array
        Band centres, Hz; each curve uses the first ``len(curve)`` of them.
    curves : list of (label, levels_db, colour, linestyle)
        NaN or levels under ``PLOT_FLOOR_BAND_DB`` are gaps (a band the signal leaves empty
        or a reference beyond its bandwidth).
    """
    matplotlib, plt = _pyplot()
    centres_hz = np.asarray(centres_hz, dtype=np.float64)
    with matplotlib.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN, 3.0))
        for label, levels, colour, style in curves:
            levels = _finite_above(levels, PLOT_FLOOR_BAND_DB)
            ax.plot(centres_hz[: levels.size], levels, color=colour, ls=style, lw=1.8 if style == "--" else 1.6,
                    marker=None if style == "--" else "o", ms=2.5, label=_plain(label))
        ax.set_xscale("log")
        ax.set_xlim(20.0, 22000.0)
        ticks = [31.5, 63, 125, 250, 500, 1000, 2000, 4000, 8000, 16000]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["31", "63", "125", "250", "500", "1k", "2k", "4k", "8k", "16k"])
        ax.minorticks_off()
        ax.set_xlabel("frequency (Hz)")
        ax.set_ylabel("dB re total power")
        fig.tight_layout()
        fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1)
        return _to_svg(fig, figure_id)
