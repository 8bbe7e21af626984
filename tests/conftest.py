"""Makes the shared helpers in tests/ (cli_testing.py) importable from every test folder."""

import sys
from pathlib import Path

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
