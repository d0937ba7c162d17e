"""Accelerate helper under real `torchrun --nproc_per_node 2` with Accelerator(cpu=True) (gloo)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integrations._launch import torchrun as launch

WORKER = Path(__file__).with_name("accelerate_worker.py")


def torchrun(out: Path, phase: str) -> None:
    launch(WORKER, out, phase)


def test_two_process_masks_identical_enforced_and_checkpointed(tmp_path):
    torchrun(tmp_path, "train")
    ranks = [json.loads((tmp_path / f"train-rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]  # two real processes, not one
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    for r in ranks:
        assert r["pruned"] == round(0.5 * r["total"]) and r["regrown"] == 0
        assert r["real_steps"] == 4  # 64 samples / (4 per batch x 2 ranks) / 2 accumulation
    torchrun(tmp_path, "resume")
    resumed = [json.loads((tmp_path / f"resume-rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["before_load"] != ranks[0]["checksum"] for r in resumed)  # fresh masks differed...
    assert all(r["checksum"] == ranks[0]["checksum"] and r["regrown"] == 0 for r in resumed)  # ...until load_state
    assert (tmp_path / "state" / "custom_checkpoint_0.pkl").is_file()
