"""The one masks-file writer: the bytes SparsityState.save and the out-of-core paths write."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from es_plugins import SparsityState
from es_plugins.engines.outofcore import ShardedCheckpoint, files
from es_plugins.errors import CheckpointError
from es_plugins.masks import masks_file
from es_plugins.masks.masks_file import MasksFileWriter


def _partial_pwrites(monkeypatch) -> list[int]:
    """Make every pwrite move at most 1 KiB, as Linux caps one call at ~2 GiB."""
    real, sizes = masks_file.os.pwrite, []

    def pwrite(fd, data, offset):
        sizes.append(min(len(data), 1024))
        return real(fd, data[:1024], offset)

    monkeypatch.setattr(masks_file.os, "pwrite", pwrite)
    return sizes


def test_a_tensor_is_written_whole_when_pwrite_writes_part_of_it(tmp_path, monkeypatch):
    value = torch.arange(1000, dtype=torch.float32)
    save_file({"w": torch.zeros(1000)}, str(tmp_path / "model.safetensors"))
    entry = ShardedCheckpoint(tmp_path).entries["w"]
    sizes = _partial_pwrites(monkeypatch)
    files.write_tensor_in_place(entry, tmp_path, value)
    assert len(sizes) == 4 and torch.equal(ShardedCheckpoint(tmp_path).tensor("w"), value)


def test_a_mask_is_written_whole_when_pwrite_writes_part_of_it(tmp_path, monkeypatch):
    keep = torch.rand(300, 100, generator=torch.Generator().manual_seed(0)) > 0.5  # 3,750 packed bytes
    sizes = _partial_pwrites(monkeypatch)
    SparsityState({"layer.weight": keep}).save(tmp_path / "m.safetensors")
    assert max(sizes) == 1024 and torch.equal(
        SparsityState.load(tmp_path / "m.safetensors").masks["layer.weight"], keep
    )


def test_masks_written_one_at_a_time_equal_a_whole_save(tmp_path):
    masks = {f"b.{i}.weight": torch.rand(8, 16, generator=torch.Generator().manual_seed(i)) > 0.3 for i in range(3)}
    SparsityState(masks).save(tmp_path / "whole.safetensors")
    writer = MasksFileWriter(tmp_path / "streamed.safetensors", {n: tuple(m.shape) for n, m in masks.items()}, {})
    for name in reversed(list(masks)):  # any order: each mask has its slot
        writer.write(name, masks[name])
    writer.close()
    streamed = SparsityState.load(tmp_path / "streamed.safetensors")
    assert all(torch.equal(streamed.masks[n], masks[n]) for n in masks)
    assert (tmp_path / "whole.safetensors").read_bytes() == (tmp_path / "streamed.safetensors").read_bytes()


@pytest.mark.parametrize("numel", [0, 1, 7, 8, 9, 1000, 1003])
def test_the_kept_count_is_the_first_bits_in_unpacking_order_on_every_numpy(monkeypatch, numel):
    """The fast count (popcount of whole bytes) records what version-2 files always recorded:
    the first ``numel`` bits as ``np.unpackbits`` orders them."""
    packed = np.random.default_rng(numel).integers(0, 256, size=-(-numel // 8), dtype=np.uint8).tobytes()
    expected = int(np.unpackbits(np.frombuffer(packed, np.uint8), count=numel).sum()) if numel else 0
    assert masks_file.mask_record(packed, numel)[0] == expected
    monkeypatch.delattr(np, "bitwise_count", raising=False)  # NumPy 1.26: the table lookup
    assert masks_file.mask_record(packed, numel)[0] == expected


def test_a_tensor_slot_maps_exactly_its_bytes_and_refuses_a_slot_past_the_file(tmp_path):
    from dataclasses import replace

    save_file({"a": torch.zeros(3000), "w": torch.zeros(1000)}, str(tmp_path / "model.safetensors"))
    entry = ShardedCheckpoint(tmp_path).entries["w"]  # not at a page boundary: the map starts below it
    with files.tensor_slot(entry, tmp_path) as slot:
        assert slot.shape == (1000,) and slot.dtype == torch.float32
        slot.copy_(torch.arange(1000, dtype=torch.float32))
    reread = ShardedCheckpoint(tmp_path)
    assert torch.equal(reread.tensor("w"), torch.arange(1000, dtype=torch.float32))
    assert not reread.tensor("a").any()  # the neighbour is untouched
    size = (tmp_path / "model.safetensors").stat().st_size
    with pytest.raises(CheckpointError, match="outside"):
        with files.tensor_slot(replace(entry, start=size - 8, stop=size + 3992), tmp_path):
            pass
