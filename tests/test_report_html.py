"""The HTML report: self-contained, escaped, complete, and drawn (checked in a real browser).

The report dict is built here by hand in the shape of today's JSON report of
``automix mix`` (``automix.jobs.pipeline.build_report``), so these tests do not depend on
the pipeline, and every expected string or number is written down here, not taken from
the renderer.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from automix.report import (
    FIGURE_IDS,
    ReportCurves,
    curves_from_audio,
    render_html,
    write_html,
)

#: A file name a browser would take for markup if it were not escaped (no "/": it is one name).
HOSTILE = "<b>x<b> & \"quote\" 'tick' $a$ <script>alert(1)<script>.wav"


def sample_report() -> dict:
    """A mix report shaped like ``build_report``'s, with three stems (one with a hostile name)."""

    def stem(file, role, gain, highpass, cuts, compressor, pan, in_mix, active, group):
        return {
            "file": file, "role": role, "role_reason": f"file name says '{role}' [{file}]",
            "measured": {"active_lufs": active, "integrated_lufs": active, "true_peak_dbtp": -6.0,
                         "crest_factor_db": 12.0, "loudness_range_lu": 3.0, "spectral_centroid_hz": 900.0,
                         "low_share_below_160hz_db": -10.0, "presence_share_1_5khz_db": -8.0,
                         "air_share_above_8khz_db": -30.0, "channels": 1, "duration_s": 20.0},
            "plan": {"name": file, "role": role, "role_reason": f"file name says '{role}' [{file}]",
                     "target_lufs": 0.0, "gain_db": gain,
                     "gain_rule": f"GAIN RULE of {file}: {role} group at +0.00 LU relative to the vocals",
                     "highpass_hz": highpass, "highpass_order": 2,
                     "highpass_rule": f"HIGHPASS RULE of {file}", "eq_cuts": cuts, "compressor": compressor,
                     "compressor_rule": compressor["rule"] if compressor else f"COMPRESSOR RULE (none) of {file}",
                     "pan": pan, "pan_rule": f"PAN RULE of {file}", "group": group, "group_lufs": 0.0},
            "rendered": {"makeup_db": 1.5 if compressor else 0.0, "compressor_max_gain_reduction_db": 3.0,
                         "loudness_in_mix_lufs": in_mix},
            "warnings": [f"WARNING of {file}: input is clipped"],
        }  # fmt: skip

    compressor = {"threshold_db": -6.0, "ratio": 3.0, "attack_ms": 10.0, "release_ms": 120.0,
                  "rule": "COMPRESSOR RULE: threshold 6 dB under the loud moments"}
    cut = {"frequency_hz": 251.189, "gain_db": -2.2, "q": 2.0, "rule": "EQ CUT RULE: keys against the lead at 251 Hz"}
    stems = [
        stem("lead_vox.flac", "vocal", 20.0, 100.0, [], compressor, 0.0, -25.4, -33.0, "vocals"),
        stem(HOSTILE, "keys", 12.0, 80.0, [cut], dict(compressor, rule="COMPRESSOR RULE of the keys"), -0.25,
             -29.6, -20.0, "harmony"),
        stem("hats.wav", "hats", 10.0, 300.0, [], None, 0.35, -40.2, -27.0, "drums"),
    ]
    bands = {name: level for name, level in zip(
        ("25", "31.5", "40", "50", "63", "80", "100", "125", "160", "200", "250", "315", "400", "500", "630", "800",
         "1k", "1.25k", "1.6k", "2k", "2.5k", "3.15k", "4k", "5k", "6.3k", "8k", "10k", "12.5k", "16k", "20k"),
        np.linspace(-20.0, -35.0, 30).round(2).tolist())}  # fmt: skip
    return {
        "automix_version": "0.1.0",
        "folder": "stems/<song & co>",
        "output": f"/out/{HOSTILE}",
        "sample_rate": 44100,
        "preset": {"name": "pop", "description": "Modern pop <loud> & bright.",
                   "value_origins": {"master.target_lufs": "presets/pop.toml", "mix.bus_lufs": "presets/pop.toml"}},
        "stems": stems,
        "skipped": [{"file": "broken.wav", "reason": "SKIP REASON: not a sound file", "kind": "unreadable"}],
        "notes": ["NOTE: hats.wav resampled from 48000 Hz"],
        "mix": {"lead": "lead_vox.flac", "lead_rule": "LEAD RULE: the only vocal stem", "bus_lufs": -20.0,
                "groups": [{"name": "vocals", "target_lufs": 0.0, "rule": "GROUP RULE vocals_lu = +0.00",
                            "stems": ["lead_vox.flac"]},
                           {"name": "harmony", "target_lufs": -0.44, "rule": "GROUP RULE harmony_lu = -0.44",
                            "stems": [HOSTILE]}],
                "bus_gain_db": -25.37, "bus_rule": "BUS RULE: sum set to -20 LUFS"},
        "master": {
            "status": "quieter", "message": "STATUS MESSAGE: 0.4 LU under the target to hold the ceiling",
            "input_lufs": -20.0, "input_true_peak_dbtp": -6.3, "output_lufs": -14.4, "output_true_peak_dbtp": -1.05,
            "output_precise_true_peak_dbtp": -1.02, "output_lra_lu": 1.7, "gain_db": 6.1,
            "limiter_threshold_db": -1.05, "limiter_programme_gain_reduction_db": 0.4,
            "limiter_max_gain_reduction_db": 2.5, "limiter_deepest_at_s": 5.4, "limiter_mean_gain_reduction_db": 0.6,
            "limiter_release_ms": 60.0, "renders": 2, "warnings": ["MASTER WARNING: heavy limiting"],
            "codec_true_peaks_dbtp": {"mp3": -1.1}, "codec_attenuation_db": 0.0,
            "tonal_eq_db": {"126": 0.21, "158": 1.02, "316": -0.67, "2512": 0.5},
            "tonal_eq_reason": "TONAL REASON: largest move +1.0 dB at 158 Hz",
            "glue": {"act": True, "threshold_db": -10.0, "ratio": 2.0, "attack_ms": 30.0, "release_ms": 200.0,
                     "gain_smoothing_ms": 500.0, "sidechain_highpass_hz": 150.0, "depth_db": 1.5,
                     "reason": "GLUE REASON: dynamic mix, 1.5 dB on the loud passages", "initial_reduction_db": 0.5},
            "settings": {"target_lufs": -14.0, "ceiling_dbtp": -1.0, "max_limiting_db": 6.0,
                         "tilt_db_per_octave": -3.0, "bass_db": 2.0, "air_db": 0.5, "tonal_amount": 0.5},
        },
        "final": {"integrated_lufs": -14.4, "true_peak_dbtp": -1.05, "loudness_range_lu": 1.7,
                  "sample_peak_dbfs": -1.23, "bit_depth": "24", "third_octave_bands_db": bands},
    }  # fmt: skip


def sample_curves(**overrides) -> ReportCurves:
    """20 s of curves: a quiet verse and a loud chorus; the limiter acting in the chorus."""
    t = np.arange(200) * 0.1
    chorus = (t > 10).astype(float)
    rng = np.random.default_rng(1)
    momentary = -22.0 + 6.0 * chorus + rng.normal(0, 1.5, t.size)
    short_term = -22.0 + 6.0 * np.convolve(chorus, np.ones(30) / 30, "same")
    limiter = np.where(chorus > 0, np.abs(rng.normal(0.5, 0.5, t.size)), 0.0)
    limiter[54] = 2.5
    centres = 1000.0 * 10 ** (np.arange(-16, 14) / 10)
    shape = -10.0 - 3.0 * np.log2(centres / 100.0).clip(0)
    fields = {
        "input_momentary_lufs": momentary, "input_short_term_lufs": short_term[:-27],
        "output_momentary_lufs": momentary + 6.0, "output_short_term_lufs": short_term[:-27] + 6.0,
        "input_bands_db": shape + 1.0 * np.sin(np.arange(30)), "output_bands_db": shape + 0.5 * np.sin(np.arange(30)),
        "target_bands_db": shape + 0.5, "limiter_gain_reduction_db": limiter,
        "glue_gain_reduction_db": np.full(t.size, 1.0), "hop_s": 0.1,
    }  # fmt: skip
    fields.update(overrides)
    return ReportCurves(**fields)


def rule_strings(data) -> list[str]:
    """Every value whose key is rule / *_rule / reason / *_reason (written here, not imported)."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str) and (key in ("rule", "reason") or key.endswith(("_rule", "_reason"))):
                found.append(value)
            else:
                found.extend(rule_strings(value))
    elif isinstance(data, list):
        for value in data:
            found.extend(rule_strings(value))
    return found


def without_json(page: str) -> str:
    """The page less its raw-JSON appendix (which holds every string anyway)."""
    return re.sub(r'<section id="json">.*?</section>', "", page, flags=re.DOTALL)


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(sample_report(), sample_curves())


def test_page_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"<script\b", page, re.IGNORECASE)  # no script at all (the hostile name is escaped)
    assert not re.search(r"<link\b", page, re.IGNORECASE)
    assert not re.search(r"@import|url\(\s*['\"]?(?!#)", page, re.IGNORECASE)  # only url(#local-id)
    assert not re.search(r"<(img|iframe|object|embed)\b", page, re.IGNORECASE)
    assert '<meta name="viewport"' in page


def test_one_svg_per_figure(page):
    assert page.count("<svg") == 4
    for figure_id in ("fig-loudness", "fig-spectrum", "fig-gain-reduction", "fig-stems"):
        block = re.search(rf'<figure id="{figure_id}">(.*?)</figure>', page, re.DOTALL)
        assert block, figure_id
        assert block.group(1).count("<svg") == 1
        # scalable: no fixed size on the root element, a viewBox instead
        root = re.search(r"<svg[^>]*>", block.group(1)).group(0)
        assert "viewBox" in root and not re.search(r'\s(width|height)=', root)
    assert FIGURE_IDS == ("fig-loudness", "fig-spectrum", "fig-gain-reduction", "fig-stems")


def test_missing_curves_leave_a_note_not_a_figure():
    report = sample_report()
    page = render_html(report, ReportCurves(limiter_gain_reduction_db=np.zeros(10)))
    assert 'id="fig-loudness"' not in page
    assert "no loudness curves were given" in page
    # the spectrum and stems figures are drawn from the report alone; the limiter from its timeline
    assert page.count("<svg") == 3
    assert 'id="fig-spectrum"' in page and 'id="fig-gain-reduction"' in page and 'id="fig-stems"' in page
    page = render_html(report, None)
    assert page.count("<svg") == 2
    assert "no limiter timeline was given" in page


def test_hostile_strings_are_escaped(page):
    assert "<b>x<b>" not in page
    assert "<script>alert(1)" not in page
    assert "<song & co>" not in page and "<loud>" not in page
    escaped = "&lt;b&gt;x&lt;b&gt; &amp; &quot;quote&quot; &#x27;tick&#x27; $a$ &lt;script&gt;alert(1)&lt;script&gt;.wav"
    assert escaped in without_json(page)  # the stem table and the output file name
    # the stem chart's label is text in the SVG, escaped by the SVG writer, dollars kept literal
    stems_svg = re.search(r'<figure id="fig-stems">(.*?)</figure>', page, re.DOTALL).group(1)
    assert "&lt;b&gt;x" in stems_svg and "<b>" not in stems_svg


def test_every_rule_and_reason_is_shown(page):
    report = sample_report()
    strings = rule_strings(report)
    assert len(strings) >= 20  # the sample carries them at every level
    body = without_json(page)
    missing = [s for s in strings if _escaped(s) not in body]
    assert not missing
    # beside its decision, not only in the catch-all list
    assert 'id="reasons"' not in page
    for text in ("STATUS MESSAGE", "MASTER WARNING", "WARNING of hats.wav", "NOTE: hats.wav", "SKIP REASON"):
        assert text in body


def test_unknown_rule_keys_go_to_other_reasons():
    report = sample_report()
    report["master"]["stereo"] = {"width_rule": "NEW RULE: width from correlation 0.4"}
    page = render_html(report, None)
    other = re.search(r'<section id="reasons">(.*?)</section>', page, re.DOTALL)
    assert other and "NEW RULE: width from correlation 0.4" in other.group(1)
    assert "master.stereo.width_rule" in other.group(1)


def test_summary_numbers(page):
    summary = re.search(r'<section id="summary">(.*?)</section>', page, re.DOTALL).group(1)
    assert "\u221214.4&nbsp;LUFS (target \u221214&nbsp;LUFS)" in summary
    assert "\u22121.05&nbsp;dBTP; near-ideal meter \u22121.02&nbsp;dBTP" in summary
    # margin: ceiling -1.0 minus the higher of the two true peaks (-1.02) = 0.02 dB
    assert "0.02&nbsp;dB under the ceiling" in summary
    assert "1.7&nbsp;LU" in summary
    assert "quieter" in summary


def test_margin_over_the_ceiling_is_said():
    report = sample_report()
    report["master"]["output_precise_true_peak_dbtp"] = -0.7
    page = render_html(report, None)
    assert "\u22120.30&nbsp;dB OVER the ceiling" in page


def test_master_record_without_stems():
    """``MasterResult.to_dict()`` as ``master_job`` returns it (no settings), plus file names."""
    record = copy.deepcopy(sample_report()["master"])
    record.pop("settings")
    record.update({"input": "in/song.wav", "output": "out/song.wav"})
    page = render_html(record, sample_curves(glue_gain_reduction_db=None))
    assert 'id="mix"' not in page and 'id="fig-stems"' not in page
    assert page.count("<svg") == 3
    assert "Master of song.wav" in page
    assert "TONAL REASON" in page and "GLUE REASON" in page


def test_empty_report_still_renders():
    page = render_html({}, None)
    assert page.startswith("<!DOCTYPE html>") and "<svg" not in page


def test_deterministic_and_written_atomically(tmp_path, page):
    path = tmp_path / "report.html"
    write_html(sample_report(), sample_curves(), path)
    assert path.read_text(encoding="utf-8") == page  # rendered a second time: the same bytes
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_importing_the_report_does_not_import_matplotlib():
    code = "import sys, automix.report; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


def _escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


# --- a real browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: Test-only outlines around each figure's SVG, in colours no plot uses, so the
#: screenshot tells where each figure landed.
MARKERS = {
    "fig-loudness": (255, 0, 255),
    "fig-spectrum": (0, 255, 255),
    "fig-gain-reduction": (255, 255, 0),
    "fig-stems": (0, 255, 0),
}


def _screenshot(html_path, png_path, width: int, height: int, profile) -> np.ndarray:
    from matplotlib import image

    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
               f"--screenshot={png_path}", f"--window-size={width},{height}", html_path.as_uri()]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=180)
    assert png_path.exists(), f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    pixels = image.imread(png_path)[..., :3]
    return np.round(pixels * 255).astype(np.int16)


def _figure_boxes(pixels: np.ndarray) -> dict:
    boxes = {}
    for figure_id, colour in MARKERS.items():
        rows, cols = np.nonzero(np.all(np.abs(pixels - np.asarray(colour)) <= 2, axis=-1))
        if rows.size:
            boxes[figure_id] = (rows.min(), rows.max(), cols.min(), cols.max(), rows.size)
    return boxes


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium); browser test skipped")
@pytest.mark.parametrize("width, height, figure_width", [(1280, 4500, (560, 660)), (375, 4500, (300, 365))])
def test_figures_show_in_a_real_browser(tmp_path, page, width, height, figure_width):
    outlines = "".join(f"#{fid} svg{{outline:3px solid rgb{colour};outline-offset:3px}}" for fid, colour in MARKERS.items())
    html_path = tmp_path / "report.html"
    html_path.write_text(page.replace("</head>", f"<style>{outlines}</style></head>", 1), encoding="utf-8")
    pixels = _screenshot(html_path, tmp_path / f"report_{width}.png", width, height, tmp_path / "profile")
    boxes = _figure_boxes(pixels)
    assert set(boxes) == set(MARKERS), f"figures not found on screen: {set(MARKERS) - set(boxes)}"
    tops = [boxes[fid][0] for fid in FIGURE_IDS]
    assert tops == sorted(tops), "figures out of page order"
    for figure_id, (top, bottom, left, right, count) in boxes.items():
        # inside the window (no sideways overflow) and as wide as the layout gives it
        assert left >= 0 and right < width, figure_id
        inner_width = right - left - 12
        assert figure_width[0] <= inner_width <= figure_width[1], (figure_id, inner_width)
        assert count > 2 * 3 * (right - left), f"{figure_id}: outline incomplete (clipped?)"
        inner = pixels[top + 8 : bottom - 7, left + 8 : right - 7]
        assert inner.shape[0] > 0.3 * inner.shape[1], f"{figure_id}: figure squashed to {inner.shape}"
        ink = np.any(inner < 235, axis=-1)  # anything not (near) white: axes, text, curves
        assert ink.mean() > 0.02, f"{figure_id}: blank ({ink.mean():.3%} ink)"
        spread = inner.max(axis=-1) - inner.min(axis=-1)  # coloured pixels: the data, not the grey axes
        assert np.count_nonzero(spread > 80) > 150, f"{figure_id}: no coloured data drawn"
        # ink spread over the figure, not one stripe: most rows of the plot area carry some
        assert np.mean(ink.any(axis=1)) > 0.5, f"{figure_id}: ink in too few rows"


def test_curves_from_audio_measure_a_known_sine():
    """A 997 Hz sine at 0.1 peak in both channels reads -20.0 LUFS (BS.1770: 0 dBFS in one
    channel reads -3.01 LUFS; two channels +3.01 dB); half the amplitude 6.02 dB less."""
    from automix.presets import load_preset

    rate = 48000
    t = np.arange(5 * rate) / rate
    before = np.tile(0.1 * np.sin(2 * np.pi * 997.0 * t), (2, 1)).astype(np.float32)
    curves = curves_from_audio(before, before * 0.5, rate, load_preset("pop").master,
                               limiter_gain_reduction_db=np.zeros(50))
    assert curves.hop_s == 0.1
    # one reading every 100 ms: 5 s holds 47 momentary (400 ms) and 21 short-term (3 s) windows
    assert curves.input_momentary_lufs.size == 47 and curves.input_short_term_lufs.size == 21
    assert np.allclose(curves.input_momentary_lufs, -20.0, atol=0.05)
    assert np.allclose(curves.output_short_term_lufs, -26.02, atol=0.05)
    centres = 1000.0 * 10 ** (np.arange(-16, 14) / 10)
    assert centres[np.argmax(curves.input_bands_db)] == pytest.approx(1000.0, rel=0.01)
    assert np.max(curves.output_bands_db) > -1.0  # nearly all the power in that one band
    assert curves.target_bands_db.shape == (30,) and np.all(np.isfinite(curves.target_bands_db))
    page = render_html(sample_report(), curves)
    assert page.count("<svg") == 4


def test_long_programme_keeps_its_deepest_moment_and_the_page_small():
    """Ten minutes at 100 ms: the timeline is drawn pooled (the deepest of each run), so a
    single 4 dB granule still shows, and is marked, and the figure stays small."""
    limiter = np.full(6000, 0.2)
    limiter[3000] = 4.0  # the granule from 300.0 s to 300.1 s
    page = render_html(sample_report(), ReportCurves(limiter_gain_reduction_db=limiter))
    figure = re.search(r'<figure id="fig-gain-reduction">(.*?)</figure>', page, re.DOTALL).group(1)
    assert len(figure) < 300_000
    assert "deepest 4.00 dB at 300." in figure.replace("\u2212", "-")
    assert "the deepest in each 800&nbsp;ms" in figure  # 6000 granules drawn as 750 steps of 8
