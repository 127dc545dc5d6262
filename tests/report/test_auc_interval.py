"""roc_auc_interval: the range of ROC-AUC over score vectors within delta, checked against sklearn on perturbations."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tfresp.evaluation.metrics import roc_auc_interval


def _near_tied(rng, n=400, classes=2):
    """Scores on a coarse grid (many exact and near ties, like a near-degenerate model's)."""
    y = rng.integers(0, classes, n)
    raw = np.round(rng.random((n, classes)), 2) + 1e-3
    return y, raw / raw.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [2, 3])
def test_every_perturbation_within_delta_stays_inside_the_range(classes):
    rng = np.random.default_rng(0)
    y, p = _near_tied(rng, classes=classes)
    delta = 1e-4
    lo, hi = roc_auc_interval(y, p, delta)
    assert lo < hi  # the grid makes ties: the range is not a point

    def auc(q):  # one-vs-rest macro, as sklearn's multi_class="ovr" (which insists on rows summing to 1)
        cols = [1] if classes == 2 else range(classes)
        return float(np.mean([roc_auc_score(y == k, q[:, k]) for k in cols]))

    assert classes > 2 or auc(p) == pytest.approx(roc_auc_score(y, p[:, 1]), abs=1e-12)
    values = [auc(p + rng.uniform(-delta, delta, p.shape)) for _ in range(50)]
    assert all(lo - 1e-12 <= v <= hi + 1e-12 for v in values), (lo, hi, min(values), max(values))
    assert max(values) > min(values)  # the perturbations really do move the AUC
    # the bounds are attained: every positive down by delta and every negative up (and the reverse)
    down = np.stack([np.where(y == k, p[:, k] - delta, p[:, k] + delta) for k in range(classes)], axis=1)
    up = np.stack([np.where(y == k, p[:, k] + delta, p[:, k] - delta) for k in range(classes)], axis=1)
    assert auc(down) == pytest.approx(lo, abs=1e-9)
    assert auc(up) == pytest.approx(hi, abs=1e-9)


def test_no_close_pairs_gives_sklearns_value_exactly():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = rng.permutation(300) / 300.0  # pairwise gaps >= 1/300, far above 2*delta
    p = np.stack([1 - s, s], axis=1)
    lo, hi = roc_auc_interval(y, p, 1e-6)
    assert lo == hi == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_a_class_missing_from_the_labels_gives_none():
    p = np.full((5, 2), 0.5)
    assert roc_auc_interval(np.zeros(5, int), p, 1e-6) is None


def test_verify_gates_read_a_recorded_auc_inside_its_range_and_flag_one_outside():
    """The CI failure this range fixes: report 0.5914316931, SavedModel 0.59142892. A gate `roc_auc >= 0.59143`
    re-derived from the recomputed value would flip; inside the range the recorded value is kept for the gates."""
    from tfresp.commands.verify import Findings, Interval, _adopt_consistent_aucs

    ev = {"test": {"roc_auc": 0.59142892}, "validation": {"roc_auc": 0.7}}
    bounded = {"test": {"roc_auc": Interval(0.5914250, 0.5914330, "noise")},
               "validation": {"roc_auc": Interval(0.69, 0.71, "noise")}}
    recorded = {"test": {"roc_auc": 0.5914316931}, "validation": {"roc_auc": 0.75}}
    found = Findings()
    found.compare("evaluation", recorded, bounded)
    _adopt_consistent_aucs(ev, bounded, recorded)
    assert ev["test"]["roc_auc"] == 0.5914316931  # consistent: the gates see the recorded number
    assert ev["validation"]["roc_auc"] == 0.7  # inconsistent: stays recomputed, and is a mismatch
    assert len(found.mismatches) == 1 and "evaluation.validation.roc_auc" in found.mismatches[0]
