"""Release gates: string and dict forms, weights, missing metrics, config validation."""
import pytest

from tests.report.conftest import synthetic_report
from tfresp.config import load_config
from tfresp.errors import ConfigError
from tfresp.report.gates import Gate, evaluate, failure_lines, lookup


def test_lookup_handles_dotted_keys_and_bare_metrics():
    r = synthetic_report()
    assert lookup(r, "robustness.pgd@0.1.accuracy") == 0.4
    assert lookup(r, "robustness.pgd@0.05.accuracy") == 0.6
    assert lookup(r, "accuracy") == 0.8  # bare name -> evaluation.test
    assert lookup(r, "fairness.sex.equalized_odds_difference") == 0.08
    assert lookup(r, "fairness.race.equalized_odds_difference") is None
    assert lookup(r, "fairness.sex.by_group") is None  # not a number


def test_string_and_dict_gates_with_weights():
    r = synthetic_report()
    gates = ["accuracy >= 0.8", "privacy.epsilon <= 2",
             {"metric": "robustness.pgd@0.1.accuracy", "op": ">=", "threshold": 0.5, "weight": 3},
             {"metric": "fairness.sex.equalized_odds_difference", "op": "<", "threshold": 0.1, "weight": 0.5}]
    res = evaluate(gates, r)
    passed = [g["passed"] for g in res["results"]]
    assert passed == [True, False, False, True]
    assert res["passed"] is False and res["count"] == 4
    assert res["failed"] == ["privacy.epsilon <= 2", "robustness.pgd@0.1.accuracy >= 0.5"]
    weights = [1, 1, 3, 0.5]
    assert res["weighted_score"] == pytest.approx(sum(w for w, p in zip(weights, passed) if p) / sum(weights))
    assert res["results"][1]["margin"] == pytest.approx(2 - 3.0)
    assert res["results"][2]["margin"] == pytest.approx(0.4 - 0.5)


def test_missing_metric_fails_with_reason():
    r = synthetic_report(privacy=None)
    res = evaluate(["privacy.epsilon <= 8"], r)
    assert not res["passed"] and res["results"][0]["value"] is None
    line, = failure_lines(res)
    assert line.startswith("FAILED gate privacy.epsilon <= 8") and "not found" in line


def test_scorecard_thresholds_become_gates():
    r = synthetic_report()
    card = {"ethics": {"normalized": 0.4}, "bias": {"normalized": 0.05}, "min_ethics": 0.5, "max_bias": 0.1}
    res = evaluate([], r, card)
    assert [g["passed"] for g in res["results"]] == [False, True]
    assert res["results"][0]["metric"] == "scorecard.ethics.normalized"


@pytest.mark.parametrize("bad", ["accuracy => 0.8", "accuracy >= high", "rm -rf / >= 1", ">= 0.5"])
def test_bad_gate_strings_are_config_errors(bad):
    with pytest.raises(ConfigError) as exc:
        load_config({"gates": [bad]})
    assert "gates" in str(exc.value)
    with pytest.raises(ConfigError):
        Gate.parse(bad)


def test_bad_gate_dicts_are_config_errors():
    with pytest.raises(ConfigError) as exc:
        load_config({"gates": [{"metric": "accuracy", "op": "~", "threshold": 1}],
                     "scorecard": {"min_ethics": 2}})
    msg = str(exc.value)
    assert "gates" in msg and "scorecard.min_ethics" in msg


def test_config_keeps_both_gate_forms():
    cfg = load_config({"gates": ["accuracy >= 0.8", {"metric": "privacy.epsilon", "op": "<=", "threshold": 8,
                                                     "weight": 2}]})
    d = cfg.to_dict()
    assert d["gates"][0] == "accuracy >= 0.8"
    assert d["gates"][1]["weight"] == 2 and d["gates"][1]["op"] == "<="
    assert Gate.parse(d["gates"][1]).text == "privacy.epsilon <= 8"


# --- served vs raw: a post-processing (fairness group thresholds) changes the served decisions ---------------------
SERVED = {"rows": 400, "accuracy": 0.7, "balanced_accuracy": 0.72, "f1": 0.55, "precision": 0.6, "recall": 0.5,
          "roc_auc": 0.85, "postprocessing": "fairness group thresholds"}


def test_bare_metric_gates_read_the_served_model():
    r = synthetic_report(evaluation__served=SERVED)
    assert r["evaluation"]["test"]["accuracy"] == 0.8  # raw model passes, served model does not
    res = evaluate(["accuracy >= 0.75", "evaluation.test.accuracy >= 0.75",
                    "fairness.sex.equalized_odds_difference <= 0.1", "privacy.epsilon <= 8"], r)
    served, raw, fair, eps = res["results"]
    assert served["value"] == 0.7 and not served["passed"]
    assert served["read"] == "evaluation.served.accuracy" and served["model"].startswith("served")
    assert raw["value"] == 0.8 and raw["passed"] and raw["model"].startswith("raw")  # explicit path: raw
    assert fair["model"].startswith("served") and eps["model"] is None
    assert res["failed"] == ["accuracy >= 0.75"]
    # schema 1.1 spelling of the served metrics
    old = synthetic_report(evaluation__test_postprocessed=SERVED)
    assert lookup(old, "accuracy") == 0.7
    # no post-processing: the raw model is what is served
    plain = evaluate(["accuracy >= 0.75"], synthetic_report())["results"][0]
    assert plain["value"] == 0.8 and plain["read"] == "evaluation.test.accuracy" and plain["model"] == "served"


def test_scorecard_terms_and_thresholds_read_the_served_model():
    from tfresp.report import scorecard

    r = synthetic_report(evaluation__served=SERVED)
    cfg = {"ethics": [{"metric": "accuracy"}], "bias": [], "min_ethics": 0.75}
    card = scorecard.compute(r, cfg)
    term, = card["ethics"]["terms"]
    assert term["value"] == 0.7 and term["read"] == "evaluation.served.accuracy"
    assert card["ethics"]["normalized"] == pytest.approx(0.7)
    gate, = evaluate([], r, card)["results"]
    assert not gate["passed"] and gate["model"].startswith("served")
    raw = scorecard.compute(r, {**cfg, "ethics": [{"metric": "evaluation.test.accuracy"}]})
    assert raw["ethics"]["normalized"] == pytest.approx(0.8)


def test_compare_reads_served_metrics_of_both_runs():
    from tfresp.report.compare import compare_reports

    post, plain = synthetic_report(evaluation__served=SERVED), synthetic_report()
    rows = {r["metric"]: r for r in compare_reports(post, plain)}
    served = rows["evaluation.served.accuracy"]
    assert (served["a"], served["b"]) == (0.7, 0.8) and served["delta"] == pytest.approx(0.1)
    assert "B serves its raw model" in served["note"]
    raw = rows["evaluation.test.accuracy"]
    assert (raw["a"], raw["b"], raw["delta"]) == (0.8, 0.8, 0.0) and "raw model" in raw["note"]
    assert rows["privacy.epsilon"]["note"] is None
