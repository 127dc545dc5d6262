"""Fairness numbers against counts done by hand (an oracle independent of fairlearn, which is also the engine):
both engines (fairlearn's MetricFrame behind ``group_report``, the bincount engine behind the bootstrap, the
threshold sweep and the mitigation verdicts) must give the hand-counted values.

Three groups and one too small to report (min_group_size=3):

    group  y            pred          TP FN FP TN  selection  TPR  FPR  accuracy  precision
    a      1 1 1 0 0 0  1 1 0 1 0 0   2  1  1  2   3/6        2/3  1/3  4/6       2/3
    b      1 1 0 0      1 0 0 0       1  1  0  2   1/4        1/2  0    3/4       1
    c      1 0 0 0 0    1 1 1 1 0     1  0  3  1   4/5        1    3/4  2/5       1/4
    d      1 0          0 1           suppressed (2 rows < 3)
"""
import numpy as np
import pytest

from tfresp.fairness import metrics as fm

Y = np.array([1, 1, 1, 0, 0, 0] + [1, 1, 0, 0] + [1, 0, 0, 0, 0] + [1, 0])
PRED = np.array([1, 1, 0, 1, 0, 0] + [1, 0, 0, 0] + [1, 1, 1, 1, 0] + [0, 1])
G = np.array(["a"] * 6 + ["b"] * 4 + ["c"] * 5 + ["d"] * 2)
PROB = np.where(PRED == 1, 0.8, 0.2)  # decisions at threshold 0.5 are PRED

BY_HAND = {
    "a": {"selection_rate": 3 / 6, "true_positive_rate": 2 / 3, "false_positive_rate": 1 / 3,
          "accuracy": 4 / 6, "precision": 2 / 3, "count": 6},
    "b": {"selection_rate": 1 / 4, "true_positive_rate": 1 / 2, "false_positive_rate": 0.0,
          "accuracy": 3 / 4, "precision": 1.0, "count": 4},
    "c": {"selection_rate": 4 / 5, "true_positive_rate": 1.0, "false_positive_rate": 3 / 4,
          "accuracy": 2 / 5, "precision": 1 / 4, "count": 5},
}
GAPS = {"demographic_parity_difference": 4 / 5 - 1 / 4,     # c - b
        "demographic_parity_ratio": (1 / 4) / (4 / 5),
        "equal_opportunity_difference": 1.0 - 1 / 2,        # c - b
        "equal_opportunity_ratio": (1 / 2) / 1.0,
        "false_positive_rate_difference": 3 / 4 - 0.0,      # c - b
        "equalized_odds_difference": max(1 / 2, 3 / 4),     # the FPR gap is the larger one
        "equalized_odds_ratio": min(1 / 2, 0.0),
        "accuracy_difference": 3 / 4 - 2 / 5,               # b - c
        "precision_difference": 1.0 - 1 / 4}                # b - c


def test_group_report_equals_the_hand_count():
    rep = fm.group_report(Y, PRED, PROB, G, min_group_size=3, bootstrap=0)
    assert rep["suppressed"] == {"d": 2} and rep["groups"] == ["a", "b", "c"] and rep["rows"] == 15
    for g, expected in BY_HAND.items():
        for m, v in expected.items():
            assert rep["by_group"][g][m] == pytest.approx(v, abs=1e-12), (g, m)
    for k, v in GAPS.items():
        assert rep[k] == pytest.approx(v, abs=1e-12), k
    assert rep["disparate_impact"] == pytest.approx((1 / 4) / (4 / 5))
    # privileged reference a: least-selected other group (b) / a
    assert fm.group_report(Y, PRED, PROB, G, min_group_size=3, bootstrap=0,
                           privileged="a")["disparate_impact"] == pytest.approx((1 / 4) / (3 / 6))


def test_count_engine_equals_the_hand_count():
    keep = G != "d"
    names = ["a", "b", "c"]
    rates = fm.group_rates(Y[keep], PRED[keep], PROB[keep], np.searchsorted(names, G[keep]), 3)
    for j, g in enumerate(names):
        for m, v in BY_HAND[g].items():
            assert rates[m][0, j] == pytest.approx(v, abs=1e-12), (g, m)
    gaps = fm.gap_stats(rates)
    for k, v in GAPS.items():
        assert gaps[k][0] == pytest.approx(v, abs=1e-12), k
    head = fm.headline_gaps(Y, PRED, G, min_group_size=3)
    for k in ("demographic_parity_difference", "equalized_odds_difference", "equal_opportunity_difference"):
        assert head[k] == pytest.approx(GAPS[k], abs=1e-12), k
    row = [r for r in fm.threshold_sweep(Y, PROB, G, [0.5, 0.9], min_group_size=3) if r["threshold"] == 0.5][0]
    assert row["equalized_odds_difference"] == pytest.approx(GAPS["equalized_odds_difference"])
    assert row["selection_rate"] == pytest.approx({g: BY_HAND[g]["selection_rate"] for g in names})
    # at threshold 0.9 nobody is selected: every selection rate, TPR and FPR is 0, so every gap is 0
    high = [r for r in fm.threshold_sweep(Y, PROB, G, [0.5, 0.9], min_group_size=3) if r["threshold"] == 0.9][0]
    assert high["demographic_parity_difference"] == 0.0 and high["equalized_odds_difference"] == 0.0


def test_a_bootstrap_resample_is_counted_like_its_rows():
    """One hand-made resample: a's rows, b's rows twice, no c row. Duplicating b changes none of b's rates;
    c is absent, so its rates are NaN and the gaps are over a and b only."""
    keep = G != "d"
    y, pred, prob, g = Y[keep], PRED[keep], PROB[keep], G[keep]
    names = ["a", "b", "c"]
    a_rows, b_rows = np.flatnonzero(g == "a"), np.flatnonzero(g == "b")
    idx = np.concatenate([a_rows, b_rows, b_rows])[None, :]
    rates = fm.group_rates(y, pred, prob, np.searchsorted(names, g), 3, idx)
    assert rates["count"][0].tolist() == [6, 8, 0]
    assert np.isnan(rates["selection_rate"][0, 2])
    assert rates["true_positive_rate"][0, 1] == pytest.approx(1 / 2)
    gaps = fm.gap_stats(rates)
    assert gaps["demographic_parity_difference"][0] == pytest.approx(3 / 6 - 1 / 4)
    assert gaps["equalized_odds_difference"][0] == pytest.approx(max(2 / 3 - 1 / 2, 1 / 3 - 0.0))


def test_intersection_labels_and_counts_by_hand():
    sex = np.array(["F", "F", "M", "M", "M"])
    race = np.array(["A", "B", "A", "A", "B"])
    labels = fm.intersect({"sex": sex, "race": race}, ["sex", "race"])
    assert labels.tolist() == ["F_x_A", "F_x_B", "M_x_A", "M_x_A", "M_x_B"]
    kept, sizes, suppressed = fm.split_by_size(labels, 2)
    assert sizes == {"F_x_A": 1, "F_x_B": 1, "M_x_A": 2, "M_x_B": 1}
    assert suppressed == {"F_x_A": 1, "F_x_B": 1, "M_x_B": 1} and kept.tolist() == [False, False, True, True, False]
