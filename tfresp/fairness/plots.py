"""Fairness plots: per-group bars with CIs and gaps across decision thresholds (PNG, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

BAR_METRICS = ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy")


def group_bars(sections: Dict[str, dict], path: Path):
    """One panel per attribute: bars of selection rate / TPR / FPR / accuracy by group with CI whiskers."""
    from tfresp.report.plots import plt

    sections = {k: v for k, v in sections.items() if v.get("by_group")}
    if not sections:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(sections), 1, figsize=(9, 3.2 * len(sections)), squeeze=False)
    for ax, (attr, sec) in zip(axes[:, 0], sections.items()):
        groups = list(sec["by_group"])
        width = 0.8 / len(BAR_METRICS)
        xs = np.arange(len(groups))
        for i, m in enumerate(BAR_METRICS):
            vals = [sec["by_group"][g].get(m) or 0.0 for g in groups]
            cis = [sec["by_group"][g].get(f"{m}_ci") for g in groups]
            err = None
            if all(ci and None not in ci for ci in cis):
                err = np.array([[v - ci[0] for v, ci in zip(vals, cis)], [ci[1] - v for v, ci in zip(vals, cis)]])
                err = np.clip(err, 0, None)
            ax.bar(xs + (i - (len(BAR_METRICS) - 1) / 2) * width, vals, width, yerr=err, capsize=2, label=m)
        ax.set_xticks(xs)
        ax.set_xticklabels(groups, rotation=20, fontsize=7)
        ax.set_ylim(0, 1.05)
        supp = sec.get("suppressed") or {}
        note = f"; {len(supp)} group(s) < {sec.get('min_group_size')} rows suppressed" if supp else ""
        dp, eo = sec.get("demographic_parity_difference"), sec.get("equalized_odds_difference")
        ax.set_title(f"{attr}: DP diff {dp if dp is None else round(dp, 3)}, EO diff "
                     f"{eo if eo is None else round(eo, 3)} (whiskers: bootstrap CI){note}", fontsize=9)
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def threshold_gaps(sections: Dict[str, dict], decision_threshold: float, path: Path):
    """Demographic-parity / equalized-odds / equal-opportunity gaps and accuracy vs threshold."""
    from tfresp.report.plots import plt

    sections = {k: v for k, v in sections.items() if v.get("threshold_sweep")}
    if not sections:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(sections), figsize=(4.5 * len(sections), 3.4), squeeze=False)
    for ax, (attr, sec) in zip(axes[0], sections.items()):
        sweep = sec["threshold_sweep"]
        t = [r["threshold"] for r in sweep]
        for key, label in (("demographic_parity_difference", "DP diff"), ("equalized_odds_difference", "EO diff"),
                           ("equal_opportunity_difference", "EOpp diff")):
            ax.plot(t, [r.get(key, np.nan) for r in sweep], marker="o", label=label)
        ax.plot(t, [r["accuracy"] for r in sweep], "k--", label="accuracy")
        ax.axvline(decision_threshold, color="grey", lw=0.8)
        ax.set_xlabel("decision threshold")
        ax.set_title(attr, fontsize=9)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
