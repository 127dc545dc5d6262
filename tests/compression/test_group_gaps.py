"""compression.measure.group_gaps: fairlearn on (group, label, decision) cells weighted by their counts gives the
same demographic-parity difference as fairlearn on the rows (exactly: the rates are the same integer ratios)."""
import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference

from tfresp.compression.measure import group_gaps


@pytest.mark.parametrize("classes", [2, 3])
def test_cells_equal_rows(classes):
    rng = np.random.default_rng(classes)
    for _ in range(10):
        n = int(rng.integers(40, 5000))
        y, pred = rng.integers(0, classes, n), rng.integers(0, classes, n)
        g = rng.choice(["Female", "Male", "x_y", "<missing>"], n, p=[0.4, 0.4, 0.15, 0.05]).astype(object)
        if classes == 2:
            oracle = demographic_parity_difference(y, pred, sensitive_features=g)
        else:
            oracle = max(demographic_parity_difference((y == c).astype(int), (pred == c).astype(int),
                                                       sensitive_features=g) for c in range(classes))
        assert group_gaps(y, pred, {"s": g}, classes)["s"] == oracle


def test_a_changed_decision_changes_the_gap():
    y = np.array([0, 1] * 50)
    pred = np.array([0, 1] * 50)
    g = np.array(["a"] * 50 + ["b"] * 50, dtype=object)
    before = group_gaps(y, pred, {"s": g})["s"]
    pred[0] = 1 - pred[0]
    assert group_gaps(y, pred, {"s": g})["s"] != before
