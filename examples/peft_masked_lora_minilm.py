"""LoRA on a 50 %-sparse MiniLM that stays 50 % sparse after merging.

    python examples/peft_masked_lora_minilm.py [--steps 30] [--output runs/example-peft]

A plain LoRA update B·A is dense: merging it into a sparse base either fills the zeros or, with
the sparse merge, throws away the part of the update outside the mask. `mask_lora_` trains the
adapter inside the mask, so `merge_and_unload_sparse` keeps the sparsity and discards nothing.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainingArguments

from es_plugins import OMPConfig, sparsify_
from es_plugins.engines.device import resolve_device
from es_plugins.integrations.hf_recipes import load_classifier
from es_plugins.integrations.peft import mask_lora_, merge_and_unload_sparse
from es_plugins.integrations.transformers import SparsityCallback
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.datasets import TokenizedDataset, rotten_tomatoes


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--output", default="runs/example-peft")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)

    model, tokenizer = load_classifier(packaged_model_dir("minilm"), num_labels=2, seed=0)
    texts, labels = rotten_tomatoes(limit=16 * args.steps, seed=0)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value", "dense"], task_type="SEQ_CLS")
    model = get_peft_model(model, lora)
    state = sparsify_(model, OMPConfig(args.sparsity))  # prune the base weights (names under PEFT resolve)
    mask_lora_(model, state)  # the adapters' update stays inside the mask
    training = TrainingArguments(
        output_dir=f"{args.output}/trainer",
        use_cpu=resolve_device(args.device).type == "cpu",
        max_steps=args.steps,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
    )
    dataset = TokenizedDataset(tokenizer, texts, labels, max_length=48)
    Trainer(model=model, args=training, train_dataset=dataset, callbacks=[SparsityCallback(state=state)]).train()

    merged, report = merge_and_unload_sparse(model, state)  # a plain model, sparsity kept
    merged.save_pretrained(f"{args.output}/merged")
    print(f"update discarded by the sparse merge: {report.discarded_ratio:.2%}")
    print(f"saved: {args.output}/merged")
    return report


if __name__ == "__main__":
    main()
