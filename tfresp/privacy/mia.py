"""Membership-inference audit: how well can an attacker tell training rows from unseen rows?

Three black-box attacks on the trained model's outputs (members = training rows, non-members = test rows,
balanced sample):

* **loss threshold** (Yeom et al. 2018): lower loss -> "member".
* **logistic regression** on loss / confidence features, scored out-of-fold (5-fold cross-validation), in the
  spirit of Shokri et al. 2017's learned attack models.
* **offline LiRA-style** (Carlini et al. 2022, "Membership Inference Attacks From First Principles"): the
  logit-scaled confidence ``φ = log(p_y / (1 - p_y))`` of non-members is modelled per class as a Gaussian
  fitted on a held-out *reference* half of the non-members; the score is the one-sided likelihood that φ is
  larger than a non-member's. Without shadow models this uses population (per-class), not per-example,
  reference statistics: it is a weaker attack than full LiRA, and the report says so.

For every attack: ROC-AUC, attacker advantage ``max(TPR - FPR)``, TPR at 1% FPR, and the empirical ε lower
bound implied by its (TPR, FPR) pairs (Kairouz et al. 2015; Jagielski et al. 2020):
``ε >= max(log((TPR - δ)/FPR), log((1 - FPR - δ)/(1 - TPR)))``, also with Clopper-Pearson 95% bounds on
TPR and FPR (the number a DP guarantee must stay above, up to the multiple-threshold caveat).

Use :func:`membership_inference_audit` on raw probabilities, :func:`audit_arrays` on any Keras model and arrays
(:func:`tfresp.audits.membership`), or :func:`audit_context` on a finished run.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
from scipy import stats
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

def _features(outputs: np.ndarray, labels: np.ndarray, from_logits: bool) -> Dict[str, np.ndarray]:
    """Loss, logit-scaled confidence φ, max probability and entropy; from logits they stay exact when the
    softmax saturates (an overfit model's training rows), which probabilities in float32 cannot."""
    z = np.asarray(outputs, np.float64)
    if not from_logits:
        z = np.log(np.clip(z, 1e-300, 1.0))
    idx = np.arange(len(labels))
    log_p = z - logsumexp(z, axis=1, keepdims=True)
    z_y = z[idx, labels]
    others = z.copy()
    others[idx, labels] = -np.inf
    probs = np.exp(log_p)
    return {
        "loss": -log_p[idx, labels],
        "phi": z_y - logsumexp(others, axis=1),  # log p_y - log(1 - p_y)
        "max_prob": probs.max(axis=1),
        "entropy": -(probs * log_p).sum(axis=1),
    }


def epsilon_lower_bound(tpr: np.ndarray, fpr: np.ndarray, delta: float, n_pos: int = None, n_neg: int = None,
                        confidence: float = 0.95) -> float:
    """Largest ε implied by (TPR, FPR) pairs; with counts, uses one-sided Clopper-Pearson bounds.

    Args:
        tpr, fpr: arrays of operating points (e.g. from ``roc_curve``).
        delta: δ of the guarantee being tested.
        n_pos, n_neg: number of members / non-members; when given, TPR is replaced by its lower and FPR by its
            upper ``confidence`` bound (a statistically conservative estimate).
    """
    tpr = np.asarray(tpr, np.float64)
    fpr = np.asarray(fpr, np.float64)
    if n_pos and n_neg:
        alpha = 1 - confidence
        k_tp = np.round(tpr * n_pos)
        k_fp = np.round(fpr * n_neg)
        tpr = np.where(k_tp > 0, stats.beta.ppf(alpha, k_tp, n_pos - k_tp + 1), 0.0)
        fpr = np.where(k_fp < n_neg, stats.beta.ppf(1 - alpha, k_fp + 1, n_neg - k_fp), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.clip(tpr - delta, 0, None) / fpr)
        b = np.log(np.clip(1 - fpr - delta, 0, None) / (1 - tpr))
    vals = np.concatenate([a[np.isfinite(a)], b[np.isfinite(b)]])
    return float(max(0.0, vals.max())) if vals.size else 0.0


def attack_metrics(is_member: np.ndarray, score: np.ndarray, delta: float) -> dict:
    """ROC-AUC, advantage, TPR@1%FPR and ε lower bounds of one attack (higher score = 'member')."""
    fpr, tpr, _ = roc_curve(is_member, score)
    n_pos = int(is_member.sum())
    n_neg = int(len(is_member) - n_pos)
    low = fpr <= 0.01
    return {
        "roc_auc": float(roc_auc_score(is_member, score)),
        "advantage": float(np.max(tpr - fpr)),
        "tpr_at_1pct_fpr": float(tpr[low].max()) if low.any() else 0.0,
        "epsilon_lower_bound": epsilon_lower_bound(tpr, fpr, delta, n_pos, n_neg),
        "epsilon_lower_bound_point": epsilon_lower_bound(tpr, fpr, delta),
        "n_members": n_pos,
        "n_nonmembers": n_neg,
        "_roc": (fpr, tpr),
    }


def lira_offline_scores(phi_ref: np.ndarray, y_ref: np.ndarray, phi: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One-sided Gaussian log-likelihood score of φ against per-class non-member reference statistics."""
    mu_all, sd_all = float(np.mean(phi_ref)), float(np.std(phi_ref) + 1e-6)
    scores = np.empty(len(phi))
    for c in np.unique(y):
        ref = phi_ref[y_ref == c]
        mu, sd = (float(ref.mean()), float(ref.std() + 1e-6)) if len(ref) >= 10 else (mu_all, sd_all)
        m = y == c
        scores[m] = stats.norm.logcdf((phi[m] - mu) / sd)
    return scores


def membership_inference_audit(member_probs, member_labels, nonmember_probs, nonmember_labels, delta: float,
                               member_groups: Optional[Dict[str, np.ndarray]] = None,
                               nonmember_groups: Optional[Dict[str, np.ndarray]] = None,
                               epsilon: Optional[float] = None, min_group_size: int = 30, seed: int = 0,
                               plot_path=None, from_logits: bool = False) -> dict:
    """Run the three attacks on model outputs; return the ``privacy.audit`` report section.

    Args:
        member_probs: ``[m, K]`` class probabilities (or logits, with ``from_logits=True``: exact for saturated
            outputs) on training rows; ``member_labels``: ``[m]`` labels.
        nonmember_probs, nonmember_labels: the same on rows never used in training (same m recommended).
        delta: δ for the empirical ε lower bound.
        member_groups / nonmember_groups: ``{attribute: [m] group values}`` for sliced results.
        epsilon: the claimed ε (to check the empirical bound against it).
        min_group_size: groups with fewer members or non-members are reported without metrics.
        plot_path: where to write the ROC plot (optional).

    Example:
        >>> sec = membership_inference_audit(p_train, y_train, p_test, y_test, delta=1e-5)
        >>> sec["mia_auc"]
    """
    rng = np.random.default_rng(seed)
    mlab = np.asarray(member_labels, np.int64)
    nlab = np.asarray(nonmember_labels, np.int64)
    fm, fn = _features(member_probs, mlab, from_logits), _features(nonmember_probs, nlab, from_logits)
    is_member = np.r_[np.ones(len(mlab)), np.zeros(len(nlab))].astype(int)
    feats = {k: np.r_[fm[k], fn[k]] for k in fm}
    attacks = {}
    scores = {"loss_threshold": -feats["loss"]}
    attacks["loss_threshold"] = attack_metrics(is_member, scores["loss_threshold"], delta)
    X = np.column_stack([feats[k] for k in ("loss", "phi", "max_prob", "entropy")])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores["logistic_regression"] = cross_val_predict(clf, X, is_member, cv=cv, method="predict_proba")[:, 1]
    attacks["logistic_regression"] = attack_metrics(is_member, scores["logistic_regression"], delta)
    # offline LiRA: half the non-members are the reference population, never scored.
    n_idx = rng.permutation(len(nlab))
    ref, held = n_idx[: len(n_idx) // 2], n_idx[len(n_idx) // 2:]
    m_eval = rng.permutation(len(mlab))[: len(held)]
    lira_member = np.r_[np.ones(len(m_eval)), np.zeros(len(held))].astype(int)
    lira_score = lira_offline_scores(fn["phi"][ref], nlab[ref], np.r_[fm["phi"][m_eval], fn["phi"][held]],
                                     np.r_[mlab[m_eval], nlab[held]])
    attacks["lira_offline"] = attack_metrics(lira_member, lira_score, delta)
    attacks["lira_offline"]["note"] = ("population (per-class) reference statistics from held-out non-members; "
                                       "no shadow models, so weaker than full LiRA")
    best = max(attacks, key=lambda k: attacks[k]["roc_auc"])
    sec = {
        "members": int(len(mlab)),
        "nonmembers": int(len(nlab)),
        "mia_auc": attacks[best]["roc_auc"],
        "best_attack": best,
        "advantage": max(a["advantage"] for a in attacks.values()),
        "tpr_at_1pct_fpr": max(a["tpr_at_1pct_fpr"] for a in attacks.values()),
        "epsilon_lower_bound": max(a["epsilon_lower_bound"] for a in attacks.values()),
        "delta": delta,
        "attacks": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in attacks.items()},
        "method": "members = training rows, non-members = test rows (balanced); loss threshold, 5-fold "
                  "cross-validated logistic regression on loss/confidence features, offline LiRA-style Gaussian "
                  "test; ε lower bounds use one-sided 95% Clopper-Pearson bounds, maximised over thresholds",
    }
    if epsilon is not None:
        # Only the one-sided conclusion is supported: a lower bound above the claim shows a violation; one below
        # it says nothing (this attack is far too weak to certify a DP run, see privacy.audit.canary).
        sec["exceeds_claimed_epsilon"] = bool(sec["epsilon_lower_bound"] > epsilon + 1e-9)
    if member_groups and nonmember_groups:
        by = {}
        for attr, mg in member_groups.items():
            ng = nonmember_groups.get(attr)
            if ng is None:
                continue
            mg, ng = np.asarray(mg).astype(str), np.asarray(ng).astype(str)
            by[attr] = {}
            for g in sorted(set(mg) | set(ng)):
                mm, nm = mg == g, ng == g
                entry = {"members": int(mm.sum()), "nonmembers": int(nm.sum())}
                if mm.sum() >= min_group_size and nm.sum() >= min_group_size:
                    sel = np.r_[mm, nm]
                    for name in ("loss_threshold", "logistic_regression"):
                        m = attack_metrics(is_member[sel], scores[name][sel], delta)
                        entry[name] = {"roc_auc": m["roc_auc"], "advantage": m["advantage"]}
                    entry["mia_auc"] = max(entry[n]["roc_auc"] for n in ("loss_threshold", "logistic_regression"))
                else:
                    entry["note"] = f"fewer than {min_group_size} members or non-members: not evaluated"
                by[attr][g] = entry
        sec["by_group"] = by
    if plot_path is not None:
        sec["plot"] = _roc_plot(attacks, plot_path)
    return sec


def _roc_plot(attacks, path) -> str:
    from tfresp.report import plots as _plots  # noqa: F401  (Agg backend)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    for name, a in attacks.items():
        fpr, tpr = a["_roc"]
        ax.plot(fpr, tpr, label=f"{name} (AUC {a['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Membership inference")
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"plots/{path.name}"


def _logits(core, x, batch_size: int = 2048) -> np.ndarray:
    from tfresp.run.context import predict_logits

    return predict_logits(core, x, batch_size)


def audit_arrays(core, train, holdout, delta: float, epsilon: Optional[float] = None, max_examples: int = 5000,
                 plot_path=None, seed: int = 0, train_groups=None, holdout_groups=None) -> dict:
    """Audit ``core`` (Keras model or restored SavedModel core giving logits) on a balanced sample of
    ``train = (x, y)`` rows (members) and ``holdout = (x, y)`` rows (non-members); ``x`` an array or a dict of
    arrays, ``*_groups`` optional ``{attribute: values}`` for the per-group results."""
    rng = np.random.default_rng(seed)
    (xt, yt), (xh, yh) = train, holdout
    m = min(len(yt), len(yh), max_examples)
    mi = np.sort(rng.choice(len(yt), m, replace=False))
    ni = np.sort(rng.choice(len(yh), m, replace=False))
    take = lambda x, i: {k: v[i] for k, v in x.items()} if isinstance(x, dict) else x[i]  # noqa: E731
    pm = _logits(core, take(xt, mi))
    pn = _logits(core, take(xh, ni))
    return membership_inference_audit(
        pm, np.asarray(yt)[mi], pn, np.asarray(yh)[ni], delta=delta,
        member_groups={a: np.asarray(v)[mi] for a, v in (train_groups or {}).items()},
        nonmember_groups={a: np.asarray(v)[ni] for a, v in (holdout_groups or {}).items()},
        epsilon=epsilon, seed=seed, plot_path=plot_path, from_logits=True)


def audit_data(core, data, delta: float, epsilon: Optional[float] = None, max_examples: int = 5000,
               plot_path=None, seed: int = 0) -> dict:
    """Audit ``core`` on a :class:`DataBundle`: members = training rows, non-members = test rows."""
    return audit_arrays(core, (data.train.x, data.train.y), (data.test.x, data.test.y), delta, epsilon,
                        max_examples, plot_path, seed, data.train.groups, data.test.groups)


def audit_context(ctx, delta: float, epsilon: Optional[float] = None, max_examples: int = 5000, plot_path=None,
                  seed: int = 0) -> dict:
    """The audit of a run in progress: balanced members (training rows) vs non-members (test rows)."""
    return audit_data(ctx.core, ctx.data, delta, epsilon, max_examples, plot_path, seed)


def rerun_audit(run_dir, config, data, core, report) -> dict:
    """``tfresp audit RUN --privacy``: recompute the MIA audit of a finished run; keep its DP accounting.

    Without a privacy section (a non-private run) the audit still runs, with δ = the 'auto' default and no
    ε to compare against.
    """
    from pathlib import Path

    from tfresp.privacy.accounting import default_delta

    old = dict(report.get("privacy") or {})
    delta = float(old.get("delta") or default_delta(len(data.train)))
    section = audit_data(core, data, delta, old.get("epsilon"), plot_path=Path(run_dir) / "plots" /
                         "privacy_mia_roc.png", seed=int(getattr(config, "seed", 0)))
    section["audited_by"] = "tfresp audit --privacy"
    if not old:
        old = {"epsilon": None, "statement": "No differential privacy in this run: only the empirical "
                                             "membership-inference audit below is reported.", "plots": []}
    if isinstance(old.get("audit"), dict) and "canary" in old["audit"]:
        section["canary"] = old["audit"]["canary"]  # needs the run's secret canary coins: kept as recorded
    old["audit"] = section
    plots = [p for p in old.get("plots", []) if p != section.get("plot")]
    old["plots"] = plots + ([section["plot"]] if section.get("plot") else [])
    return old
