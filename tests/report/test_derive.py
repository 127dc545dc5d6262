"""Derived intervals and automatic warnings."""
import pytest
from scipy import stats

from tests.report.conftest import synthetic_report
from tfresp.report.derive import derive, wilson_interval


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (80, 100), (999, 1000), (1000, 1000), (17, 23)])
def test_wilson_interval_matches_scipy(k, n):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)
    assert wilson_interval(0, 0) is None


def test_precision_recall_intervals_use_their_own_denominators():
    r = derive(synthetic_report())
    ev = r["evaluation"]["test"]
    tp, fp, fn = 50, 30, 50
    assert ev["precision_ci"] == pytest.approx(wilson_interval(tp, tp + fp))
    assert ev["recall_ci"] == pytest.approx(wilson_interval(tp, tp + fn))
    assert ev["accuracy_ci"] == pytest.approx(wilson_interval(320, 400))


def test_concern_supplied_interval_is_kept():
    r = derive(synthetic_report(evaluation__test__accuracy_ci=[0.7, 0.9]))
    assert r["evaluation"]["test"]["accuracy_ci"] == [0.7, 0.9]


def _codes(report):
    return {w["code"] for w in derive(report)["warnings"]}


def test_warnings_fire_on_their_conditions():
    base = _codes(synthetic_report())
    assert "small_groups" in base                # F has 20 < 30 test rows
    assert "no_privacy" not in base and "large_epsilon" not in base
    assert "not_robust" not in base
    assert "large_epsilon" in _codes(synthetic_report(privacy__epsilon=12.0))
    assert "no_privacy" in _codes(synthetic_report(privacy=None))
    assert "no_fairness_audit" in _codes(synthetic_report(fairness=None))
    assert "not_robust" in _codes(synthetic_report(robustness={"pgd@0.3": {"accuracy": 0.02}}))
    assert "mia" in _codes(synthetic_report(privacy__audit={"mia_auc": 0.7}))
    assert "wide_ci" in _codes(synthetic_report(evaluation__test__rows=50, evaluation__test__confusion_matrix=None))
    assert "compression_drop" in _codes(synthetic_report(compression__int8__accuracy=0.7))
    assert "no_intended_use" in _codes(synthetic_report(run__intended_use=""))


def test_no_small_group_warning_when_groups_are_large():
    r = synthetic_report(data__splits__test__group_sizes={"sex": {"F": 200, "M": 200}})
    assert "small_groups" not in _codes(r)
