"""Framework-free evaluations used by sweeps: perplexity of a causal LM on token blocks."""

from __future__ import annotations

import torch
from torch import nn

from .noise import Measurement

# Tokens per bootstrap unit: a window's next-token losses are split into chunks this long, so a
# few windows still give the bootstrap enough units (neighbouring tokens are correlated, so
# single tokens would understate the noise).
CHUNK_TOKENS = 128


@torch.no_grad()
def perplexity_measurement(
    model: nn.Module, blocks: torch.Tensor, batch_size: int = 2, chunk: int = CHUNK_TOKENS
) -> Measurement:
    """Perplexity over ``blocks`` ``[n, seq_len]`` with its evidence: the summed next-token
    negative log-likelihood and the token count of each ``chunk``-token piece of each window.

    Any model whose forward takes ``input_ids`` and returns ``.logits`` works (HF causal LMs).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: list[float] = []
    counts: list[float] = []
    try:
        for start in range(0, blocks.shape[0], batch_size):
            batch = blocks[start : start + batch_size].to(device)
            logits = model(input_ids=batch).logits[:, :-1].float()
            nll = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="none"
            ).reshape(batch.shape[0], -1)
            pieces = nll.double().split(chunk, dim=1)
            for row in range(batch.shape[0]):
                for piece in pieces:
                    sums.append(float(piece[row].sum()))
                    counts.append(float(piece.shape[1]))
    finally:
        model.train(was_training)
    return Measurement(tuple(sums), tuple(counts), transform="exp", unit="tokens")


def perplexity(model: nn.Module, blocks: torch.Tensor, batch_size: int = 2) -> float:
    """exp(mean next-token negative log-likelihood) over ``blocks`` ``[n, seq_len]``.

    Returns ``nan`` if the loss is not finite, so callers can flag it instead of plotting it.
    """
    return perplexity_measurement(model, blocks, batch_size).value
