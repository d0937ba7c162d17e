"""Zeroing pruned weights through their bits equals the float product, bit for bit."""

from __future__ import annotations

import pytest
import torch

from es_plugins.masks.apply import zeroed

SAME_WIDTH_INT = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_zeroed_equals_the_product_bit_for_bit_signed_zeros_included(dtype):
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(37, 53, generator=generator).to(dtype)
    values[0, :4] = torch.tensor([0.0, -0.0, 1e-30, -1e-30]).to(dtype)  # zeros and subnormal-ish values
    keep = torch.rand(37, 53, generator=generator) > 0.5
    got, want = zeroed(values, keep), values * keep
    assert got.dtype == dtype and got.shape == values.shape
    if dtype in SAME_WIDTH_INT:  # the integer path: compare the bits, so -0.0 vs +0.0 would fail
        assert torch.equal(got.view(SAME_WIDTH_INT[dtype]), want.view(SAME_WIDTH_INT[dtype]))
        assert bool(torch.signbit(got[~keep & (values < 0)]).all())  # pruned negatives are -0.0
    assert torch.equal(got, want)
    assert torch.equal(values, values.clone())  # the input is not modified


def test_zeroed_refuses_a_mask_of_another_shape():
    with pytest.raises(ValueError, match="shape"):
        zeroed(torch.ones(4, 4), torch.ones(16, dtype=torch.bool))


def test_zeroed_writes_into_out_and_returns_it():
    values = torch.randn(8, 16).bfloat16()
    keep = torch.rand(8, 16) > 0.5
    out = torch.full((8, 16), 7.0, dtype=torch.bfloat16)
    assert zeroed(values, keep, out=out) is out
    assert torch.equal(out.view(torch.int16), (values * keep).view(torch.int16))
    with pytest.raises(ValueError, match="contiguous"):
        zeroed(values, keep, out=torch.empty(8, 16))  # float32 out for bf16 values
