"""SparsityState: in-place application, no regrowth under training, I/O and validation."""

from __future__ import annotations

import pytest
import torch

from es_plugins import MaskMismatchError, OMPConfig, SparsityPlan, SparsityState, sparsify_
from es_plugins.masks.state import MASKS_FILENAME


def train_steps(model, optimizer, steps: int, accumulate: int = 1, scaler=None) -> None:
    gen = torch.Generator().manual_seed(0)
    for step in range(steps * accumulate):
        ids = torch.randint(0, 50, (4, 6), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=scaler is not None):
            loss = model(ids).float().pow(2).mean()
        (scaler.scale(loss) if scaler else loss).backward()
        if (step + 1) % accumulate == 0:
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            optimizer.zero_grad()


def pruned_nonzeros(model, state) -> int:
    return state.count_nonzero_pruned(model)


def test_apply_is_in_place_and_keeps_keys(tiny_blocks):
    keys = list(tiny_blocks.state_dict())
    param_ids = [id(p) for p in tiny_blocks.parameters()]
    state = sparsify_(tiny_blocks, SparsityPlan(OMPConfig(0.6)))
    assert list(tiny_blocks.state_dict()) == keys
    assert [id(p) for p in tiny_blocks.parameters()] == param_ids
    assert not tiny_blocks._forward_pre_hooks and not any(m._forward_pre_hooks for m in tiny_blocks.modules())
    assert pruned_nonzeros(tiny_blocks, state) == 0


def test_without_enforcement_adamw_regrows(tiny_blocks):
    state = sparsify_(tiny_blocks, SparsityPlan(OMPConfig(0.5)))
    optimizer = torch.optim.AdamW(tiny_blocks.parameters(), lr=1e-2, weight_decay=0.1)
    train_steps(tiny_blocks, optimizer, 3)
    assert pruned_nonzeros(tiny_blocks, state) > 0  # the failure mode enforcement prevents


@pytest.mark.parametrize("mask_gradients", [False, True])
@pytest.mark.parametrize("accumulate", [1, 3])
def test_no_regrowth_adamw_weight_decay(tiny_blocks, mask_gradients, accumulate):
    state = sparsify_(tiny_blocks, SparsityPlan(OMPConfig(0.5)))
    optimizer = torch.optim.AdamW(tiny_blocks.parameters(), lr=1e-2, weight_decay=0.1)
    state.attach(tiny_blocks, optimizer, mask_gradients=mask_gradients)
    before = {n: p.detach().clone() for n, p in tiny_blocks.named_parameters()}
    train_steps(tiny_blocks, optimizer, 4, accumulate=accumulate)
    assert pruned_nonzeros(tiny_blocks, state) == 0
    assert state.sparsity == pytest.approx(0.5, abs=1e-3)
    changed = [n for n, p in tiny_blocks.named_parameters() if not torch.equal(p, before[n])]
    assert changed, "training must actually update weights"
    if mask_gradients:
        params = dict(tiny_blocks.named_parameters())
        for name, mask in state.masks.items():
            exp_avg = optimizer.state[params[name]]["exp_avg"]
            assert int((exp_avg[~mask] != 0).sum()) == 0


def test_no_regrowth_momentum_sgd_and_amp_scaler(tiny_blocks):
    state = sparsify_(tiny_blocks, SparsityPlan(OMPConfig(0.5, scope="layer")))
    optimizer = torch.optim.SGD(tiny_blocks.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    state.attach(tiny_blocks, optimizer)
    scaler = torch.amp.GradScaler("cpu")
    train_steps(tiny_blocks, optimizer, 3, scaler=scaler)
    assert pruned_nonzeros(tiny_blocks, state) == 0


def test_handle_remove_and_finalize_detach_hooks(tiny_blocks):
    state = sparsify_(tiny_blocks, SparsityPlan(OMPConfig(0.5)))
    optimizer = torch.optim.AdamW(tiny_blocks.parameters(), lr=1e-2, weight_decay=0.1)
    state.attach(tiny_blocks, optimizer, mask_gradients=True)
    assert optimizer._optimizer_step_post_hooks and optimizer._optimizer_step_pre_hooks
    keys = list(tiny_blocks.state_dict())
    state.finalize(tiny_blocks)
    assert not optimizer._optimizer_step_post_hooks and not optimizer._optimizer_step_pre_hooks
    assert list(tiny_blocks.state_dict()) == keys
    train_steps(tiny_blocks, optimizer, 2)
    assert pruned_nonzeros(tiny_blocks, state) > 0  # hooks really are gone


def test_save_load_round_trip_is_bit_packed(tmp_path, tiny_bert):
    state = sparsify_(tiny_bert, SparsityPlan(OMPConfig(0.3)))
    state.meta["step"] = 7
    path = state.save(tmp_path / MASKS_FILENAME)
    loaded = SparsityState.load(path, tiny_bert)
    assert loaded.masks.keys() == state.masks.keys()
    assert all(torch.equal(loaded.masks[n], state.masks[n]) for n in state.masks)
    assert loaded.meta["step"] == 7 and loaded.meta["plan"]["method"]["sparsity"] == 0.3
    # one bit per weight, plus a header: metadata and, per mask, its record (~150 bytes of JSON)
    assert path.stat().st_size < state.num_weights / 8 + 4096 + 150 * len(state.masks)


def test_state_dict_round_trip(tiny_blocks):
    state = sparsify_(tiny_blocks, SparsityPlan(OMPConfig(0.25)))
    other = SparsityState({})
    other.load_state_dict(state.state_dict())
    assert all(torch.equal(other.masks[n], state.masks[n]) for n in state.masks)


def test_load_rejects_mismatched_model(tmp_path, tiny_bert, tiny_gpt2):
    path = sparsify_(tiny_bert, SparsityPlan(OMPConfig(0.3))).save(tmp_path / "m.safetensors")
    with pytest.raises(MaskMismatchError, match="names not in the model"):
        SparsityState.load(path, tiny_gpt2)
    bigger = type(tiny_bert)(tiny_bert.config.__class__(**{**tiny_bert.config.to_dict(), "intermediate_size": 128}))
    with pytest.raises(
        MaskMismatchError, match=r"shape mismatch: .*intermediate\.dense\.weight: mask \(64, 32\) vs weight \(128, 32\)"
    ):
        SparsityState.load(path, bigger)


def test_validate_reports_missing_targets(tiny_blocks):
    state = SparsityState({"blocks.0.up.weight": torch.ones(32, 16, dtype=torch.bool)})
    with pytest.raises(MaskMismatchError, match=r"targets without a mask: \['blocks.1.up.weight'\]"):
        state.validate(tiny_blocks, expected=["blocks.0.up.weight", "blocks.1.up.weight"])


def test_load_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(MaskMismatchError, match="not an es-plugins masks file"):
        SparsityState.load(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(MaskMismatchError, match="not a safetensors masks file"):
        SparsityState.load(junk)
    with pytest.raises(MaskMismatchError, match="does not exist"):
        SparsityState.load(tmp_path / "missing.safetensors")


def test_masks_must_be_bool():
    with pytest.raises(TypeError, match="bool"):
        SparsityState({"w": torch.ones(2)})
