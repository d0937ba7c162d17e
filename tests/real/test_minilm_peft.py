"""LoRA on the packaged MiniLM pruned to 50 %, real Rotten Tomatoes slice: the sparse merge keeps
exactly the masks, and the accuracy before and after the merge is reported."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from es_plugins.integrations.hf_recipes import finetune_and_evaluate, load_classifier
from es_plugins.integrations.peft import merge_and_unload_sparse, merged_name
from es_plugins.integrations.transformers import SparsityCallback
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.datasets import TokenizedDataset, rotten_tomatoes

pytestmark = pytest.mark.slow


def test_minilm_lora_sparse_merge(tmp_path):
    texts, labels = rotten_tomatoes(limit=320, seed=1)
    base, tok = load_classifier(packaged_model_dir("minilm"), 2)
    model = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], modules_to_save=["classifier"])
    )
    callback = SparsityCallback("omp", sparsity=0.5)
    metrics, trainer = finetune_and_evaluate(
        model,
        tok,
        (texts[:240], labels[:240]),
        (texts[240:], labels[240:]),
        tmp_path,
        callbacks=[callback],
        max_steps=15,
        learning_rate=1e-3,
        max_length=48,
    )
    state = callback.sparsifier.state
    test = TokenizedDataset(tok, texts[240:], labels[240:], max_length=48)

    def accuracy(m) -> float:
        m.eval()
        batch = {k: torch.stack([test[i][k] for i in range(len(test))]) for k in test[0]}
        with torch.no_grad():
            return float(
                (m(**{k: v for k, v in batch.items() if k != "labels"}).logits.argmax(-1) == batch["labels"])
                .float()
                .mean()
            )

    merged, report = merge_and_unload_sparse(model, state, evaluate=accuracy)
    params = dict(merged.named_parameters())
    for name, mask in state.masks.items():
        assert torch.equal(params[merged_name(name)] != 0, mask)
    assert report.metric_before == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert report.metric_after is not None and 0 < report.discarded_ratio < 1
