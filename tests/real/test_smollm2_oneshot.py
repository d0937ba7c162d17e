"""SparseGPT on the packaged SmolLM2-135M with a small BBC News calibration set: at 50 %
its perplexity on held-out articles is far below one-shot magnitude pruning's."""

from __future__ import annotations

import pytest

from es_plugins import OMPConfig, SparseGPTConfig, SparsityPlan, sparsify_
from es_plugins.analysis.evaluation import perplexity
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.checkpoint import load_hf_model
from es_plugins.io.datasets import bbc_news, calibration_blocks, token_blocks

pytestmark = pytest.mark.slow


def test_sparsegpt_beats_omp_at_half_sparsity():
    from transformers import AutoTokenizer

    path = packaged_model_dir("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    evaluation = token_blocks(tokenizer, bbc_news("eval"), 1024, 256)
    calibration = calibration_blocks(tokenizer, bbc_news("calib"), 8, 256, seed=0)

    omp_model = load_hf_model(path, dtype="float32")
    dense = perplexity(omp_model, evaluation)
    sparsify_(omp_model, SparsityPlan(OMPConfig(0.5)))
    omp = perplexity(omp_model, evaluation)
    del omp_model

    model = load_hf_model(path, dtype="float32")
    state = sparsify_(model, SparsityPlan(SparseGPTConfig(0.5)), calibration=calibration)
    sparsegpt = perplexity(model, evaluation)
    assert state.num_pruned == sum(round(0.5 * m.numel()) for m in state.masks.values())
    assert dense < sparsegpt < omp / 3, (dense, sparsegpt, omp)
