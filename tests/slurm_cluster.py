"""pytest plugin: a real single-node SLURM cluster for the ``slurm`` tests.

The session-scoped ``slurm_cluster`` fixture installs the Debian packages when they are
missing (``slurm/install.sh``), starts the cluster (``slurm/up.sh``), points ``SLURM_CONF``
at it for the rest of the session and, at the end, stops it (``slurm/down.sh``) only if
this session started it: a cluster that was already up is left running.

``tests/conftest.py`` imports the fixture, so every test module can use it.

Environment:
  LICA_SLURM_DIR       state directory (default ``<repo>/.slurm``), as for the scripts.
  LICA_SLURM_REQUIRED  ``1``: fail instead of skipping when the cluster cannot be had
                       (not root, no apt, install failed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM_SRC = REPO / "slurm"
COMMANDS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")


@dataclass
class SlurmCluster:
    """What a test needs to use the running test cluster."""

    state_dir: Path
    conf: Path  # slurm.conf; also exported as SLURM_CONF
    partition: str
    started_here: bool  # this session started it (and will stop it)
    env: dict[str, str] = field(default_factory=dict)  # os.environ + SLURM_CONF, for subprocesses

    def run(self, *cmd: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sbatch, sacct, ...) against this cluster."""
        return subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )


def _unavailable(reason: str) -> None:
    if os.environ.get("LICA_SLURM_REQUIRED") == "1":
        pytest.fail(f"SLURM test cluster required (LICA_SLURM_REQUIRED=1) but {reason}", pytrace=False)
    pytest.skip(f"SLURM test cluster unavailable: {reason}")


def _script(name: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SLURM_SRC / name)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _tail(proc: subprocess.CompletedProcess, n: int = 30) -> str:
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-n:])


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The local SLURM test cluster, up for the whole session (see the module docstring)."""
    if not sys.platform.startswith("linux"):
        _unavailable("needs Linux")
    if os.geteuid() != 0:
        _unavailable("needs root (it starts munged, mariadb and the SLURM daemons)")
    env = dict(os.environ)
    if not all(shutil.which(c, path="/usr/sbin:/usr/bin:/sbin:/bin") for c in COMMANDS):
        if shutil.which("apt-get") is None or shutil.which("dpkg-query") is None:
            _unavailable("SLURM is not installed and there is no apt-get to install it")
        proc = _script("install.sh", env, timeout=1200)
        if proc.returncode != 0:
            _unavailable(f"slurm/install.sh failed (exit {proc.returncode}):\n{_tail(proc)}")

    proc = _script("up.sh", env, timeout=300)
    if proc.returncode != 0:
        # Installed but does not start: that is a bug to see, not a reason to skip.
        pytest.fail(f"slurm/up.sh failed (exit {proc.returncode}):\n{_tail(proc)}", pytrace=False)
    started = "already up" not in proc.stdout

    state = Path(os.environ.get("LICA_SLURM_DIR") or REPO / ".slurm").resolve()
    conf = state / "etc" / "slurm.conf"
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    cluster = SlurmCluster(
        state_dir=state,
        conf=conf,
        partition=os.environ.get("LICA_SLURM_PARTITION", "lica"),
        started_here=started,
        env={**os.environ, "SLURM_CONF": str(conf)},
    )
    try:
        yield cluster
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        if started:
            down = _script("down.sh", cluster.env, timeout=120)
            if down.returncode != 0:
                print(f"slurm/down.sh failed (exit {down.returncode}):\n{_tail(down)}", file=sys.stderr)
