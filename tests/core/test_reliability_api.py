"""Bad input through the Python API: a typed error naming the parameter, never a silent wrong model."""

from __future__ import annotations

import pytest
import torch

from es_plugins import (
    MaskMismatchError,
    OMPConfig,
    RandomConfig,
    Sparsifier,
    SparsityConfigError,
    SparsityPlan,
    SparsityState,
    WandaConfig,
    sparsify_,
)


def test_sparsify_accepts_a_bare_method_config(tiny_blocks):
    state = sparsify_(tiny_blocks, OMPConfig(0.5))
    assert state.sparsity == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        sparsify_("not a model", OMPConfig(0.5))


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_sparsity_that_rounds_to_every_weight_is_refused(tiny_blocks, scope):
    before = {n: p.detach().clone() for n, p in tiny_blocks.named_parameters()}
    with pytest.raises(SparsityConfigError, match=r"prunes all [\d,]+ of"):
        sparsify_(tiny_blocks, OMPConfig(0.999999, scope=scope))
    assert all(torch.equal(before[n], p) for n, p in tiny_blocks.named_parameters())


@pytest.mark.parametrize("seed", [True, -1, 1.5, "0"])
def test_random_config_refuses_non_integer_seeds(seed):
    with pytest.raises(SparsityConfigError, match="seed"):
        RandomConfig(seed=seed)


def test_calibration_ids_outside_the_vocabulary_are_refused(tiny_gpt2):
    plan = SparsityPlan(WandaConfig(0.5))
    with pytest.raises(SparsityConfigError, match=r"token ids must be in \[0, 99\).*another tokenizer"):
        sparsify_(tiny_gpt2, plan, calibration=torch.full((2, 8), 500))
    with pytest.raises(SparsityConfigError, match="integer token ids"):
        sparsify_(tiny_gpt2, plan, calibration=torch.rand(2, 8))
    with pytest.raises(SparsityConfigError, match="prunes all"):
        sparsify_(tiny_gpt2, SparsityPlan(WandaConfig(0.99999)), calibration=torch.randint(0, 99, (2, 8)))


def test_partial_masks_never_load_silently(tiny_blocks, tmp_path):
    state = sparsify_(tiny_blocks, OMPConfig(0.5))
    dropped = sorted(state.masks)[0]
    partial = SparsityState({n: m for n, m in state.masks.items() if n != dropped}, state.meta)
    partial.save(tmp_path / "partial.safetensors")
    # the file records its targets, so loading it against the model names what is missing
    with pytest.raises(MaskMismatchError, match=f"targets without a mask: \\['{dropped}'\\]"):
        SparsityState.load(tmp_path / "partial.safetensors", tiny_blocks)
    # a plan's targets must all be covered, even when the masks carry no record of theirs
    bare = SparsityState(dict(partial.masks))
    optimizer = torch.optim.SGD(tiny_blocks.parameters(), lr=0.1)
    with pytest.raises(MaskMismatchError, match="regrow"):
        Sparsifier(OMPConfig(0.5), state=bare).setup(tiny_blocks, optimizer)
    sparsifier = Sparsifier(OMPConfig(0.5))
    sparsifier.setup(tiny_blocks, optimizer)
    with pytest.raises(MaskMismatchError, match=dropped):
        sparsifier.load_state_dict(bare.state_dict())


@pytest.mark.parametrize(
    "broken",
    [
        {"packed": {"a": torch.zeros(2)}, "shapes": {"a": [4, 4]}},
        {"packed": {"a": torch.zeros(2, dtype=torch.uint8)}, "shapes": {"a": "4x4"}},
        {"packed": {"a": torch.zeros(2, dtype=torch.uint8)}},
        {"packed": {"a": torch.zeros(2, dtype=torch.uint8)}, "shapes": {"a": [4, 4]}, "meta": ["not", "a", "dict"]},
    ],
)
def test_corrupt_mask_states_raise_mask_errors(broken):
    with pytest.raises(MaskMismatchError):
        SparsityState.from_state_dict({"format": "es-plugins-masks", **broken})
