"""The sweep's two answers, defined once: the essential sparsity from the levels' means and
the knee of the degradation curve. The sweep's refinement and its bootstrap (:mod:`.noise`)
both call these, so an interval is always an interval of the same quantity."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .sweep import SweepConfig


def essential_from_means(config: "SweepConfig", sparsities: Sequence[float], means: Sequence[float]) -> float:
    """The largest level of the contiguous within-tolerance run from dense (``sparsities``
    ascending, dense first) — the one definition the sweep and its bootstrap use."""
    last_ok = sparsities[0]
    for s, m in zip(sparsities[1:], means[1:]):
        if not config.within(m, means[0]):
            break
        last_ok = s
    return last_ok


def find_knee(xs: Sequence[float], degradation: Sequence[float]) -> float | None:
    """Kneedle on a convex, increasing degradation curve; None when it is flat or too short."""
    points = [(x, d) for x, d in zip(xs, degradation) if math.isfinite(d)]
    if len(points) < 3:
        return None
    x0, x1 = points[0][0], points[-1][0]
    lo, hi = min(d for _, d in points), max(d for _, d in points)
    if hi - lo < 1e-9 or x1 <= x0:
        return None
    gaps = [((x - x0) / (x1 - x0)) - ((d - lo) / (hi - lo)) for x, d in points]
    best = max(range(len(points)), key=lambda i: gaps[i])
    return points[best][0] if gaps[best] > 1e-9 else None
