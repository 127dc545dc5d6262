"""Ethics score E and bias score B against a slow per-example reference (the definition, literally)."""
import math

import numpy as np
import pytest

from tests.report.conftest import synthetic_report
from tfresp.config import load_config
from tfresp.report import scorecard
from tfresp.report.derive import derive


def _reference_E(y, yhat, groups, eps, alpha_acc, alpha_eps, scale_eps):
    """E = sum_i sum_j alpha_ij f_j(M(x_i)) with alpha_ij = alpha_j / n, computed example by example."""
    n = len(y)
    total = 0.0
    for i in range(n):
        f_acc = 1.0 if yhat[i] == y[i] else 0.0                # per-example goodness of "accuracy"
        f_eps = min(1.0, max(0.0, 1.0 - eps / scale_eps))      # dataset-level metric: same for every i
        total += (alpha_acc / n) * f_acc + (alpha_eps / n) * f_eps
    return total


def _reference_B(y, yhat, groups, beta):
    """B with g = demographic-parity difference (dataset-level), spread over examples."""
    rates = {}
    for g in sorted(set(groups)):
        idx = [i for i in range(len(y)) if groups[i] == g]
        rates[g] = sum(yhat[i] for i in idx) / len(idx)
    dp = max(rates.values()) - min(rates.values())
    return sum(beta / len(y) * dp for _ in range(len(y))), dp


def test_scores_match_per_example_definition():
    rng = np.random.default_rng(0)
    n = 500
    y = rng.integers(0, 2, n)
    groups = rng.choice(["F", "M"], n)
    yhat = np.where(rng.random(n) < 0.8, y, 1 - y)
    yhat[(groups == "M") & (rng.random(n) < 0.2)] = 1
    acc = float(np.mean(yhat == y))
    ref_b, dp = _reference_B(y, yhat, groups, beta=2.0)
    report = synthetic_report(evaluation__test__accuracy=acc, privacy__epsilon=4.0,
                              fairness={"sex": {"demographic_parity_difference": dp}})
    card = scorecard.compute(report, {
        "ethics": [{"metric": "accuracy", "weight": 1.5}, {"metric": "privacy.epsilon", "weight": 0.5, "scale": 8}],
        "bias": [{"metric": "fairness.sex.demographic_parity_difference", "weight": 2.0}]})
    assert card["ethics"]["value"] == pytest.approx(_reference_E(y, yhat, groups, 4.0, 1.5, 0.5, 8.0), rel=1e-9)
    assert card["ethics"]["normalized"] == pytest.approx(card["ethics"]["value"] / 2.0)
    assert card["bias"]["value"] == pytest.approx(ref_b, rel=1e-9)
    assert card["bias"]["normalized"] == pytest.approx(dp)
    assert card["source"] == "config"


def test_directions_scales_and_no_privacy():
    assert scorecard.infer_direction("privacy.epsilon") == "lower"
    assert scorecard.infer_direction("fairness.sex.equalized_odds_difference") == "lower"
    assert scorecard.infer_direction("privacy.audit.mia_auc") == "lower"
    assert scorecard.infer_direction("robustness.pgd@0.1.accuracy") == "higher"
    assert scorecard.goodness(0.3, "higher", 1.0) == pytest.approx(0.3)
    assert scorecard.goodness(12.0, "lower", 10.0) == 0.0
    assert scorecard.goodness(math.inf, "lower", 10.0) == 0.0
    # no DP: epsilon is infinite -> goodness 0, noted, not "missing"
    card = scorecard.compute(synthetic_report(privacy=None), None)
    eps_term = next(t for t in card["ethics"]["terms"] if t["metric"] == "privacy.epsilon")
    assert eps_term["term"] == 0.0 and "infinity" in eps_term["note"]


def test_default_terms_follow_the_run():
    card = scorecard.compute(synthetic_report(), None)
    metrics = [t["metric"] for t in card["ethics"]["terms"]]
    assert metrics == ["evaluation.test.balanced_accuracy", "privacy.epsilon", "robustness.pgd@0.1.accuracy"]
    assert [t["metric"] for t in card["bias"]["terms"]] == ["fairness.sex.demographic_parity_difference",
                                                            "fairness.sex.equalized_odds_difference"]
    # default E = (0.7 + (1 - 3/10) + 0.4) / 3
    assert card["ethics"]["normalized"] == pytest.approx((0.7 + 0.7 + 0.4) / 3)
    assert card["bias"]["normalized"] == pytest.approx((0.12 + 0.08) / 2)


def test_missing_terms_are_left_out_not_counted_as_perfect():
    card = scorecard.compute(synthetic_report(robustness=None), {
        "ethics": [{"metric": "accuracy"}, {"metric": "robustness.pgd@0.1.accuracy", "weight": 5}]})
    assert card["ethics"]["missing"] == ["robustness.pgd@0.1.accuracy"]
    assert card["ethics"]["normalized"] == pytest.approx(0.8)


def test_thresholds_drive_gates_through_config():
    cfg = load_config({"scorecard": {"ethics": [{"metric": "accuracy"}], "min_ethics": 0.9, "max_bias": 0.5}})
    report = synthetic_report(run__config=cfg.to_dict())
    derive(report)
    res = {g["metric"]: g["passed"] for g in report["gates"]["results"]}
    assert res == {"scorecard.ethics.normalized": False, "scorecard.bias.normalized": True}
    assert report["gates"]["passed"] is False


def test_per_example_stats_match_a_python_loop():
    rng = np.random.default_rng(1)
    n = 300
    logits = rng.normal(size=(n, 2))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 2, n)
    sex = rng.choice(["F", "M"], n, p=[0.2, 0.8])
    stats = scorecard.per_example_stats(y, proba, {"sex": sex}, threshold=0.5)
    correct, ptrue, brier = [], [], []
    for i in range(n):
        yhat = 1 if proba[i, 1] >= 0.5 else 0
        correct.append(1.0 if yhat == y[i] else 0.0)
        ptrue.append(proba[i, y[i]])
        brier.append(sum((proba[i, k] - (1.0 if y[i] == k else 0.0)) ** 2 for k in range(2)))
    assert stats["correct"] == pytest.approx(sum(correct) / n)
    assert stats["true_class_probability"] == pytest.approx(sum(ptrue) / n)
    assert stats["brier"] == pytest.approx(sum(brier) / n)
    sizes = {g: int((sex == g).sum()) for g in ("F", "M")}
    e_balanced = sum(correct[i] / (2 * sizes[sex[i]]) for i in range(n))   # alpha_i = 1 / (G n_g(i))
    assert stats["group_balanced_correct"]["sex"] == pytest.approx(e_balanced)
    per_group = {g: sum(correct[i] for i in range(n) if sex[i] == g) / sizes[g] for g in sizes}
    assert stats["worst_group_correct"]["sex"] == pytest.approx(min(per_group.values()))
    assert e_balanced == pytest.approx(sum(per_group.values()) / 2)
    # usable as score terms, and kept when derived parts are recomputed (tfresp report)
    report = synthetic_report(scorecard={"per_example": stats})
    report["run"]["config"]["scorecard"] = {"ethics": [{"metric": "scorecard.per_example.group_balanced_correct.sex"},
                                                       {"metric": "scorecard.per_example.brier", "weight": 0.5}]}
    derive(report)
    derive(report)
    terms = {t["metric"]: t["term"] for t in report["scorecard"]["ethics"]["terms"]}
    assert terms["scorecard.per_example.group_balanced_correct.sex"] == pytest.approx(e_balanced)
    assert terms["scorecard.per_example.brier"] == pytest.approx(1 - sum(brier) / n)  # lower is better
    assert report["scorecard"]["per_example"] == stats


def test_default_ethics_uses_served_decisions_after_post_processing():
    post = {"rows": 400, "accuracy": 0.78, "balanced_accuracy": 0.74}
    card = scorecard.compute(synthetic_report(evaluation__test_postprocessed=post), None)
    first = card["ethics"]["terms"][0]
    assert first["metric"] == "evaluation.test_postprocessed.balanced_accuracy" and first["value"] == 0.74
