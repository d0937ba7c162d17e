"""Exact "prune the k lowest scores" over many tensors, without sorting or concatenating them.

Why not ``torch.kthvalue(torch.cat(...))``: concatenating a model's weights costs a full
copy plus index buffers (4x the weights measured here), and torch-prune's global path
costs ~12x. Instead:

1. sample short windows of scores to bracket the k-th value ``[lo, hi]``;
2. one pass counts scores below ``lo`` and gathers the (small) set inside the bracket;
3. ``kthvalue`` inside the bracket gives the exact threshold ``t``;
4. one pass writes bool keep-masks.

Scores are produced chunk by chunk (``score_fn(start, stop)`` over the flattened tensor),
so the only full-size allocations are the bool masks that are the result; transient
buffers have one fixed chunk size and are reused by the allocator.

Ties: scores equal to ``t`` are pruned in a fixed order (target order, then flat index)
until exactly ``k`` are pruned. ``score <= t`` would over-prune on bf16/fp16 checkpoints,
where hundreds of thousands of magnitudes can share the threshold value.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ..errors import NonFiniteScoreError
from . import key_counts as counting
from .buffers import prefaulted_bools
from .workers import PerThread, chunk_workers, ranges, worker_count

# score_fn(start, stop, out): write the float32 scores of flat elements [start, stop) into
# ``out`` (length stop - start) and return it. The engine owns ``out`` and reuses it, so a
# pass over the model allocates nothing per chunk.
#
# Optional attributes: ``gather(index)`` (the scores at flat positions, for the sample) and
# ``keys``: a score function of the same shape whose integer scores rank exactly like the
# float ones, ties included, described by its ``key_format`` (a :class:`KeyFormat`).
# Magnitudes of bf16/fp16 weights have such keys (their bits without the sign): selecting on
# them moves half the bytes of widening to float32.
ScoreFn = Callable[[int, int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class KeyFormat:
    """How a score function's integer keys are encoded: keys of one format compare with each
    other, keys of two formats do not. ``dtype``: the keys' torch dtype; ``finite_below``: the
    first key of a non-finite score (every larger key is non-finite too)."""

    name: str
    dtype: torch.dtype
    finite_below: int


CHUNK = 1 << 20
_HISTOGRAM_BINS = 1024
_MAX_NARROWINGS = 6  # each pass shrinks a smooth bracket ~300x; ties cannot be narrowed at all
# Most scores the exact step may gather at once (None: no limit). The first bracket holds ~3 %
# of all scores, which grows with the model; out-of-core pruning sets a limit, and brackets
# above it are narrowed by histogram passes first (each pass shrinks it ~300x).
_GATHER_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar("gather_limit", default=None)
_SAMPLE_SIZE = 1 << 18
_WINDOW = 16  # consecutive scores per sampled window (see _sample_scores)
_CALL_WINDOW = 64  # the same, for score functions sampled one call per window
# Bracket half-width in binomial standard deviations of the sample quantile. The windowed
# sample's error reached 3.44 of them at most (benchmarks/sample_windows.py, 120 draws on the
# packaged models; rms 1.2); 5 leaves a 1.45x margin. A narrower bracket gathers fewer scores
# (the gathering pass's compaction, the selection and the mask fix-up scale with it); a miss
# costs one more pass, never exactness.
_Z = 5.0


def chunks(numel: int, size: int | None = None) -> Iterator[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges covering ``range(numel)``, ``CHUNK`` long by default."""
    return ranges(numel, size or CHUNK)


def _sample_size(total: int, limit: int | None) -> int:
    """How many scores to sample for the first bracket. Its width shrinks as 1/sqrt(samples)
    (about ``1.25 * _Z * total / sqrt(samples)`` scores), so under a gather limit, sampling
    enough for the bracket to fit (with a 1.5x margin) saves the histogram pass that would
    narrow it; at most ``limit`` samples, so the sample obeys the same memory bound."""
    if limit is None:
        return _SAMPLE_SIZE
    fits = (1.5 * 1.25 * _Z * total / limit) ** 2
    return int(max(_SAMPLE_SIZE, min(fits, limit)))


def _sample_scores(
    scores: Sequence[ScoreFn], numels: Sequence[int], total: int, size: int, seed: int = 0, window: int | None = None
) -> torch.Tensor:
    """Scores of random windows of consecutive positions, ~``size`` in all.

    Short windows, because neighbours are alike (one row of a weight matrix shares a scale):
    with 256-wide windows the sample quantile's error on the packaged models was ~3x the
    i.i.d. one (rms, over 60 draws), with 16 ~1.2x — and the bracket is ``_Z`` i.i.d. standard
    deviations wide. A score function with a ``gather(index)`` attribute gives every window of
    a tensor in one call; others are called once per (longer, ``_CALL_WINDOW``) window.
    ``benchmarks/sample_windows.py`` measures the error against the window length."""
    generator = torch.Generator().manual_seed(seed)
    dtype = _score_dtype(scores)
    parts: list[torch.Tensor] = []
    for score_fn, numel in zip(scores, numels):
        if numel == 0:  # an empty shard (FSDP ranks may own no part of a parameter)
            continue
        gather = getattr(score_fn, "gather", None)
        window = window or (_WINDOW if gather is not None else _CALL_WINDOW)
        windows = max(1, round(size * numel / total / window))
        if windows * window >= numel:
            parts += [score_fn(a, b, torch.empty(b - a, dtype=dtype)).clone() for a, b in chunks(numel)]
            continue
        # In address order: a memory-mapped checkpoint is then read front to back (readahead
        # serves the next windows) instead of by random faults.
        starts = torch.randint(numel - window + 1, (windows,), generator=generator).sort().values
        if gather is not None:
            parts.append(gather((starts.unsqueeze(1) + torch.arange(window)).reshape(-1)).to(dtype))
        else:
            parts += [score_fn(a, a + window, torch.empty(window, dtype=dtype)).clone() for a in starts.tolist()]
    return torch.cat(parts) if parts else torch.empty(0, dtype=dtype)


def _key_format(scores: Sequence[ScoreFn]) -> KeyFormat | None:
    """The scores' key format, or None for float32 scores (see ``ScoreFn``)."""
    return getattr(scores[0], "key_format", None) if scores else None


def _score_dtype(scores: Sequence[ScoreFn]) -> torch.dtype:
    """The scores' dtype: float32, or the integer dtype of keys."""
    key_format = _key_format(scores)
    return key_format.dtype if key_format is not None else torch.float32


def in_key_domain(scores: Sequence[ScoreFn]) -> Sequence[ScoreFn]:
    """The integer keys of ``scores`` when every score function has keys of one format (the
    selection is the same, on fewer bytes per score); otherwise ``scores`` themselves."""
    keys = [getattr(score_fn, "keys", None) for score_fn in scores]
    formats = {getattr(key, "key_format", None) for key in keys}
    if not keys or None in formats or len(formats) != 1:
        return scores
    return keys  # type: ignore[return-value]


def _bracket(samples: torch.Tensor, k: int, total: int) -> tuple[float, float, int]:
    """``[lo, hi]`` around the k-th value, and the expected number of scores inside it. One
    partial sort (``np.partition``) for both ranks, not a full sort of the sample."""
    m = samples.numel()
    q = k / total
    centre = q * m
    half = _Z * math.sqrt(m * q * (1.0 - q)) + 2.0
    lo_idx = int(math.floor(centre - half))
    hi_idx = int(math.ceil(centre + half))
    wanted = [i for i in (min(lo_idx, m - 1), max(hi_idx, 0)) if 0 <= i < m]
    ranked = np.partition(samples.numpy(), wanted) if wanted else None
    lo = -math.inf if lo_idx < 0 else float(ranked[min(lo_idx, m - 1)])  # type: ignore[index]
    hi = math.inf if hi_idx >= m else float(ranked[max(hi_idx, 0)])  # type: ignore[index]
    expected = int(total * (min(hi_idx, m) - max(lo_idx, 0) + 1) / m * 1.25) + 1024
    return lo, hi, expected


class _Scratch:
    """Reusable chunk-sized buffers: per-chunk work allocates nothing, so the allocator never
    fragments around the masks that are kept.

    The per-chunk comparisons, counts and compaction run in NumPy on views of the same memory:
    its SIMD comparisons into bool, ``count_nonzero`` and boolean compaction were several times
    faster than torch's CPU kernels for the same ops (comparison into bool, ``nonzero``) when
    profiled on one thread of an AMD EPYC; benchmarks/omp_passes.py times the passes, and these passes are what global
    pruning costs beyond reading the weights. Scores are float32 (or integer keys, see
    ``ScoreFn``), and every bound is compared as the score it rounds to (:meth:`bound`)."""

    def __init__(self, size: int, dtype: torch.dtype = torch.float32, finite_below: int | None = None) -> None:
        self.scores = torch.empty(size, dtype=dtype)
        self._scores = self.scores.numpy()
        self._type = self._scores.dtype.type
        self._finite_below = finite_below
        self._first = np.empty(size, dtype=bool)
        self._second = np.empty(size, dtype=bool)

    def bound(self, value: float) -> np.generic:
        """``value`` as a score: float32 as torch rounds it; a key clamped to the key range
        (an infinite bound of a widened bracket then lies beyond every key)."""
        if self._type is np.float32:
            return np.float32(value)
        info = np.iinfo(self._type)
        return self._type(min(max(value, info.min), info.max))

    def score(self, score_fn: ScoreFn, start: int, stop: int) -> np.ndarray:
        """The chunk's scores, as a NumPy view of the scratch buffer."""
        out = score_fn(start, stop, self.scores[: stop - start])
        if out.data_ptr() != self.scores.data_ptr():  # a score function may return its own tensor
            self.scores[: stop - start].copy_(out)
        return self._scores[: stop - start]

    def all_finite(self, s: np.ndarray) -> bool:
        """Whether every score is finite: a NaN or an infinity makes ``s . s`` non-finite (one
        BLAS dot of scores already in cache, cheaper than a sum); only then, or when huge
        finite scores overflow it, is each score checked. Keys: the largest is below the
        first non-finite key."""
        if self._type is not np.float32:
            return self._finite_below is None or s.size == 0 or int(s.max()) < self._finite_below
        with np.errstate(over="ignore"):  # an overflow is the case the exact check settles
            return bool(np.isfinite(np.dot(s, s))) or bool(np.isfinite(s).all())

    def classify(
        self, s: np.ndarray, lo: float, hi: float, above: np.ndarray | None = None
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """``(how many scores are below lo, the positions of those in [lo, hi], their scores)``
        of one chunk; with ``above``, also write into it which scores are above ``hi`` (kept,
        whatever the threshold inside the bracket). An inverted bracket (``hi < lo``) holds
        the scores equal to ``lo``: the parts stay disjoint, and the search widens from there.
        Three passes over the chunk: ``> hi`` (straight into the mask), ``>= lo``, and their
        difference, which is the bracket (scores are finite here: NaN was refused before)."""
        n = s.size
        above = np.greater(s, self.bound(max(hi, lo)), out=above if above is not None else self._second[:n])
        at_least = np.greater_equal(s, self.bound(lo), out=self._first[:n])
        below = n - int(np.count_nonzero(at_least))
        inside = np.logical_xor(at_least, above, out=at_least)  # above hi implies at least lo
        where = np.flatnonzero(inside)  # positions, then values: cheaper than s[inside] here
        return below, where, s.take(where)

    def keep(self, s: np.ndarray, t: float, part: torch.Tensor, prune_ties: int) -> int:
        """Write ``part = s >= t`` with the first ``prune_ties`` scores equal to ``t`` pruned
        (``-1``: all of them, ``s > t``); return how many ties it pruned."""
        out, t32 = part.numpy(), self.bound(t)
        if prune_ties == 0:
            np.greater_equal(s, t32, out=out)
            return 0
        np.greater(s, t32, out=out)
        if prune_ties < 0:
            return 0
        equal = np.equal(s, t32, out=self._first[: s.size])
        n_ties = int(np.count_nonzero(equal))
        if n_ties <= prune_ties:
            return n_ties
        out[np.flatnonzero(equal)[prune_ties:]] = True  # ties past the budget are kept
        return prune_ties


def _scratch(scores: Sequence[ScoreFn], numels: Sequence[int]) -> _Scratch:
    key_format = _key_format(scores)
    finite_below = key_format.finite_below if key_format is not None else None
    return _Scratch(min(CHUNK, max(numels, default=0)), _score_dtype(scores), finite_below)


def _classified_chunks(
    scores: Sequence[ScoreFn],
    numels: Sequence[int],
    lo: float,
    hi: float,
    progress: Callable,
    masks: Sequence[torch.Tensor] | None = None,
) -> Iterator[tuple[int, int, int, np.ndarray, np.ndarray]]:
    """One pass over every score, chunk by chunk: ``(tensor index, chunk start, count below
    lo, positions in the chunk of the scores in [lo, hi], those scores)``. With ``masks``
    (flat bool, one per tensor) each chunk's scores above ``hi`` are marked kept, the rest
    not: a mask then needs only its bracket's entries set once the threshold is known.

    Chunks run on the worker threads (``torch.get_num_threads()`` of them, see
    :mod:`.workers`), each with its own scratch, and are yielded in order: the first chunk
    holding a NaN/Inf raises for its tensor, as one thread would."""
    scratches = PerThread(lambda: _scratch(scores, numels))

    def classify(part: tuple[int, int, int]) -> tuple[int, int, int, np.ndarray, np.ndarray]:
        i, start, stop = part
        scratch = scratches.get()
        s = scratch.score(scores[i], start, stop)
        if not scratch.all_finite(s):
            raise NonFiniteScoreError(i)
        above = masks[i][start:stop].numpy() if masks is not None else None
        return (i, start, *scratch.classify(s, lo, hi, above))

    parts = ((i, start, stop) for i in progress(range(len(scores))) for start, stop in chunks(numels[i]))
    count = sum(-(-n // CHUNK) for n in numels)  # one chunk (a small layer) runs inline: no thread to start
    with chunk_workers(min(worker_count(), count)) as workers:
        yield from workers.imap(classify, parts)


def check_finite_scores(scores: Sequence[ScoreFn], numels: Sequence[int]) -> None:
    """Raise :class:`NonFiniteScoreError` for the first tensor with a NaN/Inf score (a pass
    of its own, for the selections that make none)."""
    for _ in _classified_chunks(scores, numels, math.inf, math.inf, iter):  # nothing is inside
        pass


@dataclass
class Gathered:
    """What one pass over the scores found: the count below the bracket, the scores inside it
    in (tensor, flat index) order, where each tensor's part of them starts, and (when the pass
    wrote masks) their flat positions in their tensors."""

    below: int
    inside: torch.Tensor
    offsets: list[int]
    positions: torch.Tensor | None = None

    def parts(self) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` of each tensor's part of ``inside``."""
        bounds = [*self.offsets, self.inside.numel()]
        return zip(bounds, bounds[1:])

    def equal_counts(self, t: float) -> list[int]:
        """How many scores of each tensor equal ``t`` (all of them lie inside the bracket)."""
        values = self.inside.numpy()
        t_score = values.dtype.type(t)
        return [int(np.count_nonzero(values[a:b] == t_score)) for a, b in self.parts()]


class _Growing:
    """One NumPy buffer that doubles when full: thousands of small gathered pieces fragmented
    the heap (measured: ~1.9 GB of RSS on a 350M-weight model)."""

    def __init__(self, capacity: int, dtype: type):
        self.data: np.ndarray = np.empty(max(capacity, 1), dtype=dtype)
        self.used = 0

    def add(self, values: np.ndarray, offset: int = 0) -> None:
        count = values.size
        if self.used + count > self.data.size:
            grown = np.empty(max(2 * self.data.size, self.used + count), dtype=self.data.dtype)
            grown[: self.used] = self.data[: self.used]
            self.data = grown
        target = self.data[self.used : self.used + count]
        if offset:
            np.add(values, offset, out=target, casting="unsafe")  # chunk positions -> tensor positions
        else:
            target[...] = values
        self.used += count

    def result(self) -> torch.Tensor:
        return torch.from_numpy(self.data[: self.used])


def _count_and_gather(
    scores: Sequence[ScoreFn],
    numels: Sequence[int],
    lo: float,
    hi: float,
    capacity: int,
    progress: Callable,
    masks: Sequence[torch.Tensor] | None = None,
) -> Gathered:
    """Count scores below ``lo`` and gather those in ``[lo, hi]`` (with their positions, when
    ``masks`` are written in the same pass: see :func:`_classified_chunks`)."""
    below = 0
    inside = _Growing(capacity, torch.empty(0, dtype=_score_dtype(scores)).numpy().dtype.type)
    # positions within one tensor: int32 while they fit (half the bytes to copy and scatter)
    position_type = np.int32 if max(numels, default=0) < 2**31 else np.int64
    positions = _Growing(capacity, position_type) if masks is not None else None
    offsets = [0] * len(numels)
    last = -1
    for index, start, chunk_below, where, values in _classified_chunks(scores, numels, lo, hi, progress, masks):
        while last < index:  # tensors without chunks (empty shards) start where the next one does
            last += 1
            offsets[last] = inside.used
        below += chunk_below
        inside.add(values)
        if positions is not None:
            positions.add(where, start)
    for rest in range(last + 1, len(numels)):
        offsets[rest] = inside.used
    return Gathered(below, inside.result(), offsets, positions.result() if positions is not None else None)


class LocalCombine:
    """How the threshold search combines partial results: here, one process holds everything.
    ``es_plugins.engines.distributed`` supplies one that all-reduces counts and all-gathers the
    sample and the bracket across ranks, so both paths share this search."""

    shards = 1

    def sum(self, value: int) -> int:
        return value

    def cat(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def tie_quotas(self, equal: Sequence[int], ties: int) -> list[int]:
        """How many scores equal to ``t`` each tensor prunes, given how many each holds
        (``equal``): here one budget spent in (tensor, flat index) order; across ranks, in
        (tensor, rank, local index) order."""
        return spend_in_order(equal, ties)


def spend_in_order(equal: Sequence[int], ties: int) -> list[int]:
    """Split a budget of ``ties`` over holders of ``equal[i]`` ties each, first come first."""
    quotas = []
    for count in equal:
        take = min(int(count), ties)
        quotas.append(take)
        ties -= take
    return quotas


@dataclass(frozen=True)
class Threshold:
    """The k-th smallest score ``value``; how many scores equal to it are pruned (over all
    ranks) so that exactly k are; and how many of this process's scores equal it, per tensor
    (known from the gathered bracket, so the mask pass needs no count of its own)."""

    value: float
    ties: int
    equal: list[int]


def kth_smallest_threshold(
    scores: Sequence[ScoreFn],
    numels: Sequence[int],
    k: int,
    progress: Callable = iter,
    combine: LocalCombine | None = None,
) -> Threshold:
    """The k-th smallest score ``t``, and how many scores equal to ``t`` must be pruned (in
    tie-break order) so that exactly ``k`` are pruned."""
    return _search(scores, numels, k, progress, combine)[0]


def _search(
    scores: Sequence[ScoreFn],
    numels: Sequence[int],
    k: int,
    progress: Callable = iter,
    combine: LocalCombine | None = None,
    masks: Sequence[torch.Tensor] | None = None,
) -> tuple[Threshold, Gathered]:
    """:func:`kth_smallest_threshold`, and the last gathering pass (which wrote ``masks``
    outside the bracket, when given)."""
    combine = combine if combine is not None else LocalCombine()
    total = combine.sum(sum(numels))
    if not 0 < k <= total:
        raise ValueError(f"k must be in (0, {total}], got {k}")
    limit = _GATHER_LIMIT.get()
    samples = combine.cat(_sample_scores(scores, numels, total, _sample_size(total, limit)))
    lo, hi, capacity = _bracket(samples, k, total)
    narrowings = 0
    while True:
        narrow = limit is not None and capacity > limit and narrowings < _MAX_NARROWINGS
        if narrow and math.isfinite(lo) and math.isfinite(hi) and lo < hi:
            lo, hi, capacity = _narrow(scores, numels, lo, hi, k, progress, combine)
            narrowings += 1
            continue
        gathered = _count_and_gather(scores, numels, lo, hi, capacity // combine.shards + 1, progress, masks)
        below, inside = combine.sum(gathered.below), combine.cat(gathered.inside)
        if k <= below:  # bracket too high (an unlucky sample): widen downwards
            lo, hi = -math.inf, lo
            continue
        if k > below + inside.numel():  # bracket too low: widen upwards
            lo, hi = hi, math.inf
            continue
        t, ties = threshold_in_bracket(inside.numpy(), k - below)
        return Threshold(t, ties, gathered.equal_counts(t)), gathered


def threshold_in_bracket(values: np.ndarray, rank: int) -> tuple[float, int]:
    """``(t, ties)``: the ``rank``-th smallest of the bracket's ``values`` and how many of those
    equal to it are pruned so that exactly ``rank`` are. int16 keys are counted (one histogram
    pass: ~2.5x faster than partitioning the same keys, measured here on a BERT-base bracket);
    float scores are partitioned (introselect, faster than ``torch.kthvalue`` here)."""
    if values.dtype == np.int16:
        t, ties = counting.counted_threshold(counting.histogram(values), rank)
        return float(t), ties
    t = np.partition(values, rank - 1)[rank - 1]
    return float(t), rank - int(np.count_nonzero(values < t))


@contextlib.contextmanager
def bounded_gather(limit: int) -> Iterator[None]:
    """Within the block, the exact threshold step never gathers more than ``limit`` scores, so
    its memory does not grow with the model (out-of-core pruning); costs a pass per narrowing."""
    token = _GATHER_LIMIT.set(max(int(limit), 1 << 12))  # the estimate itself has a 1024 floor
    try:
        yield
    finally:
        _GATHER_LIMIT.reset(token)


def _narrow(
    scores: Sequence[ScoreFn],
    numels: Sequence[int],
    lo: float,
    hi: float,
    k: int,
    progress: Callable,
    combine: LocalCombine,
) -> tuple[float, float, int]:
    """One pass: count below ``lo`` and histogram ``[lo, hi]``; return the bins around the k-th
    score (one bin of margin each side for rounding at the edges) and their count. The exact
    step that follows checks the new bracket and widens it if it missed."""
    edges = torch.linspace(lo, hi, _HISTOGRAM_BINS + 1, dtype=torch.float64)
    counts = torch.zeros(_HISTOGRAM_BINS, dtype=torch.int64)
    below = 0
    for _, _, chunk_below, _, picked in _classified_chunks(scores, numels, lo, hi, progress):
        below += chunk_below
        if picked.size:
            index = torch.bucketize(torch.from_numpy(picked).double(), edges[1:-1], right=True)
            counts += torch.bincount(index, minlength=_HISTOGRAM_BINS)
    below = combine.sum(below)
    counts = torch.tensor([combine.sum(int(c)) for c in counts]) if combine.shards > 1 else counts
    position = int(torch.searchsorted(torch.cumsum(counts, 0), k - below))
    first, last = max(position - 1, 0), min(position + 1, _HISTOGRAM_BINS - 1)
    expected = int(counts[first : last + 1].sum() * 1.25) + 1024
    return float(edges[first]), float(edges[last + 1]), expected


def keep_largest_masks(
    scores: Sequence[ScoreFn],
    numels: Sequence[int],
    k: int,
    progress: Callable = iter,
    combine: LocalCombine | None = None,
) -> list[torch.Tensor]:
    """Flat bool keep-masks that prune exactly the ``k`` lowest scores across all tensors.

    Args:
        scores: one ``score_fn(start, stop)`` per tensor returning float scores of that
            flat range (recomputed per pass, so no model-sized score buffer exists).
        numels: element count of each tensor (same order).
        k: number of entries to prune in total.
        progress: wraps the per-tensor loop (e.g. a tqdm factory) on long runs.
        combine: how partial counts and samples are combined; ``None`` for one process.
            With :class:`es_plugins.engines.distributed.RankCombine` the tensors are this rank's
            pieces of tensors sharded across ranks, and ``k`` counts over all ranks.
    """
    return list(iter_keep_largest_masks(scores, numels, k, progress, combine))


def iter_keep_largest_masks(
    scores: Sequence[ScoreFn],
    numels: Sequence[int],
    k: int,
    progress: Callable = iter,
    combine: LocalCombine | None = None,
) -> Iterator[torch.Tensor]:
    """:func:`keep_largest_masks`, one mask at a time: the threshold search runs first, then
    each tensor's mask is made only when the caller asks for it (out-of-core pruning writes
    and drops it before the next). There, 16-bit keys are counted instead of searched
    (:mod:`.key_counts`: one pass, exact, whatever the gather bound)."""
    combine = combine if combine is not None else LocalCombine()
    scores = in_key_domain(scores)
    total = combine.sum(sum(numels))
    if k <= 0 or k >= total:
        check_finite_scores(scores, numels)  # no pass to check on: the masks need no score
        for n in numels:
            yield torch.full((n,), k <= 0, dtype=torch.bool)
        return
    if _GATHER_LIMIT.get() is None:  # memory is not bounded: every mask at once, one pass fewer
        yield from _masks_in_one_pass(scores, numels, k, progress, combine)
        return
    key_format = _key_format(scores)  # in_key_domain gave keys of one format, or float scores
    if combine.shards == 1 and key_format is not None and key_format.dtype == torch.int16:  # counted in one pass
        with chunk_workers() as workers:
            t, ties = counting.counted_threshold(counting.key_counts(scores, numels, workers, CHUNK, progress), k)
        yield from iter_threshold_masks(scores, numels, t, ties)
        return
    threshold = kth_smallest_threshold(scores, numels, k, progress, combine)
    quotas = combine.tie_quotas(threshold.equal, threshold.ties)
    yield from iter_threshold_masks(scores, numels, threshold.value, quotas, threshold.equal)


def _masks_in_one_pass(
    scores: Sequence[ScoreFn], numels: Sequence[int], k: int, progress: Callable, combine: LocalCombine
) -> list[torch.Tensor]:
    """The gathering pass writes every mask outside the bracket (kept above it, pruned below);
    once the threshold is known only the bracket's ~1 % of entries are set, from the scores
    and positions gathered. So no second pass over the scores; the masks (the result) exist
    from the start, which is why out-of-core pruning, one mask at a time, does not use it."""
    masks = [prefaulted_bools(n) for n in numels]  # the result, mapped in one call each (masks/buffers.py)
    with chunk_workers(min(worker_count(), len(numels))) as workers:  # masks are independent: one per worker
        threshold, gathered = _search(scores, numels, k, progress, combine, masks)
        quotas = combine.tie_quotas(threshold.equal, threshold.ties)
        values = gathered.inside.numpy()
        t32 = values.dtype.type(threshold.value)
        positions = gathered.positions.numpy() if gathered.positions is not None else np.empty(0, np.int64)

        def set_bracket(part: tuple[torch.Tensor, tuple[int, int], int]) -> None:
            mask, (a, b), quota = part
            inside = values[a:b]
            keep = inside > t32
            keep[np.flatnonzero(inside == t32)[quota:]] = True  # ties past this tensor's quota are kept
            mask.numpy()[positions[a:b]] = keep

        for _ in workers.imap(set_bracket, zip(masks, gathered.parts(), quotas)):
            pass
    return masks


def write_masks(
    scores: Sequence[ScoreFn],
    numels: Sequence[int],
    t: float,
    ties: int | Sequence[int],
    equal: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """Keep scores above ``t``; of the scores equal to ``t``, prune the first ``ties`` in
    (tensor, flat index) order — one budget shared by all tensors, or one quota per tensor.
    ``equal``: how many scores of each tensor equal ``t``, when known (a tensor whose ties are
    all pruned, or none, then costs one comparison per chunk)."""
    return list(iter_threshold_masks(scores, numels, t, ties, equal))


def iter_threshold_masks(
    scores: Sequence[ScoreFn],
    numels: Sequence[int],
    t: float,
    ties: int | Sequence[int],
    equal: Sequence[int] | None = None,
) -> Iterator[torch.Tensor]:
    """:func:`write_masks`, yielding each tensor's mask as soon as it is complete."""
    if equal is not None and isinstance(ties, int):
        ties = spend_in_order(equal, ties)
    quotas = None if isinstance(ties, int) else [int(q) for q in ties]
    left = ties if isinstance(ties, int) else 0
    scratches = PerThread(lambda: _scratch(scores, numels))

    def chunk_keep(score_fn: ScoreFn, keep: torch.Tensor, start: int, stop: int, ties_left: int) -> int:
        scratch = scratches.get()
        return scratch.keep(scratch.score(score_fn, start, stop), t, keep[start:stop], ties_left)

    with chunk_workers() as workers:
        for index, (score_fn, numel) in enumerate(zip(scores, numels)):
            if quotas is not None:
                left = quotas[index]
                if equal is not None and 0 < left == equal[index]:
                    left = -1  # every tie of this tensor is pruned: keep s > t
            keep = prefaulted_bools(numel)
            if left > 0:  # a tie budget spent in flat order: chunk after chunk
                for start, stop in chunks(numel):
                    left -= chunk_keep(score_fn, keep, start, stop, left)
            else:  # chunks are independent: on every worker
                workers.map(functools.partial(chunk_keep, score_fn, keep, ties_left=left), numel, CHUNK)
            yield keep
