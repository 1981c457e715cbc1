"""The import contracts of ``pyproject.toml`` ([tool.importlinter]), checked by
import-linter: no import cycle anywhere inside lica, and the loggers and the sweep report
(lica.hydra_callbacks) do not depend on the figures (lica.plot), directly or not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    out = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in out.stdout
