"""The package type-checks: ``mypy`` (strict for services, storage, settings, domain and
errors, see setup.cfg) over the whole of ``gati_private_registry``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_is_clean() -> None:
    res = subprocess.run([sys.executable, "-m", "mypy", "gati_private_registry"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Success: no issues found" in res.stdout
