"""scipy's compiled kernels, without scipy's package imports.

automix filters, transforms and rank-filters with scipy's compiled code, but importing
the public packages cost more than a short job's DSP. On the development machine
(scipy 1.17), ``import scipy.signal`` took 0.54 s, ``scipy.fft`` 0.11 s and
``scipy.ndimage`` 0.03 s more, of a 3.9-s master: they bring the array-API layer,
numpy.testing, scipy.special, stats, interpolate and optimize with them, and parse some
800 docstrings. A script that starts automix once per file pays that every time.

This module loads the compiled modules themselves from their files, registered under
their own names (so a later public import, in a user's own code, finds and shares them),
and wraps the few calls automix makes with the argument handling of the public function
each replaces. ``tests/test_kernels.py`` checks every wrapper bit for bit against its
public function. These are private parts of scipy, so each kernel is first checked on a
known answer: one that is missing, is called differently or answers differently in some
future scipy is replaced by the public function it stands for (the slow import, the
same numbers), and ``FAST`` records which are in use. (numpy's own FFT is no substitute:
it computes float32 transforms in double precision, 2.1x slower here.)

The filter designs are in :mod:`automix.dsp.design`; the recursive filters of streams in
:mod:`automix.dsp.iir`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

import numpy as np
import scipy


def compiled(qualified: str) -> ModuleType:
    """scipy's compiled module ``qualified`` (``"scipy.signal._sosfilt"``), loaded from
    its file without running its packages' ``__init__``.

    Falls back to ``importlib.import_module`` (which imports the packages first) when
    the file is not where scipy keeps it.
    """
    if qualified in sys.modules:
        return sys.modules[qualified]
    packages = qualified.split(".")[1:-1]  # under scipy/
    finder = importlib.machinery.FileFinder(
        os.path.join(scipy.__path__[0], *packages),
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
    )
    spec = finder.find_spec(qualified)
    if spec is None:
        return importlib.import_module(qualified)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[qualified] = module
    return module


# --- the kernels, each checked on a known answer ---------------------------------------


# The public stand-ins take the kernels' arguments (and, like them, filter in place where
# the kernel does); the wrappers below only ever ask for the default normalisations.


def _sosfilt_public(sos, x, zi):
    from scipy import signal

    y, state = signal.sosfilt(sos, x, axis=-1, zi=np.moveaxis(zi, 1, 0))  # scipy's zi: (sections, rows, 2)
    x[...] = y
    zi[...] = np.moveaxis(state, 0, 1)


def _linear_filter_public(b, a, x, axis, zi):
    from scipy import signal

    return signal.lfilter(b, a, x, axis, zi)


def _r2c_public(x, axes, forward, inorm, out, workers):
    import scipy.fft

    return scipy.fft.rfft(x, axis=axes[0])


def _c2r_public(x, axes, n, forward, inorm, out, workers):
    import scipy.fft

    return scipy.fft.irfft(x, n, axis=axes[0])


_MODE_NAMES = {0: "nearest", 2: "reflect", 4: "constant"}


def _min_or_max_public(x, size, axis, output, mode, cval, origin, minimum):
    from scipy import ndimage

    rank = ndimage.minimum_filter1d if minimum else ndimage.maximum_filter1d
    rank(x, size, axis, output, _MODE_NAMES[mode], cval, origin)


def _uniform_public(x, size, axis, output, mode, cval, origin):
    from scipy import ndimage

    ndimage.uniform_filter1d(x, size, axis, output, _MODE_NAMES[mode], cval, origin)


def _answers_sosfilt(kernel) -> bool:
    # (1 + 0.5 z^-1) / (1 - 0.5 z^-1) on an impulse: 1, 1, 0.5, 0.25; state (0.125, 0)
    x, zi = np.array([[1.0, 0.0, 0.0, 0.0]]), np.zeros((1, 1, 2))
    kernel(np.array([[1.0, 0.5, 0.0, 1.0, -0.5, 0.0]]), x, zi)
    return x.tolist() == [[1.0, 1.0, 0.5, 0.25]] and zi.tolist() == [[[0.125, 0.0]]]


def _answers_linear_filter(kernel) -> bool:
    y, zf = kernel(np.array([1.0]), np.array([1.0, -0.5]), np.array([1.0, 0.0, 0.0]), -1, np.array([0.0]))
    return y.tolist() == [1.0, 0.5, 0.25] and zf.tolist() == [0.125]


def _answers_r2c(kernel) -> bool:
    return kernel(np.array([1.0, 2.0, 0.0, 0.0]), (0,), True, 0, None, 1).tolist() == [3, 1 - 2j, -1]


def _answers_c2r(kernel) -> bool:
    return kernel(np.array([4.0 + 0j, 0, 0]), (0,), 4, False, 2, None, 1).tolist() == [1.0, 1.0, 1.0, 1.0]


def _answers_min_or_max(kernel) -> bool:
    x, low, high = np.array([3.0, 1.0, 2.0, 5.0]), np.zeros(4), np.zeros(4)
    kernel(x, 3, 0, low, 2, 0.0, 0, 1)  # reflect: 3 | 3 1 2 5 | 5
    kernel(x, 3, 0, high, 4, 0.0, 0, 0)  # constant 0: 0 | 3 1 2 5 | 0
    return low.tolist() == [1.0, 1.0, 1.0, 2.0] and high.tolist() == [3.0, 3.0, 5.0, 5.0]


def _answers_uniform(kernel) -> bool:
    x, out = np.array([3.0, 3.0, 6.0]), np.zeros(3)
    kernel(x, 3, 0, out, 0, 0.0, 0)  # nearest: 3 | 3 3 6 | 6
    return out.tolist() == [3.0, 4.0, 5.0]


#: name -> (where scipy keeps it, its known answer, the public function it stands for)
_KERNELS = {
    "sosfilt": ("scipy.signal._sosfilt._sosfilt", _answers_sosfilt, _sosfilt_public),
    "linear_filter": ("scipy.signal._sigtools._linear_filter", _answers_linear_filter, _linear_filter_public),
    "r2c": ("scipy.fft._pocketfft.pypocketfft.r2c", _answers_r2c, _r2c_public),
    "c2r": ("scipy.fft._pocketfft.pypocketfft.c2r", _answers_c2r, _c2r_public),
    "min_or_max": ("scipy.ndimage._nd_image.min_or_max_filter1d", _answers_min_or_max, _min_or_max_public),
    "uniform": ("scipy.ndimage._nd_image.uniform_filter1d", _answers_uniform, _uniform_public),
}


def _checked(name: str) -> tuple[object, bool]:
    """The compiled kernel ``name`` if it gives its known answer, else its public stand-in;
    and whether it is the compiled one."""
    where, answers, public = _KERNELS[name]
    module, attribute = where.rsplit(".", 1)
    try:
        kernel = getattr(compiled(module), attribute)
        fast = answers(kernel)
    except Exception:  # noqa: BLE001 - any surprise from a private API means: use the public one
        fast = False
    return (kernel, True) if fast else (public, False)


_checked_kernels = {name: _checked(name) for name in _KERNELS}
#: Which kernels run compiled (True) or through their public scipy function (False).
FAST = {name: fast for name, (_, fast) in _checked_kernels.items()}
#: A cascade of biquads in direct form II transposed, ``(sos, x, zi)`` filtered in place,
#: ``x`` shaped ``(rows, n)`` and ``zi`` ``(rows, sections, 2)`` (scipy.signal.sosfilt's).
sosfilt_kernel = _checked_kernels["sosfilt"][0]
#: A direct-form II transposed filter of any order, ``(b, a, x, axis, zi) -> (y, zf)``
#: (scipy.signal.lfilter's).
linear_filter = _checked_kernels["linear_filter"][0]
_r2c = _checked_kernels["r2c"][0]
_c2r = _checked_kernels["c2r"][0]
_min_or_max = _checked_kernels["min_or_max"][0]
_uniform = _checked_kernels["uniform"][0]


# --- real FFTs (scipy.fft.rfft / irfft) ---------------------------------------------------

# pypocketfft's normalisation codes: 0 = none (the forward transform's default), 2 = 1/n
# (the inverse's), as scipy.fft's "backward" norm.
_UNSCALED, _BY_N = 0, 2


def rfft(x: np.ndarray, n: int | None = None, axis: int = -1) -> np.ndarray:
    """``scipy.fft.rfft(x, n, axis)``: float32 in, complex64 out (float64: complex128)."""
    x = _float(x)
    if n is not None:
        x = _fit(x, n, axis)
    elif x.shape[axis] < 1:
        raise ValueError(f"invalid number of data points ({x.shape[axis]}) specified")
    return _r2c(x, (axis,), True, _UNSCALED, None, 1)


def irfft(spectrum: np.ndarray, n: int | None = None, axis: int = -1) -> np.ndarray:
    """``scipy.fft.irfft(spectrum, n, axis)``: complex64 in, float32 out (complex128: float64)."""
    spectrum = _float(spectrum)
    if spectrum.dtype.kind != "c":
        spectrum = spectrum + 0j
    if n is None:
        n = (spectrum.shape[axis] - 1) * 2
        if n < 1:
            raise ValueError(f"invalid number of data points ({n}) specified")
    else:
        spectrum = _fit(spectrum, n // 2 + 1, axis)
    return _c2r(spectrum, (axis,), n, False, _BY_N, None, 1)


def _float(x) -> np.ndarray:
    """As scipy.fft takes its input: float16 to float32, integers to float64, aligned."""
    x = np.asarray(x)
    if x.dtype == np.float16:
        return x.astype(np.float32)
    if x.dtype.kind not in "fc":
        return x.astype(np.float64)
    return x if x.flags.aligned and x.dtype.isnative else np.array(x, dtype=x.dtype.newbyteorder("="))


def _fit(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """``x`` cut or zero-padded to ``n`` points along ``axis``."""
    if n < 1:
        raise ValueError(f"invalid number of data points ({n}) specified")
    have = x.shape[axis]
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, min(have, n))
    if have >= n:
        return x[tuple(index)]
    shape = list(x.shape)
    shape[axis] = n
    padded = np.zeros(shape, x.dtype)
    padded[tuple(index)] = x
    return padded


# --- running minimum, maximum and mean (scipy.ndimage's *_filter1d, last axis) ------------

#: scipy.ndimage's codes for how a filter extends the signal past its ends.
_MODES = {"nearest": 0, "reflect": 2, "constant": 4}


def minimum_filter1d(x: np.ndarray, size: int, *, mode: str = "reflect", cval: float = 0.0,
                     origin: int = 0) -> np.ndarray:
    """``scipy.ndimage.minimum_filter1d(x, size, axis=-1, mode=mode, cval=cval, origin=origin)``."""
    return _rank(x, size, mode, cval, origin, minimum=True)


def maximum_filter1d(x: np.ndarray, size: int, *, mode: str = "reflect", cval: float = 0.0,
                     origin: int = 0) -> np.ndarray:
    """``scipy.ndimage.maximum_filter1d(x, size, axis=-1, mode=mode, cval=cval, origin=origin)``."""
    return _rank(x, size, mode, cval, origin, minimum=False)


def uniform_filter1d(x: np.ndarray, size: int, *, mode: str = "reflect", cval: float = 0.0,
                     origin: int = 0) -> np.ndarray:
    """``scipy.ndimage.uniform_filter1d(x, size, axis=-1, mode=mode, cval=cval, origin=origin)``
    for real ``x``."""
    x, output = _filter_arguments(x, size, origin)
    _uniform(x, int(size), x.ndim - 1, output, _mode(mode), cval, origin)
    return output


def _rank(x, size: int, mode: str, cval: float, origin: int, *, minimum: bool) -> np.ndarray:
    x, output = _filter_arguments(x, size, origin)
    _min_or_max(x, int(size), x.ndim - 1, output, _mode(mode), cval, origin, int(minimum))
    return output


def _filter_arguments(x, size: int, origin: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    if x.dtype.kind == "c":
        raise TypeError("complex input is not supported")
    if size < 1:
        raise RuntimeError("incorrect filter size")
    if not 0 <= size // 2 + origin < size:
        raise ValueError("invalid origin")
    return x, np.zeros(x.shape, dtype=x.dtype.name)


def _mode(mode: str) -> int:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
    return _MODES[mode]
