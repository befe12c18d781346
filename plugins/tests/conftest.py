from __future__ import annotations

import sys
from pathlib import Path

# the tests import their helpers module by name, whatever the rootdir
sys.path.insert(0, str(Path(__file__).parent))
