import sys
from pathlib import Path

# Tests import their helpers as `tests.helpers` or `helpers`; make both work.
sys.path.insert(0, str(Path(__file__).parent))

# The JACK server fixture (live audio tests through a virtual device): see jack_harness.py.
from jack_harness import jack_server  # noqa: E402, F401
