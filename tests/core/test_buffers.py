"""Prefaulted result buffers behave like any bool tensor: they outlive their creator's
references, pickle, copy and save, and free their mapping with the tensor."""

from __future__ import annotations

import copy
import gc
import io
import mmap
import pickle

import pytest
import torch

from es_plugins.masks import buffers


@pytest.mark.parametrize("numel", [10, buffers.PREFAULT_MIN_BYTES + 3])
def test_a_prefaulted_buffer_is_a_writable_bool_tensor_that_outlives_its_mapping_reference(numel):
    mask = buffers.prefaulted_bools(numel)
    mask.numpy()[:] = True
    mask[::7] = False
    gc.collect()  # only the tensor holds the mapping now
    assert mask.dtype == torch.bool and mask.shape == (numel,)
    assert int((~mask).sum()) == len(range(0, numel, 7))
    expected = mask.clone()
    assert torch.equal(pickle.loads(pickle.dumps(mask)), expected)
    assert torch.equal(copy.deepcopy(mask), expected)
    saved = io.BytesIO()
    torch.save({"m": mask.view(-1, 1)}, saved)
    saved.seek(0)
    assert torch.equal(torch.load(saved)["m"].view(-1), expected)


@pytest.mark.skipif(not hasattr(mmap, "MAP_POPULATE"), reason="MAP_POPULATE is Linux only")
def test_large_buffers_are_their_own_mappings_and_small_ones_come_from_the_allocator():
    large = buffers.prefaulted_bools(buffers.PREFAULT_MIN_BYTES)
    small = buffers.prefaulted_bools(buffers.PREFAULT_MIN_BYTES - 1)
    start = large.data_ptr()
    assert start % 4096 == 0  # page aligned: a mapping of its own
    ranges = [line.split()[0].split("-") for line in open("/proc/self/maps")]
    assert any(int(a, 16) == start and int(b, 16) - int(a, 16) >= large.numel() for a, b in ranges)
    assert small.numel() == buffers.PREFAULT_MIN_BYTES - 1


def test_global_omp_masks_of_large_layers_come_prefaulted_and_match_the_reference():
    from es_plugins import OMPConfig
    from es_plugins.masks.targets import TargetSpec, resolve_targets
    from es_plugins.methods import compute_masks

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1100), torch.nn.Linear(1100, 64))
    masks = compute_masks(resolve_targets(model, TargetSpec(include=r".*")), OMPConfig(0.5))
    weights = [model[0].weight, model[1].weight]
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights])
    k = round(0.5 * flat.numel())
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:k]] = False
    assert torch.equal(torch.cat([masks["0.weight"].reshape(-1), masks["1.weight"].reshape(-1)]), keep)
