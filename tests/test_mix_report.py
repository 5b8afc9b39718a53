"""The mix report's numbers, checked against independent measurements: each stem's
loudness in the mix against libebur128's reading of the exported stem, its input
loudness and spectral shares against signals with a known answer, the warnings a
clipped or DC-offset stem must get, and the documented rounding of every number."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_loudness import ebur128

from automix.jobs.pipeline import OutputOptions, mix_folder
from automix.jobs.report import _final
from automix.measure.loudness import LoudnessMeasurement
from automix.presets import load_preset

RATE = 44100
#: 4.0005 s: a duration whose 4th decimal is not 0, so its rounding to 3 decimals shows
FRAMES = 176422


def _stems(folder: Path) -> Path:
    """A kick and a snare (one group), a 60 Hz bass with a DC offset of 0.015, and a
    clipped 1 kHz pad in stereo (a pad: the bus gain then has a third decimal, so its
    rounding shows)."""
    folder.mkdir()
    t = np.arange(FRAMES) / RATE
    rng = np.random.default_rng(1)
    parts = {
        "kick": 0.8 * np.sin(2 * np.pi * 50 * t) * np.exp(-(t % 0.5) * 20),
        "snare": 0.5 * rng.standard_normal(FRAMES) * np.exp(-((t + 0.25) % 0.5) * 30),
        "bass": 0.4 * np.sin(2 * np.pi * 60 * t) + 0.015,
        "pad": np.stack([1.0, 0.9])[:, None] * np.clip(1.2 * np.sin(2 * np.pi * 1000 * t), -1.0, 1.0),
    }
    for name, x in parts.items():
        sf.write(folder / f"{name}.wav", np.atleast_2d(x).astype(np.float32).T, RATE, subtype="FLOAT")
    return folder


def _decimals(value: float, digits: int) -> bool:
    return value == round(value, digits)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    folder = _stems(root / "stems")
    result = mix_folder(folder, root / "mix.wav", load_preset("pop"), OutputOptions(bit_depth="32f"), no_master=True,
                        export_stems=root / "export", report_path=root / "report.json")  # a report: true peaks too
    return folder, root, result.report


def test_each_stem_reads_in_the_mix_as_loud_as_the_report_says(mixed):
    """loudness_in_mix_lufs (target + group gain + bus gain) is what libebur128 reads from
    the exported stem (it carries every gain); the input's loudness is libebur128's too."""
    folder, root, report = mixed
    exported = {path.name.split("_", 1)[1]: path for path in (root / "export").glob("*.wav")}
    groups = {stem["plan"].get("group") for stem in report["stems"]}
    assert len(report["stems"]) == 4 and "drums" in groups
    for stem in report["stems"]:
        x, rate = sf.read(exported[stem["file"]], dtype="float32", always_2d=True)
        assert stem["rendered"]["loudness_in_mix_lufs"] == pytest.approx(ebur128(np.ascontiguousarray(x.T), rate)[0], abs=0.01)
        x, rate = sf.read(folder / stem["file"], dtype="float32", always_2d=True)
        lufs, true_peak, _ = ebur128(np.ascontiguousarray(x.T), rate)
        assert stem["measured"]["integrated_lufs"] == pytest.approx(lufs, abs=0.01)
        assert stem["measured"]["true_peak_dbtp"] == pytest.approx(true_peak, abs=0.2)


def test_the_spectral_shares_read_where_the_energy_is(mixed):
    """A 60 Hz bass holds all its power below 160 Hz, a 1 kHz tone (clipped: its harmonics
    sit at 3 and 5 kHz) all of it between 1 and 5 kHz; neither has air above 8 kHz."""
    _, _, report = mixed
    by_file = {stem["file"]: stem["measured"] for stem in report["stems"]}
    assert by_file["bass.wav"]["low_share_below_160hz_db"] > -0.1
    assert by_file["pad.wav"]["presence_share_1_5khz_db"] > -0.1
    assert by_file["bass.wav"]["presence_share_1_5khz_db"] < -60 and by_file["pad.wav"]["low_share_below_160hz_db"] < -60
    assert by_file["snare.wav"]["air_share_above_8khz_db"] > by_file["kick.wav"]["air_share_above_8khz_db"] + 40
    assert by_file["pad.wav"]["spectral_centroid_hz"] == pytest.approx(1000, rel=0.05)


def test_a_clipped_or_offset_stem_is_warned_about_and_a_clean_one_is_not(mixed):
    _, _, report = mixed
    warnings = {stem["file"]: stem["warnings"] for stem in report["stems"]}
    assert warnings["bass.wav"] == ["DC offset 0.015; the high-pass or mastering removes most of it"]
    assert len(warnings["pad.wav"]) == 1 and warnings["pad.wav"][0].startswith("input is clipped (")
    assert warnings["kick.wav"] == [] and warnings["snare.wav"] == []


def test_a_dc_offset_is_warned_about_only_above_one_percent(tmp_path):
    """The offset is the mean sample value: exactly 0.01 (882 clicks of 0.5 in a second,
    the rest silence) is not over 1 %; 884 clicks are."""
    folder = tmp_path / "stems"
    folder.mkdir()
    t = np.arange(RATE) / RATE
    sf.write(folder / "pad.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE, subtype="FLOAT")
    for name, count in (("even.wav", 882), ("over.wav", 884)):
        clicks = np.zeros(RATE, dtype=np.float32)
        clicks[np.linspace(0, RATE - 1, count).astype(int)] = 0.5
        assert clicks.sum() == count / 2  # a mean of exactly 441 / 44100 = 0.01, or 442 / 44100
        sf.write(folder / name, clicks, RATE, subtype="FLOAT")
    report = mix_folder(folder, tmp_path / "mix.wav", load_preset("pop"), OutputOptions(bit_depth="32f"), no_master=True).report
    warnings = {stem["file"]: stem["warnings"] for stem in report["stems"]}
    assert warnings["even.wav"] == [] and warnings["over.wav"] == ["DC offset 0.010; the high-pass or mastering removes most of it"]


def test_every_number_is_rounded_as_documented(mixed):
    """Loudness, peaks, gains and shares to 0.01 (the shares and the centroid to 0.1), the
    duration to the millisecond; the mix section holds the plan without its stems."""
    _, _, report = mixed
    for stem in report["stems"]:
        measured, rendered = stem["measured"], stem["rendered"]
        for key in ("active_lufs", "integrated_lufs", "true_peak_dbtp", "crest_factor_db", "loudness_range_lu"):
            assert _decimals(measured[key], 2), key
        for key in ("spectral_centroid_hz", "low_share_below_160hz_db", "presence_share_1_5khz_db", "air_share_above_8khz_db"):
            assert _decimals(measured[key], 1), key
        assert measured["duration_s"] == 4.0 and measured["channels"] in (1, 2)
        for value in rendered.values():
            assert _decimals(value, 2)
    third = [stem["rendered"]["makeup_db"] for stem in report["stems"]]
    assert any(not _decimals(v, 1) for v in third)  # the checks above could tell 3 decimals from 2
    mix = report["mix"]
    assert "stems" not in mix and {"bus_lufs", "groups", "bus_gain_db", "bus_rule"} <= set(mix)
    assert _decimals(mix["bus_gain_db"], 2) and mix["bus_gain_db"] == pytest.approx(-24.27, abs=0.01)


def test_the_final_numbers_without_an_analysis_are_the_masters_measurement():
    """_final from a measurement (the output not analysed): the loudness numbers rounded,
    no band levels, and the peak never under the written samples (a 4x meter reads at
    least the samples; a reading under them would be a meter's error, not the signal)."""
    class Master:
        output_measurement = LoudnessMeasurement(-14.004, 5.126, np.zeros(0), np.zeros(0), -1.237, -1.012)

    final = _final(None, Master(), "24")
    assert final == {"integrated_lufs": -14.0, "true_peak_dbtp": -1.01, "loudness_range_lu": 5.13,
                     "sample_peak_dbfs": -1.24, "bit_depth": "24", "third_octave_bands_db": None}
    Master.output_measurement = LoudnessMeasurement(-14.0, 5.0, np.zeros(0), np.zeros(0), -0.987, -1.012)
    assert _final(None, Master(), "16")["true_peak_dbtp"] == -0.99
