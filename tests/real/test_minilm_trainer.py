"""Real MiniLM + real Rotten Tomatoes slice through the HF Trainer with 40 % OMP."""

from __future__ import annotations

import pytest

from es_plugins.integrations.hf_recipes import finetune_and_evaluate, load_classifier
from es_plugins.integrations.transformers import SparsityCallback
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.datasets import rotten_tomatoes

pytestmark = pytest.mark.slow


def test_minilm_finetune_keeps_exact_sparsity(tmp_path):
    texts, labels = rotten_tomatoes(limit=240, seed=0)
    model, tok = load_classifier(packaged_model_dir("minilm"), 2)
    callback = SparsityCallback("omp", sparsity=0.4)
    metrics, trainer = finetune_and_evaluate(
        model,
        tok,
        (texts[:160], labels[:160]),
        (texts[160:], labels[160:]),
        tmp_path,
        callbacks=[callback],
        max_steps=10,
        max_length=48,
    )
    state = callback.sparsifier.state
    assert state.num_pruned == round(0.4 * state.num_weights)
    assert state.count_nonzero_pruned(model) == 0
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] == metrics["loss"]  # finite
    assert len(state.masks) == 36
