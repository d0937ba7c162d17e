"""Exactness of the global/per-layer "prune the k lowest" engine against a brute-force sort."""

from __future__ import annotations

import pytest
import torch

from es_plugins.masks import select, workers
from es_plugins.masks.select import keep_largest_masks


@pytest.fixture(autouse=True, params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request, monkeypatch):
    """Every test runs with the gathering pass on one thread and on two worker threads (chunks
    classified out of order, read back in order), whatever this machine's core count."""
    monkeypatch.setattr(select, "worker_count", lambda: request.param)
    monkeypatch.setattr(workers, "worker_count", lambda: request.param)
    return request.param


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


def test_the_first_tensor_in_order_with_a_non_finite_score_is_named_whatever_finishes_first(monkeypatch):
    """Chunks finish out of order on several threads; the error still names the first tensor
    (in target order) holding a NaN, as one thread would."""
    monkeypatch.setattr(select, "CHUNK", 50)  # many chunks per tensor, so both threads are busy
    tensors = [torch.rand(600) for _ in range(4)]
    tensors[1][599] = float("nan")  # the last chunk of tensor 1
    tensors[3][0] = float("nan")  # the first chunk of tensor 3
    with pytest.raises(select.NonFiniteScoreError) as info:
        run(tensors, 1000)
    assert info.value.index == 1


def test_huge_finite_scores_overflow_a_chunk_sum_and_are_still_ranked():
    """The cheap check sums each chunk; 3e38 + 3e38 overflows to inf, which must not be
    mistaken for an infinite score."""
    gen = torch.Generator().manual_seed(4)
    tensors = [torch.rand(500, generator=gen) * 3e38, torch.rand(500, generator=gen)]
    for got, want in zip(run(tensors, 700), reference_masks(tensors, 700)):
        assert torch.equal(got, want)


def magnitude_run(weights, k, keep=None):
    """The OMP path: |w| scores (with int16 keys for 16-bit floats), optionally respecting an
    earlier mask."""
    from es_plugins.methods.magnitude import magnitude_score
    from es_plugins.methods.selection import respecting

    scores = [respecting(magnitude_score(w), keep[i] if keep else None) for i, w in enumerate(weights)]
    masks = keep_largest_masks(scores, [w.numel() for w in weights], k)
    return [m.view(w.shape) for m, w in zip(masks, weights)]


def awkward_weights(dtype: torch.dtype) -> list[torch.Tensor]:
    """Signed zeros, subnormals, huge values and heavy ties, in weights of one 16-bit dtype."""
    gen = torch.Generator().manual_seed(5)
    first = torch.randn(96, 40, generator=gen)
    first[:5] = 0.0
    first[5:10] = -0.0
    first[10, :20] = torch.finfo(dtype).tiny / 4  # subnormal
    first[11, :20] = -torch.finfo(dtype).max
    second = (torch.randn(3001, generator=gen) * 1e-3).round(decimals=4)  # many equal magnitudes
    return [first.to(dtype), second.to(dtype), (-first[:7]).to(dtype)]


@pytest.mark.parametrize("chunk", [None, 97])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_weights_are_ranked_on_their_bits_exactly_like_their_magnitudes(monkeypatch, dtype, chunk):
    """bf16/fp16 magnitudes select on int16 keys (the bits without the sign): the masks equal a
    stable sort of |w| as floats, ties, signed zeros and subnormals included."""
    from es_plugins.methods.magnitude import magnitude_score

    if chunk:
        monkeypatch.setattr(select, "CHUNK", chunk)
    weights = awkward_weights(dtype)
    keys = select.in_key_domain([magnitude_score(w) for w in weights])
    assert all(key.key_format.dtype == torch.int16 for key in keys)  # the key path really runs
    magnitudes = [w.float().abs() for w in weights]
    total = sum(w.numel() for w in weights)
    for k in (1, 17, total // 3, total // 2, total - 5):
        for got, want in zip(magnitude_run(weights, k), reference_masks(magnitudes, k)):
            assert torch.equal(got, want)


def test_16_bit_keys_respect_an_earlier_mask_like_the_float_scores():
    """Weights pruned before score below every key (-1), as they score -1.0 as floats."""
    weights = awkward_weights(torch.bfloat16)
    gen = torch.Generator().manual_seed(6)
    keep = [torch.rand(w.shape, generator=gen) > 0.3 for w in weights]
    already = sum(int((~m).sum()) for m in keep)
    magnitudes = [torch.where(m, w.float().abs(), -1.0) for w, m in zip(weights, keep)]
    for k in (already, already + 100, already + 2000):
        for got, want in zip(magnitude_run(weights, k, keep), reference_masks(magnitudes, k)):
            assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), -float("nan")])
@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_a_non_finite_16_bit_weight_is_refused_on_the_key_path(dtype, bad, fraction):
    weights = [torch.randn(600).to(dtype), torch.randn(400).to(dtype)]
    weights[1][123] = bad
    with pytest.raises(select.NonFiniteScoreError) as info:
        magnitude_run(weights, round(fraction * 1000))
    assert info.value.index == 1


def test_keys_are_used_only_when_every_tensor_has_keys_of_one_format():
    from es_plugins.methods.magnitude import magnitude_score

    bf16, fp16, fp32 = (magnitude_score(torch.randn(10).to(d)) for d in (torch.bfloat16, torch.float16, torch.float32))
    assert select.in_key_domain([bf16, bf16])[0] is bf16.keys  # type: ignore[attr-defined]
    assert select.in_key_domain([bf16, fp16]) == [bf16, fp16]  # bf16 and fp16 bits do not compare
    assert select.in_key_domain([bf16, fp32]) == [bf16, fp32]
    weights = [torch.randn(300).bfloat16(), torch.randn(300)]  # mixed: float scores, same exact answer
    magnitudes = [w.float().abs() for w in weights]
    for got, want in zip(magnitude_run(weights, 250), reference_masks(magnitudes, 250)):
        assert torch.equal(got, want)
