"""Perplexity: exp of the mean next-token negative log-likelihood."""

from __future__ import annotations

import math

import pytest
import torch

from es_plugins.analysis.evaluation import perplexity
from tests.conftest import make_tiny_gpt2


def test_perplexity_matches_the_model_loss_and_batches_do_not_matter():
    model = make_tiny_gpt2()
    blocks = torch.randint(0, 99, (4, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss = model(input_ids=blocks, labels=blocks).loss  # mean over the same shifted tokens
    assert perplexity(model, blocks, batch_size=1) == pytest.approx(math.exp(float(loss)), rel=1e-4)
    assert perplexity(model, blocks, batch_size=4) == pytest.approx(perplexity(model, blocks, batch_size=3), rel=1e-5)
