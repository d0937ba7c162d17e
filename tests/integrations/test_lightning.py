"""Lightning SparsityCallback / LotteryTicketCallback on the real Lightning Trainer (CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from es_plugins import LotteryConfig, SparsityConfigError, SparsityState
from es_plugins.integrations.lightning import LotteryTicketCallback, SparsityCallback
from es_plugins.masks.targets import resolve_targets
from tests.conftest import TinyBlocks


class TinyModule(pl.LightningModule):
    def __init__(self, seed: int = 0, lr: float = 1e-2):
        super().__init__()
        torch.manual_seed(seed)
        self.net = TinyBlocks()
        self.lr = lr

    def forward(self, ids):
        return self.net(ids)

    def training_step(self, batch, batch_idx):
        ids, labels = batch
        loss = torch.nn.functional.cross_entropy(self(ids), labels)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def loader(n: int = 64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    data = torch.utils.data.TensorDataset(
        torch.randint(0, 50, (n, 6), generator=gen), torch.randint(0, 3, (n,), generator=gen)
    )
    return torch.utils.data.DataLoader(data, batch_size=8)


def trainer(tmp_path, callbacks, **kw) -> pl.Trainer:
    base = dict(
        accelerator="cpu",
        devices=1,
        max_steps=6,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
        log_every_n_steps=1,
    )
    base.update(kw)
    return pl.Trainer(callbacks=callbacks, **base)


def pruned_nonzeros(module, masks) -> int:
    return SparsityState(masks).count_nonzero_pruned(module)


def test_one_shot_with_accumulation_and_gradient_masking(tmp_path):
    module = TinyModule()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    callback = SparsityCallback("omp", sparsity=0.5)
    run = trainer(tmp_path, [callback], accumulate_grad_batches=2)
    run.fit(module, loader())
    state = callback.sparsifier.state
    assert state.num_pruned == round(0.5 * state.num_weights)
    assert pruned_nonzeros(module, state.masks) == 0
    assert any(not torch.equal(p.detach(), before[n]) for n, p in module.named_parameters())
    assert float(run.logged_metrics["sparsity/targets"]) == pytest.approx(0.5)
    # Lightning runs backward inside the optimizer closure: gradients were masked after it,
    # so AdamW's first moment never saw a pruned weight's gradient.
    optimizer = run.optimizers[0]
    params = dict(module.named_parameters())
    for name, mask in state.masks.items():
        assert int((optimizer.state[params[name]]["exp_avg"][~mask] != 0).sum()) == 0
    assert not optimizer._optimizer_step_post_hooks  # finalized at fit end


def test_checkpoint_resume_restores_masks(tmp_path):
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    callback = SparsityCallback("omp", sparsity=0.4)
    trainer(tmp_path, [callback, ckpt], enable_checkpointing=True, max_steps=3).fit(TinyModule(), loader())
    saved = {n: m.clone() for n, m in callback.sparsifier.state.masks.items()}
    path = next((tmp_path / "ckpt").glob("*.ckpt"))
    assert any("es_plugins.SparsityCallback" in key for key in torch.load(path, weights_only=False)["callbacks"])

    other = TinyModule(seed=5)  # a different init: resume must take masks from the checkpoint
    resumed_cb = SparsityCallback("omp", sparsity=0.4)
    trainer(tmp_path, [resumed_cb], max_steps=6).fit(other, loader(), ckpt_path=str(path))
    resumed = resumed_cb.sparsifier.state
    assert all(torch.equal(resumed.masks[n], saved[n]) for n in saved)
    assert pruned_nonzeros(other, resumed.masks) == 0


def test_lottery_rounds_rewind_exactly(tmp_path):
    config = LotteryConfig(prune_fraction=0.5, rounds=2)
    lth = LotteryTicketCallback(config, str(tmp_path / "lth"), steps_per_round=3)
    seen = {}

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step in (3, 6):
                seen[trainer.global_step] = (
                    {n: p.detach().clone() for n, p in pl_module.named_parameters()},
                    {n: m.clone() for n, m in lth.ticket.state.masks.items()},
                )

    module = TinyModule()
    pretrained = {n: p.detach().clone() for n, p in module.named_parameters()}
    trainer(tmp_path, [lth, Probe()], max_steps=9).fit(module, loader(n=200))
    records = lth.ticket.records
    assert [r.round for r in records] == [0, 1, 2]
    n = sum(t.numel for t in resolve_targets(module))
    assert [r.sparsity for r in records] == [0.0, round(0.5 * n) / n, round(0.75 * n) / n]
    for step, (weights, masks) in seen.items():
        for name, value in weights.items():
            expected = pretrained[name] * masks[name] if name in masks else pretrained[name]
            assert torch.equal(value, expected), (step, name)


def test_bad_configuration(tmp_path):
    with pytest.raises(SparsityConfigError, match="method must be one of"):
        SparsityCallback("lottery")
    with pytest.raises(SparsityConfigError, match="steps_per_round"):
        LotteryTicketCallback(LotteryConfig(), str(tmp_path), steps_per_round=0)
    run = trainer(tmp_path, [LotteryTicketCallback(LotteryConfig(0.2, 3), str(tmp_path / "l"), steps_per_round=5)])
    with pytest.raises(SparsityConfigError, match="need max_steps >= 20"):
        run.fit(TinyModule(), loader())


DDP_SCRIPT = r"""
import json, os, sys, torch
sys.path.insert(0, sys.argv[2])
import lightning.pytorch as pl
from es_plugins.engines.distributed import masks_checksum
from es_plugins.integrations.lightning import SparsityCallback
from tests.integrations.test_lightning import TinyModule, loader

callback = SparsityCallback("omp", sparsity=0.5)
trainer = pl.Trainer(accelerator="cpu", strategy="ddp", devices=2, max_steps=4, logger=False, callbacks=[callback],
                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
module = TinyModule(seed=int(os.environ.get("LOCAL_RANK", "0")))  # different init per rank: DDP broadcasts rank 0's
trainer.fit(module, loader())
state = callback.sparsifier.state
params = dict(module.named_parameters())
out = {"rank": trainer.global_rank, "world": trainer.world_size, "checksum": masks_checksum(state),
       "pruned": state.num_pruned, "total": state.num_weights,
       "regrown": state.count_nonzero_pruned(module)}
with open(os.path.join(sys.argv[1], f"rank{trainer.global_rank}.json"), "w") as f:
    json.dump(out, f)
"""


def test_ddp_two_processes_identical_masks(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(repo)], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]  # really two processes
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    for r in ranks:
        assert r["pruned"] == round(0.5 * r["total"]) and r["regrown"] == 0


def test_lottery_callback_takes_output_dir_and_the_old_folder_with_a_warning(tmp_path):
    config = LotteryConfig(prune_fraction=0.2, rounds=1)
    assert LotteryTicketCallback(config, output_dir=str(tmp_path / "a"), steps_per_round=2).ticket.folder.name == "a"
    with pytest.warns(FutureWarning, match=r"folder= is deprecated .* use output_dir="):
        old = LotteryTicketCallback(config, folder=str(tmp_path / "b"), steps_per_round=2)
    assert old.ticket.folder.name == "b"
