"""dsp/kernels.py: scipy's compiled kernels without its package imports give what the
public functions give, bit for bit, and the run path never imports those packages.

The public scipy functions are the reference here (tests may import them).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.fft
from scipy import ndimage

from automix.dsp import kernels


def _same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.float16])
@pytest.mark.parametrize("shape", [(2, 4410), (3, 2, 1000), (777,)])
@pytest.mark.parametrize("n", [None, 600, 1024, 16384])
def test_rfft_is_scipy_rfft(dtype, shape, n):
    x = (np.random.default_rng(sum(shape)).standard_normal(shape) * 1000).astype(dtype)
    _same(kernels.rfft(x, n), scipy.fft.rfft(x, n))


@pytest.mark.parametrize("axis", [0, -1])
def test_rfft_along_any_axis_and_of_a_strided_view(axis):
    x = np.random.default_rng(1).standard_normal((64, 300)).astype(np.float32)
    _same(kernels.rfft(x, 256, axis=axis), scipy.fft.rfft(x, 256, axis=axis))
    view = x[:, ::3]
    _same(kernels.rfft(view, axis=axis), scipy.fft.rfft(view, axis=axis))


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, np.float32])
@pytest.mark.parametrize("n", [None, 100, 1000, 16384])
def test_irfft_is_scipy_irfft(dtype, n):
    rng = np.random.default_rng(2)
    spectrum = (rng.standard_normal((2, 3, 513)) + 1j * rng.standard_normal((2, 3, 513))).astype(np.complex128)
    spectrum = spectrum.real.astype(dtype) if dtype is np.float32 else spectrum.astype(dtype)
    _same(kernels.irfft(spectrum, n), scipy.fft.irfft(spectrum, n))
    _same(kernels.irfft(spectrum, n, axis=1), scipy.fft.irfft(spectrum, n, axis=1))


def test_a_round_trip_gives_the_signal_back():
    """A known answer, not scipy's: irfft(rfft(x)) is x."""
    x = np.random.default_rng(3).standard_normal((2, 1000))
    assert np.allclose(kernels.irfft(kernels.rfft(x), 1000), x, atol=1e-12)
    assert kernels.rfft(np.ones(8))[0] == 8.0  # the forward transform is not scaled


def test_the_transforms_refuse_what_scipy_refuses():
    with pytest.raises(ValueError, match="data points"):
        kernels.rfft(np.zeros(10), 0)
    with pytest.raises(ValueError, match="data points"):
        kernels.rfft(np.zeros(0))
    with pytest.raises(ValueError, match="data points"):
        kernels.irfft(np.zeros(1, np.complex64))


FILTERS = [
    (kernels.minimum_filter1d, ndimage.minimum_filter1d),
    (kernels.maximum_filter1d, ndimage.maximum_filter1d),
    (kernels.uniform_filter1d, ndimage.uniform_filter1d),
]


@pytest.mark.parametrize(("ours", "theirs"), FILTERS)
@pytest.mark.parametrize("mode", ["reflect", "nearest", "constant"])
@pytest.mark.parametrize("size", [1, 2, 7, 64, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_running_filters_are_scipy_ndimage(ours, theirs, mode, size, dtype):
    x = np.random.default_rng(size).standard_normal((2, 3000)).astype(dtype)
    for origin in {0, (size - 1) // 2, -(size // 2)}:
        _same(ours(x, size, mode=mode, cval=-0.5, origin=origin),
              theirs(x, size, axis=-1, mode=mode, cval=-0.5, origin=origin))


def test_a_running_minimum_has_the_known_answer():
    x = np.array([2.0, 8, 0, 4, 1, 9, 9, 0])
    assert kernels.minimum_filter1d(x, 3).tolist() == [2, 0, 0, 0, 1, 1, 0, 0]  # scipy's documented example
    assert kernels.maximum_filter1d(x, 3, mode="constant", cval=0.0).tolist() == [8, 8, 8, 4, 9, 9, 9, 9]
    assert kernels.uniform_filter1d(np.array([3.0, 3, 6]), 3, mode="nearest").tolist() == [3, 4, 5]


def test_the_running_filters_refuse_what_scipy_refuses():
    x = np.zeros(10)
    with pytest.raises(ValueError, match="origin"):
        kernels.minimum_filter1d(x, 3, origin=2)
    with pytest.raises(RuntimeError, match="size"):
        kernels.maximum_filter1d(x, 0)
    with pytest.raises(TypeError, match="complex"):
        kernels.uniform_filter1d(x + 0j, 3)
    with pytest.raises(ValueError, match="mode"):
        kernels.uniform_filter1d(x, 3, mode="wrap")


def test_the_run_path_imports_none_of_scipys_slow_packages():
    """`import scipy.signal`, `scipy.fft` and `scipy.ndimage` cost about 0.65 s together
    (scipy 1.17), a script pays them per file: nothing the master or the mix imports may
    bring them back. A later public import (a user's own code) shares the kernels."""
    code = (
        "import sys, automix.cli, automix.jobs.master_files, automix.jobs.mix_folder, automix.master.reference\n"
        "from automix.dsp import kernels\n"
        "slow = [m for m in ('scipy.signal', 'scipy.fft', 'scipy.ndimage', 'scipy.stats', 'scipy.special') if m in sys.modules]\n"
        "assert not slow, slow\n"
        "assert all(kernels.FAST.values()), kernels.FAST\n"
        "import scipy.signal, scipy.fft, scipy.ndimage\n"
        "assert scipy.signal._signaltools._sosfilt is kernels.sosfilt_kernel\n"
        "assert sys.modules['scipy.fft._pocketfft.pypocketfft'].r2c is kernels._r2c\n"
        "assert scipy.ndimage._filters._nd_image.uniform_filter1d is kernels._uniform\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_module_not_where_scipy_kept_it_is_imported_the_ordinary_way():
    """The fallback: a changed scipy layout costs time, not a crash."""
    with pytest.raises(ModuleNotFoundError, match="scipy.signal._no_such_kernel"):
        kernels.compiled("scipy.signal._no_such_kernel")
    assert kernels.compiled("scipy.signal._sosfilt") is sys.modules["scipy.signal._sosfilt"]
    assert kernels.compiled("scipy.fft._pocketfft.helper") is sys.modules["scipy.fft._pocketfft.helper"]  # a .py: imported


# --- the known answers, and the public stand-ins ------------------------------------------


@pytest.mark.parametrize("name", sorted(kernels._KERNELS))
def test_each_public_stand_in_gives_the_known_answer_its_kernel_is_checked_on(name):
    _, answers, public = kernels._KERNELS[name]
    assert answers(public)
    assert kernels.FAST[name]  # and here, on this scipy, the compiled kernel passed it too


@pytest.mark.parametrize("name", sorted(kernels._KERNELS))
def test_a_kernel_that_is_missing_or_answers_otherwise_gives_way_to_the_public_function(name, monkeypatch):
    where, answers, public = kernels._KERNELS[name]
    module, _ = where.rsplit(".", 1)
    monkeypatch.setitem(kernels._KERNELS, name, (f"{module}.no_such_kernel", answers, public))
    assert kernels._checked(name) == (public, False)
    monkeypatch.setitem(kernels._KERNELS, name, (where, lambda kernel: False, public))  # a different answer
    assert kernels._checked(name) == (public, False)

    def raises(kernel):
        raise TypeError("called differently")

    monkeypatch.setitem(kernels._KERNELS, name, (where, raises, public))
    assert kernels._checked(name) == (public, False)
    monkeypatch.setitem(kernels._KERNELS, name, (where, answers, public))
    kernel, fast = kernels._checked(name)
    assert fast and kernel is not public


def test_the_wrappers_on_the_public_stand_ins_give_the_same_bits(monkeypatch):
    """What a user of a future scipy whose kernels moved would get: the same numbers."""
    from automix.dsp import iir

    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 5000)).astype(np.float32)
    sos = np.array([[0.9, -1.8, 0.9, 1.0, -1.79, 0.81], [1.0, 0.3, 0.1, 1.0, -0.2, 0.05]])
    zi = rng.standard_normal((2, 2, 2))
    one_pole = (np.array([0.01]), np.array([1.0, -0.99]), x[0].astype(np.float64), np.array([0.3]))
    fast = (kernels.rfft(x, 8192), kernels.irfft(kernels.rfft(x), 5000), kernels.minimum_filter1d(x, 64, origin=31),
            kernels.maximum_filter1d(x, 7, mode="constant"), kernels.uniform_filter1d(x, 9, mode="nearest"),
            *iir.sosfilt(sos, x, zi), *iir.lfilter(*one_pole))
    for name in ("r2c", "c2r", "min_or_max", "uniform"):
        monkeypatch.setattr(kernels, f"_{name}", kernels._KERNELS[name][2])
    monkeypatch.setattr(iir, "sosfilt_kernel", kernels._KERNELS["sosfilt"][2])
    monkeypatch.setattr(iir, "linear_filter", kernels._KERNELS["linear_filter"][2])
    public = (kernels.rfft(x, 8192), kernels.irfft(kernels.rfft(x), 5000), kernels.minimum_filter1d(x, 64, origin=31),
              kernels.maximum_filter1d(x, 7, mode="constant"), kernels.uniform_filter1d(x, 9, mode="nearest"),
              *iir.sosfilt(sos, x, zi), *iir.lfilter(*one_pole))
    for ours, theirs in zip(fast, public, strict=True):
        _same(ours, theirs)
