"""Whole jobs as library calls; ``automix/cli.py`` only parses and prints.

    pipeline.py      the public names, gathered (``from automix.jobs.pipeline import ...``)
    checks.py        every argument and output path checked before any audio is read
    safety.py        batches: one bad file never stops the others; workers; signals
    master_files.py  ``master``: one file, or a batch in input order
    mix_folder.py    ``mix``: a folder of stems into one track
    report.py        the mix's JSON report
    options.py       how results are written (shared)
"""
