"""Group fairness metrics with bias-corrected bootstrap confidence intervals.

Point estimates come from fairlearn's ``MetricFrame`` (see :mod:`tfresp.fairness._fairlearn`), built on the
rows compressed to weighted cells (group, label, decision, calibration bin): every metric is a ratio of
confusion counts (and ECE of per-bin sums), so the numbers are those of the rows themselves, at a cost that does
not grow with them.

Confidence intervals resample rows with replacement ``B`` times. Only the cells matter, so a resample is drawn as
its vector of cell counts: drawing ``n`` rows uniformly with replacement puts ``Multinomial(n, n_c / n)`` rows in
the cells ``c`` (exact in distribution, for every count-based metric: rates, accuracy, precision, the gaps).
The calibration error also needs the sum of P(positive) over the drawn rows of each cell; given the cell's
count ``k`` it is drawn from its normal approximation ``N(k * mean_c, k * var_c)`` (mean and variance of the
cell's probabilities; clipped to ``[k * min_c, k * max_c]``): its mean and variance are exact, only its shape
is approximated. Within one of the 10 calibration bins the probabilities differ by < 0.1 (variance <= 0.0025
per row), a few percent at most of the per-row variance of ``y - p`` that drives a bin's ``|sum(y) - sum(p)|``,
and the ECE intervals agree with the row-by-row bootstrap within Monte-Carlo noise (tested against it). 200 resamples of 160k rows take milliseconds (``B x cells``, not ``B x n``).
:func:`bootstrap_indices` + :func:`group_rates` remain the row-by-row engine (the reference).

Gaps follow fairlearn's ``between_groups`` definitions:

* demographic parity difference / ratio: ``max - min`` / ``min / max`` of selection rates
  (Calders & Verwer 2010; disparate impact, Feldman et al. 2015);
* equalized odds difference: the larger of the TPR and FPR differences (Hardt et al. 2016);
* equal opportunity difference: the TPR difference (Hardt et al. 2016).

Confidence intervals are bias-corrected (BC) percentile bootstrap intervals (Efron 1981; Efron &
Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 14): the percentile levels are shifted by
``z0 = Phi^-1(share of resamples below the estimate)``. A between-group gap ``max - min`` is biased
upwards under resampling (noise widens the spread), so a plain percentile interval can miss its own
estimate (0.021 with CI [0.024, 0.120] was seen); BC removes that first-order bias. The acceleration
term of BCa is left out: it needs a jackknife per statistic and, for these smooth count ratios, is
small next to ``z0``. When ``|z0|`` is so large that even the BC interval excludes the estimate
(every resample above it), the interval is widened to reach the estimate and
``ci_widened`` counts those cases, so an interval never contradicts the number it accompanies.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from tfresp.data.labels_compact import joined_labels, str_labels

#: calibration bins of the ECE; _fairlearn.ECE_BINS is the same number (not imported from there: importing it loads
#: fairlearn and scikit-learn; tests/fairness/test_metrics.py checks they agree)
ECE_BINS = 10


def _fl():
    """fairlearn's adapter, imported on first use: the row engines below (Cells, bootstrap_rates, group_rates)
    need no fairlearn/scikit-learn, and ``tfresp monitor`` starts faster without them (issue 26)."""
    from tfresp.fairness import _fairlearn

    return _fairlearn

RATE_METRICS = ("selection_rate", "true_positive_rate", "false_positive_rate", "false_negative_rate",
                "true_negative_rate", "accuracy", "precision")
ALL_METRICS = RATE_METRICS + ("ece",)
DEFAULT_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))
INTERSECTION_SEP = "_x_"


# ----------------------------------------------------------------------------- groups ----
def intersect(groups: Dict[str, np.ndarray], attributes: Sequence[str]) -> np.ndarray:
    """Intersectional group labels, e.g. ``Female_x_Black`` for ``[sex, race]`` (an object array of shared strings:
    :func:`tfresp.data.labels_compact.joined_labels`)."""
    return joined_labels([groups[a] for a in attributes], INTERSECTION_SEP)


def group_codes(groups: np.ndarray):
    """``(names, codes)``: the sorted distinct group labels and each row's index into them (hashing, not a sort
    of the rows' strings)."""
    codes, uniques = pd.factorize(np.asarray(groups), sort=True)
    return [str(g) for g in uniques], codes.astype(np.int64)


def split_by_size(groups: np.ndarray, min_group_size: int):
    """``(kept_mask, sizes, suppressed)``: rows of groups with at least ``min_group_size`` rows."""
    names, codes = group_codes(groups)
    counts = np.bincount(codes, minlength=len(names))
    sizes = {g: int(n) for g, n in zip(names, counts)}
    suppressed = {g: n for g, n in sizes.items() if n < min_group_size}
    kept = (counts >= min_group_size)[codes] if suppressed else np.ones(len(groups), bool)
    return kept, sizes, suppressed


# -------------------------------------------------------------------------- bootstrap ----
#: how the report's (and the monitor's) bootstrap intervals are drawn (:class:`Cells`)
BOOTSTRAP_METHOD = ("bias-corrected percentile (Efron 1981), rows resampled with replacement (drawn as multinomial "
                    "counts over group x label x decision x calibration-bin cells; the cells' probability sums, used "
                    "only by the calibration error, from their normal approximation)")


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """``[resamples, n]`` row indices drawn with replacement (seeded)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n), dtype=np.int64)


def _safe_div(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def group_rates(y: np.ndarray, pred: np.ndarray, prob: np.ndarray, gidx: np.ndarray, n_groups: int,
                idx: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Every group metric for each resample, vectorized: arrays ``[B, G]`` (``B = 1`` if ``idx`` is None).

    Rates with an empty denominator are 0 (as in fairlearn/scikit-learn); metrics of a group absent
    from a resample are NaN.
    """
    if idx is None:
        idx = np.arange(len(y))[None, :]
    B = idx.shape[0]
    cells = gidx * 4 + y * 2 + pred
    flat = (cells[idx] + (np.arange(B) * n_groups * 4)[:, None]).ravel()
    c = np.bincount(flat, minlength=B * n_groups * 4).reshape(B, n_groups, 2, 2).astype(np.float64)
    nb = ECE_BINS
    bins = np.clip((prob * nb).astype(np.int64), 0, nb - 1)
    key = (gidx * nb + bins)[idx] + (np.arange(B) * n_groups * nb)[:, None]
    sy = np.bincount(key.ravel(), weights=y[idx].ravel().astype(np.float64), minlength=B * n_groups * nb)
    sp = np.bincount(key.ravel(), weights=prob[idx].ravel().astype(np.float64), minlength=B * n_groups * nb)
    err = np.abs(sy - sp).reshape(B, n_groups, nb).sum(axis=-1)
    return _rates(c, err)


def _rates(c: np.ndarray, err: np.ndarray) -> Dict[str, np.ndarray]:
    """Group metrics from confusion counts ``c[..., label, decision]`` and the summed per-bin calibration
    error ``err`` (``sum_b |sum(y) - sum(p)|``) of each group."""
    tn, fp, fn, tp = c[..., 0, 0], c[..., 0, 1], c[..., 1, 0], c[..., 1, 1]
    n = tn + fp + fn + tp
    out = {
        "selection_rate": _safe_div(tp + fp, n),
        "true_positive_rate": _safe_div(tp, tp + fn),
        "false_positive_rate": _safe_div(fp, fp + tn),
        "false_negative_rate": _safe_div(fn, tp + fn),
        "true_negative_rate": _safe_div(tn, fp + tn),
        "accuracy": _safe_div(tp + tn, n),
        "precision": _safe_div(tp, tp + fp),
    }
    out["ece"] = _safe_div(err, n)
    absent = n == 0
    for k in out:
        out[k] = np.where(absent, np.nan, out[k])
    out["count"] = n
    return out


class Cells:
    """Rows compressed to cells (group, label, decision, calibration bin): each cell's row count and the count,
    sum, variance, min and max of its rows' P(positive). Arrays ``[G, 2, 2, ECE_BINS]``."""

    def __init__(self, y: np.ndarray, pred: np.ndarray, prob: np.ndarray, gidx: np.ndarray, n_groups: int):
        nb = ECE_BINS
        bins = np.clip((prob * nb).astype(np.int64), 0, nb - 1)
        key = ((gidx * 2 + y) * 2 + pred) * nb + bins
        size = n_groups * 4 * nb
        shape = (n_groups, 2, 2, nb)
        self.n_groups, self.shape = n_groups, shape
        self.count = np.bincount(key, minlength=size).astype(np.float64)
        self.psum = np.bincount(key, weights=prob, minlength=size)
        mean = _safe_div(self.psum, self.count)
        self.var = _safe_div(np.bincount(key, weights=(prob - mean[key]) ** 2, minlength=size), self.count)
        lo = np.full(size, np.inf)
        hi = np.full(size, -np.inf)
        np.minimum.at(lo, key, prob)
        np.maximum.at(hi, key, prob)
        self.lo, self.hi, self.mean = lo, hi, mean

    def rates(self, count: Optional[np.ndarray] = None, psum: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
        """:func:`group_rates` of cell counts ``[B, cells]`` (default: the rows themselves, ``B = 1``)."""
        count = self.count[None] if count is None else count
        psum = self.psum[None] if psum is None else psum
        k = count.reshape((-1,) + self.shape)
        ps = psum.reshape((-1,) + self.shape)
        c = k.sum(axis=-1)
        sy = k[:, :, 1].sum(axis=2)  # rows with label 1, per group and bin
        sp = ps.sum(axis=(2, 3))
        return _rates(c, np.abs(sy - sp).sum(axis=-1))

    def bootstrap(self, resamples: int, seed: int):
        """``(count, psum)`` of ``resamples`` resamples of the rows with replacement, each ``[B, cells]``: cell
        counts ``Multinomial(n, n_c / n)`` (exact), probability sums from their normal approximation given the
        count (see the module docstring)."""
        rng = np.random.default_rng(seed)
        n = int(self.count.sum())
        nz = np.flatnonzero(self.count)
        count = np.zeros((resamples, self.count.size))
        psum = np.zeros_like(count)
        k = rng.multinomial(n, self.count[nz] / n, size=resamples).astype(np.float64)
        noise = np.sqrt(k * self.var[nz]) * rng.standard_normal(k.shape)
        count[:, nz] = k
        psum[:, nz] = np.clip(k * self.mean[nz] + noise, k * self.lo[nz], k * self.hi[nz])
        return count, psum

    def label_rows(self, names):
        """The weighted rows ``(group, label, decision, weight)`` of the label metrics."""
        c = self.count.reshape(self.shape).sum(axis=-1)
        g, yy, pp = np.nonzero(c)
        return np.asarray(names, dtype=object)[g], yy, pp, c[g, yy, pp]

    def calibration_rows(self, names):
        """The weighted rows ``(group, label, mean P(positive), bin, weight)`` of the calibration error."""
        c = self.count.reshape(self.shape).sum(axis=2)
        ps = self.psum.reshape(self.shape).sum(axis=2)
        g, yy, b = np.nonzero(c)
        w = c[g, yy, b]
        return np.asarray(names, dtype=object)[g], yy, ps[g, yy, b] / w, b, w


def bootstrap_rates(y: np.ndarray, pred: np.ndarray, prob: np.ndarray, gidx: np.ndarray, n_groups: int,
                    resamples: int, seed: int) -> Dict[str, np.ndarray]:
    """:func:`group_rates` of ``resamples`` bootstrap resamples of the rows (seeded), drawn over cells
    (:class:`Cells`): arrays ``[B, G]`` in ``O(B x cells)`` time and memory."""
    cells = Cells(np.asarray(y, np.int64), np.asarray(pred, np.int64), np.asarray(prob, np.float64),
                  np.asarray(gidx, np.int64), n_groups)
    return cells.rates(*cells.bootstrap(resamples, seed))


def _diff_ratio(values: np.ndarray):
    """Between-groups ``max - min`` and ``min / max`` over the group axis, ignoring absent groups."""
    with np.errstate(all="ignore"):
        hi = np.nanmax(values, axis=-1)
        lo = np.nanmin(values, axis=-1)
        ratio = np.where(hi > 0, lo / np.where(hi > 0, hi, 1), np.nan)
    return hi - lo, ratio


def gap_stats(rates: Dict[str, np.ndarray], privileged_index: Optional[int] = None) -> Dict[str, np.ndarray]:
    """The between-group gaps from :func:`group_rates` output, one value per resample."""
    out = {}
    sr, tpr, fpr = rates["selection_rate"], rates["true_positive_rate"], rates["false_positive_rate"]
    out["demographic_parity_difference"], out["demographic_parity_ratio"] = _diff_ratio(sr)
    tpr_d, tpr_r = _diff_ratio(tpr)
    fpr_d, fpr_r = _diff_ratio(fpr)
    out["equalized_odds_difference"] = np.maximum(tpr_d, fpr_d)
    out["equalized_odds_ratio"] = np.minimum(tpr_r, fpr_r)
    out["equal_opportunity_difference"], out["equal_opportunity_ratio"] = tpr_d, tpr_r
    out["false_positive_rate_difference"] = fpr_d
    out["accuracy_difference"], _ = _diff_ratio(rates["accuracy"])
    out["precision_difference"], _ = _diff_ratio(rates["precision"])
    out["ece_difference"], _ = _diff_ratio(rates["ece"])
    with np.errstate(all="ignore"):
        out["ece_max"] = np.nanmax(rates["ece"], axis=-1)
        if privileged_index is None:
            out["disparate_impact"] = out["demographic_parity_ratio"]
        else:
            ref = sr[..., privileged_index]
            others = np.delete(sr, privileged_index, axis=-1)
            out["disparate_impact"] = np.where(ref > 0, np.nanmin(others, axis=-1) / np.where(ref > 0, ref, 1),
                                               np.nan)
    return out


def percentile_ci(samples: np.ndarray, confidence: float) -> np.ndarray:
    """Two-sided percentile interval along axis 0 (NaN resamples ignored): ``[2, ...]``."""
    q = [50 * (1 - confidence), 50 * (1 + confidence)]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanpercentile(samples, q, axis=0)


def bc_interval(samples: np.ndarray, estimate: float, confidence: float):
    """Bias-corrected percentile bootstrap interval of one statistic, widened to contain ``estimate``.

    Args:
        samples: the statistic on each resample (NaN resamples ignored).
        estimate: the statistic on the full data.
        confidence: two-sided level.

    Returns:
        ``(low, high, widened)``; ``(None, None, False)`` when there is no finite resample.

    Example:
        >>> bc_interval(np.array([0.2, 0.3, 0.4, 0.5]), 0.1, 0.9)[:2]  # every resample above: widened
        (0.1, 0.5)
    """
    from scipy.stats import norm

    s = np.asarray(samples, np.float64)
    s = s[np.isfinite(s)]
    if len(s) == 0 or estimate is None or not np.isfinite(estimate):
        return None, None, False
    below = (np.sum(s < estimate) + 0.5 * np.sum(s == estimate)) / len(s)
    below = float(np.clip(below, 0.5 / len(s), 1 - 0.5 / len(s)))
    z0 = norm.ppf(below)
    za = norm.ppf([(1 - confidence) / 2, (1 + confidence) / 2])
    levels = norm.cdf(2 * z0 + za)
    lo, hi = (float(v) for v in np.quantile(s, levels))
    widened = bool(estimate < lo or estimate > hi)
    return min(lo, float(estimate)), max(hi, float(estimate)), widened


# ---------------------------------------------------------------------------- report ----
def _num(v):
    v = float(v)
    return None if np.isnan(v) or np.isinf(v) else v


def group_report(y: np.ndarray, pred: np.ndarray, prob: np.ndarray, groups: np.ndarray, *,
                 metrics: Optional[List[str]] = None, min_group_size: int = 30, bootstrap: int = 200,
                 confidence: float = 0.95, seed: int = 0, privileged: Optional[str] = None) -> dict:
    """Per-group metrics and gaps for one attribute (or intersection), each with a bootstrap CI.

    Args:
        y: binary labels (1 = positive class).
        pred: binary decisions (1 = positive decision).
        prob: probability of the positive class (for calibration).
        groups: group label per row (strings).
        metrics: group metrics to report (default all of ``ALL_METRICS``).
        min_group_size: smaller groups are excluded from every number and listed as suppressed.
        bootstrap: resamples for the CIs (0: no CIs).
        privileged: reference group for ``disparate_impact`` (default: min/max ratio).

    Returns:
        A report section with ``by_group.<group>.<metric>`` (+ ``_ci``), the gaps (+ ``_ci``),
        ``group_sizes`` and ``suppressed``.
    """
    fl = _fl()
    y = np.asarray(y).astype(np.int64)
    pred = np.asarray(pred).astype(np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    groups = str_labels(groups)
    metrics = list(metrics or ALL_METRICS)
    kept, sizes, suppressed = split_by_size(groups, min_group_size)
    y, pred, prob, groups = y[kept], pred[kept], prob[kept], groups[kept]
    names, gidx = group_codes(groups)
    section = {"group_sizes": sizes, "suppressed": suppressed, "min_group_size": int(min_group_size),
               "groups": names, "rows": int(len(y))}
    if privileged is not None and privileged not in names:
        section["privileged_note"] = (f"privileged group {privileged!r} is absent or suppressed; "
                                      "disparate impact uses min/max instead")
        privileged = None
    section["disparate_impact_reference"] = (f"selection rate of the least-selected group / {privileged!r}"
                                             if privileged else "min / max selection rate across groups")
    if not names:
        section["note"] = "every group is below min_group_size; nothing reported"
        return section
    cells = Cells(y, pred, prob, gidx, len(names))
    lg, ly, lp, lw = cells.label_rows(names)
    label_frame = fl.label_frame(ly, lp, lg, [m for m in metrics if m in RATE_METRICS]
                                 + [m for m in ("selection_rate", "true_positive_rate", "false_positive_rate",
                                                "accuracy", "precision") if m not in metrics], sample_weight=lw)
    cg, cy, cp, cb, cw = cells.calibration_rows(names)
    cal_frame = fl.calibration_frame(cy, cp, cg, sample_weight=cw, bins=cb)
    point = fl.by_group(label_frame)
    for g, v in fl.by_group(cal_frame).items():
        point[g].update(v)
    by_group = {g: {"count": int(point[g]["count"]), **{m: _num(point[g][m]) for m in metrics}} for g in names}

    gaps = {}
    if len(names) >= 2:
        sel = fl.gaps(label_frame, "selection_rate")
        tpr = fl.gaps(label_frame, "true_positive_rate")
        fpr = fl.gaps(label_frame, "false_positive_rate")
        gaps["demographic_parity_difference"] = sel["difference"]
        gaps["demographic_parity_ratio"] = sel["ratio"]
        gaps["equalized_odds_difference"] = max(tpr["difference"], fpr["difference"])
        gaps["equalized_odds_ratio"] = min(tpr["ratio"], fpr["ratio"])
        gaps["equal_opportunity_difference"] = tpr["difference"]
        gaps["equal_opportunity_ratio"] = tpr["ratio"]
        gaps["false_positive_rate_difference"] = fpr["difference"]
        gaps["accuracy_difference"] = fl.gaps(label_frame, "accuracy")["difference"]
        gaps["precision_difference"] = fl.gaps(label_frame, "precision")["difference"]
        gaps["ece_difference"] = fl.gaps(cal_frame, "ece")["difference"]
        gaps["ece_max"] = float(cal_frame.group_max()["ece"])
        if privileged is None:
            gaps["disparate_impact"] = sel["ratio"]
        else:
            rates = label_frame.by_group["selection_rate"]
            ref = float(rates.loc[privileged])
            low = float(rates.drop(index=privileged).min())
            gaps["disparate_impact"] = low / ref if ref > 0 else float("nan")
    else:
        section["note"] = "fewer than two groups at or above min_group_size; gaps not defined"
    section.update({k: _num(v) for k, v in gaps.items()})

    if bootstrap and len(y) > 0:
        rates = cells.rates(*cells.bootstrap(bootstrap, seed))
        widened = 0

        def interval(samples, estimate):
            nonlocal widened
            lo, hi, w = bc_interval(samples, estimate, confidence)
            widened += int(w)
            return [_num(lo) if lo is not None else None, _num(hi) if hi is not None else None]

        for m in metrics:
            for j, g in enumerate(names):
                by_group[g][f"{m}_ci"] = interval(rates[m][:, j], by_group[g][m])
        if gaps:
            pidx = names.index(privileged) if privileged else None
            for k, arr in gap_stats(rates, pidx).items():
                section[f"{k}_ci"] = interval(arr, section.get(k))
        section["bootstrap"] = {"resamples": int(bootstrap), "confidence": float(confidence), "seed": int(seed),
                                "method": BOOTSTRAP_METHOD,
                                "ci_widened": widened}
    section["by_group"] = by_group
    return section


def threshold_sweep(y: np.ndarray, prob: np.ndarray, groups: np.ndarray, thresholds: Sequence[float],
                    min_group_size: int = 30) -> List[dict]:
    """Accuracy, per-group rates and the main gaps at each decision threshold.

    Uses the count-based engine of the bootstrap (:func:`group_rates`, one pass per threshold) rather
    than one ``MetricFrame`` per threshold, which is ~100x slower; the tests check both agree with
    fairlearn to 1e-9.
    """
    y = np.asarray(y).astype(np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    groups = str_labels(groups)
    kept, _, _ = split_by_size(groups, min_group_size)
    y, prob, groups = y[kept], prob[kept], groups[kept]
    rows = []
    if len(y) == 0:
        return rows
    names, gidx = group_codes(groups)
    for t in thresholds:
        pred = (prob >= t).astype(np.int64)
        rates = group_rates(y, pred, prob, gidx, len(names))
        row = {"threshold": float(t), "accuracy": float(np.mean(pred == y))}
        for m in ("selection_rate", "true_positive_rate", "false_positive_rate"):
            row[m] = {g: float(rates[m][0, j]) for j, g in enumerate(names)}
        if len(names) >= 2:
            gaps = gap_stats(rates)
            for k in ("demographic_parity_difference", "equalized_odds_difference", "equal_opportunity_difference"):
                row[k] = float(gaps[k][0])
        rows.append(row)
    return rows


def headline_gaps(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, min_group_size: int = 30) -> dict:
    """Accuracy and the three main gaps of one set of decisions (count engine, no CIs)."""
    y = np.asarray(y).astype(np.int64)
    pred = np.asarray(pred).astype(np.int64)
    groups = str_labels(groups)
    kept, _, _ = split_by_size(groups, min_group_size)
    out = {"accuracy": float(np.mean(pred == y))}
    names, gidx = group_codes(groups[kept])
    if len(names) >= 2:
        gaps = gap_stats(group_rates(y[kept], pred[kept], np.zeros(int(kept.sum())), gidx, len(names)))
        for k in ("demographic_parity_difference", "equalized_odds_difference", "equal_opportunity_difference"):
            out[k] = float(gaps[k][0])
    return out


def gaps_from_counts(cells: Dict[str, Sequence[Sequence[float]]]) -> dict:
    """Group rates and between-group gaps from confusion counts alone (federated evaluation: each site sends its
    counts, the server sums them): ``cells[group] = [[tn, fp], [fn, tp]]`` (label x decision, positive = 1).
    Returns ``{"groups": {group: {rate: value, "count": n}}, "gaps": {name: value}}``; the calibration error is
    not available from counts and is left out."""
    names = sorted(cells)
    c = np.asarray([cells[g] for g in names], np.float64)[None]
    rates = _rates(c, np.zeros(c.shape[:2]))
    gaps = gap_stats(rates)
    keep = ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy", "count")
    groups = {g: {k: _num(rates[k][0, i]) for k in keep} for i, g in enumerate(names)}
    names_gap = ("demographic_parity_difference", "demographic_parity_ratio", "equal_opportunity_difference",
                 "equalized_odds_difference", "accuracy_difference")
    return {"groups": groups, "gaps": {k: _num(gaps[k][0]) for k in names_gap}}
