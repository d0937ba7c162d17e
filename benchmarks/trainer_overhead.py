"""Per-step overhead of SparsityCallback over a dense HF Trainer step, BERT-base-sized model.

BertForSequenceClassification with BERT-base's config (random init: the hub is unreachable;
the cost does not depend on the values), batch 8 x 128, AdamW, 40 % global OMP. Each mode runs
in a fresh process. Beside the end-to-end step times (noisy on a shared 2-core machine), the
time spent inside the callback's handlers and the optimizer hooks it registers is measured
directly each step — that is the overhead the plugin adds.

Usage: python benchmarks/trainer_overhead.py [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import run_isolated, run_main, table  # noqa: E402


def case(mode: str, steps: int) -> dict:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2))
    n, seq = 8 * (steps + 1), 128

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            ids = torch.randint(1000, 2000, (seq,), generator=torch.Generator().manual_seed(i))
            return {
                "input_ids": ids,
                "attention_mask": torch.ones(seq, dtype=torch.long),
                "labels": torch.tensor(i % 2),
            }

    step_times: list[float] = []
    timers = {"hooks": 0.0, "events": 0.0}

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            step_times.append(time.perf_counter() - self.t)

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers[key] += time.perf_counter() - start

        return wrapper

    callbacks = [StepTimer()]
    if mode == "es-plugins":
        from es_plugins.integrations.transformers import SparsityCallback

        sparsity = SparsityCallback("omp", sparsity=0.4)
        for name in ("on_step_begin", "on_step_end"):
            setattr(sparsity, name, timed(getattr(sparsity, name), "events"))

        class HookTimer(TrainerCallback):
            def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
                inner = optimizer.optimizer
                for hooks in (inner._optimizer_step_pre_hooks, inner._optimizer_step_post_hooks):
                    for key in list(hooks):
                        hooks[key] = timed(hooks[key], "hooks")

        callbacks = [sparsity, HookTimer(), StepTimer()]
    with tempfile.TemporaryDirectory() as out:
        # logging_steps left at the Trainer default (500): one log event is timed separately below.
        args = TrainingArguments(
            output_dir=out,
            use_cpu=True,
            max_steps=steps + 1,
            per_device_train_batch_size=8,
            learning_rate=2e-5,
            weight_decay=0.01,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=Data(), callbacks=callbacks)
        trainer.train()
    log_ms = None
    if mode == "es-plugins":
        from es_plugins import Sparsifier

        probe = Sparsifier(state=sparsity.sparsifier.state)
        probe.setup(model)
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            probe.metrics()
            samples.append(time.perf_counter() - start)
        log_ms = min(samples) * 1e3
    measured = sorted(step_times[1:])  # first step: warm-up
    per_step = (timers["hooks"] + timers["events"]) / (steps + 1)
    return {"step_s": measured[len(measured) // 2], "plugin_s_per_step": per_step, "log_ms": log_ms}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(case(sys.argv[2], int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    results = {mode: run_isolated(__file__, "--case", mode, str(args.steps)) for mode in ("dense", "es-plugins")}
    dense = results["dense"].get("step_s")
    rows = []
    for mode, r in results.items():
        if "error" in r:
            rows.append([mode, "error", "-", r["error"][:70]])
            continue
        plugin = (
            "-" if mode == "dense" else f"{r['plugin_s_per_step'] * 1e3:.1f} ms ({r['plugin_s_per_step'] / dense:.2%})"
        )
        log = "-" if r["log_ms"] is None else f"{r['log_ms']:.0f} ms"
        rows.append([mode, f"{r['step_s']:.2f}", f"{r['step_s'] / dense - 1:+.1%}", plugin, log])
    print(f"HF Trainer step, BERT-base-sized BertForSequenceClassification, batch 8x128, AdamW, median of {args.steps}")
    print(table(rows, ["mode", "step s", "vs dense", "callback + hooks per step (of dense step)", "per log event"]))


if __name__ == "__main__":
    run_main(main, __file__)
