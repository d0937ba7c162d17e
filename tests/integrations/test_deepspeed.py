"""DeepSpeed ZeRO-1/2 on 2 CPU processes: master copies and moments are masked too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integrations._launch import torchrun

pytest.importorskip("deepspeed")  # installed by scripts/bootstrap.sh; skipped only outside it

WORKER = Path(__file__).with_name("deepspeed_worker.py")


def run(tmp_path, stage: int, enforce: bool) -> list[dict]:
    torchrun(WORKER, tmp_path, stage, int(enforce), env={"DS_ACCELERATOR": "cpu"})
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
