"""Tests written for the sixth mutation round (``bench/mutation.py``, keys ``int_count``,
``iir_copy``, ``secant``): each kills mutants the suite let live, and each checks an
answer worked out from the signal or the format, never one read from the code under test.
"""

from __future__ import annotations
