"""PEFT LoRA on a pruned base through the HF Trainer callback, and the sparsity-keeping merge."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Trainer

from es_plugins import NMConfig
from es_plugins.integrations.peft import merge_and_unload_sparse, merged_name
from es_plugins.integrations.transformers import SparsityCallback
from es_plugins.masks import nm_compliance
from es_plugins.masks.targets import resolve_targets
from tests.conftest import make_tiny_bert
from tests.integrations.test_transformers import RandomTokens, training_args


def lora(model):
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["query", "value", "dense"], lora_dropout=0.0, modules_to_save=["classifier"]
    )
    return get_peft_model(model, config)


def eval_loss(model) -> float:
    data = RandomTokens(n=16, seed=3)
    items = [data[i] for i in range(16)]
    inputs = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    model.eval()
    with torch.no_grad():
        return float(model(**inputs).loss)


def train_sparse_lora(tmp_path, plan="omp", **options):
    model = lora(make_tiny_bert())
    callback = SparsityCallback(plan, **options)
    Trainer(
        model=model,
        args=training_args(tmp_path, learning_rate=5e-2),
        train_dataset=RandomTokens(),
        callbacks=[callback],
    ).train()
    return model, callback.sparsifier.state


def test_targets_skip_lora_adapters_and_prune_base_layers():
    model = lora(make_tiny_bert())
    names = [t.name for t in resolve_targets(model)]
    assert names and all("lora_" not in n for n in names)
    assert any(n.endswith("query.base_layer.weight") for n in names)


def test_plain_merge_is_dense_sparse_merge_keeps_masks(tmp_path):
    model, state = train_sparse_lora(tmp_path, sparsity=0.5)
    assert state.num_pruned == round(0.5 * state.num_weights)
    plain = copy.deepcopy(model).merge_and_unload()
    plain_params = dict(plain.named_parameters())
    lora_layers = [n for n in state.masks if any(k in n for k in ("query", "value", "dense"))]
    regrown = sum(int((plain_params[merged_name(n)][~state.masks[n]] != 0).sum()) for n in lora_layers)
    assert regrown > 0  # the failure this merge exists for

    merged, report = merge_and_unload_sparse(model, state, evaluate=eval_loss)
    params = dict(merged.named_parameters())
    for name, mask in state.masks.items():
        assert torch.equal(params[merged_name(name)] != 0, mask), name  # exactly the masks, nothing regrown
    assert 0.0 < report.discarded_ratio < 1.0
    assert set(report.layers) == {merged_name(n) for n in state.masks}
    assert report.metric_before is not None and report.metric_after is not None
    assert not any("lora" in n for n in params)


def test_nm_plan_stays_nm_after_merge(tmp_path):
    model, state = train_sparse_lora(tmp_path, plan=NMConfig("2:4"))
    merged, report = merge_and_unload_sparse(model, state, pattern=(2, 4))
    for t in resolve_targets(merged):
        groups, ok = nm_compliance(t.param.detach(), 2, 4, t.in_axis)
        assert ok == groups, t.name


def test_masks_default_to_base_zeros(tmp_path):
    model, state = train_sparse_lora(tmp_path, sparsity=0.3)
    merged, _ = merge_and_unload_sparse(model)
    zeros = sum(int((t.param == 0).sum()) for t in resolve_targets(merged))
    assert zeros == state.num_pruned


def test_merge_warns_with_the_discarded_fraction(tmp_path):
    model, state = train_sparse_lora(tmp_path, sparsity=0.5)
    with pytest.warns(UserWarning, match=r"discarded \d+\.\d% of the LoRA update.*mask_lora_"):
        _, report = merge_and_unload_sparse(model, state)
    assert report.discarded_ratio > 0.10


def test_masked_lora_trains_inside_the_mask_and_the_merge_discards_nothing(tmp_path):
    import warnings

    from es_plugins import OMPConfig, sparsify_
    from es_plugins.integrations.peft import mask_lora_

    model = lora(make_tiny_bert())
    state = sparsify_(model, OMPConfig(0.5))
    handle = mask_lora_(model, state)
    assert len(handle.layers) == 10  # per block: query, value and the three "dense" layers (see lora())
    Trainer(
        model=model,
        args=training_args(tmp_path, learning_rate=5e-2),
        train_dataset=RandomTokens(),
        callbacks=[SparsityCallback(state=state)],
    ).train()
    trained_loss = eval_loss(model)
    lora_moved = any(float(p.detach().abs().sum()) > 0 for n, p in model.named_parameters() if "lora_B" in n)
    assert lora_moved, "the LoRA update must have trained"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        merged, report = merge_and_unload_sparse(model, state)
    assert report.discarded_ratio == 0.0 and report.update_norm > 0
    params = dict(merged.named_parameters())
    for name, mask in state.masks.items():
        assert int((params[merged_name(name)].detach()[~mask] != 0).sum()) == 0
    assert eval_loss(merged) == pytest.approx(trained_loss, abs=1e-5)  # the merge computes what was trained
