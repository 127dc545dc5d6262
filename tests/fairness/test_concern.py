"""The fairness concern through tfresp.fit: report numbers equal fairlearn on the run's own predictions,
group thresholds are saved and served by the SavedModel, and bad combinations fail clearly."""
import json

import numpy as np
import pytest
import tensorflow as tf
from fairlearn import metrics as flm
from sklearn import metrics as skm

import tfresp
from tests.conftest import tiny_adult
from tfresp.config import load_config
from tfresp.data.dataset import prepare
from tfresp.errors import ConfigError
from tfresp.fairness.concern import Fairness

TOL = 1e-9
FNS = {"selection_rate": flm.selection_rate, "true_positive_rate": flm.true_positive_rate,
       "false_positive_rate": flm.false_positive_rate, "false_negative_rate": flm.false_negative_rate,
       "true_negative_rate": flm.true_negative_rate, "accuracy": skm.accuracy_score,
       "precision": lambda a, b: skm.precision_score(a, b, zero_division=0)}


@pytest.fixture(scope="module")
def threshold_run(tmp_path_factory):
    cfg = tiny_adult(name="fair-threshold", train={"epochs": 2, "batch_size": 128},
                     fairness={"mitigation": "threshold", "constraint": "equalized_odds", "bootstrap": 40,
                               "min_group_size": 40, "privileged": {"sex": "Male"}},
                     report={"html": False})
    return tfresp.fit(cfg, out=str(tmp_path_factory.mktemp("runs") / "thr"), quiet=True)


def _served_decisions(run):
    """Class ids the exported SavedModel returns for every test row (the oracle for 'as served')."""
    ctx = run.context
    fitted = json.loads((run.run_dir / "preprocessing" / "thresholds.json").read_text())
    assert fitted["attributes"] == ["sex"]
    sig = tf.saved_model.load(str(run.run_dir / "saved_model")).signatures["serving_default"]
    frame = ctx.data.test.frame
    inputs = {k: tf.constant(v) for k, v in ctx.data.preprocessor.frame_to_inputs(frame).items()}
    inputs["sex"] = tf.constant(frame["sex"].astype(str).to_numpy().astype(object))
    return sig(**inputs)["class_id"].numpy().astype(int)


def _check_section(sec, y, pred, groups, min_group_size):
    names, counts = np.unique(groups, return_counts=True)
    small = {str(g): int(n) for g, n in zip(names, counts) if n < min_group_size}
    assert sec["suppressed"] == small
    keep = ~np.isin(groups, list(small))
    y, pred, groups = y[keep], pred[keep], groups[keep]
    kw = dict(sensitive_features=groups)
    assert abs(sec["demographic_parity_difference"] - flm.demographic_parity_difference(y, pred, **kw)) < TOL
    assert abs(sec["demographic_parity_ratio"] - flm.demographic_parity_ratio(y, pred, **kw)) < TOL
    assert abs(sec["equalized_odds_difference"] - flm.equalized_odds_difference(y, pred, **kw)) < TOL
    assert abs(sec["equalized_odds_ratio"] - flm.equalized_odds_ratio(y, pred, **kw)) < TOL
    assert abs(sec["equal_opportunity_difference"] - flm.equal_opportunity_difference(y, pred, **kw)) < TOL
    frame = flm.MetricFrame(metrics=FNS, y_true=y, y_pred=pred, sensitive_features=groups)
    for g in np.unique(groups):
        for m in FNS:
            assert abs(sec["by_group"][g][m] - frame.by_group.loc[g, m]) < TOL, (g, m)
            lo, hi = sec["by_group"][g][f"{m}_ci"]
            assert lo <= hi
    lo, hi = sec["equalized_odds_difference_ci"]
    assert lo <= hi


def test_report_equals_fairlearn_on_run_predictions(threshold_run):
    run, ctx = threshold_run, threshold_run.context
    fair = run.report["fairness"]
    y = ctx.data.test.y
    pred = _served_decisions(run)
    sex = ctx.data.test.frame["sex"].astype(str).to_numpy()
    race = ctx.data.test.frame["race"].astype(str).to_numpy()
    _check_section(fair["sex"], y, pred, sex, 40)
    assert len(fair["race"]["by_group"]) >= 3
    _check_section(fair["race"], y, pred, race, 40)
    inter = np.array([f"{a}_x_{b}" for a, b in zip(sex, race)])
    _check_section(fair["intersectional"]["sex_x_race"], y, pred, inter, 40)
    assert fair["intersectional"]["sex_x_race"]["suppressed"]  # small sex x race cells are reported as such
    # privileged reference: Female selection rate / Male selection rate
    srate = {g: pred[sex == g].mean() for g in ("Female", "Male")}
    assert abs(fair["sex"]["disparate_impact"] - srate["Female"] / srate["Male"]) < TOL
    # headline = worst over single attributes and the reported intersection; suppressed groups named
    inter_sec = fair["intersectional"]["sex_x_race"]
    assert fair["equalized_odds_difference"] == max(fair["sex"]["equalized_odds_difference"],
                                                    fair["race"]["equalized_odds_difference"],
                                                    inter_sec["equalized_odds_difference"])
    assert set(fair["headline_over"]) == {"sex", "race", "sex_x_race"}
    assert fair["suppressed_groups"]["sex_x_race"] == sorted(inter_sec["suppressed"])
    # threshold sweep at 0.5 equals fairlearn on the raw probabilities
    row = [r for r in fair["sex"]["threshold_sweep"] if r["threshold"] == 0.5][0]
    raw = (ctx.predictions["test"][:, 1] >= 0.5).astype(int)
    assert abs(row["demographic_parity_difference"]
               - flm.demographic_parity_difference(y, raw, sensitive_features=sex)) < TOL
    hooks = fair["score_hooks"]["gaps"]["sex"]
    assert all(0.0 <= v <= 1.0 for v in hooks.values())
    assert hooks["equalized_odds"] == pytest.approx(fair["sex"]["equalized_odds_difference"])
    for p in fair["plots"]:
        assert (run.run_dir / p).stat().st_size > 1000


def test_threshold_postprocessing_is_reported_and_served(threshold_run):
    run, ctx = threshold_run, threshold_run.context
    pred = _served_decisions(run)
    ev = run.report["evaluation"]
    assert ev["served"]["accuracy"] == pytest.approx(np.mean(pred == ctx.data.test.y), abs=1e-12)
    # one source of truth: RunResult.metrics and the model card header are the served model's, raw beside them
    assert run.metrics["accuracy"] == ev["served"]["accuracy"]
    assert run.metrics["raw_model"]["accuracy"] == ev["test"]["accuracy"]
    card = (run.run_dir / "report.md").read_text()
    assert f"value: {round(ev['served']['accuracy'], 6)}" in card.split("---")[1]
    assert run.report["export"]["saved_model"]["roundtrip_class_id_mismatches"] == 0
    mit = run.report["fairness"]["mitigation"]
    assert mit["served"] and mit["verdict"]["status"] in ("met", "missed", "worse")
    assert mit["validation"]["feasible"] == (mit["validation"]["expected_gap"] <= mit["tolerance"] + 1e-9
                                             and not mit["defaulted_groups"])
    trade = run.report["fairness"]["tradeoff"]
    raw = (ctx.predictions["test"][:, 1] >= 0.5).astype(int)
    assert trade["before"]["accuracy"] == pytest.approx(np.mean(raw == ctx.data.test.y))
    assert trade["after"]["accuracy"] == pytest.approx(np.mean(pred == ctx.data.test.y))
    # the exported SavedModel takes `sex` as an extra input and applies the group thresholds
    sig = tf.saved_model.load(str(run.run_dir / "saved_model")).signatures["serving_default"]
    assert "sex" in sig.structured_input_signature[1]
    n = 300
    frame = ctx.data.test.frame.iloc[:n]
    inputs = {k: tf.constant(v) for k, v in ctx.data.preprocessor.frame_to_inputs(frame).items()}
    inputs["sex"] = tf.constant(frame["sex"].astype(str).to_numpy().astype(object))
    served = sig(**inputs)["class_id"].numpy()
    np.testing.assert_array_equal(served, pred[:n])


@pytest.fixture(scope="module")
def adult_data():
    cfg = load_config(tiny_adult())
    return prepare(cfg)


def _ctx(adult_data, **over):
    cfg = load_config(tiny_adult(**over))
    from tfresp.run.context import RunContext

    return RunContext(config=cfg, data=adult_data, run_dir=None)


def test_mmd_with_privacy_is_refused_with_reason(adult_data):
    ctx = _ctx(adult_data, fairness={"mitigation": "mmd"}, privacy={"target_epsilon": 3.0})
    with pytest.raises(ConfigError) as err:
        Fairness().validate(ctx)
    msg = str(err.value)
    assert "fairness.mitigation" in msg and "per example" in msg and "reweigh" in msg and "threshold" in msg


@pytest.mark.parametrize("fair,needle", [
    ({"mitigation": "clp"}, "text data"),
    ({"sensitive": ["no_such_column"]}, "no_such_column"),
    ({"mitigate_on": ["race"], "sensitive": ["sex"], "mitigation": "reweigh"}, "fairness.mitigate_on"),
    ({"privileged": {"age": "40"}}, "fairness.privileged.age"),
])
def test_bad_fairness_configs_fail_clearly(adult_data, fair, needle):
    with pytest.raises(ConfigError) as err:
        Fairness().validate(_ctx(adult_data, fairness=fair))
    assert needle in str(err.value)


def test_dp_compatible_mitigations_validate_with_privacy(adult_data):
    for m in ("reweigh", "adversarial", "threshold"):
        ctx = _ctx(adult_data, fairness={"mitigation": m}, privacy={"target_epsilon": 3.0})
        assert Fairness().validate(ctx) is None  # accepted (mmd, a batch term, is refused: test above)
        contrib = Fairness().plan(ctx)
        assert contrib.batch_losses == [], m  # every term is per-example, so DP-SGD can clip it
        assert ctx.own("fairness").mitigation["name"] == m


def test_reweigh_under_privacy_privatizes_counts(adult_data):
    ctx = _ctx(adult_data, fairness={"mitigation": "reweigh", "reweigh_epsilon": 0.5},
               privacy={"target_epsilon": 3.0})
    contrib = Fairness().plan(ctx)
    assert [(s.source, s.params["epsilon"]) for s in ctx.budget.spends] == [("fairness.reweigh_counts", 0.5)]
    assert contrib.sample_weight.shape == (len(adult_data.train),) and any("Laplace" in n for n in contrib.notes)


def test_tfresp_audit_fairness_reproduces_the_run(threshold_run, tmp_path):
    import shutil

    from tfresp.commands.audit import audit_run

    run_dir = tmp_path / "copy"
    shutil.copytree(threshold_run.run_dir, run_dir)
    before = threshold_run.report["fairness"]
    after = audit_run(run_dir, ["fairness"])["fairness"]
    assert after["audited_by"] == "tfresp audit --fairness"
    assert after["mitigation"]["rules"] == before["mitigation"]["rules"]
    for attr in ("sex", "race"):
        for key in ("demographic_parity_difference", "equalized_odds_difference", "equalized_odds_difference_ci"):
            assert after[attr][key] == pytest.approx(before[attr][key], abs=1e-6), (attr, key)
    assert json.loads((run_dir / "report.json").read_text())["fairness"]["audited_by"] == "tfresp audit --fairness"
