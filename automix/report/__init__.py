"""Reports a person reads: :func:`render_html` / :func:`write_html` turn the JSON report
(and the curves it does not carry, :class:`ReportCurves`) into one self-contained page."""

from automix.report.html import (
    FIGURE_IDS,
    HTML_SUFFIXES,
    ReportCurves,
    curves_from_audio,
    render_html,
    write_html,
)

__all__ = ["FIGURE_IDS", "HTML_SUFFIXES", "ReportCurves", "curves_from_audio", "render_html", "write_html"]
