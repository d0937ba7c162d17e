"""Exactness of the global/per-layer "prune the k lowest" engine against a brute-force sort."""

from __future__ import annotations

import pytest
import torch

from es_plugins.masks import select
from es_plugins.masks.select import keep_largest_masks


@pytest.fixture(autouse=True, params=["all masks at once", "streamed"])
def mode(request):
    """Every test runs both ways of writing the masks: all at once from the gathering pass
    (memory unbounded, in memory), and one mask per tensor after the search (under a gather
    bound, out of core; a bound this high never narrows)."""
    if request.param == "streamed":
        with select.bounded_gather(10**12):
            yield request.param
    else:
        yield request.param


def reference_masks(tensors: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Prune the k lowest; ties broken by (tensor order, flat index) — a stable sort."""
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    order = torch.sort(flat, stable=True).indices
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[order[:k]] = False
    out, start = [], 0
    for t in tensors:
        out.append(keep[start : start + t.numel()].reshape(t.shape))
        start += t.numel()
    return out


def run(tensors, k):
    flats = [t.reshape(-1).float() for t in tensors]
    masks = keep_largest_masks([lambda a, b, out, f=f: out.copy_(f[a:b]) for f in flats], [f.numel() for f in flats], k)
    return [m.view(t.shape) for m, t in zip(masks, tensors)]


@pytest.mark.parametrize("chunk", [None, 97])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 0.5, 0.9, 0.999])
def test_matches_stable_sort_reference(monkeypatch, dtype, fraction, chunk):
    if chunk:
        monkeypatch.setattr(select, "CHUNK", chunk)  # ties and the threshold straddle chunk borders
    gen = torch.Generator().manual_seed(1)
    tensors = [torch.randn(shape, generator=gen).abs().to(dtype) for shape in [(64, 48), (200,), (33, 17, 3)]]
    total = sum(t.numel() for t in tensors)
    k = round(fraction * total)
    masks = run(tensors, k)
    assert sum(int((~m).sum()) for m in masks) == k
    for got, want in zip(masks, reference_masks(tensors, k)):
        assert torch.equal(got, want)


def test_bf16_ties_prune_exact_count_where_threshold_over_prunes():
    # bf16 has 8 mantissa bits: many magnitudes collide, like a real bf16 checkpoint.
    gen = torch.Generator().manual_seed(2)
    tensors = [torch.randn(512, 256, generator=gen).abs().bfloat16() for _ in range(3)]
    total = sum(t.numel() for t in tensors)
    k = total // 2
    threshold = torch.cat([t.reshape(-1).float() for t in tensors]).kthvalue(k).values
    naive = sum(int((t.float() <= threshold).sum()) for t in tensors)
    assert naive > k, "fixture should have ties at the threshold"
    masks = run(tensors, k)
    assert sum(int((~m).sum()) for m in masks) == k


def test_all_equal_scores_prune_in_tie_break_order(monkeypatch):
    monkeypatch.setattr(select, "CHUNK", 4)
    tensors = [torch.ones(10), torch.ones(10)]
    masks = run(tensors, 13)
    assert (~masks[0]).all() and int((~masks[1]).sum()) == 3
    assert torch.equal(masks[1], torch.tensor([False] * 3 + [True] * 7))


def test_k_zero_and_k_total():
    tensors = [torch.rand(5, 5)]
    assert run(tensors, 0)[0].all()
    assert not run(tensors, 25)[0].any()


@pytest.mark.parametrize("z", [0.0, -50.0])
def test_unlucky_bracket_is_widened_and_still_exact(monkeypatch, z):
    # z=0 makes the bracket almost empty; a negative z inverts it: both force the retry paths.
    monkeypatch.setattr(select, "_Z", z)
    monkeypatch.setattr(select, "_SAMPLE_SIZE", 64)
    monkeypatch.setattr(select, "CHUNK", 1000)  # ties and brackets straddle chunk borders
    gen = torch.Generator().manual_seed(3)
    tensors = [torch.rand(100, 100, generator=gen), torch.rand(3000, generator=gen)]
    total = sum(t.numel() for t in tensors)
    for k in (1, 777, total // 2, total - 1):
        for got, want in zip(run(tensors, k), reference_masks(tensors, k)):
            assert torch.equal(got, want)


def test_a_bounded_gather_narrows_the_bracket_and_gives_the_same_masks(monkeypatch):
    from es_plugins.masks.select import bounded_gather

    calls = []
    narrow = select._narrow
    monkeypatch.setattr(select, "_narrow", lambda *a: calls.append(1) or narrow(*a))
    generator = torch.Generator().manual_seed(3)
    weights = [torch.randn(n, generator=generator) for n in (400_000, 250_000, 350_000)]
    scores = [lambda a, b, out, w=w: out.copy_(w[a:b]).abs_() for w in weights]
    numels = [w.numel() for w in weights]
    free = keep_largest_masks(scores, numels, 512_345)
    with bounded_gather(4096):  # the first bracket holds ~18,000 scores
        bounded = keep_largest_masks(scores, numels, 512_345)
    assert all(torch.equal(a, b) for a, b in zip(free, bounded))
    assert sum(int((~m).sum()) for m in bounded) == 512_345
    assert calls  # the histogram pass really ran


def test_under_a_gather_limit_the_sample_is_sized_for_the_bracket_to_fit():
    """Out of core, a sample large enough for the first bracket to fit the limit saves a
    histogram pass over the whole checkpoint; the sample itself stays within the limit."""
    assert select._sample_size(10**6, None) == select._SAMPLE_SIZE
    total, limit = 1_700_000_000, 16_384_000  # a 4 GB bf16 Llama's targets; its largest tensor / 4
    size = select._sample_size(total, limit)
    assert select._SAMPLE_SIZE < size <= limit
    assert 1.25 * select._Z * total / size**0.5 <= limit  # the expected bracket fits
    assert select._sample_size(10**12, limit) == limit  # a huge model: capped, narrowing does the rest


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])  # 0 and 1 need no threshold: checked all the same
def test_a_non_finite_score_is_refused_with_its_tensor_index(bad, fraction):
    tensors = [torch.rand(600), torch.rand(400)]
    tensors[1][123] = bad
    with pytest.raises(select.NonFiniteScoreError) as info:
        run(tensors, round(fraction * 1000))
    assert info.value.index == 1


def test_huge_finite_scores_overflow_a_chunk_sum_and_are_still_ranked():
    """The cheap check sums each chunk; 3e38 + 3e38 overflows to inf, which must not be
    mistaken for an infinite score."""
    gen = torch.Generator().manual_seed(4)
    tensors = [torch.rand(500, generator=gen) * 3e38, torch.rand(500, generator=gen)]
    for got, want in zip(run(tensors, 700), reference_masks(tensors, 700)):
        assert torch.equal(got, want)
