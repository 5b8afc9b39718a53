"""automix: automatic mixing and mastering of stems and finished mixes.

The package is laid out as the pipeline, one sub-package per stage::

    io/       formats.py (the format tables), audio.py (read, validate, write atomically),
              stream.py (re-readable block sources, block writer), dither.py,
              validate.py (array checks at library boundaries), paths.py (output safety),
              metadata.py (BWF bext / ReplayGain loudness tags, provenance),
              overlap.py (a pass's stages on several threads, bit-identical),
              lossy.py (mp3/opus/aac outputs), remote.py (URLs through fsspec)
    measure/  BS.1770 loudness and true peak (loudness.py), analysis (analyzer.py)
    mix/      roles (roles.py), measured reference levels (reference_levels.py),
              the balance plan (balancer.py), the user's say (user_plan.py),
              --amount (amount.py), rendering (renderer.py)
    dsp/      building blocks shared by stages: the linked compressor (dynamics.py),
              streaming linear-phase FIR (fir.py), subnormal-safe IIR (iir.py)
    master/   tonal balance (tonal.py, tonal_targets.py), stereo (stereo.py),
              glue (glue.py), the true-peak limiter (limiter.py), the closed loudness
              loop (loop.py), the streaming chain (chain.py), platform targets
              (platforms.py), lossy-codec checks (codecs.py), reference matching
              (reference.py)
    report/   the HTML report (html.py, plots.py)
    jobs/     whole jobs as library calls: argument checks (checks.py), batch safety and
              signals (safety.py), master_files.py, mix_folder.py, the JSON report
              (report.py), resumable batches (manifest.py), a Dask cluster
              (cluster.py); cli.py is the thin command line over them

Audio is float32 ``(channels, samples)`` throughout; see :mod:`automix.io.audio`.
"""

__version__ = "0.1.0"
