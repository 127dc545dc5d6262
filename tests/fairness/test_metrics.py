"""Group metrics: hand-counted cases, equality with fairlearn (computed here, independently) to 1e-9,
and the vectorized bootstrap against a slow per-resample fairlearn loop."""

import numpy as np
import pytest
from fairlearn import metrics as flm
from sklearn import metrics as skm

from tfresp.fairness import metrics as fm
from tfresp.fairness._fairlearn import expected_calibration_error

TOL = 1e-9


def _synthetic(n=4000, groups=("White", "Black", "Asian-Pac-Islander", "Other"), p=(0.6, 0.2, 0.15, 0.05), seed=0):
    rng = np.random.default_rng(seed)
    g = rng.choice(list(groups), size=n, p=list(p))
    y = (rng.random(n) < np.where(g == groups[0], 0.3, 0.15)).astype(int)
    prob = np.clip(0.2 + 0.45 * y + 0.1 * (g == groups[0]) + rng.normal(0, 0.2, n), 0, 1)
    return y, prob, g


def test_hand_counted_two_groups():
    # group a: y=[1,1,0,0,0], pred=[1,0,1,0,0] -> sel 2/5, TPR 1/2, FPR 1/3, acc 3/5, prec 1/2
    # group b: y=[1,1,1,0,0], pred=[1,1,1,1,0] -> sel 4/5, TPR 1,   FPR 1/2, acc 4/5, prec 3/4
    y = np.array([1, 1, 0, 0, 0, 1, 1, 1, 0, 0])
    pred = np.array([1, 0, 1, 0, 0, 1, 1, 1, 1, 0])
    prob = np.array([.95, .05, .95, .05, .05, .95, .95, .95, .95, .05])
    g = np.array(["a"] * 5 + ["b"] * 5)
    rep = fm.group_report(y, pred, prob, g, min_group_size=1, bootstrap=0)
    a, b = rep["by_group"]["a"], rep["by_group"]["b"]
    assert a["selection_rate"] == pytest.approx(0.4) and b["selection_rate"] == pytest.approx(0.8)
    assert a["true_positive_rate"] == pytest.approx(0.5) and b["true_positive_rate"] == pytest.approx(1.0)
    assert a["false_positive_rate"] == pytest.approx(1 / 3) and b["false_positive_rate"] == pytest.approx(0.5)
    assert a["false_negative_rate"] == pytest.approx(0.5) and b["true_negative_rate"] == pytest.approx(0.5)
    assert a["accuracy"] == pytest.approx(0.6) and b["precision"] == pytest.approx(0.75)
    assert rep["demographic_parity_difference"] == pytest.approx(0.4)
    assert rep["demographic_parity_ratio"] == pytest.approx(0.5)
    assert rep["equal_opportunity_difference"] == pytest.approx(0.5)
    assert rep["equalized_odds_difference"] == pytest.approx(max(0.5, 0.5 - 1 / 3))
    assert rep["disparate_impact"] == pytest.approx(0.5)
    # ECE by hand, group a: bin 9 holds p=.95 (y=1, y=0) -> |1-1.9|; bin 0 holds three .05 (y=1,0,0) -> |1-.15|
    assert a["ece"] == pytest.approx((0.9 + 0.85) / 5)
    # privileged reference: least-selected other group / privileged selection rate
    rep_p = fm.group_report(y, pred, prob, g, min_group_size=1, bootstrap=0, privileged="b")
    assert rep_p["disparate_impact"] == pytest.approx(0.4 / 0.8)


@pytest.mark.parametrize("groups,p", [(("Female", "Male"), (0.35, 0.65)),
                                      (("White", "Black", "Asian-Pac-Islander", "Other"), (0.6, 0.2, 0.15, 0.05))])
def test_equal_to_fairlearn(groups, p):
    y, prob, g = _synthetic(groups=groups, p=p)
    pred = (prob >= 0.5).astype(int)
    rep = fm.group_report(y, pred, prob, g, min_group_size=1, bootstrap=0)
    kw = dict(sensitive_features=g)
    assert abs(rep["demographic_parity_difference"] - flm.demographic_parity_difference(y, pred, **kw)) < TOL
    assert abs(rep["demographic_parity_ratio"] - flm.demographic_parity_ratio(y, pred, **kw)) < TOL
    assert abs(rep["equalized_odds_difference"] - flm.equalized_odds_difference(y, pred, **kw)) < TOL
    assert abs(rep["equalized_odds_ratio"] - flm.equalized_odds_ratio(y, pred, **kw)) < TOL
    assert abs(rep["equal_opportunity_difference"] - flm.equal_opportunity_difference(y, pred, **kw)) < TOL
    assert abs(rep["equal_opportunity_ratio"] - flm.equal_opportunity_ratio(y, pred, **kw)) < TOL
    assert abs(rep["disparate_impact"] - flm.demographic_parity_ratio(y, pred, **kw)) < TOL
    fns = {"selection_rate": flm.selection_rate, "true_positive_rate": flm.true_positive_rate,
           "false_positive_rate": flm.false_positive_rate, "false_negative_rate": flm.false_negative_rate,
           "true_negative_rate": flm.true_negative_rate, "accuracy": skm.accuracy_score,
           "precision": lambda a, b: skm.precision_score(a, b, zero_division=0)}
    frame = flm.MetricFrame(metrics=fns, y_true=y, y_pred=pred, sensitive_features=g)
    for grp in groups:
        for m in fns:
            assert abs(rep["by_group"][grp][m] - frame.by_group.loc[grp, m]) < TOL, (grp, m)
        mask = g == grp
        assert rep["by_group"][grp]["count"] == int(mask.sum())
        # ECE: an independent per-bin loop (not the module's bincount)
        ece, n = 0.0, mask.sum()
        for b in range(10):
            sel = mask & (np.minimum((prob * 10).astype(int), 9) == b)
            if sel.any():
                ece += sel.sum() / n * abs(y[sel].mean() - prob[sel].mean())
        assert abs(rep["by_group"][grp]["ece"] - ece) < TOL
    for m, key in (("accuracy", "accuracy_difference"), ("precision", "precision_difference"),
                   ("false_positive_rate", "false_positive_rate_difference")):
        assert abs(rep[key] - frame.difference()[m]) < TOL


def test_threshold_sweep_equal_to_fairlearn():
    y, prob, g = _synthetic(n=1500, groups=("A", "B", "C"), p=(0.5, 0.3, 0.2))
    sweep = fm.threshold_sweep(y, prob, g, fm.DEFAULT_THRESHOLDS, min_group_size=1)
    assert [r["threshold"] for r in sweep] == list(fm.DEFAULT_THRESHOLDS)
    fns = {"sel": flm.selection_rate, "tpr": flm.true_positive_rate, "fpr": flm.false_positive_rate}
    for row in sweep:
        pred = (prob >= row["threshold"]).astype(int)
        frame = flm.MetricFrame(metrics=fns, y_true=y, y_pred=pred, sensitive_features=g)
        diff = frame.difference()
        assert abs(row["demographic_parity_difference"] - diff["sel"]) < TOL
        assert abs(row["equalized_odds_difference"] - max(diff["tpr"], diff["fpr"])) < TOL
        assert abs(row["equal_opportunity_difference"] - diff["tpr"]) < TOL
        assert abs(row["accuracy"] - skm.accuracy_score(y, pred)) < TOL
        for grp in ("A", "B", "C"):
            assert abs(row["selection_rate"][grp] - frame.by_group.loc[grp, "sel"]) < TOL
            assert abs(row["false_positive_rate"][grp] - frame.by_group.loc[grp, "fpr"]) < TOL
    row = sweep[4]  # threshold 0.5 against fairlearn's own gap functions
    pred = (prob >= 0.5).astype(int)
    assert abs(row["equalized_odds_difference"] - flm.equalized_odds_difference(y, pred, sensitive_features=g)) < TOL
    # gaps must actually vary with the threshold (the sweep is not a constant)
    assert len({round(r["demographic_parity_difference"], 6) for r in sweep}) > 3


def _bc_reference(samples, estimate, conf):
    """Bias-corrected percentile interval written out from Efron & Tibshirani (1993), eq. 14.10 with a = 0,
    then widened to reach the estimate (tfresp's documented rule)."""
    from scipy.stats import norm

    s = np.sort(np.asarray(samples, float))
    share = min(max((np.sum(s < estimate) + 0.5 * np.sum(s == estimate)) / len(s), 0.5 / len(s)), 1 - 0.5 / len(s))
    z0 = norm.ppf(share)
    lo, hi = np.quantile(s, [norm.cdf(2 * z0 + norm.ppf((1 - conf) / 2)), norm.cdf(2 * z0 + norm.ppf((1 + conf) / 2))])
    return [min(lo, estimate), max(hi, estimate)]


def test_bootstrap_matches_slow_fairlearn_loop():
    y, prob, g = _synthetic(n=600, groups=("A", "B", "C"), p=(0.5, 0.3, 0.2), seed=3)
    pred = (prob >= 0.5).astype(int)
    B, conf = 16, 0.9
    rep = fm.group_report(y, pred, prob, g, min_group_size=1, bootstrap=B, confidence=conf, seed=7)
    idx = fm.bootstrap_indices(len(y), B, 7)
    dp, eo, eopp, sel_a, ece_b = [], [], [], [], []
    fns = {"sel": flm.selection_rate, "tpr": flm.true_positive_rate, "fpr": flm.false_positive_rate}
    for row in idx:
        yy, pp, gg, pr = y[row], pred[row], g[row], prob[row]
        diff = flm.MetricFrame(metrics=fns, y_true=yy, y_pred=pp, sensitive_features=gg).difference()
        dp.append(diff["sel"])
        eo.append(max(diff["tpr"], diff["fpr"]))
        eopp.append(diff["tpr"])
        sel_a.append(flm.selection_rate(yy[gg == "A"], pp[gg == "A"]))
        ece_b.append(expected_calibration_error(yy[gg == "B"], pr[gg == "B"]))
    # the row-by-row engine (the reference of the report's cell bootstrap, tests/fairness/test_bootstrap_cells.py)
    rates = fm.group_rates(y, pred, prob, np.searchsorted(["A", "B", "C"], g), 3, idx)
    gaps = fm.gap_stats(rates)
    for key, samples in (("demographic_parity_difference", dp), ("equalized_odds_difference", eo),
                         ("equal_opportunity_difference", eopp)):
        assert np.allclose(gaps[key], samples, atol=TOL, rtol=0), key
        assert np.allclose(fm.bc_interval(gaps[key], rep[key], conf)[:2], _bc_reference(samples, rep[key], conf),
                           atol=TOL, rtol=0), key
    assert np.allclose(rates["selection_rate"][:, 0], sel_a, atol=TOL, rtol=0)
    assert np.allclose(rates["ece"][:, 1], ece_b, atol=TOL, rtol=0)
    lo, hi = rep["demographic_parity_difference_ci"]
    assert lo < rep["demographic_parity_difference"] < hi and hi - lo > 0.01
    # seeded: same seed, same CI; another seed, another CI
    again = fm.group_report(y, pred, prob, g, min_group_size=1, bootstrap=B, confidence=conf, seed=7)
    other = fm.group_report(y, pred, prob, g, min_group_size=1, bootstrap=B, confidence=conf, seed=8)
    assert again["equalized_odds_difference_ci"] == rep["equalized_odds_difference_ci"]
    assert other["equalized_odds_difference_ci"] != rep["equalized_odds_difference_ci"]


def test_row_bootstrap_shapes_on_16k_rows():
    """The row engine (the reference of the cell engine) gives [B, G] rates and [B] gaps; speed goals live in
    benchmarks/fairness_bootstrap.py, not in timed unit tests."""
    y, prob, g = _synthetic(n=16_000, groups=("Female", "Male"), p=(0.33, 0.67))
    pred = (prob >= 0.5).astype(int)
    names = ["Female", "Male"]
    idx = fm.bootstrap_indices(len(y), 200, 0)
    rates = fm.group_rates(y, pred, prob, np.searchsorted(names, g), 2, idx)
    gaps = fm.gap_stats(rates)
    assert rates["selection_rate"].shape == (200, 2) and gaps["equalized_odds_difference"].shape == (200,)
    assert np.isfinite(gaps["equalized_odds_difference"]).all()


def test_small_groups_are_suppressed_and_excluded():
    y, prob, g = _synthetic(n=2000, groups=("A", "B", "C"), p=(0.6, 0.39, 0.01), seed=1)
    pred = (prob >= 0.5).astype(int)
    n_c = int((g == "C").sum())
    assert 0 < n_c < 50
    rep = fm.group_report(y, pred, prob, g, min_group_size=50, bootstrap=10)
    assert rep["suppressed"] == {"C": n_c}
    assert set(rep["by_group"]) == {"A", "B"} and rep["group_sizes"]["C"] == n_c
    keep = g != "C"
    expected = flm.demographic_parity_difference(y[keep], pred[keep], sensitive_features=g[keep])
    assert abs(rep["demographic_parity_difference"] - expected) < TOL


def test_intersectional_labels_and_report():
    y, prob, sex = _synthetic(n=3000, groups=("Female", "Male"), p=(0.4, 0.6), seed=2)
    race = np.random.default_rng(5).choice(["White", "Black", "Other"], size=3000, p=[0.8, 0.17, 0.03])
    inter = fm.intersect({"sex": sex, "race": race}, ["sex", "race"])
    assert inter[0] == f"{sex[0]}_x_{race[0]}"
    pred = (prob >= 0.5).astype(int)
    rep = fm.group_report(y, pred, prob, inter, min_group_size=60, bootstrap=0)
    sizes = {k: int(v) for k, v in zip(*np.unique(inter, return_counts=True))}
    assert rep["suppressed"] == {k: v for k, v in sizes.items() if v < 60} and rep["suppressed"]
    keep = np.isin(inter, [k for k, v in sizes.items() if v >= 60])
    assert abs(rep["equalized_odds_difference"]
               - flm.equalized_odds_difference(y[keep], pred[keep], sensitive_features=inter[keep])) < TOL


def test_the_row_engine_and_fairlearns_adapter_use_the_same_calibration_bins():
    from tfresp.fairness import _fairlearn, metrics

    assert metrics.ECE_BINS == _fairlearn.ECE_BINS
