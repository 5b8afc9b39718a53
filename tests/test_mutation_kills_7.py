"""Tests aimed at the mutants of the seventh round (issue 11): the limiter detector's
refinement by flat index, one spill file per channel, the dither added by channel, the
render's loudness measured in this process, and the inputs hashed at the lowest priority
(see ``bench/mutation.py``, keys refine_rows, spill_rows, dither_rows, render_meters and
digests_beside)."""
