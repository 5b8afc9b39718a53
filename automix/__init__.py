"""automix: automatic mixing and mastering of stems and finished mixes.

The package is laid out as the pipeline, one sub-package per stage::

    io/       read, validate and write audio files (audio.py)
    measure/  BS.1770 loudness and true peak (loudness.py), analysis (analyzer.py)
    mix/      roles (roles.py), the balance plan (balancer.py), rendering (renderer.py)
    dsp/      building blocks shared by stages (dynamics.py: the linked compressor)
    master/   tonal balance (tonal.py), stereo (stereo.py), limiter (limiter.py),
              the closed loudness loop (loop.py), the chain (chain.py),
              platform targets (platforms.py)
    jobs/     whole jobs as library calls (pipeline.py); cli.py is the thin command line

Audio is float32 ``(channels, samples)`` throughout; see :mod:`automix.io.audio`.
"""

__version__ = "0.1.0"
