"""Issue 24 (monitor truth under DP) and issue 26 (monitor speed): the DP folded bucket, and the fast window
statistics checked against their slow engines (scikit-learn, fairlearn via group_report, scipy)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tfresp.monitoring import drift
from tfresp.monitoring.profile import FOLDED, OTHER, build_reference
from tfresp.monitoring.run import _binary_metrics, fast_group_report, window_performance


# --- DP folded bucket ------------------------------------------------------------------------------------------
VOCAB = ["a", "b"]  # the DP vocabulary: "c" and "d" did not pass the threshold and were folded in training


def _dp_reference(rng, n=3000, p=(0.5, 0.3, 0.15, 0.05)):
    frame = pd.DataFrame({"col": rng.choice(["a", "b", "c", "d"], n, p=p)})
    return build_reference(frame, features=["col"], kinds={"col": "categorical"}, sensitive=[], label=None,
                           classes=["n", "y"], proba=np.full((n, 2), 0.5), class_id=np.zeros(n, np.int64),
                           source="test", vocab={"col": VOCAB}, folded=["col"])


def _window(rng, n=2000, p=(0.5, 0.3, 0.15, 0.05)):
    return pd.DataFrame({"col": rng.choice(["a", "b", "c", "d"], n, p=p)})


def test_reference_holds_the_distribution_the_model_saw():
    ref = _dp_reference(np.random.default_rng(0))
    prof = ref["features"]["col"]
    assert set(prof["counts"]) == {"a", "b", OTHER, FOLDED}
    assert prof["counts"][FOLDED] == pytest.approx(0.2 * 3000, abs=80)
    assert prof["folded"]["values"] == ["c", "d"]  # held-out values folded by DP, >= MIN_CELL rows each


def test_folded_values_are_not_unseen_and_unshifted_windows_stay_quiet():
    rng = np.random.default_rng(1)
    ref = _dp_reference(rng)
    alarms = 0
    for _ in range(50):
        res = drift.window_drift(ref, _window(rng), np.full((2000, 2), 0.5), np.zeros(2000, np.int64))
        alarms += len([a for a in res["alarms"] if a["type"] in ("unseen_category", "drift")])
        assert "unseen_rows" not in res["features"]["col"]
    assert alarms <= 2  # alpha 1% per window


def test_new_value_in_dp_column_still_alarms_and_shift_of_folded_bucket_drifts():
    rng = np.random.default_rng(2)
    ref = _dp_reference(rng)
    w = _window(rng)
    w.loc[:199, "col"] = "Space-force"  # 10% of the rows: a value nobody held
    res = drift.window_drift(ref, w, np.full((2000, 2), 0.5), np.zeros(2000, np.int64))
    unseen = [a for a in res["alarms"] if a["type"] == "unseen_category"]
    assert unseen and unseen[0]["values"] == ["Space-force"]
    # more rows in the folded bucket (c, d tripled): compared as that bucket, the drift test fires
    w2 = _window(rng, p=(0.3, 0.1, 0.45, 0.15))
    res2 = drift.window_drift(ref, w2, np.full((2000, 2), 0.5), np.zeros(2000, np.int64))
    assert "col" in res2["overall"]["drifted_features"]
    assert not [a for a in res2["alarms"] if a["type"] == "unseen_category"]


def test_rare_unnamed_values_alarm_only_beyond_the_reference_rate():
    """Values the reference held too rarely to name: counted as unseen, alarmed only when their share exceeds the
    reference's (Fisher's exact test), not merely when they reach 1% of a window."""
    rng = np.random.default_rng(3)
    vals = np.array([f"r{i}" for i in range(300)])  # 300 rare values, 3% of rows
    base = rng.choice(["a", "b"], 3000).astype(object)
    base[:90] = vals[rng.integers(0, 300, 90)]
    frame = pd.DataFrame({"col": base})
    ref = build_reference(frame, features=["col"], kinds={"col": "categorical"}, sensitive=[], label=None,
                          classes=["n", "y"], proba=np.full((3000, 2), 0.5), class_id=np.zeros(3000, np.int64),
                          source="t", vocab={"col": VOCAB}, folded=["col"])
    assert ref["features"]["col"]["folded"]["values"] == []
    w = pd.DataFrame({"col": rng.choice(["a", "b"], 2000)})
    w.loc[:59, "col"] = vals[rng.integers(0, 300, 60)]  # 3%, the reference's rate
    res = drift.window_drift(ref, w, np.full((2000, 2), 0.5), np.zeros(2000, np.int64))
    assert res["features"]["col"]["unseen_rows"] == 60
    assert not [a for a in res["alarms"] if a["type"] == "unseen_category"]
    w.loc[:259, "col"] = vals[rng.integers(0, 300, 260)]  # 13%
    res = drift.window_drift(ref, w, np.full((2000, 2), 0.5), np.zeros(2000, np.int64))
    assert [a for a in res["alarms"] if a["type"] == "unseen_category"]


def test_dp_preprocessing_warning_names_columns_and_shares():
    from tfresp.report.derive import warnings_for

    report = {"data": {"preprocessing": {"dropped_columns": ["occupation"], "folded": {
        "rows_from": "validation split (300 held-out rows)",
        "columns": {"education": {"share_of_rows": 0.047, "values": {"Doctorate": 0.012, "9th": 0.016},
                                  "unnamed_rows": 3}}}}}}
    ws = {w["code"]: w["message"] for w in warnings_for(report)}
    assert "occupation" in ws["dp_dropped_columns"]
    msg = ws["dp_folded_categories"]
    assert "education" in msg and "4.7%" in msg and "Doctorate 1.2%" in msg and "9th 1.6%" in msg


# --- fast statistics against their engines -------------------------------------------------------------------
def test_chi2_matches_scipy():
    rng = np.random.default_rng(4)
    for _ in range(20):
        k = rng.integers(2, 12)
        ref, cur = rng.integers(0, 300, k).tolist(), rng.integers(0, 300, k).tolist()
        table = np.array([ref, cur])
        table = table[:, table.sum(axis=0) > 0]
        expected = stats.chi2_contingency(table, correction=False).pvalue if table.shape[1] >= 2 else 1.0
        assert drift.chi2_pvalue(ref, cur) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_binary_metrics_match_sklearn():
    from tfresp.evaluation.metrics import classification_metrics

    rng = np.random.default_rng(5)
    for n in (50, 2000):
        y = rng.integers(0, 2, n)
        p1 = np.round(rng.random(n), 2)  # ties in the scores
        proba = np.stack([1 - p1, p1], axis=1)
        pred = (p1 >= 0.5).astype(np.int64)
        fast = _binary_metrics(y, proba, pred)
        slow = classification_metrics(y, proba, ["n", "y"], y_pred=pred)
        assert fast["confusion_matrix"] == slow["confusion_matrix"]
        for k in ("rows", "accuracy", "precision", "recall", "f1", "balanced_accuracy", "roc_auc", "log_loss",
                  "threshold"):
            assert fast[k] == pytest.approx(slow[k], rel=1e-9, abs=1e-12), k
    one = window_performance(np.zeros(10, np.int64), np.full((10, 2), 0.5), np.zeros(10, np.int64), ["n", "y"])
    assert one["roc_auc"] is None and one["accuracy"] == 1.0


def test_fast_group_report_matches_group_report():
    from tfresp.fairness.metrics import group_report

    rng = np.random.default_rng(6)
    n = 2000
    y = rng.integers(0, 2, n)
    prob = rng.random(n)
    pred = (prob > 0.6).astype(np.int64)
    groups = rng.choice(["A", "B", "C", "tiny"], n, p=(0.5, 0.3, 0.19, 0.01))
    slow = group_report(y, pred, prob, groups, min_group_size=30, bootstrap=100, seed=7)
    fast = fast_group_report(y, pred, prob, groups, min_group_size=30, bootstrap=100, seed=7)

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, prefix + k + "."))
            else:
                out[prefix + k] = v
        return out

    fs, ss = flat(fast), flat(slow)
    assert set(fs) == set(ss)
    for k in ss:
        if isinstance(ss[k], float):
            assert fs[k] == pytest.approx(ss[k], rel=1e-9, abs=1e-12), k
        elif isinstance(ss[k], list) and ss[k] and isinstance(ss[k][0], float):
            assert fs[k] == pytest.approx(ss[k], rel=1e-9, abs=1e-12), k
        else:
            assert fs[k] == ss[k], k


def test_vectorized_bc_intervals_match_their_one_column_version():
    from tfresp.fairness.metrics import bc_interval, bootstrap_indices, group_rates
    from tfresp.monitoring.run import bc_intervals

    rng = np.random.default_rng(8)
    n = 500
    y, pred, prob = rng.integers(0, 2, n), rng.integers(0, 2, n), rng.random(n)
    gidx = rng.choice(3, n, p=(0.6, 0.39, 0.01))  # group 2: absent from some resamples (NaN rates)
    idx = bootstrap_indices(n, 300, 1)
    slow = group_rates(y, pred, prob, gidx, 3, idx)
    cols = np.stack([slow[m][:, j] for m in ("selection_rate", "ece") for j in range(3)], axis=1)
    est = [float(np.nanmean(cols[:, j])) for j in range(cols.shape[1])] + [None]
    cols = np.concatenate([cols, cols[:, :1]], axis=1)
    lo, hi, widened = bc_intervals(cols, est, 0.95)
    one = [bc_interval(cols[:, j], e, 0.95) for j, e in enumerate(est)]
    assert lo[-1] is None and hi[-1] is None
    assert lo[:-1] == pytest.approx([o[0] for o in one[:-1]], rel=1e-12)
    assert hi[:-1] == pytest.approx([o[1] for o in one[:-1]], rel=1e-12)
    assert widened == sum(int(o[2]) for o in one)


def test_wilson_matches_scipy():
    from tfresp.monitoring.run import wilson_ci

    for k, n in ((0, 10), (10, 10), (3, 17), (1700, 2000), (1, 1)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_ci(k, n) == pytest.approx([ci.low, ci.high], rel=1e-12, abs=1e-15)
