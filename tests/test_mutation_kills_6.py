"""Tests written for the sixth mutation round (``bench/mutation.py``, keys ``stem_share``,
``render_analysis``, ``analyzer_beside``, ``final_measures``): each kills mutants the
suite let live, and each checks an answer worked out from the signal or the format,
never one read from the code under test.
"""

from __future__ import annotations
