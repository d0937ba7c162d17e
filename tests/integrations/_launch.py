"""Run a worker script under real `torchrun --nproc_per_node 2` (gloo on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_next_port = [29500 + os.getpid() % 2000]


def torchrun(worker: Path, *args: object, env: dict | None = None, timeout: float = 300) -> None:
    """Start two processes; a dead rank makes the other fail at its next collective, and the
    timeout bounds the whole run, so a broken test fails instead of hanging."""
    _next_port[0] += 1
    command = [
        str(Path(sys.executable).with_name("torchrun")),
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_next_port[0]),
        str(worker),
        *map(str, args),
        str(REPO),
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
