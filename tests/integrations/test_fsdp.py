"""Global OMP of FSDP-sharded models on 2 CPU processes (gloo): exact global count, identical
to the single-process masks, masks stay sharded, no regrowth after training steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integrations._launch import torchrun

WORKER = Path(__file__).with_name("fsdp_worker.py")


@pytest.mark.parametrize("kind", ["fsdp2", "fsdp1"])
def test_sharded_global_omp(tmp_path, kind):
    torchrun(WORKER, tmp_path, kind)
    ranks = [json.loads((tmp_path / f"{kind}-rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["world"] == 2
        assert r["pruned"] == r["expected"]  # exact global count across shards
        assert r["same_as_single"]  # identical to the single-process result on the same weights
        assert r["regrown"] == 0
        assert r["local_fraction"] < 0.75  # masks are sharded, not replicated
