import sys
from pathlib import Path

# Tests import their helpers as `tests.helpers` or `helpers`; make both work.
sys.path.insert(0, str(Path(__file__).parent))
