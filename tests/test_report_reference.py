"""The report with ``--reference``: reference, input and output side by side (issue 12).

The distances the page and the JSON state are recomputed here from the written files,
with scipy's Welch estimate (not automix's meter); widths from the samples, PLR with
libebur128.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import soundfile as sf
from scipy import signal
from signals import shelved_noise
from test_loudness import ebur128

pytest.importorskip("matplotlib")

from automix.io.stream import file_source
from automix.jobs.pipeline import OutputOptions, mix_folder
from automix.master.chain import master_to_file
from automix.master.reference import analyze_reference
from automix.measure.analyzer import THIRD_OCTAVE_CENTRES_HZ
from automix.presets import load_preset
from automix.report.html import REFERENCE_FIGURE_ID, write_master_report

POP = load_preset("pop")
JUDGED = np.array([c for c in THIRD_OCTAVE_CENTRES_HZ if 40 * 0.99 <= c <= 16000 * 1.01])


def stereo(mid: np.ndarray, side: np.ndarray, level: float) -> np.ndarray:
    return (level * np.stack([mid + side, mid - side])).astype(np.float32)


def read(path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    return data.T, rate


def mid_shape_db(x: np.ndarray, rate: int) -> np.ndarray:
    """Third-octave levels of the mid, (L+R)/2, over 40 Hz-16 kHz, by Welch."""
    f, p = signal.welch(x.mean(axis=0), rate, nperseg=8192 * max(1, round(rate / 48000)))
    return np.array([10 * np.log10(p[(f >= c / 2 ** (1 / 6)) & (f < c * 2 ** (1 / 6))].sum()) for c in JUDGED])


def distance_db(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def width_above(x: np.ndarray, rate: int, above_hz: float) -> float:
    """Side over mid plus side energy in the third-octave bands centred above ``above_hz``
    (below the Nyquist frequency), by Welch."""
    f, mid = signal.welch(x.mean(axis=0), rate, nperseg=8192 * max(1, round(rate / 48000)))
    _, side = signal.welch((x[0] - x[1]) / 2, rate, nperseg=8192 * max(1, round(rate / 48000)))
    bands = [c for c in THIRD_OCTAVE_CENTRES_HZ if c > above_hz and c * 2 ** (1 / 6) <= rate / 2]
    inside = np.zeros(f.size, dtype=bool)
    for c in bands:
        inside |= (f >= c / 2 ** (1 / 6)) & (f < c * 2 ** (1 / 6))
    return float(side[inside].sum() / (mid[inside].sum() + side[inside].sum()))


def width(x: np.ndarray) -> float:
    side = np.sum(((x[0] - x[1]) / 2) ** 2)
    return float(side / (np.sum(((x[0] + x[1]) / 2) ** 2) + side))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A neutral mix (pink, side 12 dB under the mid) at 44.1 kHz and a dark, wider,
    denser reference at 48 kHz, 7 s each."""
    folder = tmp_path_factory.mktemp("compare")
    mix = stereo(shelved_noise(7, 44100, 0, 0, 1), 10 ** (-12 / 20) * shelved_noise(7, 44100, 0, 0, 2), 0.05)
    ref = stereo(shelved_noise(7, 48000, 4.0, -6.0, 3), 10 ** (-6 / 20) * shelved_noise(7, 48000, 4.0, -6.0, 4), 0.1)
    sf.write(folder / "mix.wav", mix.T, 44100, subtype="FLOAT")
    sf.write(folder / "dark.wav", ref.T, 48000, subtype="FLOAT")
    return folder


@pytest.fixture(scope="module")
def mastered(files):
    reference = analyze_reference(files / "dark.wav")
    out = files / "master.wav"
    result = master_to_file(file_source(files / "mix.wav"), out, POP.master, bit_depth="32f", reference=reference)
    assert result.status == "ok"
    return reference, result, out


def independent(files, out) -> dict:
    mix, rate = read(files / "mix.wav")
    ref, ref_rate = read(files / "dark.wav")
    master, _ = read(out)
    target = mid_shape_db(ref, ref_rate)
    return {"input": distance_db(mid_shape_db(mix, rate), target), "output": distance_db(mid_shape_db(master, rate), target),
            "widths": {"reference": width(ref), "input": width(mix), "output": width(master)},
            "widths_above": {"reference": width_above(ref, ref_rate, 120.0), "input": width_above(mix, rate, 120.0),
                             "output": width_above(master, rate, 120.0)},
            "plr": {"reference": ebur128(ref, ref_rate)[1] - ebur128(ref, ref_rate)[0],
                    "input": ebur128(mix, rate)[1] - ebur128(mix, rate)[0],
                    "output": ebur128(master, rate)[1] - ebur128(master, rate)[0]}}


def figure_svg(page: str, figure_id: str) -> str:
    match = re.search(rf'<figure id="{figure_id}">(.*?)</figure>', page, flags=re.DOTALL)
    assert match, f"no {figure_id} in the page"
    return match.group(1)


def test_master_report_shows_reference_input_and_output(files, mastered, tmp_path):
    reference, result, out = mastered
    page_path, json_path = tmp_path / "report.html", tmp_path / "report.json"
    write_master_report(result, page_path, input_path=files / "mix.wav", output_path=out, reference=reference)
    write_master_report(result, json_path, input_path=files / "mix.wav", output_path=out)  # the reference from the result
    record = json.loads(json_path.read_text())
    comparison = record["reference_comparison"]
    truth = independent(files, out)
    for key in ("input", "output"):
        assert comparison["distance_db"][key] == pytest.approx(truth[key], abs=0.05), key
    assert truth["input"] > 2.0 and truth["output"] < 0.6 * truth["input"]  # the match really moved the balance
    for key in ("reference", "input", "output"):
        measures = comparison["measures"][key]
        assert measures["stereo_width"] == pytest.approx(truth["widths"][key], abs=0.002), key
        assert measures["plr_db"] == pytest.approx(truth["plr"][key], abs=0.2), key
        assert measures["stereo_width_above"] == pytest.approx(truth["widths_above"][key], abs=0.003), key
    assert comparison["width_above_hz"] == result.mono_below_hz == 120.0
    # above the mono bass the master's width moved toward the reference's
    assert truth["widths_above"]["input"] < truth["widths_above"]["output"] < truth["widths_above"]["reference"]
    assert len(comparison["mid_bands_db"]["reference"]) == len(comparison["bands_hz"])

    page = page_path.read_text()
    svg = figure_svg(page, REFERENCE_FIGURE_ID)
    assert "reference (dark.wav)" in svg
    for key in ("input", "output"):  # each curve's legend carries its distance
        assert f"{key}, {comparison['distance_db'][key]:.2f} dB from the reference" in svg
    assert len(re.findall(r'<g id="line2d_\d+"', svg)) >= 3
    section = page[page.index('<section id="reference">'):]
    section = section[: section.index("</section>")]
    for key in ("input", "output"):
        shown = f"{truth[key]:.2f}"
        assert shown in section or f"{comparison['distance_db'][key]:.2f}" in section
    table = section[section.index('id="reference-table"'):]
    for key in ("reference", "input", "output"):
        row = re.search(rf"<tr><td>{key}</td>(.*?)</tr>", table).group(1)
        cells = [c.replace("\u2212", "-") for c in re.findall(r'<td class="n">(.*?)</td>', row)]
        assert float(cells[3]) == pytest.approx(truth["widths"][key], abs=0.002)
        assert float(cells[2].split("&")[0]) == pytest.approx(truth["plr"][key], abs=0.25)
        assert float(cells[4]) == pytest.approx(truth["widths_above"][key], abs=0.003)


def test_mix_reference_report_holds_the_comparison(files, tmp_path):
    stems = tmp_path / "stems"
    stems.mkdir()
    base, rate = read(files / "mix.wav")
    sf.write(stems / "keys.wav", base.T.astype(np.float32), rate, subtype="FLOAT")
    bass = 0.2 * np.sin(2 * np.pi * 55 * np.arange(base.shape[1]) / rate)
    sf.write(stems / "bass.wav", bass.astype(np.float32), rate, subtype="FLOAT")
    reference = analyze_reference(files / "dark.wav")
    result = mix_folder(stems, tmp_path / "song.wav", POP, OutputOptions(bit_depth="32f", reference=reference),
                        report_path=tmp_path / "song.html")
    comparison = result.report["reference_comparison"]
    out, out_rate = read(tmp_path / "song.wav")
    ref, ref_rate = read(files / "dark.wav")
    assert comparison["distance_db"]["output"] == pytest.approx(
        distance_db(mid_shape_db(out, out_rate), mid_shape_db(ref, ref_rate)), abs=0.05)
    assert math.isfinite(comparison["distance_db"]["input"])
    page = (tmp_path / "song.html").read_text()
    svg = figure_svg(page, REFERENCE_FIGURE_ID)
    assert "reference (dark.wav)" in svg and "input, " in svg and "output, " in svg
    assert not list(tmp_path.glob("*.bus*"))  # the kept bus is removed after measuring
