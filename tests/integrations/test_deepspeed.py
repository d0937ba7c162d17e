"""DeepSpeed ZeRO-1/2 on 2 CPU processes: master copies and moments are masked too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")  # installed by scripts/bootstrap.sh; skipped only outside it

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("deepspeed_worker.py")


def run(tmp_path, stage: int, enforce: bool) -> list[dict]:
    torchrun = Path(sys.executable).with_name("torchrun")
    port = 29800 + (os.getpid() + 10 * stage + int(enforce)) % 1000
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(port), str(WORKER),
                             str(tmp_path), str(stage), str(int(enforce)), str(REPO)],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((tmp_path / f"stage{stage}-enforce{int(enforce)}-rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.parametrize("stage", [1, 2])
def test_zero_masks_master_weights_and_moments(tmp_path, stage):
    unenforced = run(tmp_path, stage, enforce=False)
    assert all(r["master"] > 0 for r in unenforced)  # the failure mode: masters regrow
    for r in run(tmp_path, stage, enforce=True):
        assert r["world"] == 2 and r["pruned"] == round(0.5 * r["total"])
        assert r["weights"] == 0 and r["master"] == 0 and r["moments"] == 0


def test_zero3_is_refused(tmp_path):
    assert all(r["refused"] for r in run(tmp_path, 3, enforce=False))
