"""Filter and window designs that automix needs, in numpy alone.

``import scipy.signal`` costs about half a second of every run (scipy 1.17 imports
stats, interpolate and optimize with it; :mod:`automix.dsp.kernels` has the numbers,
and loads the compiled filters without it). automix uses only a handful of
scipy.signal's *design* functions, all textbook, so they are written here, and this
module imports nothing but numpy and the standard library (it imports in a few
milliseconds).

Each function reproduces one ``scipy.signal`` call, named in its docstring, to rounding
(``tests/test_design.py`` compares them and states the tolerances):

- :func:`hann` -- ``get_window("hann", length)`` (periodic)
- :func:`kaiser` -- ``get_window(("kaiser", beta), length, fftbins=False)`` (symmetric)
- :func:`kaiserord` -- ``kaiserord(ripple_db, width)``
- :func:`firwin_lowpass` -- ``firwin(numtaps, cutoff, window=("kaiser", beta))``
- :func:`firwin2` -- ``firwin2(numtaps, freqs, gains, window=("kaiser", beta))``
- :func:`butter_sos` -- ``butter(order, cutoff_hz, btype, fs=sample_rate, output="sos")``
- :func:`sos_response` -- ``sosfreqz(sos, worN=frequencies_hz, fs=sample_rate)[1]``

Frequencies without ``_hz`` are normalised to Nyquist (1.0 = half the sample rate), as
in scipy.
"""

from __future__ import annotations

import math

import numpy as np

#: Highest Butterworth order :func:`butter_sos` designs. automix uses 1 to 8; past ~10 the
#: bilinear poles of a low cutoff crowd z = 1 and second-order sections need care that
#: nothing here needs.
MAX_BUTTER_ORDER = 10


def hann(length: int) -> np.ndarray:
    """Periodic ("DFT-even") Hann window, float64.

    Equals ``scipy.signal.get_window("hann", length)``: the symmetric window of
    ``length + 1`` points with its last point dropped, so that overlapping frames at a
    hop of ``length / 2`` sum to a constant (the property spectral analysis relies on).

    Parameters
    ----------
    length : int
        Number of points, >= 1 (1 gives ``[1.0]``, as scipy).

    Returns
    -------
    numpy.ndarray
        ``0.5 + 0.5 cos(phi)`` for ``phi`` evenly spaced from -pi to pi over
        ``length + 1`` points, last point dropped (Harris 1978, eq. 27a).
    """
    length = _positive_int(length, "window length")
    if length == 1:
        return np.ones(1)
    # Same construction as scipy's general_cosine so the values agree to the last bit.
    phase = np.linspace(-np.pi, np.pi, length + 1)
    return (0.5 + 0.5 * np.cos(phase))[:-1]


def kaiser(length: int, beta: float) -> np.ndarray:
    """Symmetric Kaiser window, float64.

    Equals ``scipy.signal.get_window(("kaiser", beta), length, fftbins=False)``:
    ``I0(beta * sqrt(1 - (2n / (N - 1) - 1)^2)) / I0(beta)`` (Kaiser 1974; Oppenheim &
    Schafer, Discrete-Time Signal Processing, 3rd ed., eq. 7.72), computed by
    :func:`numpy.kaiser`, whose ``I0`` uses the same Cephes Chebyshev expansion as
    ``scipy.special.i0``.

    Parameters
    ----------
    length : int
        Number of points, >= 1 (1 gives ``[1.0]``, as scipy).
    beta : float
        Shape parameter: larger ``beta`` trades a wider main lobe for lower side lobes.

    Returns
    -------
    numpy.ndarray
        The window, symmetric, peak 1 at the centre (odd ``length``).
    """
    return np.kaiser(_positive_int(length, "window length"), float(beta))  # float64; [1.0] for one point


def kaiserord(ripple_db: float, width: float) -> tuple[int, float]:
    """Length and ``beta`` of a Kaiser-window FIR meeting a ripple and transition width.

    Equals ``scipy.signal.kaiserord(ripple_db, width)``. Kaiser's (1974) empirical
    formulas as given by Oppenheim & Schafer (3rd ed., eqs. 7.75 and 7.76):
    ``beta = 0.1102 (A - 8.7)`` for A > 50, ``0.5842 (A - 21)^0.4 + 0.07886 (A - 21)``
    for 21 < A <= 50, else 0; order ``M = (A - 7.95) / (2.285 * delta_omega)`` with
    ``delta_omega = pi * width`` rad/sample, and the tap count is ``ceil(M + 1)``.

    Parameters
    ----------
    ripple_db : float
        Upper bound for the deviation (dB) of the response from the ideal in pass and
        stop band (``A`` above); its sign is ignored. Must be at least 8 dB, where the
        formula stops holding.
    width : float
        Transition band width, normalised to Nyquist (1.0 = half the sample rate).

    Returns
    -------
    numtaps : int
        Number of taps.
    beta : float
        Kaiser window parameter.
    """
    attenuation_db = abs(ripple_db)
    if attenuation_db < 8:
        raise ValueError(f"ripple of {attenuation_db} dB is too small for Kaiser's formula (needs >= 8 dB)")
    if not width > 0:
        raise ValueError(f"transition width must be > 0 (normalised to Nyquist), got {width}")
    if attenuation_db > 50:
        beta = 0.1102 * (attenuation_db - 8.7)
    elif attenuation_db > 21:
        beta = 0.5842 * (attenuation_db - 21) ** 0.4 + 0.07886 * (attenuation_db - 21)
    else:
        beta = 0.0
    # Kaiser's formula gives the filter *order*; +1 for the number of taps. The operations
    # are in scipy's order so a value on an integer boundary rounds the same way.
    numtaps = (attenuation_db - 7.95) / 2.285 / (np.pi * width) + 1
    return math.ceil(numtaps), beta


def firwin_lowpass(numtaps: int, cutoff: float, beta: float) -> np.ndarray:
    """Windowed-sinc linear-phase low-pass FIR with unity gain at DC.

    Equals ``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``: the ideal
    low-pass impulse response ``cutoff * sinc(cutoff * (n - (numtaps - 1) / 2))``
    (Oppenheim & Schafer 3rd ed., eq. 7.61) times a :func:`kaiser` window, divided by
    its sum so the DC gain is exactly 1 (the window alone would leave it slightly off).
    A caller with a cutoff in hertz passes ``cutoff_hz / (sample_rate / 2)``, which is
    what ``firwin(..., fs=sample_rate)`` computes.

    Parameters
    ----------
    numtaps : int
        Filter length, >= 1. Odd lengths give an integer delay; even lengths are allowed
        (a low-pass has zero response at Nyquist anyway).
    cutoff : float
        -6 dB point, normalised to Nyquist, strictly between 0 and 1.
    beta : float
        Kaiser window parameter (see :func:`kaiserord`).

    Returns
    -------
    numpy.ndarray
        ``numtaps`` float64 coefficients, symmetric, summing to 1.
    """
    numtaps = _positive_int(numtaps, "numtaps")
    if not 0.0 < cutoff < 1.0:
        raise ValueError(f"cutoff must be strictly between 0 and 1 (Nyquist), got {cutoff}")
    offset = np.arange(numtaps, dtype=np.float64) - 0.5 * (numtaps - 1)
    taps = cutoff * np.sinc(cutoff * offset)
    taps *= kaiser(numtaps, beta)
    return taps / np.sum(taps)


def firwin2(numtaps: int, freqs, gains, beta: float, nfreqs: int | None = None) -> np.ndarray:
    """Linear-phase FIR through a piecewise-linear magnitude response (frequency sampling).

    Equals ``scipy.signal.firwin2(numtaps, freqs, gains, window=("kaiser", beta),
    nfreqs=nfreqs)`` for symmetric (type I and II) filters. The wanted magnitude is
    interpolated linearly onto ``nfreqs`` evenly spaced points from 0 to Nyquist, given
    the linear phase of a delay of ``(numtaps - 1) / 2`` samples, taken back to the time
    domain with an inverse real FFT, truncated to ``numtaps`` and windowed (the
    frequency-sampling / window method, Oppenheim & Schafer 3rd ed., sec. 7.5).

    Parameters
    ----------
    numtaps : int
        Filter length, >= 1. Odd gives a type I filter (any response); even gives a type
        II filter, which must have zero gain at Nyquist.
    freqs : array_like
        Frequencies normalised to Nyquist: start at exactly 0, end at exactly 1.0, non-
        decreasing. A value may appear twice (a step in the response), but not 0 or 1.0.
    gains : array_like
        Linear gain at each of ``freqs``.
    beta : float
        Kaiser window parameter.
    nfreqs : int, optional
        Size of the interpolation grid; must exceed ``numtaps``. Default, as scipy,
        ``1 + 2 ** ceil(log2(numtaps))``.

    Returns
    -------
    numpy.ndarray
        ``numtaps`` float64 coefficients.
    """
    numtaps = _positive_int(numtaps, "numtaps")
    freqs = np.asarray(freqs, dtype=np.float64)
    gains = np.asarray(gains, dtype=np.float64)
    if freqs.ndim != 1 or freqs.shape != gains.shape:
        raise ValueError(f"freqs and gains must be 1-D and the same length, got shapes {freqs.shape} and {gains.shape}")
    if freqs.size < 2 or freqs[0] != 0.0 or freqs[-1] != 1.0:
        raise ValueError("freqs must start at 0 and end at 1.0 (Nyquist)")
    if not (np.all(np.isfinite(freqs)) and np.all(np.isfinite(gains))):
        raise ValueError("freqs and gains must be finite")
    steps = np.diff(freqs)
    if np.any(steps < 0):
        raise ValueError("freqs must be non-decreasing")
    if np.any(steps[:-1] + steps[1:] == 0):
        raise ValueError("a value may not occur more than twice in freqs")
    if freqs[1] == 0.0 or freqs[-2] == 1.0:
        raise ValueError("0 and 1.0 (Nyquist) may not be repeated in freqs")
    if numtaps % 2 == 0 and gains[-1] != 0.0:
        raise ValueError("an even numtaps (type II filter) must have zero gain at Nyquist (gains[-1] == 0)")
    if nfreqs is None:
        # scipy's expression: math.log(n, 2), not math.log2, which differ at n = 2**29
        # (the former rounds up), so the grid size agrees with scipy's everywhere.
        nfreqs = 1 + 2 ** math.ceil(math.log(numtaps, 2))  # noqa: FURB163
    elif nfreqs <= numtaps:
        raise ValueError(f"nfreqs ({nfreqs}) must exceed numtaps ({numtaps})")

    if np.any(steps == 0):
        # A repeated frequency is a step: move its two copies apart by one machine epsilon
        # (times Nyquist = 1) each, so np.interp sees a steep but well-defined slope. This
        # is scipy's treatment.
        eps = np.finfo(np.float64).eps
        repeated = np.flatnonzero(steps == 0)
        freqs = freqs.copy()
        freqs[repeated] -= eps
        freqs[repeated + 1] += eps
        if np.any(np.diff(freqs) <= 0):
            raise ValueError(f"freqs may not contain values within {eps} of a repeated value")

    grid = np.linspace(0.0, 1.0, nfreqs)
    magnitude = np.interp(grid, freqs, gains)
    # Linear phase of a (numtaps - 1) / 2 sample delay, so the first numtaps points of the
    # inverse transform are the (symmetric) filter. Written in scipy's operation order.
    delay = np.exp(-(numtaps - 1) / 2.0 * 1j * np.pi * grid)
    impulse = np.fft.irfft(magnitude * delay)
    return impulse[:numtaps] * kaiser(numtaps, beta)


def butter_sos(order: int, cutoff_hz: float, btype: str, sample_rate: float) -> np.ndarray:
    """Digital Butterworth high- or low-pass as second-order sections.

    Equals ``scipy.signal.butter(order, cutoff_hz, btype, fs=sample_rate,
    output="sos")``, sections in the same order with the same pole/zero pairing (so
    filtering with either gives the same samples to rounding):

    1. analog prototype poles ``-exp(j pi m / (2 order))``, m = -order+1, -order+3, ...,
       order-1 (the left half of the unit circle; Oppenheim & Schafer 3rd ed., sec. 7.2);
    2. cutoff pre-warped, ``omega = 2 fs tan(pi f / fs)`` (in units where fs = 2, as
       scipy, so the numbers agree to the last bits), so the bilinear transform lands the
       -3 dB point on ``cutoff_hz``;
    3. low-pass to high-pass ``s -> omega / s`` (poles ``omega / p``, ``order`` zeros at
       s = 0), or low-pass to low-pass ``s -> s / omega``;
    4. bilinear transform ``z = (2 fs + s) / (2 fs - s)``: the high-pass zeros land on
       z = 1, the low-pass zeros (at infinity) on z = -1, and the gain is carried along;
    5. pairing as scipy's ``zpk2sos`` (pairing "nearest"): an odd order gets an extra pole
       and zero at z = 0; the pole nearest the unit circle is taken first with its
       conjugate (or, if real, with the other real pole), and with the two zeros nearest
       to it; it goes in the *last* section, so the sections run from least to most
       resonant. The overall gain goes in the first section's numerator.

    Parameters
    ----------
    order : int
        Filter order, 1 to ``MAX_BUTTER_ORDER``.
    cutoff_hz : float
        -3 dB frequency, strictly between 0 and ``sample_rate / 2``.
    btype : str
        ``"highpass"`` or ``"lowpass"``.
    sample_rate : float
        Sample rate in Hz, > 0.

    Returns
    -------
    numpy.ndarray
        Shape ``(ceil(order / 2), 6)`` float64: rows ``[b0, b1, b2, 1, a1, a2]``.
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) \
            or not 1 <= order <= MAX_BUTTER_ORDER:
        raise ValueError(f"Butterworth order must be an integer from 1 to {MAX_BUTTER_ORDER}, got {order!r}")
    if btype not in ("highpass", "lowpass"):
        raise ValueError(f"btype must be 'highpass' or 'lowpass', got {btype!r}")
    if not (math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"sample rate must be a positive number of Hz, got {sample_rate}")
    if not 0 < cutoff_hz < sample_rate / 2:
        raise ValueError(f"cutoff {cutoff_hz} Hz must be strictly between 0 and half the sample rate ({sample_rate / 2} Hz)")
    order = int(order)

    # 1. Analog low-pass prototype with unit cutoff. m = 0 (odd order) gives exactly -1.
    m = np.arange(-order + 1, order, 2, dtype=np.float64)
    prototype_poles = -np.exp(1j * np.pi * m / (2 * order))

    # 2. Pre-warp (sample rate 2 units, cutoff normalised to Nyquist).
    normalised_cutoff = cutoff_hz / (sample_rate / 2)
    warped = 4.0 * math.tan(math.pi * normalised_cutoff / 2.0)

    # 3. Frequency transform of the prototype, with its gain bookkeeping.
    if btype == "highpass":
        analog_poles = warped / prototype_poles
        analog_zeros = np.zeros(order)
        gain = np.real(1.0 / np.prod(-prototype_poles))
    else:
        analog_poles = warped * prototype_poles
        analog_zeros = np.zeros(0)
        gain = warped ** order

    # 4. Bilinear transform (2 fs = 4 in these units): the high-pass zeros at s = 0 go to
    # z = 1, the low-pass zeros at s = infinity to z = -1.
    two_fs = 4.0
    poles = (two_fs + analog_poles) / (two_fs - analog_poles)
    zeros = np.full(order, 1.0 if btype == "highpass" else -1.0)
    gain = gain * np.real(np.prod(two_fs - analog_zeros) / np.prod(two_fs - analog_poles))

    # 5. Second-order sections.
    sos = _pair_sections(poles, zeros)
    sos[0, :3] *= gain
    return sos


def sos_response(sos, frequencies_hz, sample_rate: float) -> np.ndarray:
    """Complex frequency response of second-order sections at given frequencies.

    Equals the ``h`` of ``scipy.signal.sosfreqz(sos, worN=frequencies_hz,
    fs=sample_rate)``: each section's ``(b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 +
    a2 z^-2)`` at ``z = exp(j 2 pi f / fs)``, multiplied together. Always evaluated in
    float64 (scipy evaluates a float32 ``sos`` in float32).

    Parameters
    ----------
    sos : array_like
        Shape ``(n_sections, 6)``, rows ``[b0, b1, b2, 1, a1, a2]``.
    frequencies_hz : array_like
        Frequencies in Hz (any shape; 0 to ``sample_rate / 2`` is the useful range).
    sample_rate : float
        Sample rate in Hz, > 0.

    Returns
    -------
    numpy.ndarray
        complex128, the shape of ``frequencies_hz`` (at least 1-D, as scipy).
    """
    sos = np.asarray(sos, dtype=np.float64)
    if sos.ndim == 1:
        sos = sos[np.newaxis, :]
    if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] == 0:
        raise ValueError(f"sos must have shape (n_sections, 6) with at least one section, got {sos.shape}")
    if not np.all(sos[:, 3] == 1):
        raise ValueError("sos[:, 3] (each section's a0) must be 1")
    if not (math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"sample rate must be a positive number of Hz, got {sample_rate}")
    omega = 2 * np.pi * np.atleast_1d(np.asarray(frequencies_hz, dtype=np.float64)) / sample_rate
    z_inv = np.exp(-1j * omega)
    response = np.ones(omega.shape, dtype=np.complex128)
    for b0, b1, b2, a0, a1, a2 in sos:  # a few sections, each vectorised over frequency
        # Horner in z^-1, as numpy.polynomial.polyval.
        response *= (b0 + (b1 + b2 * z_inv) * z_inv) / (a0 + (a1 + a2 * z_inv) * z_inv)
    return response


def _pair_sections(poles: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """scipy's ``zpk2sos(..., pairing="nearest")`` for a filter whose zeros are all real.

    ``poles`` holds every pole (conjugate pairs and reals), ``zeros`` as many real zeros.
    Returns unit-gain sections, least resonant first.
    """
    # One representative per conjugate pair (upper half plane), and the real poles. An odd
    # count gets a pole and a zero at z = 0, so every section is a biquad.
    upper = poles[poles.imag > 0]
    real = poles[poles.imag == 0].real
    zeros = list(zeros)
    if real.size % 2:
        real = np.append(real, 0.0)
        zeros.append(0.0)
    if upper.size != np.count_nonzero(poles.imag < 0) or len(zeros) != 2 * upper.size + real.size:
        raise ValueError("poles must come in conjugate pairs, as many as the zeros")
    remaining = list(upper) + [complex(p) for p in real]
    sections = []
    while remaining:
        # The pole nearest the unit circle ("worst") first; it ends in the last section.
        first = min(range(len(remaining)), key=lambda i: abs(1 - abs(remaining[i])))
        p1 = remaining.pop(first)
        if p1.imag != 0:
            p2 = p1.conjugate()
        else:
            reals = [i for i, p in enumerate(remaining) if p.imag == 0]
            p2 = remaining.pop(min(reals, key=lambda i: abs(1 - abs(remaining[i]))))
        z1 = zeros.pop(min(range(len(zeros)), key=lambda i: abs(zeros[i] - p1)))
        z2 = zeros.pop(min(range(len(zeros)), key=lambda i: abs(zeros[i] - p1)))
        # (z - z1)(z - z2) and (z - p1)(z - p2), as numpy.poly expands them.
        sections.append([1.0, -(z1 + z2), z1 * z2,
                         1.0, -(p1 + p2).real, (p1 * p2).real])
    return np.array(sections[::-1], dtype=np.float64)


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
