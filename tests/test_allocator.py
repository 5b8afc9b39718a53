"""automix asks glibc to keep freed block buffers; every value it asks for must be accepted."""

import sys

import pytest

from automix.jobs.allocator import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_accepts_every_setting():
    # mallopt returns 0 for a value it refuses (e.g. a negative size): then this is False
    assert keep_freed_memory() is True
