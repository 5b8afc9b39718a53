"""Presets: validation, inheritance, provenance, and audible differences by measurement."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_loudness import ebur128
from test_mix import short_copy, write_stem

from automix.errors import AutomixError
from automix.io.audio import Audio, read_audio
from automix.jobs.pipeline import OutputOptions, mix_folder
from automix.measure import loudness
from automix.measure.analyzer import analyze
from automix.presets import ROLES, available_presets, load_preset

SHIPPED = sorted(available_presets())


def test_the_promised_presets_ship():
    assert {"pop", "rock", "hip-hop", "edm", "jazz", "acoustic", "classical", "speech"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_preset_is_valid_and_complete(name):
    preset = load_preset(name)
    assert preset.description and set(preset.roles) == set(ROLES)


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ('extends = "pop"\n[master]\ntarget_lufs = 3.0\n', "'master.target_lufs' = 3 is out of range"),
    ('extends = "pop"\n[master]\ntarget_lufs = "loud"\n', "must be a number from -40 to -5"),
    ('extends = "pop"\n[master]\nloudness = -14\n', "unknown key 'master.loudness'"),
    ('extends = "pop"\n[roles.kazoo]\nloudness_lu = 0\n', "unknown role 'roles.kazoo'"),
    ('extends = "pop"\ncolour = "blue"\n', "unknown key 'colour'"),
    ('extends = "nothing"\n', "extends unknown preset 'nothing'"),
    ('[master]\ntarget_lufs = -14\n', "missing 'master."),
    ("this is not toml", "not valid TOML"),
    ('extends = "pop"\n[groups]\ndrums_lu = 40.0\n', r"'groups.drums_lu' = 40 is out of range .*allowed -30 to 10"),
    ('extends = "pop"\n[groups]\ndrums_lu = "loud"\n', "'groups.drums_lu' must be a number from -30 to 10"),
    ('extends = "pop"\n[groups]\nguitars_lu = -3\n', "unknown key 'groups.guitars_lu'"),
])  # fmt: skip
def test_malformed_presets_name_file_key_and_range(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(AutomixError, match=message) as error:
        load_preset(path)
    assert str(path) in str(error.value)


def test_missing_file_and_non_utf8_file_say_so(tmp_path):
    with pytest.raises(AutomixError, match="no such file") as error:
        load_preset(tmp_path / "missing.toml")
    assert "unknown preset" not in str(error.value)
    with pytest.raises(AutomixError, match="no such file"):
        load_preset("missing.toml")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('extends = "pop"\ndescription = "Caf\u00e9 jazz"\n'.encode("latin-1"))
    with pytest.raises(AutomixError, match="not UTF-8") as error:
        load_preset(latin1)
    assert str(latin1) in str(error.value)


def test_group_levels_are_the_measured_averages_and_genres_move_with_reason():
    # MUSDB18 train-set averages relative to vocals (../shared/data/reference_stats README):
    # drums -3.4, bass +1.0, other -0.4 LU.
    pop = load_preset("pop").groups
    assert (pop.vocals_lu, pop.drums_lu, pop.bass_lu, pop.harmony_lu) == pytest.approx((0.0, -3.45, 1.0, -0.44), abs=0.06)
    jazz, edm = load_preset("jazz").groups, load_preset("edm").groups
    assert jazz.drums_lu <= pop.drums_lu - 3  # jazz: drums far under the lead
    assert edm.drums_lu > pop.drums_lu and edm.bass_lu > pop.bass_lu  # edm: kick and bass forward
    for name in SHIPPED:  # every moved group value says why, beside it
        text = (available_presets()[name]).read_text()
        for line in text.splitlines():
            if line.split("=")[0].strip().endswith("_lu") and line.startswith(("drums_lu", "bass_lu", "harmony_lu", "vocals_lu")):
                assert "#" in line or name == "speech", f"{name}: {line}"


def test_extends_loop_is_caught(tmp_path):
    write(tmp_path, 'extends = "b"\n', "a.toml")
    write(tmp_path, 'extends = "a"\n', "b.toml")
    with pytest.raises(AutomixError, match="loop"):
        load_preset(tmp_path / "a.toml")


def test_inheritance_and_provenance(tmp_path):
    path = write(tmp_path, 'extends = "jazz"\nname = "my jazz"\n[master]\ntarget_lufs = -18.0\n[roles.bass]\nloudness_lu = -2.0\n')
    preset = load_preset(path).with_overrides({"ceiling_dbtp": -2.0})
    assert preset.name == "my jazz"
    assert preset.master.target_lufs == -18.0 and preset.master.glue_ratio == load_preset("jazz").master.glue_ratio
    assert preset.roles["bass"].loudness_lu == -2.0 and preset.roles["bass"].hpf_max_hz == 0.0
    assert preset.origins["master.target_lufs"] == str(path)
    assert preset.origins["master.glue_ratio"].endswith("jazz.toml")
    assert preset.origins["master.tonal_max_db"].endswith("pop.toml")
    assert preset.origins["master.ceiling_dbtp"] == "command line"
    with pytest.raises(AutomixError, match="out of range"):
        preset.with_overrides({"ceiling_dbtp": 3.0})


def test_cli_lists_and_shows_presets_and_rejects_bad_ones(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "automix", *map(str, args)], capture_output=True, text=True)  # noqa: E731
    listing = run("presets")
    assert listing.returncode == 0 and all(name in listing.stdout for name in SHIPPED)
    shown = run("presets", "show", "edm")
    assert shown.returncode == 0 and "target_lufs" in shown.stdout and "edm.toml" in shown.stdout
    bad = write(tmp_path, 'extends = "pop"\n[mix]\npan_width = 7\n')
    song = tmp_path / "song.wav"
    write_stem(np.zeros((2, 44100), np.float32), 44100, song, "24")
    result = run("master", song, "-o", tmp_path / "out", "--preset-file", bad)
    assert result.returncode == 2 and "pan_width" in result.stderr and "Traceback" not in result.stderr
    result = run("mix", tmp_path, "-o", tmp_path / "x.wav", "--preset", "polka")
    assert result.returncode == 2 and "unknown preset 'polka'" in result.stderr


@pytest.fixture(scope="module")
def dynamic_song(tmp_path_factory):
    """The jazz sample with a crescendo: quiet for the first half, full in the second."""
    folder = short_copy("jazz_trio", tmp_path_factory.mktemp("song") / "stems", 10.0)
    for path in folder.iterdir():
        audio = read_audio(path)
        ramp = np.where(np.arange(audio.frames) < audio.frames // 2, 10 ** (-12 / 20), 1.0).astype(np.float32)
        write_stem(audio.samples * ramp, audio.sample_rate, path, "32f")
    return folder


@pytest.fixture(scope="module")
def mixes(dynamic_song, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixes")
    results = {}
    for name in SHIPPED:
        mix_folder(dynamic_song, out / f"{name}.wav", load_preset(name), OutputOptions(bit_depth="24", over_limit="force"))
        results[name] = read_audio(out / f"{name}.wav").samples
    return results


@pytest.mark.parametrize("name", SHIPPED)
def test_every_preset_meets_its_own_target_and_ceiling(mixes, name):
    preset = load_preset(name)
    integrated, true_peak, _ = ebur128(mixes[name], 44100)
    assert integrated == pytest.approx(preset.master.target_lufs, abs=0.1)
    assert true_peak <= preset.master.ceiling_dbtp


def test_presets_sound_different_in_the_direction_they_say(mixes):
    def measure(name):
        a = analyze(Audio(mixes[name], 44100))
        return a.integrated_lufs, a.band_level_db(20, 120), loudness.measure(mixes[name], 44100).loudness_range_lu

    edm, jazz, classical, speech = (measure(n) for n in ("edm", "jazz", "classical", "speech"))
    assert edm[0] > jazz[0] + 5  # edm louder than jazz
    assert edm[1] > jazz[1] + 1.0  # ...with more low end (share of energy below 120 Hz)
    assert classical[2] > edm[2] + 1.0  # classical keeps a wider loudness range
    assert speech[1] < edm[1]  # speech is lean in the low end
