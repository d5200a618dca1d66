"""The PNGs of ``zs2020 units``: phone heat maps, code usage by rank, codebook PCA."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.core.io import atomic_path
from pipeline.units import analysis as ua
from pipeline.units.reports import PhoneTable
from pipeline.units.source import UnitSet


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save_figure(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def draw_phone_heatmap(pt: PhoneTable, level: str, scores: dict, path: Path) -> Path:
    """P(phone | unit) for the used units, sorted by majority phone then by use."""
    plt = _pyplot()
    used = np.flatnonzero(pt.table.sum(axis=0) > 0)
    sub = pt.table[:, used].astype(np.float64)
    order = np.lexsort((-sub.sum(axis=0), sub.argmax(axis=0)))
    cond = sub[:, order] / sub[:, order].sum(axis=0, keepdims=True)
    fig, ax = plt.subplots(figsize=(min(18, 4 + 0.03 * len(used) + 4), 0.22 * len(pt.phones) + 2))
    im = ax.imshow(cond, aspect="auto", cmap="magma", interpolation="nearest", vmin=0, vmax=1)
    ax.set_yticks(range(len(pt.phones)), pt.phones, fontsize=7)
    ax.set_xlabel(f"{level} units in use ({len(used)}), sorted by majority phone")
    ax.set_title(f"P(phone | {level} unit): phone purity {scores['phone_purity']:.2f}, "
                 f"unit purity {scores['unit_purity']:.2f}, NMI {scores['nmi']:.2f}, PNMI {scores['pnmi']:.2f}")
    fig.colorbar(im, ax=ax, fraction=0.03)
    return _save_figure(fig, path)


def draw_usage(units: UnitSet, levels: Sequence[str], path: Path) -> Path:
    """Code usage by rank (log scale): a flat curve means an evenly used codebook."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for level in levels:
        counts = np.sort(ua.pooled_histogram(units.ids(level), units.codebook_sizes[level]))[::-1]
        ax.plot(np.arange(1, counts.size + 1), counts / max(1, counts.sum()), label=f"{level} ({counts.size} codes)")
    ax.set_yscale("log")
    ax.set_xlabel("code rank")
    ax.set_ylabel("share of frames")
    ax.legend()
    ax.set_title("code usage by rank")
    return _save_figure(fig, path)


def draw_codebook(points: np.ndarray, ratio: np.ndarray, counts: np.ndarray, labels: list[str | None],
                  level: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 7))
    used = counts > 0
    if (~used).any():
        ax.scatter(points[~used, 0], points[~used, 1], s=8, c="lightgrey", label="unused", marker="x")
    names = sorted({lab for lab in labels if lab is not None})
    many = len(names) > 20
    cmap = plt.get_cmap("gist_ncar" if many else "tab20")
    sizes = 10 + 40 * np.log1p(counts) / max(1.0, float(np.log1p(counts.max())))
    for i, name in enumerate(names):
        sel = np.array([lab == name for lab in labels]) & used
        colour = cmap(i / len(names)) if many else cmap(i)
        ax.scatter(points[sel, 0], points[sel, 1], s=sizes[sel], color=colour, label=name, alpha=0.85)
        for j in np.flatnonzero(sel)[:3]:
            ax.annotate(name, points[j], fontsize=6, alpha=0.7)
    plain = used & np.array([lab is None for lab in labels])
    if plain.any():
        ax.scatter(points[plain, 0], points[plain, 1], s=sizes[plain], c="tab:blue", label="used", alpha=0.6)
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% var)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% var)")
    ax.set_title(f"{level} codebook, PCA; colour = majority phone, size = use")
    ax.legend(fontsize=6, ncol=2, loc="best", markerscale=0.7)
    return _save_figure(fig, path)


