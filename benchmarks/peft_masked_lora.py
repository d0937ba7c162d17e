"""LoRA on a 50 %-pruned base: the plain sparse merge vs training the update inside the mask.

Baseline: train LoRA normally, then ``merge_and_unload_sparse`` (re-applies the base mask, so the
part of B·A outside it is thrown away). Ours: ``mask_lora_`` during training, then the same merge.
Same model, data, seed and steps in one run; prints the fraction of the update's norm the merge
discards and the loss of the trained PEFT model beside the merged one.

    python benchmarks/peft_masked_lora.py [--packaged]   # --packaged: MiniLM + Rotten Tomatoes
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import run_main, table  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from es_plugins import OMPConfig, sparsify_  # noqa: E402
from es_plugins.integrations.peft import mask_lora_, merge_and_unload_sparse  # noqa: E402
from es_plugins.integrations.transformers import SparsityCallback  # noqa: E402


def data_and_model(packaged: bool):
    if packaged:
        from es_plugins.integrations.hf_recipes import load_classifier
        from es_plugins.io.assets import packaged_model_dir
        from es_plugins.io.datasets import TokenizedDataset, rotten_tomatoes

        texts, labels = rotten_tomatoes(limit=320, seed=0)
        model, tokenizer = load_classifier(packaged_model_dir("minilm"), 2, seed=0)
        return (
            model,
            TokenizedDataset(tokenizer, texts[:256], labels[:256], 48),
            TokenizedDataset(tokenizer, texts[256:], labels[256:], 48),
        )
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=99,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            num_labels=2,
        )
    )
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 99, (320, 16), generator=gen)
    rows = [{"input_ids": i, "attention_mask": torch.ones_like(i), "labels": i[0] % 2} for i in ids]
    return model, rows[:256], rows[256:]


def loss(model, rows) -> float:
    batch = {k: torch.stack([torch.as_tensor(r[k]) for r in rows]) for k in rows[0]}
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


def run(masked: bool, packaged: bool) -> tuple[float, float, float]:
    model, train, test = data_and_model(packaged)
    model = get_peft_model(
        model,
        LoraConfig(
            r=8, lora_alpha=16, target_modules=["query", "value", "dense"], lora_dropout=0.0, task_type="SEQ_CLS"
        ),
    )
    state = sparsify_(model, OMPConfig(0.5))
    if masked:
        mask_lora_(model, state)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            use_cpu=True,
            max_steps=30,
            per_device_train_batch_size=16,
            learning_rate=1e-3,
            report_to=[],
            disable_tqdm=True,
            seed=0,
            save_strategy="no",
        )
        Trainer(model=model, args=args, train_dataset=train, callbacks=[SparsityCallback(state=state)]).train()
    trained = loss(model, list(test))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged, report = merge_and_unload_sparse(model, state)
    return report.discarded_ratio, trained, loss(merged, list(test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--packaged", action="store_true", help="packaged MiniLM + Rotten Tomatoes instead of tiny BERT"
    )
    packaged = parser.parse_args().packaged
    rows = [
        ("plain LoRA + sparse merge (baseline)", *run(False, packaged)),
        ("mask_lora_ + sparse merge (ours)", *run(True, packaged)),
    ]
    print(
        f"\n{'MiniLM, Rotten Tomatoes' if packaged else 'tiny BERT, random tokens'}; base 50 % OMP; LoRA r=8, "
        "30 steps; test loss"
    )
    print(
        table(
            [
                [name, f"{discarded:.1%}", f"{trained:.4f}", f"{merged:.4f}"]
                for name, discarded, trained, merged in rows
            ],
            ["training", "update discarded", "loss trained", "loss merged"],
        )
    )


if __name__ == "__main__":
    run_main(main, __file__)
