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
from es_plugins.analysis.sweep import SweepConfig
from es_plugins.export.verified import ExportOptions


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


def _meta_model() -> torch.nn.Module:
    with torch.device("meta"):
        return torch.nn.Sequential(torch.nn.Linear(8, 8))


def _int8_model() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    model[0].weight = torch.nn.Parameter(torch.ones(8, 8, dtype=torch.int8), requires_grad=False)
    return model


# each row: a bad value through the API -> the typed error and the words it must contain
VALUES = {
    "sparsity as a string": (
        lambda: OMPConfig(sparsity="0.5"),
        SparsityConfigError,
        r"sparsity must be a number .*str",
    ),
    "sparsity as a bool": (lambda: OMPConfig(sparsity=True), SparsityConfigError, r"sparsity must be a number .*bool"),
    "seed beyond torch's range": (lambda: RandomConfig(seed=2**70), SparsityConfigError, r"seed must be .*2\*\*63"),
    "sweep levels as strings": (lambda: SweepConfig(levels=("0.5",)), SparsityConfigError, r"levels must be a number"),
    "an empty sweep grid": (lambda: SweepConfig(levels=()), SparsityConfigError, r"levels must be a non-empty list"),
    "seeds as bools": (lambda: SweepConfig(seeds=(True,)), SparsityConfigError, r"seeds must be .* integers"),
    "higher_is_better as a word": (
        lambda: SweepConfig(higher_is_better="no"),
        SparsityConfigError,
        r"higher_is_better must be True or False",
    ),
    "int8 weights": (lambda: sparsify_(_int8_model(), OMPConfig(0.5)), SparsityConfigError, r"dtype torch.int8"),
    "a meta-device model": (lambda: sparsify_(_meta_model(), OMPConfig(0.5)), SparsityConfigError, r"meta device"),
    "masks path None": (lambda: SparsityState.load(None), MaskMismatchError, r"must be a path .* got NoneType"),
    "opset beyond the exporter": (lambda: ExportOptions(opset=999), SparsityConfigError, r"opset must be in \[14, "),
}


@pytest.mark.parametrize("case", list(VALUES))
def test_bad_api_values_are_typed_errors(case):
    call, error, words = VALUES[case]
    with pytest.raises(error, match=words):
        call()
