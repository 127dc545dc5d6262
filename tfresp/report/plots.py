"""Matplotlib plots for the report (Agg backend, PNG files under plots/)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def training_curves(history: dict, path: Path):
    keys = [k for k in history if not k.startswith("val_") and "/" not in k]
    if not keys:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3))
    axes = [axes] if len(keys) == 1 else axes
    for ax, k in zip(axes, keys):
        ax.plot(range(1, len(history[k]) + 1), history[k], marker="o", label="train")
        if f"val_{k}" in history:
            ax.plot(range(1, len(history[f"val_{k}"]) + 1), history[f"val_{k}"], marker="o", label="validation")
        ax.set_title(k)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --- plots the report derives from report.json numbers (so `tfresp report` can re-draw them) -----------------

_COLORS = ["#3b6ea8", "#d9822b", "#5a9e4b", "#b8474d", "#7d5ba6", "#8c6d31", "#4aa3a2", "#c266a7"]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")  # long tick labels (metric paths) must not be clipped
    plt.close(fig)
    return path


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fairness_groups(attr: str, section: dict, path: Path, metrics=("selection_rate", "true_positive_rate",
                                                                    "false_positive_rate")):
    """Grouped bars of per-group rates with their 95 % CIs (error bars) for one sensitive attribute."""
    by_group = section.get("by_group") if isinstance(section, dict) else None
    if not isinstance(by_group, dict) or not by_group:
        return None
    groups = [g for g, m in by_group.items() if isinstance(m, dict)]
    metrics = [m for m in metrics if any(_num(by_group[g].get(m)) for g in groups)]
    if not groups or not metrics:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(groups) * len(metrics) / 2 + 2), 3.2))
    width = 0.8 / len(metrics)
    for k, m in enumerate(metrics):
        xs, ys, lo, hi = [], [], [], []
        for i, g in enumerate(groups):
            v = by_group[g].get(m)
            if not _num(v):
                continue
            ci = by_group[g].get(f"{m}_ci")
            xs.append(i + (k - (len(metrics) - 1) / 2) * width)
            ys.append(v)
            ok = isinstance(ci, list) and len(ci) == 2 and all(_num(c) for c in ci)
            lo.append(max(0.0, v - ci[0]) if ok else 0.0)
            hi.append(max(0.0, ci[1] - v) if ok else 0.0)
        ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, label=m.replace("_", " "), color=_COLORS[k % 8])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([str(g)[:18] for g in groups], rotation=20 if len(groups) > 3 else 0, ha="right"
                       if len(groups) > 3 else "center", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{attr}: rates by group (95% CI)", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def robustness_sweep(section: dict, clean_accuracy, path: Path):
    """Accuracy against perturbation size ε, one line per attack (ε = 0 is the clean test accuracy)."""
    curves = {}
    for key, sec in (section or {}).items():
        if "@" in str(key) and isinstance(sec, dict) and _num(sec.get("accuracy")):
            attack, _, eps = str(key).partition("@")
            try:
                curves.setdefault(attack, []).append((float(eps), float(sec["accuracy"])))
            except ValueError:
                continue
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for k, (attack, pts) in enumerate(sorted(curves.items())):
        pts = sorted(pts)
        if _num(clean_accuracy):
            pts = [(0.0, float(clean_accuracy))] + pts
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=attack, color=_COLORS[k % 8])
    ax.set_xlabel("attack epsilon")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("Robust accuracy vs. perturbation size", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def epsilon_curve(points, path: Path):
    """Privacy loss ε against training step / epoch; ``points`` is a list of (x, ε)."""
    if not points or len(points) < 2:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", color=_COLORS[0])
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon")
    ax.set_title("Privacy loss during training", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def compression_tradeoff(rows, path: Path):
    """Accuracy against model size (KiB) of each exported / compressed variant; rows are (name, bytes, acc)."""
    rows = [r for r in rows if _num(r[1]) and _num(r[2])]
    if len(rows) < 2:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for k, (name, size, acc) in enumerate(rows):
        ax.scatter([size / 1024], [acc], color=_COLORS[k % 8], s=40)
        ax.annotate(str(name)[:20], (size / 1024, acc), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("size (KiB)")
    ax.set_ylabel("accuracy")
    ax.set_title("Compression trade-off", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def scorecard_terms(card: dict, path: Path):
    """Horizontal bars of each score term's weighted contribution (ethics: goodness; bias: badness)."""
    rows = []
    for kind in ("ethics", "bias"):
        for t in ((card or {}).get(kind) or {}).get("terms", []):
            metric = t["metric"].removeprefix("evaluation.test.")
            metric = metric if len(metric) <= 56 else "…" + metric[-55:]
            rows.append((f"{'E' if kind == 'ethics' else 'B'}: {metric}", t["term"], kind))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(rows) + 1.0))
    ys = range(len(rows))
    ax.barh(list(ys), [r[1] for r in rows], color=[_COLORS[0] if r[2] == "ethics" else _COLORS[3] for r in rows])
    ax.set_yticks(list(ys))
    ax.set_yticklabels([r[0] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("term in [0, 1]  (E: goodness f, higher is better;  B: badness g, lower is better)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
