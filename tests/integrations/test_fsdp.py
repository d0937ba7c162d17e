"""Global OMP of FSDP-sharded models on 2 CPU processes (gloo): exact global count, identical
to the single-process masks, masks stay sharded, no regrowth after training steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fsdp_worker.py")


@pytest.mark.parametrize("kind", ["fsdp2", "fsdp1"])
def test_sharded_global_omp(tmp_path, kind):
    torchrun = Path(sys.executable).with_name("torchrun")
    port = 29600 + (os.getpid() + (0 if kind == "fsdp2" else 1)) % 1000
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(port), str(WORKER),
                             str(tmp_path), kind, str(REPO)], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"{kind}-rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["world"] == 2
        assert r["pruned"] == r["expected"]  # exact global count across shards
        assert r["same_as_single"]  # identical to the single-process result on the same weights
        assert r["regrown"] == 0
        assert r["local_fraction"] < 0.75  # masks are sharded, not replicated
