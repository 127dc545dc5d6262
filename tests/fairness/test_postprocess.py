"""Threshold post-processing: fairlearn's ThresholdOptimizer rules, served in TF, refused when trivial.

The constructed case: group A's scores separate the labels well, group B's poorly, so their ROC curves
meet only at (0, 0) and (1, 1). No pair of deterministic thresholds equalizes TPR and FPR except the trivial
"approve everyone / no one"; the randomized rule of Hardt et al. (2016) does, and is what gets served.
"""
import numpy as np
import pytest
import tensorflow as tf
from fairlearn.postprocessing import ThresholdOptimizer

from tfresp.fairness import postprocess as pp


def _scores(n, seed, strength_b=0.5):
    rng = np.random.default_rng(seed)
    g = rng.choice(["A", "B"], n, p=[0.5, 0.5])
    y = (rng.random(n) < 0.5).astype(int)
    margin = np.where(g == "A", 3.5, strength_b) * (2 * y - 1) / 2
    score = 1 / (1 + np.exp(-(margin + rng.normal(0, 1, n))))
    return y, score, g


def _eo_gap(y, p, g):
    out = []
    for lab in (0, 1):
        r = [p[(g == k) & (y == lab)].mean() for k in ("A", "B")]
        out.append(abs(r[0] - r[1]))
    return max(out)


def test_deterministic_thresholds_cannot_equalize_odds_here():
    y, s, g = _scores(6000, 0)
    grid = np.linspace(0, 1, 401)

    def rates(k):
        d = s[g == k][None, :] >= grid[:, None]
        yk = y[g == k]
        return d[:, yk == 0].mean(1), d[:, yk == 1].mean(1), d.mean(1)

    fa, ta, sa = rates("A")
    fb, tb, sb = rates("B")
    gap = np.maximum(np.abs(fa[:, None] - fb[None, :]), np.abs(ta[:, None] - tb[None, :]))
    useful = ((sa > 0.15) & (sa < 0.85))[:, None] & ((sb > 0.15) & (sb < 0.85))[None, :]
    # every pair of deterministic thresholds that selects 15-85% of each group misses a 0.05 tolerance
    assert gap[useful].min() > 0.05
    assert gap.min() < 1e-9  # only the trivial corners (everyone / no one) equalize the odds


def test_randomized_rule_is_served_meets_equalized_odds_and_matches_fairlearn():
    y, s, g = _scores(6000, 0)
    fitted = pp.fit_group_thresholds(y, s, g, "equalized_odds", tolerance=0.02)
    assert fitted["refused"] is None and not fitted["trivial_groups"] and fitted["randomized_groups"]
    p = pp.positive_probability(s, g, fitted)
    assert 0.05 < p.mean() < 0.95  # not "approve everyone"
    assert pp.expected_gap(y, p, g, "equalized_odds", 30) <= 1e-9
    # oracle: fairlearn's own randomized predictor on the same data
    opt = ThresholdOptimizer(estimator=pp._Score(), constraints="equalized_odds", prefit=True,
                             predict_method="predict").fit(s[:, None], y, sensitive_features=g)
    ref = opt._pmf_predict(s[:, None], sensitive_features=g)[:, 1]
    np.testing.assert_allclose(p, ref, atol=1e-12)
    # fresh rows from the same distribution: the served (drawn) decisions keep the gap small
    yt, st, gt = _scores(20000, 1)
    module = pp.GroupThresholds(["grp"], fitted, ["grp", "x"], seed=3)
    inputs = {"grp": tf.constant(gt.astype(object)), "x": tf.constant(st.astype(np.float32))}
    proba = tf.constant(np.stack([1 - st, st], 1), tf.float32)
    np.testing.assert_allclose(module.positive_probability(inputs, proba).numpy(),
                               pp.positive_probability(st.astype(np.float32), gt, fitted), atol=1e-12)
    drawn = module(inputs, proba).numpy()
    assert _eo_gap(yt, drawn.astype(float), gt) < 0.03
    # seeded and reproducible: same rows, same decisions; another seed draws differently
    np.testing.assert_array_equal(drawn, module(inputs, proba).numpy())
    other = pp.GroupThresholds(["grp"], fitted, ["grp", "x"], seed=4)(inputs, proba).numpy()
    assert (other != drawn).any()


def test_trivial_rule_is_refused_unless_allowed():
    # group B's scores carry no information: equalized odds forces both groups onto the ROC diagonal,
    # where decisions ignore the label -- the silent "approve (almost) everyone" of the issue
    y, s, g = _scores(6000, 2, strength_b=0.0)
    rng = np.random.default_rng(5)
    s = np.where(g == "B", rng.random(len(s)), s)
    fitted = pp.fit_group_thresholds(y, s, g, "equalized_odds")
    assert set(fitted["trivial_groups"]) == {"A", "B"}
    assert fitted["refused"] and "allow_trivial" in fitted["refused"]
    allowed = pp.fit_group_thresholds(y, s, g, "equalized_odds", allow_trivial=True)
    assert allowed["refused"] is None and allowed["trivial_groups"] == fitted["trivial_groups"]


def test_small_or_single_label_groups_are_defaulted_and_named():
    y, s, g = _scores(3000, 0)
    g = g.astype(object)
    g[:20] = "C"
    y = y.copy()
    g[20:60] = "D"
    y[20:60] = 1
    fitted = pp.fit_group_thresholds(y, s, g.astype(str), "demographic_parity", min_group_size=30)
    assert set(fitted["defaulted_groups"]) == {"C", "D"}
    assert "validation rows" in fitted["defaulted_groups"]["C"] and "only label 1" in fitted["defaulted_groups"]["D"]
    p = pp.positive_probability(s, g.astype(str), fitted)
    np.testing.assert_array_equal(p[:60], (s[:60] >= 0.5).astype(float))


@pytest.mark.parametrize("constraint", ["demographic_parity", "equal_opportunity"])
def test_simple_constraints_are_met_in_expectation(constraint):
    y, s, g = _scores(4000, 7)
    fitted = pp.fit_group_thresholds(y, s, g, constraint)
    p = pp.positive_probability(s, g, fitted)
    assert fitted["refused"] is None
    assert pp.expected_gap(y, p, g, constraint, 30) <= 1e-9


def _frame(n, seed, strength_b):
    import pandas as pd

    rng = np.random.default_rng(seed)
    g = rng.choice(["A", "B"], n)
    y = (rng.random(n) < 0.5).astype(int)
    signal = np.where(g == "A", 3.5, strength_b) * (2 * y - 1) / 2 + rng.normal(0, 1, n)
    return pd.DataFrame({"x": signal, "z": rng.normal(size=n), "grp": g, "label": np.where(y == 1, "yes", "no")})


@pytest.mark.slow
@pytest.mark.parametrize("strength_b,expect", [(0.5, "served"), (0.0, "refused")])
def test_end_to_end_infeasible_deterministic_case(tmp_path, strength_b, expect):
    """Through tfresp.fit: randomized rules are served (and the SavedModel reproduces the audited decisions),
    or the trivial rule is refused and the raw model served, with a warning; never a silent 'approve all'."""
    import tfresp

    _frame(4000, 0, strength_b).to_csv(tmp_path / "train.csv", index=False)
    _frame(4000, 1, strength_b).to_csv(tmp_path / "test.csv", index=False)
    cfg = {"name": "eo", "seed": 0,
           "data": {"source": str(tmp_path / "train.csv"), "label": "label", "sensitive": ["grp"],
                    "split": {"test": str(tmp_path / "test.csv"), "validation": 0.4}},
           "model": {"kind": "mlp", "hidden": [8]}, "train": {"epochs": 3, "batch_size": 128},
           "fairness": {"mitigation": "threshold", "constraint": "equalized_odds", "bootstrap": 50},
           "report": {"html": False}}
    run = tfresp.fit(cfg, out=str(tmp_path / "run"), quiet=True)
    mit, ev = run.report["fairness"]["mitigation"], run.report["evaluation"]
    if expect == "served":
        assert mit["served"] and mit["randomized_groups"] and not mit["trivial_groups"]
        share = (ev["served"]["confusion_matrix"][0][1] + ev["served"]["confusion_matrix"][1][1]) / 4000
        assert 0.1 < share < 0.9
        assert run.report["fairness"]["grp"]["equalized_odds_difference"] < 0.05
        assert run.report["export"]["saved_model"]["roundtrip_class_id_mismatches"] == 0
    else:
        assert mit["served"] is False and mit["trivial_groups"] and mit["verdict"]["status"] == "refused"
        assert "served" not in ev and "saved_model" in run.report["export"]
        assert any("refused" in w["message"] for w in run.report["warnings"])
