"""Framework-free evaluations used by sweeps: perplexity of a causal LM on token blocks."""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def perplexity(model: nn.Module, blocks: torch.Tensor, batch_size: int = 2) -> float:
    """exp(mean next-token negative log-likelihood) over ``blocks`` ``[n, seq_len]``.

    Any model whose forward takes ``input_ids`` and returns ``.logits`` works (HF causal LMs).
    Returns ``nan`` if the loss is not finite, so callers can flag it instead of plotting it.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    try:
        for start in range(0, blocks.shape[0], batch_size):
            batch = blocks[start : start + batch_size].to(device)
            logits = model(input_ids=batch).logits[:, :-1].float()
            nll = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
            )
            total_nll += float(nll)
            total_tokens += batch[:, 1:].numel()
    finally:
        model.train(was_training)
    mean = total_nll / total_tokens
    return math.exp(min(mean, 709.0)) if math.isfinite(mean) else float("nan")
