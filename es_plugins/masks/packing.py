"""Bit-packing of bool masks: 1 bit per weight on disk instead of 1 byte."""

from __future__ import annotations

import numpy as np
import torch


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Pack a bool tensor into uint8 (little bit order, flattened)."""
    flat = mask.detach().to("cpu", torch.bool).reshape(-1).numpy()
    return torch.from_numpy(np.packbits(flat, bitorder="little"))


def unpack_mask(packed: torch.Tensor, shape: tuple[int, ...] | list[int]) -> torch.Tensor:
    """Inverse of :func:`pack_mask` for a mask of ``shape``."""
    count = int(np.prod(shape)) if len(shape) else 1
    expected = (count + 7) // 8
    if packed.numel() != expected:
        raise ValueError(f"packed mask has {packed.numel()} bytes, expected {expected} for shape {tuple(shape)}")
    bits = np.unpackbits(packed.numpy(), count=count, bitorder="little").astype(bool)
    return torch.from_numpy(bits).reshape(tuple(shape))
