"""Hugging Face Trainer adapters: a sparsity callback, a near-zero-weight monitor and a
lottery-ticket runner. They translate Trainer events into :mod:`es_plugins` core calls.

Example:
    >>> from transformers import Trainer
    >>> from es_plugins.integrations.transformers import SparsityCallback
    >>> trainer = Trainer(model=model, args=args, train_dataset=ds,
    ...                   callbacks=[SparsityCallback("omp", sparsity=0.4)])  # doctest: +SKIP
"""

from __future__ import annotations

from ._hf_callbacks import SparsityCallback
from ._hf_events import add_callback_first, move_before_reporters
from ._hf_lottery import LotteryTicketRunner
from ._hf_monitor import NearZeroMonitor

__all__ = ["LotteryTicketRunner", "NearZeroMonitor", "SparsityCallback", "add_callback_first", "move_before_reporters"]
