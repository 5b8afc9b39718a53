import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# A shell starts a background job (``pytest &``) with Ctrl-C ignored, and automix keeps an
# inherited SIG_IGN on purpose (tests/test_faults.py checks it): every Ctrl-C test would
# then watch its run go on to the end. Run as from a terminal, whoever started pytest.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The helper process (automix.io.helper) is forked only while no other thread runs, so
# start it now, before any test starts one: every test then sees what the command line
# does, whatever the order the tests run in. Tests of the in-process fallback set
# automix.io.helper.ENABLED to False.
from automix.io.helper import helper

helper()


@pytest.fixture
def remote():
    """A helper process of the test's own (the run's one is left alone), shut down after."""
    from automix.io.helper import Helper

    made = Helper()
    try:
        yield made
    finally:
        made.shutdown()
