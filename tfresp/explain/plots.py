"""PNG plots of explanations (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def feature_bars(items: List[tuple], title: str, path: Path, xlabel: str = "weight") -> Path:
    """Horizontal bars of ``(name, value)`` (largest ``|value|`` on top); green > 0, red < 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    items = list(items)[::-1]
    names = [str(n)[:48] for n, _ in items]
    vals = [float(v) for _, v in items]
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * max(len(items), 3) + 1.0))
    ax.barh(range(len(vals)), vals, color=["#2a9d4b" if v > 0 else "#d1343a" for v in vals])
    ax.set_yticks(range(len(vals)))
    ax.set_yticklabels(names, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def global_importance(importance: Dict[str, float], title: str, path: Path, top: int = 20) -> Path:
    items = sorted(importance.items(), key=lambda kv: -kv[1])[:top]
    path.parent.mkdir(parents=True, exist_ok=True)
    items = items[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * max(len(items), 3) + 1.0))
    ax.barh(range(len(items)), [v for _, v in items], color="#3b6ea8")
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels([k for k, _ in items], fontsize=8)
    ax.set_xlabel("mean |attribution|")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def image_heatmap(image: np.ndarray, heatmap: np.ndarray, title: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    img = np.asarray(image, dtype=float)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    rng = float(np.ptp(img)) or 1.0
    axes[0].imshow((img - img.min()) / rng, cmap="gray" if img.ndim == 2 else None)
    axes[0].set_title("input", fontsize=9)
    lim = float(np.max(np.abs(heatmap))) or 1.0
    axes[1].imshow(heatmap, cmap="RdYlGn", vmin=-lim, vmax=lim)
    axes[1].set_title(title, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
