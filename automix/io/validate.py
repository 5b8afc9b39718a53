"""Array checks at the library boundaries, in the spirit of pyloudnorm's and librosa's
``valid_audio``: refuse what the meters and the DSP cannot handle, with the reason.

Every public entry point that takes samples (``analyze``, ``master``, ``render``) calls
:func:`validate_audio` first, so a transposed, integer, empty or non-finite array, or an
exotic sample rate, is an :class:`~automix.errors.AutomixError` that says what was
expected, never a silent -200 LUFS or a run that takes minutes.
"""

from __future__ import annotations

import numbers

import numpy as np

from automix.errors import AutomixError

#: Lowest sample rate accepted. BS.1770's K-weighting (a 1.5 kHz shelf and a 38 Hz
#: high-pass, RLB) and the 4x true-peak meter are specified for audio rates; below
#: 8 kHz (telephone band) the shelf sits at or above Nyquist and the filters, the
#: oversampling factor (176400 / rate) and the spectrum bands stop meaning anything.
MIN_SAMPLE_RATE = 8_000

#: Highest sample rate accepted: 768 kHz (16x 48 kHz) is the highest rate any current
#: audio interface or DXD/DSD-PCM format uses; beyond that a rate field is corrupt.
MAX_SAMPLE_RATE = 768_000

#: Most channels accepted: 32 covers every layout up to 22.2 (24 channels) and
#: Atmos 9.1.6 beds; BS.1770 defines channel weights only for such layouts.
MAX_CHANNELS = 32

LAYOUT = "a (channels, samples) array"


def validate_sample_rate(sample_rate: object, *, name: str = "audio") -> None:
    """Raise AutomixError unless ``sample_rate`` is an int in the supported range.

    Parameters
    ----------
    sample_rate : object
        Samples per second; ``int`` or a numpy integer.
    name : str
        What to call the audio in the message (a file name, "stem 'bass'").
    """
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, numbers.Integral):
        raise AutomixError(f"{name}: sample rate must be a whole number of Hz, not {sample_rate!r} ({type(sample_rate).__name__})")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AutomixError(
            f"{name}: sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz; "
            "BS.1770 K-weighting and the 4x true-peak meter are defined for audio rates "
            "(the 38 Hz high-pass and 1.5 kHz shelf are meaningless at such a rate)"
        )


def validate_audio(samples: object, sample_rate: object, *, name: str = "audio") -> None:
    """Raise AutomixError unless ``samples`` and ``sample_rate`` follow the convention.

    The convention: a numpy float array shaped ``(channels, samples)``, 1 to
    :data:`MAX_CHANNELS` channels, more samples than channels, every sample finite,
    and an integer sample rate in ``MIN_SAMPLE_RATE .. MAX_SAMPLE_RATE`` Hz.

    Parameters
    ----------
    samples : numpy.ndarray
        The audio (float32 in automix; any floating dtype is accepted here).
    sample_rate : int
        Samples per second.
    name : str
        What to call the audio in the message.

    Raises
    ------
    AutomixError
        Naming what was expected and what was given.
    """
    if not isinstance(samples, np.ndarray):
        raise AutomixError(f"{name}: expected {LAYOUT} as a numpy array, got {type(samples).__name__}")
    if samples.ndim != 2:
        hint = " (mono must be shaped (1, samples))" if samples.ndim == 1 else ""
        raise AutomixError(f"{name}: expected {LAYOUT}, got {samples.ndim} dimension(s) shaped {samples.shape}{hint}")
    if not np.issubdtype(samples.dtype, np.floating):
        raise AutomixError(
            f"{name}: expected floating-point samples (float32, full scale 1.0), got {samples.dtype}; "
            "convert integer PCM by dividing by 2**(bits-1)"
        )
    channels, frames = samples.shape
    if channels == 0 or frames == 0:
        raise AutomixError(f"{name}: holds no audio (shape {samples.shape})")
    if channels >= frames:
        if channels > frames and frames <= MAX_CHANNELS:
            raise AutomixError(
                f"{name}: shape {samples.shape} looks transposed: expected {LAYOUT} with more samples "
                f"than channels; pass samples.T"
            )
        raise AutomixError(f"{name}: expected {LAYOUT} with more samples than channels, got shape {samples.shape}")
    if channels > MAX_CHANNELS:
        raise AutomixError(f"{name}: {channels} channels; at most {MAX_CHANNELS} are supported")
    validate_sample_rate(sample_rate, name=name)
    _check_finite(samples, name)


def _check_finite(samples: np.ndarray, name: str) -> None:
    # A float64 sum propagates NaN and inf without allocating a boolean copy of the
    # whole signal; only when it is not finite (or a huge float64 input overflowed)
    # is the exact, allocating check run, to say where.
    if np.isfinite(samples.sum(dtype=np.float64)):
        return
    bad = ~np.isfinite(samples)
    if not bad.any():
        return
    channel, index = np.argwhere(bad)[0]
    raise AutomixError(
        f"{name}: holds NaN or infinite samples ({int(bad.sum())} of them, first at channel {int(channel)}, "
        f"sample {int(index)})"
    )
