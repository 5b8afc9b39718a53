"""automix: automatic mixing and mastering of stems and finished mixes.

The pipeline, one module per stage::

    audio.read_audio -> analyzer.analyze -> balancer.balance -> renderer.render
        -> mastering.master -> audio.write_audio

Audio is float32 ``(channels, samples)`` throughout; see :mod:`automix.audio`.
"""

__version__ = "0.1.0"
