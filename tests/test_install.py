"""The console script ``lica-train`` starts wherever it is run from, from the editable
install ``make install`` makes and from a plain (non-editable) ``pip install .``: the
Hydra configs are package data (``lica/conf``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def cfg_job(script: Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([str(script), "--cfg", "job"], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_console_script_of_the_editable_install_runs_from_any_folder(tmp_path):
    printed = cfg_job(BIN / "lica-train", cwd=tmp_path)
    assert "backend: mpe" in printed and "scenario: spread" in printed and "name: lica" in printed


@pytest.mark.slow
def test_console_script_of_a_non_editable_install(tmp_path):
    """``pip install --no-deps --no-build-isolation --target <dir>`` of a copy of the
    repository (the venv's packages provide the dependencies), run from another folder
    with that copy first on the path: the installed package, not the checkout, answers."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "outputs", "build", "*.egg-info",
                                                             "__pycache__", ".slurm", "wandb", ".pytest_cache"))
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-3000:]
    assert (site / "lica" / "conf" / "train.yaml").is_file() and (site / "lica" / "conf" / "env" / "spread.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import lica; print(lica.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert where.stdout.strip() == str(site / "lica" / "__init__.py")
    printed = cfg_job(site / "bin" / "lica-train", cwd=tmp_path, env=env)
    assert printed == cfg_job(BIN / "lica-train", cwd=tmp_path)
