"""Zeroing pruned weights through their bits: ``values * keep`` without float arithmetic."""

from __future__ import annotations

import numpy as np
import torch

# element width -> (torch int type, NumPy int type, all bits but the sign, the sign bit alone)
_SAME_WIDTH = {2: (torch.int16, np.int16, 0x7FFF, -0x8000), 4: (torch.int32, np.int32, 0x7FFFFFFF, -0x80000000)}


def zeroed(values: torch.Tensor, keep: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``values * keep`` as a new tensor (or into ``out``, of the same dtype and shape), bit for
    bit for finite values (a pruned negative weight becomes -0.0, as the product gives).

    Why: for CPU floats of 2 or 4 bytes it is one integer AND with a per-weight bit mask
    (sign bit always kept, the rest kept where ``keep``), much faster than torch's bf16 x bool
    product on CPU; out of core this runs once for every weight of the checkpoint. Other
    devices and dtypes use the product."""
    width = values.element_size()
    if tuple(keep.shape) != tuple(values.shape) or (out is not None and out.shape != values.shape):
        raise ValueError(f"keep has shape {tuple(keep.shape)}, values {tuple(values.shape)}")
    if out is not None and (out.dtype != values.dtype or not out.is_contiguous()):
        raise ValueError(f"out must be a contiguous {values.dtype} tensor, got {out.dtype}")
    if values.device.type != "cpu" or not values.is_floating_point() or width not in _SAME_WIDTH:
        return torch.mul(values, keep, out=out) if out is not None else values * keep
    torch_int, np_int, magnitude_bits, sign_bit = _SAME_WIDTH[width]
    bits = values.detach().contiguous().view(torch_int).reshape(-1).numpy()
    kept = keep.detach().to("cpu", torch.bool).contiguous().reshape(-1).numpy().view(np.uint8)
    result = out if out is not None else torch.empty_like(values, memory_format=torch.contiguous_format)
    target = result.view(torch_int).reshape(-1).numpy()
    np.multiply(kept, magnitude_bits, out=target, dtype=np_int)  # all bits but the sign where kept
    np.bitwise_or(target, sign_bit, out=target)  # the sign bit always survives: -0.0, as w * 0
    np.bitwise_and(target, bits, out=target)
    return result
