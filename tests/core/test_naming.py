"""Portable names: masks made under one naming of the model apply under another."""

from __future__ import annotations

import pytest

from es_plugins import MaskMismatchError
from es_plugins.masks.naming import canonical_name, match_names


@pytest.mark.parametrize(
    "wrapped, plain",
    [
        ("module.bert.encoder.layer.0.weight", "bert.encoder.layer.0.weight"),
        ("_orig_mod.model.layers.1.mlp.up.weight", "model.layers.1.mlp.up.weight"),
        ("base_model.model.encoder.q.base_layer.weight", "encoder.q.weight"),
        ("_fsdp_wrapped_module.h.0.attn.weight", "h.0.attn.weight"),
    ],
)
def test_wrapper_components_are_dropped(wrapped, plain):
    assert canonical_name(wrapped) == plain


def test_match_names_maps_across_a_task_head_prefix_and_checks_shapes():
    source = {"encoder.q.weight": (4, 4), "encoder.k.weight": (4, 4)}
    target = {"bert.encoder.q.weight": (4, 4), "bert.encoder.k.weight": (4, 4), "classifier.weight": (2, 4)}
    assert match_names(source, target) == {
        "encoder.q.weight": "bert.encoder.q.weight",
        "encoder.k.weight": "bert.encoder.k.weight",
    }
    with pytest.raises(MaskMismatchError, match="shape mismatch"):
        match_names({"encoder.q.weight": (4, 8)}, target)
    with pytest.raises(MaskMismatchError, match=r"closest: \['bert.encoder.q.weight'"):
        match_names({"bert.encoder.qq.weight": (4, 4)}, target)
    with pytest.raises(MaskMismatchError, match="ambiguous"):
        match_names({"weight": (4, 4)}, target)
