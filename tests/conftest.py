import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# The helper process (automix.io.helper) is forked only while no other thread runs, so
# start it now, before any test starts one: every test then sees what the command line
# does, whatever the order the tests run in. Tests of the in-process fallback set
# automix.io.helper.ENABLED to False.
from automix.io.helper import helper  # noqa: E402

helper()
