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
public function. If scipy's layout ever changes, :func:`compiled` falls back to the
ordinary import: slower, the same numbers. (numpy's own FFT is no substitute: it
computes float32 transforms in double precision, 2.1x slower here.)

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


# --- the kernels ------------------------------------------------------------------------

#: A cascade of biquads in direct form II transposed, state in place (scipy.signal.sosfilt's).
sosfilt_kernel = compiled("scipy.signal._sosfilt")._sosfilt
#: A direct-form II transposed filter of any order (scipy.signal.lfilter's).
linear_filter = compiled("scipy.signal._sigtools")._linear_filter
_pocketfft = compiled("scipy.fft._pocketfft.pypocketfft")
_nd_image = compiled("scipy.ndimage._nd_image")


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
    return _pocketfft.r2c(x, (axis,), True, _UNSCALED, None, 1)


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
    return _pocketfft.c2r(spectrum, (axis,), n, False, _BY_N, None, 1)


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
    _nd_image.uniform_filter1d(x, int(size), x.ndim - 1, output, _mode(mode), cval, origin)
    return output


def _rank(x, size: int, mode: str, cval: float, origin: int, *, minimum: bool) -> np.ndarray:
    x, output = _filter_arguments(x, size, origin)
    _nd_image.min_or_max_filter1d(x, int(size), x.ndim - 1, output, _mode(mode), cval, origin, int(minimum))
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
