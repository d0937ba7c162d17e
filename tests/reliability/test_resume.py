"""Resuming from a tampered checkpoint is an error, never regrowth: HF Trainer, Lightning and
Accelerate restore masks through the same checks (``SparsityState.from_state_dict``).

Each case: a real run saves a checkpoint, its masks are replaced, the resume must raise.
- "all keep": every bit set, saved properly (its integrity records agree): the plan check.
- "bit flip": one bit of the saved masks flipped: the integrity check.
"""

from __future__ import annotations

import json
import math
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from safetensors.torch import save

from es_plugins import MaskMismatchError, SparsityState
from es_plugins.integrations.lightning import SparsityCallback as LightningSparsity
from es_plugins.masks.masks_file import MASKS_FILENAME, MASKS_FORMAT, MASKS_VERSION, integrity_text
from tests.conftest import make_tiny_bert
from tests.integrations.test_lightning import TinyModule, loader
from tests.integrations.test_lightning import trainer as lightning_trainer
from tests.integrations.test_transformers import omp_trainer, training_args

ALL_KEEP = r"keep every weight, but their plan prunes 50.00%"
FLIPPED = r"kept weights where .* were written: the file was changed after it was saved"


def tamper(data: dict[str, Any], how: str) -> dict[str, Any]:
    """A masks state dict with every bit set (re-saved consistently) or one bit flipped."""
    state = SparsityState.from_state_dict(data)
    if how == "all keep":
        return SparsityState({n: torch.ones_like(m) for n, m in state.masks.items()}, state.meta).state_dict()
    packed = dict(data["packed"])
    first = next(iter(packed))
    flipped = packed[first].clone()
    flipped[0] ^= 1
    return {**data, "packed": {**packed, first: flipped}}


CASES = [("all keep", ALL_KEEP), ("bit flip", FLIPPED)]


@pytest.mark.parametrize("how, message", CASES)
def test_hf_trainer_resume_refuses_tampered_masks(tmp_path, how, message):
    args = training_args(tmp_path, save_strategy="steps", save_steps=3)
    omp_trainer(args).train()
    path = tmp_path / "checkpoint-3" / MASKS_FILENAME
    _write_state_dict(path, tamper(_read_state_dict(path), how))
    trainer = omp_trainer(args)
    with pytest.raises(MaskMismatchError, match=message):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))


def _read_state_dict(path) -> dict[str, Any]:
    return SparsityState.load(path).state_dict()


def _write_state_dict(path, data: dict[str, Any]) -> None:
    """Write ``data`` as a masks file byte for byte (bypassing the checks a load would run)."""
    records = {n: (r["kept"], math.prod(data["shapes"][n]), r["digest"]) for n, r in data["integrity"].items()}
    metadata = {
        "format": MASKS_FORMAT,
        "version": MASKS_VERSION,
        "shapes": json.dumps(data["shapes"], sort_keys=True),
        "meta": json.dumps(data["meta"], sort_keys=True),
        "integrity": integrity_text(records),
    }
    path.write_bytes(save(dict(data["packed"]), metadata=metadata))


@pytest.mark.parametrize("how, message", CASES)
def test_lightning_resume_refuses_tampered_masks(tmp_path, how, message):
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    first = LightningSparsity("omp", sparsity=0.5)
    lightning_trainer(tmp_path, [first, ckpt], enable_checkpointing=True, max_steps=3).fit(TinyModule(), loader())
    path = next((tmp_path / "ckpt").glob("*.ckpt"))
    checkpoint = torch.load(path, weights_only=False)
    (key,) = [k for k, v in checkpoint["callbacks"].items() if isinstance(v, dict) and v.get("format") == MASKS_FORMAT]
    checkpoint["callbacks"][key] = tamper(checkpoint["callbacks"][key], how)
    torch.save(checkpoint, path)
    with pytest.raises(MaskMismatchError, match=message):
        lightning_trainer(tmp_path, [LightningSparsity("omp", sparsity=0.5)], max_steps=6).fit(
            TinyModule(seed=5), loader(), ckpt_path=str(path)
        )


@pytest.mark.parametrize("how, message", CASES)
def test_accelerate_load_state_refuses_tampered_masks(tmp_path, how, message):
    from accelerate import Accelerator

    from es_plugins.integrations.accelerate import prepare_sparsity

    def prepared() -> tuple[Accelerator, Any]:
        accelerator = Accelerator(cpu=True)
        model = make_tiny_bert()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model, optimizer = accelerator.prepare(model, optimizer)
        prepare_sparsity(accelerator, model, optimizer, "omp", sparsity=0.5)
        return accelerator, model

    accelerator, _ = prepared()
    accelerator.save_state(str(tmp_path / "state"))
    (saved,) = list((tmp_path / "state").glob("custom_checkpoint_*.pkl"))
    torch.save(tamper(torch.load(saved, weights_only=False), how), saved)
    accelerator, _ = prepared()
    with pytest.raises(MaskMismatchError, match=message):
        accelerator.load_state(str(tmp_path / "state"))
