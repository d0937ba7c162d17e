"""Counting 16-bit keys (out of core): the exact threshold in one pass, on worker threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from es_plugins.masks import key_counts, select, workers
from es_plugins.masks.select import keep_largest_masks
from es_plugins.masks.workers import ChunkWorkers, ThreadBuffers, chunk_workers
from es_plugins.methods.magnitude import magnitude_score


def test_the_counted_threshold_is_the_kth_smallest_key_and_its_tie_budget():
    keys = np.random.default_rng(0).integers(-3, 40, 5000).astype(np.int16)  # heavy ties, some negative
    counts = np.bincount(keys.astype(np.int64) + key_counts.OFFSET, minlength=key_counts.KEY_VALUES)
    assert np.array_equal(key_counts.histogram(keys), counts)  # the 16-bit count, back in signed order
    ranked = np.sort(keys)
    for k in (1, 2, 777, 2500, 4999, 5000):
        t, ties = key_counts.counted_threshold(counts, k)
        assert t == ranked[k - 1]
        assert ties == k - int((keys < t).sum()) and 0 < ties <= int((keys == t).sum())
    with pytest.raises(ValueError, match="k must be in"):
        key_counts.counted_threshold(counts, 5001)


def test_inside_the_bracket_keys_are_counted_and_floats_partitioned_to_the_same_threshold():
    """The in-memory search's last step: int16 keys take the counting path, float scores the
    partition; both give the rank-th smallest and its tie budget, whatever the ties."""
    keys = np.random.default_rng(1).integers(-1, 12, 3000).astype(np.int16)  # -1: pruned by an earlier mask
    ranked = np.sort(keys)
    for rank in (1, 400, 1500, 2999, 3000):
        for values in (keys, keys.astype(np.float32)):
            t, ties = select.threshold_in_bracket(values, rank)
            assert t == ranked[rank - 1]
            assert ties == rank - int((keys < t).sum()) and 0 < ties <= int((keys == t).sum())


def test_a_chunk_with_negative_keys_is_counted_on_all_16_bits():
    keys = torch.tensor([-1, -1, 0, 5, 32767, -32768], dtype=torch.int16)
    counts = key_counts._chunk_counts(lambda a, b, out: out.copy_(keys[a:b]), 0, 6, ThreadBuffers())
    assert counts.sum() == 6
    assert counts[key_counts.OFFSET - 1] == 2 and counts[0] == 1 and counts[-1] == 1
    assert counts[key_counts.OFFSET] == 1 and counts[key_counts.OFFSET + 5] == 1


def heavy_ties(generator: torch.Generator) -> list[torch.Tensor]:
    """bf16 weights whose magnitudes share few values: the tie budget spans several tensors."""
    return [(torch.randn(n, generator=generator) * 1e-2).round(decimals=3).bfloat16() for n in (5000, 3001, 4096)]


@pytest.mark.parametrize("threads", [1, 2])
def test_under_a_gather_bound_16_bit_keys_are_counted_once_to_the_unbounded_masks(monkeypatch, threads):
    """Out of core (a gather bound), bf16 magnitudes are counted in one pass, on every worker
    thread, and never narrowed nor gathered; the masks are those of the in-memory search."""
    monkeypatch.setattr(select, "CHUNK", 257)  # many chunks per tensor, on several threads
    weights = heavy_ties(torch.Generator().manual_seed(1))
    scores = [magnitude_score(w) for w in weights]
    numels = [w.numel() for w in weights]
    calls = {"counts": 0, "search": 0}
    counting, searching = key_counts.key_counts, select._search
    monkeypatch.setattr(key_counts, "key_counts", lambda *a: calls.update(counts=calls["counts"] + 1) or counting(*a))
    monkeypatch.setattr(select, "_search", lambda *a: calls.update(search=calls["search"] + 1) or searching(*a))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for k in (1, 4000, 6049, 12096):
            free = keep_largest_masks(scores, numels, k)
            with select.bounded_gather(4096):
                bounded = keep_largest_masks(scores, numels, k)
            assert all(torch.equal(a, b) for a, b in zip(free, bounded))
            assert sum(int((~m).sum()) for m in bounded) == k
    finally:
        torch.set_num_threads(previous)
    assert calls == {"counts": 4, "search": 4}  # each bounded run counted; only the free runs searched


def test_a_non_finite_key_is_refused_with_its_tensor_before_any_mask():
    weights = heavy_ties(torch.Generator().manual_seed(2))
    weights[2][100] = float("nan")
    with select.bounded_gather(4096), pytest.raises(select.NonFiniteScoreError) as info:
        keep_largest_masks([magnitude_score(w) for w in weights], [w.numel() for w in weights], 5000)
    assert info.value.index == 2


def test_chunk_workers_return_results_in_chunk_order_with_a_buffer_per_thread():
    buffers = ThreadBuffers()
    seen: dict[int, int] = {}

    def work(start: int, stop: int) -> tuple[int, int]:
        buffer = buffers.get(stop - start, torch.int16)
        seen[threading.get_ident()] = buffer.data_ptr()
        return start, stop

    pool = ChunkWorkers(2)
    try:
        assert pool.map(work, 1000, 64) == [(a, min(a + 64, 1000)) for a in range(0, 1000, 64)]
    finally:
        pool.close()
    assert len(set(seen.values())) == len(seen)  # no two threads shared a buffer
    assert ChunkWorkers(1).map(work, 10, 4) == [(0, 4), (4, 8), (8, 10)]


def test_imap_reads_results_in_order_submits_a_bounded_number_ahead_and_cancels_the_rest():
    consumed = []

    def items():
        for item in range(100):
            consumed.append(item)
            yield item

    def slow_reversed(item: int) -> int:
        time.sleep(0.001 * (item % 3))  # later items may finish first
        return item * item

    with chunk_workers(2) as pool:
        results = pool.imap(slow_reversed, items())
        assert next(results) == 0
        assert len(consumed) == workers.AHEAD * 2  # lazily: only the items submitted ahead
        assert list(results) == [i * i for i in range(1, 100)]
        started = []
        stopped_early = pool.imap(lambda item: started.append(item) or time.sleep(0.01), range(100))
        next(stopped_early)
        stopped_early.close()  # the reader stops: what has not started is cancelled
    assert len(started) < 100
    assert list(ChunkWorkers(1).imap(lambda item: -item, range(3))) == [0, -1, -2]  # one worker: inline
