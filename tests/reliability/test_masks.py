"""Mask bits are checked against what their file records: counts and digests written with them,
and the plan they claim. Each case states what was done to a masks file and what must happen.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from es_plugins import MaskMismatchError, NMConfig, OMPConfig, SparsityPlan, SparsityState, sparsify_
from es_plugins.cli import main as cli
from es_plugins.masks.state import MASKS_FILENAME
from tests.conftest import make_tiny_bert, make_tiny_gpt2, save_checkpoint


def _saved(tmp_path, config=None) -> tuple[SparsityState, object]:
    model = make_tiny_bert()
    state = sparsify_(model, SparsityPlan(config or OMPConfig(0.5)))
    return state, state.save(tmp_path / MASKS_FILENAME)


def _data_start(path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def _flip_bits(path, *positions: int) -> None:
    blob = bytearray(path.read_bytes())
    start = _data_start(path)
    for bit in positions:
        blob[start + bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(blob))


def test_a_flipped_bit_is_refused(tmp_path):
    state, path = _saved(tmp_path)
    _flip_bits(path, 3)
    with pytest.raises(MaskMismatchError, match=r"has \d[\d,]* kept weights where \d[\d,]* were written"):
        SparsityState.load(path)


def test_a_count_preserving_edit_is_caught_by_the_digest(tmp_path):
    state, path = _saved(tmp_path)
    bits = torch.from_numpy(np.unpackbits(np.frombuffer(path.read_bytes()[_data_start(path) :], "u1")))
    one, zero = int(bits.nonzero()[0]), int((bits == 0).nonzero()[0])  # a kept and a pruned bit of one mask
    _flip_bits(path, *(8 * (b // 8) + 7 - b % 8 for b in (one, zero)))  # unpackbits is big-endian per byte
    with pytest.raises(MaskMismatchError, match="the same count but other bits than were written"):
        SparsityState.load(path)


def _rewritten(tmp_path, keep_all: bool, config=None):
    """What a careless edit produces: the same plan and metadata, every bit set (or cleared),
    saved properly (so its integrity records agree with its bits)."""
    state, _ = _saved(tmp_path, config)
    bits = {n: torch.full_like(m, keep_all) for n, m in state.masks.items()}
    path = tmp_path / "edited.safetensors"
    SparsityState(bits, state.meta).save(path)
    return path


def test_an_all_keep_set_is_refused_where_the_plan_prunes(tmp_path):
    path = _rewritten(tmp_path, keep_all=True)
    with pytest.raises(MaskMismatchError, match=r"keep every weight, but their plan prunes 50.00%.*grow back"):
        SparsityState.load(path)


def test_an_all_prune_set_is_refused(tmp_path):
    path = _rewritten(tmp_path, keep_all=False)
    with pytest.raises(MaskMismatchError, match=r"prune all 16,384 target weights"):
        SparsityState.load(path)


def test_an_emptied_layer_is_refused_under_a_per_layer_plan_only(tmp_path):
    state, _ = _saved(tmp_path, NMConfig("2:4"))
    name = next(iter(state.masks))
    emptied = {**state.masks, name: torch.zeros_like(state.masks[name])}
    SparsityState(emptied, state.meta).save(tmp_path / "nm.safetensors")
    with pytest.raises(MaskMismatchError, match=rf"prune every weight of \['{name}'\].*\(nm, one quota per layer\)"):
        SparsityState.load(tmp_path / "nm.safetensors")
    # a global threshold may legitimately empty a layer: that file loads
    global_state, _ = _saved(tmp_path, OMPConfig(0.5))
    emptied = {**global_state.masks, name: torch.zeros_like(global_state.masks[name])}
    SparsityState(emptied, global_state.meta).save(tmp_path / "global.safetensors")
    assert not SparsityState.load(tmp_path / "global.safetensors").masks[name].any()


def test_a_masks_file_without_a_plan_keeps_only_the_integrity_checks(tmp_path):
    masks = {"w": torch.tensor([True, False, True, False])}
    SparsityState(masks).save(tmp_path / "bare.safetensors")
    assert torch.equal(SparsityState.load(tmp_path / "bare.safetensors").masks["w"], masks["w"])


def test_version_1_files_without_integrity_records_still_load(tmp_path):
    state, path = _saved(tmp_path)
    blob = path.read_bytes()
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    header["__metadata__"].pop("integrity")
    header["__metadata__"]["version"] = "1"
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + size :])
    assert SparsityState.load(path).num_pruned == state.num_pruned


def test_refine_masks_with_every_bit_cleared_is_an_error(tmp_path, capsys):
    src = save_checkpoint(make_tiny_gpt2(), tmp_path / "model")
    state = sparsify_(make_tiny_gpt2(), SparsityPlan(OMPConfig(0.5)))
    SparsityState({n: torch.zeros_like(m) for n, m in state.masks.items()}, state.meta).save(tmp_path / "zero.st")
    text = tmp_path / "calib.txt"
    text.write_text("the film was good " * 100)
    with pytest.raises(SystemExit) as exit_info:
        cli(
            [
                *("prune", "--model", str(src), str(tmp_path / "out"), "--method", "sparsegpt", "--calib", str(text)),
                *("--calib-seq-len", "16", "--refine-masks", str(tmp_path / "zero.st")),
            ]
        )
    assert exit_info.value.code == 2 and "the masks prune all" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_compare_masks_refuses_a_set_that_keeps_nothing_in_a_layer(tmp_path, capsys):
    state, path = _saved(tmp_path)
    name = next(iter(state.masks))
    emptied = {**state.masks, name: torch.zeros_like(state.masks[name])}
    SparsityState(emptied, state.meta).save(tmp_path / "b.safetensors")  # global plan: loads
    with pytest.raises(SystemExit) as exit_info:
        cli(["compare-masks", str(path), str(tmp_path / "b.safetensors")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"mask set B keeps no weight in 1 layer(s) ({name})" in err
    assert "nan" not in err
