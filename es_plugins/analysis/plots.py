"""PNG plots for sweep and similarity reports (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from ..io.output import atomic_write
from .similarity import MaskSimilarity
from .sweep import SweepResult


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(result: SweepResult, path: Path, title: str) -> Path:
    """Metric vs sparsity with seed spread, the dense line, the tolerance band, the essential
    sparsity with its bootstrap interval, and the knee. Levels whose evaluation returned NaN are
    marked, not plotted."""
    plt = _pyplot()
    config, dense = result.config, result.dense
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ok = [lv for lv in result.levels if not lv.flagged]
    xs = [100 * lv.sparsity for lv in ok]
    ax.errorbar(
        xs,
        [lv.mean for lv in ok],
        yerr=[lv.std for lv in ok],
        marker="o",
        ms=4,
        capsize=3,
        label=f"{config.metric} (mean ± sd over {len(config.seeds)} seed{'s' * (len(config.seeds) > 1)})",
    )
    refined = [lv for lv in ok if lv.refined]
    if refined:
        ax.scatter(
            [100 * lv.sparsity for lv in refined],
            [lv.mean for lv in refined],
            s=40,
            facecolors="none",
            edgecolors="tab:orange",
            zorder=3,
            label="refinement points",
        )
    slack = config.slack(dense)
    band = (dense - slack, dense) if config.higher_is_better else (dense, dense + slack)
    ax.axhline(dense, color="gray", lw=1, label=f"dense = {dense:.4g}")
    ax.axhspan(
        *band,
        color="tab:green",
        alpha=0.15,
        label=f"tolerance {config.tolerance:g}{' (relative)' if config.tolerance_kind == 'relative' else ''}",
    )
    if result.essential_sparsity is not None:
        ax.axvline(
            100 * result.essential_sparsity,
            color="tab:green",
            ls="--",
            label=f"essential sparsity {result.essential_sparsity:.1%}",
        )
    uncertainty = result.uncertainty
    interval = uncertainty.essential_interval if uncertainty else None
    if uncertainty is not None and interval is not None and interval[1] > interval[0]:
        ax.axvspan(
            100 * interval[0],
            100 * interval[1],
            color="tab:green",
            alpha=0.08,
            hatch="//",
            label=f"{uncertainty.confidence:.0%} interval [{interval[0]:.1%}, {interval[1]:.1%}]",
        )
    if result.knee is not None:
        ax.axvline(100 * result.knee, color="tab:red", ls=":", label=f"knee {result.knee:.1%}")
    flagged = [lv for lv in result.levels if lv.flagged]
    for lv in flagged:
        ax.annotate(
            "NaN", (100 * lv.sparsity, 1.0), xycoords=("data", "axes fraction"), ha="center", va="top", color="red"
        )
    if not config.higher_is_better and ok and max(lv.mean for lv in ok) / max(min(lv.mean for lv in ok), 1e-12) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("sparsity of targeted weights (%)")
    ax.set_ylabel(config.metric)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))  # never half a PNG
    plt.close(fig)
    return path


BAR_CHART_MAX_LAYERS = 48  # beyond this, one bar per layer is unreadable: a block x layer-type grid


def block_grid(names: Sequence[str]) -> tuple[list[str], list[str], dict[str, tuple[int, int]]] | None:
    """Layers grouped by transformer block and layer type: ``model.layers.7.mlp.up_proj.weight``
    is block ``7``, type ``mlp.up_proj``. Returns (block labels, type labels, name -> (row,
    column)), or None when the names carry no block index."""
    cells: dict[str, tuple[str, str]] = {}
    for name in names:
        parts = name.removesuffix(".weight").split(".")
        index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        if index is None:
            return None
        cells[name] = (".".join(parts[: index + 1]), ".".join(parts[index + 1 :]) or parts[-1])
    blocks = list(dict.fromkeys(block for block, _ in cells.values()))
    kinds = list(dict.fromkeys(kind for _, kind in cells.values()))
    return blocks, kinds, {n: (blocks.index(b), kinds.index(k)) for n, (b, k) in cells.items()}


def plot_layer_sparsity(layer_sparsity: Mapping[str, float], path: Path, title: str) -> Path:
    """Per-layer sparsity (global thresholds spread unevenly): bars for a few dozen layers, a
    block x layer-type heat map beyond, so a 200-layer model stays readable."""
    plt = _pyplot()
    names = list(layer_sparsity)
    grid = block_grid(names) if len(names) > BAR_CHART_MAX_LAYERS else None
    if grid is None:
        fig, ax = plt.subplots(figsize=(7, max(3.0, 0.16 * len(names) + 1)))
        ax.barh(range(len(names)), [100 * layer_sparsity[n] for n in names], color="tab:blue")
        ax.set_yticks(range(len(names)), [n.removesuffix(".weight") for n in names], fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel("sparsity (%)")
        ax.grid(axis="x", alpha=0.3)
    else:
        blocks, kinds, where = grid
        values = [[math.nan] * len(kinds) for _ in blocks]
        for name, (row, column) in where.items():
            values[row][column] = 100 * layer_sparsity[name]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(kinds) + 3), max(3.0, 0.12 * len(blocks) + 1.5)))
        image = ax.imshow(values, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(len(kinds)), kinds, rotation=45, ha="right", fontsize=7)
        step = max(1, len(blocks) // 32)  # at most ~32 block labels
        ax.set_yticks(range(0, len(blocks), step), [b.rsplit(".", 1)[-1] for b in blocks[::step]], fontsize=6)
        ax.set_ylabel(f"block ({blocks[0].rsplit('.', 1)[0]}.N)")
        fig.colorbar(image, ax=ax, label="sparsity (%)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))  # never half a PNG
    plt.close(fig)
    return path


def plot_similarity(similarity: MaskSimilarity, path: Path, title: str) -> Path:
    """Per-layer cosine similarity beside the chance level of random masks."""
    plt = _pyplot()
    names = list(similarity.layers)
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.16 * len(names) + 1)))
    ys = range(len(names))
    ax.barh(ys, [similarity.layers[n].cosine for n in names], color="tab:blue", label="cosine")
    ax.scatter(
        [similarity.layers[n].chance["cosine"] for n in names],
        ys,
        color="tab:red",
        marker="|",
        s=60,
        label="chance (random masks)",
        zorder=3,
    )
    ax.set_yticks(list(ys), [n.removesuffix(".weight") for n in names], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("cosine similarity of keep-masks")
    overall = similarity.overall
    ax.set_title(f"{title}\noverall {overall.cosine:.4f} (chance {overall.chance['cosine']:.4f})", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))  # never half a PNG
    plt.close(fig)
    return path


def plot_near_zero(series: Mapping[str, float], path: Path, title: str, xlabel: str = "checkpoint") -> Path:
    """Overall near-zero fraction across checkpoints (SSL vs SL, or over training)."""
    plt = _pyplot()
    labels = list(series)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(range(len(labels)), [100 * series[k] for k in labels], marker="o")
    ax.set_xticks(range(len(labels)), [Path(k).name or k for k in labels], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("near-zero weights (%)")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))  # never half a PNG
    plt.close(fig)
    return path


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
