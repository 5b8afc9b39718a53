"""Album mode: the tracks keep their relative loudness, the loudest at the target, every
track under the ceiling (checked with libebur128 and a brute-force 16x peak)."""

import numpy as np
import soundfile as sf
from scipy import signal
from signals import music_like
from test_loudness import ebur128

from automix.jobs.master_files import plan_master, run_master_batch
from automix.jobs.options import OutputOptions
from automix.presets import load_preset


def lufs_and_peak(path):
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    x = np.ascontiguousarray(x.T)
    up = signal.resample_poly(x.astype(np.float64), 16, 1, axis=-1, window=("kaiser", 10.0))
    return ebur128(x, rate)[0], 20 * np.log10(np.abs(up).max())


def test_album_keeps_the_differences_between_tracks(tmp_path):
    levels = (1.0, 0.4, 0.15)  # 8 and 16.5 dB apart
    for i, level in enumerate(levels):
        sf.write(tmp_path / f"t{i}.wav", (music_like(4, 44100, seed=i) * np.float32(level)).T, 44100, subtype="PCM_24")
    inputs = sorted(tmp_path.glob("t*.wav"))
    before = [lufs_and_peak(p)[0] for p in inputs]
    settings = load_preset("pop").master
    plan = plan_master(inputs, tmp_path / "out", None)
    records = list(run_master_batch(plan, tmp_path / "out", settings, OutputOptions(album=True)))
    assert [r["status"] for r in records] == ["ok"] * 3
    after = [lufs_and_peak(tmp_path / "out" / p.name) for p in inputs]
    # the loudest track at the target, the distances kept within 0.1 LU
    assert max(a for a, _ in after) == __import__("pytest").approx(settings.target_lufs, abs=0.1)
    np.testing.assert_allclose(np.diff([a for a, _ in after]), np.diff(before), atol=0.1)
    assert all(peak <= settings.ceiling_dbtp + 0.05 for _, peak in after)
    assert any("album" in note for note in plan.notes)


def test_without_album_every_track_goes_to_the_target(tmp_path):
    for i, level in enumerate((1.0, 0.3)):
        sf.write(tmp_path / f"t{i}.wav", (music_like(3, 44100, seed=i) * np.float32(level)).T, 44100, subtype="PCM_24")
    inputs = sorted(tmp_path.glob("t*.wav"))
    plan = plan_master(inputs, tmp_path / "out", None)
    list(run_master_batch(plan, tmp_path / "out", load_preset("pop").master, OutputOptions()))
    after = [lufs_and_peak(tmp_path / "out" / p.name)[0] for p in inputs]
    np.testing.assert_allclose(after, [-14.0, -14.0], atol=0.1)
