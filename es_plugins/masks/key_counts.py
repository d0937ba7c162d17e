"""The exact k-th smallest of 16-bit integer keys by counting them: one pass, no sample.

Why: a 16-bit key (the bits of a bf16/fp16 magnitude without the sign, see
:class:`es_plugins.masks.select.KeyFormat`) takes one of 65,536 values, so a histogram of every
key gives the threshold and its ties exactly, in one pass and 512 KiB of counts whatever the
model size. The sampled bracket of :mod:`.select` is cheaper per weight in memory, but out of
core its bracket must fit a bounded gather: bf16 magnitudes pile up on a few keys (one key
near the median holds ~0.2 % of the weights), so the bracket overflowed the bound and every
narrowing cost another read of the checkpoint. Counting reads it once, on every worker thread.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import NonFiniteScoreError
from .workers import ChunkWorkers, ThreadBuffers

# A key function, as :mod:`.select` calls it: ``keys(start, stop, out)`` writes the int16 keys of
# flat range [start, stop) into ``out`` and returns them; ``keys.key_format`` describes them.
KeyFn = Callable[[int, int, torch.Tensor], torch.Tensor]

KEY_VALUES = 1 << 16  # int16 keys, -32768..32767, counted at index key + OFFSET
OFFSET = 1 << 15
# A signed key's histogram index from its unsigned bits: the sign bit flipped.
_SIGNED_ORDER = np.arange(KEY_VALUES) ^ OFFSET


def histogram(keys: np.ndarray) -> np.ndarray:
    """How many of ``keys`` (int16, any sign) take each value (int64, index = key + OFFSET):
    all 16 bits counted as unsigned, then put back in signed order."""
    return np.bincount(keys.view(np.uint16), minlength=KEY_VALUES)[_SIGNED_ORDER]


def _chunk_counts(score_fn: KeyFn, start: int, stop: int, buffers: ThreadBuffers) -> np.ndarray:
    """How many keys of flat range ``[start, stop)`` take each value (index = key + OFFSET)."""
    keys = score_fn(start, stop, buffers.get(stop - start, torch.int16))
    try:  # keys of weights are >= 0; torch's bincount is ~2x NumPy's on int16 here
        positive = torch.bincount(keys, minlength=OFFSET).numpy()
    except RuntimeError:  # negative keys (weights an earlier mask pruned score -1): count all 16 bits
        return histogram(keys.numpy())
    counts = np.zeros(KEY_VALUES, dtype=np.int64)
    counts[OFFSET:] = positive
    return counts


def key_counts(
    scores: Sequence[KeyFn], numels: Sequence[int], workers: ChunkWorkers, chunk: int, progress: Callable = iter
) -> np.ndarray:
    """The histogram of every key of every tensor (int64, index = key + OFFSET), counted in
    chunks of ``chunk`` keys on the workers.

    Raises:
        NonFiniteScoreError: the first tensor holding a key of a NaN or an infinity."""
    finite_below = scores[0].key_format.finite_below  # type: ignore[attr-defined]
    buffers = ThreadBuffers()
    total = np.zeros(KEY_VALUES, dtype=np.int64)
    for index in progress(range(len(scores))):
        parts = workers.map(functools.partial(_chunk_counts, scores[index], buffers=buffers), numels[index], chunk)
        counts = np.sum(parts, axis=0) if parts else np.zeros(KEY_VALUES, dtype=np.int64)
        if counts[OFFSET + finite_below :].any():
            raise NonFiniteScoreError(index)
        total += counts
    return total


def counted_threshold(counts: np.ndarray, k: int) -> tuple[int, int]:
    """``(t, ties)``: the k-th smallest key ``t`` of histogram ``counts``, and how many keys equal
    to ``t`` are pruned (in tensor, flat index order) so that exactly ``k`` are."""
    cumulative = np.cumsum(counts)
    if not 0 < k <= int(cumulative[-1]):
        raise ValueError(f"k must be in (0, {int(cumulative[-1])}], got {k}")
    index = int(np.searchsorted(cumulative, k))  # the first key whose count reaches k
    below = int(cumulative[index - 1]) if index else 0
    return index - OFFSET, k - below
