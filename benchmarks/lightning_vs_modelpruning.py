"""es-plugins' Lightning SparsityCallback vs Lightning's own ModelPruning callback: same
BERT-base-sized block stack (84.9M Linear weights), 50 % global L1 pruning, AdamW, batch
8 x 128. Pruning happens before the measured epoch; each row runs in a fresh process.

Columns: pruning time, median step time and peak RSS (above the weights) of the epoch after
pruning, and whether the lottery-ticket reset writes the initial values into the surviving
weights (``w == w_init * mask`` exactly) — ModelPruning(use_lottery_ticket_hypothesis=True)
vs es-plugins' LotteryTicketCallback (rewind to the weights at fit start).

Usage: python benchmarks/lightning_vs_modelpruning.py [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import linear_stack, reset_peak, rss_bytes, run_isolated, run_main, table  # noqa: E402


def case(mode: str, steps: int) -> dict:
    import lightning.pytorch as pl
    import torch
    from torch import nn

    class Stack(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.blocks = linear_stack("bert-base")

        def forward(self, x):
            for q, k, v, o, up, down in self.blocks:
                x = x + o(v(k(q(x))))
                x = x + down(torch.nn.functional.gelu(up(x)))
            return x

        def training_step(self, batch, _):
            return self(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-4, weight_decay=0.01)

    module = Stack()
    initial = {n: p.detach().clone() for n, p in module.named_parameters()}
    data = torch.utils.data.TensorDataset(torch.randn(steps, 8 * 128, 768))
    loader = torch.utils.data.DataLoader(data, batch_size=None)
    times, marks = [], {}

    class Timer(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                marks["lth_ok"] = rewound_exactly(pl_module)
                reset_peak()
                marks["base"] = rss_bytes()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            marks["t"] = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1:
                times.append(time.perf_counter() - marks["t"])

    linears = [(m, "weight") for m in module.modules() if isinstance(m, nn.Linear)]
    holder = {}

    def timed(fn):
        """Accumulate the time spent in a callback hook: pruning + lottery reset."""

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                marks["prune_s"] = marks.get("prune_s", 0.0) + time.perf_counter() - start

        return wrapper

    @torch.no_grad()
    def rewound_exactly(pl_module) -> bool:
        """After pruning + reset: do the real parameters hold w_init * mask?"""
        if mode == "ModelPruning":  # torch-prune reparametrisation: weight = weight_orig * weight_mask
            pairs = [
                (n, m.weight_orig * m.weight_mask) for n, m in pl_module.named_modules() if hasattr(m, "weight_mask")
            ]
            masks = {n: m.weight_mask.bool() for n, m in pl_module.named_modules() if hasattr(m, "weight_mask")}
            return bool(pairs) and all(torch.equal(w, initial[f"{n}.weight"] * masks[n]) for n, w in pairs)
        state = holder["lth"].ticket.state
        params = dict(pl_module.named_parameters())
        return all(torch.equal(params[n], initial[n] * m) for n, m in state.masks.items())

    with tempfile.TemporaryDirectory() as tmp:
        if mode == "ModelPruning":
            from lightning.pytorch.callbacks import ModelPruning

            pruning = ModelPruning(
                "l1_unstructured",
                parameters_to_prune=linears,
                amount=0.5,
                use_global_unstructured=True,
                use_lottery_ticket_hypothesis=True,
                apply_pruning=lambda epoch: epoch == 0,
                make_pruning_permanent=False,
                verbose=0,
            )
            pruning.on_train_epoch_end = timed(pruning.on_train_epoch_end)
            callbacks = [Timer(), pruning]
        else:
            from es_plugins import LotteryConfig, TargetSpec
            from es_plugins.integrations.lightning import LotteryTicketCallback

            # one round: train `steps` steps, prune 50 % globally, rewind to the fit-start weights
            holder["lth"] = LotteryTicketCallback(
                LotteryConfig(0.5, 1, targets=TargetSpec(include=r".*")), f"{tmp}/lth", steps_per_round=steps
            )
            holder["lth"].on_train_batch_end = timed(holder["lth"].on_train_batch_end)
            callbacks = [Timer(), holder["lth"]]
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=2,
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            callbacks=callbacks,
            default_root_dir=tmp,
        )
        trainer.fit(module, loader)
        peak = rss_bytes("VmHWM") - marks["base"]
    weight_bytes = sum(p.numel() * 4 for p in initial.values())
    measured = sorted(times)
    return {
        "prune_s": marks.get("prune_s"),
        "step_s": measured[len(measured) // 2],
        "peak": peak / weight_bytes,
        "lth_ok": marks.get("lth_ok"),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(case(sys.argv[2], int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for mode in ("ModelPruning", "es-plugins"):
        r = run_isolated(__file__, "--case", mode, str(args.steps), timeout=3600)
        if "error" in r:
            rows.append([mode, "error", "-", "-", r["error"][:70]])
            continue
        rows.append(
            [
                mode,
                f"{r['prune_s']:.2f}",
                f"{r['step_s']:.2f}",
                f"{r['peak']:.2f}x",
                {True: "yes", False: "NO", None: "?"}[r["lth_ok"]],
            ]
        )
    print(f"Lightning, BERT-base-sized stack, 50 % global L1, AdamW, batch 8x128, median of {args.steps} steps")
    print(
        table(
            rows,
            [
                "callback",
                "prune + reset s",
                "step s",
                "peak RSS during steps (x weights)",
                "LTH reset restores w_init * mask",
            ],
        )
    )


if __name__ == "__main__":
    run_main(main, __file__)
