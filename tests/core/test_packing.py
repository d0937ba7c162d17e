"""Bit packing of masks: 8 weights per byte, exact round trip for any shape."""

from __future__ import annotations

import pytest
import torch

from es_plugins.masks.packing import pack_mask, unpack_mask


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 9)])
def test_round_trip_any_shape(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(0)) > 0.5
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-mask.numel() // 8)
    assert torch.equal(unpack_mask(packed, list(shape)), mask)
