"""automix asks glibc to keep freed block buffers; every value it asks for must be accepted."""

import sys

import pytest

from automix.jobs.allocator import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_accepts_every_setting():
    # mallopt refuses e.g. an mmap threshold above 32 MB on 64-bit: then this is False
    assert keep_freed_memory() is True
