"""Input statistics of one Linear/Conv1D during calibration, accumulated in float32."""

from __future__ import annotations

import torch

from ..targets import Target


class InputStats:
    """Accumulates, from a forward hook, the column squared norms (Wanda) and optionally the
    Hessian ``sum x x^T`` (SparseGPT) of a layer's inputs, in float32 whatever the dtype."""

    def __init__(self, target: Target, hessian: bool):
        width = target.param.shape[target.in_axis]
        self.sq_norms = torch.zeros(width, dtype=torch.float32)
        self.hessian = torch.zeros(width, width, dtype=torch.float32) if hessian else None
        self.rows = 0

    def hook(self, module, inputs, output) -> None:
        x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float().cpu()
        self.sq_norms += (x * x).sum(dim=0)
        if self.hessian is not None:
            self.hessian.addmm_(x.t(), x)
        self.rows += x.shape[0]
