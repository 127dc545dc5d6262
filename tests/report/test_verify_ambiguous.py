"""`tfresp verify` on another machine: a test row whose score float noise moves across a decision threshold must not
fail an honest run, and forgeries stay caught.

The other machine is simulated on the served-run fixture (fairness group thresholds served inside the SavedModel):
``verify._serve`` returns the SavedModel's scores with one test row moved to 2e-6 past its group's threshold (the
row nearest a threshold whose served decision then flips; its SavedModel ``class_id`` keeps the run's decision).
"""
import json
import shutil

import numpy as np
import pytest

from tests.report.conftest import edit_report, verify_cli
from tfresp.commands import verify, verify_ambiguous

NEAR = 2e-6  # well inside verify.SCORE_TOL
FAR = 1e-2  # far outside it


@pytest.fixture
def run(served_run, tmp_path):
    shutil.copytree(served_run, tmp_path / "run")
    return tmp_path / "run"


_verify, _edit = verify_cli, edit_report


def _served_rule(run, data):
    """The run's served decisions (1 = positive) as a function of the test scores, rebuilt from thresholds.json."""
    from tfresp.fairness.concern import served_decisions
    from tfresp.fairness.postprocess import GroupThresholds

    saved = json.loads((run / "preprocessing" / "thresholds.json").read_text())
    attrs = saved["attributes"]
    fitted = {k: v for k, v in saved.items() if k not in ("attributes", "separator")}
    seed = json.loads((run / "report.json").read_text())["run"]["config"]["seed"]
    module = GroupThresholds(attrs, fitted, list(data.preprocessor.input_signature()) + attrs, seed, 1)
    return saved, lambda proba: served_decisions(module, data.preprocessor, data.test, attrs, proba)


def _across(run, data, proba, gap, lo, hi):
    """``(row, score)``: the row nearest (distance in [lo, hi]) a threshold of its group's rule whose served
    decision flips when its P(class 1) is put ``gap`` past that threshold."""
    saved, rule = _served_rule(run, data)
    groups = data.test.frame[saved["attributes"][0]].astype(str).str.strip().to_numpy()
    s = proba[:, 1].astype(np.float64)
    cands = sorted((abs(s[i] - r[t]), i, r[t]) for i in range(len(s)) for g, r in saved["rules"].items()
                   if groups[i] == g for t in ("t0", "t1") if 0 < r[t] < 1 and lo <= abs(s[i] - r[t]) <= hi)
    base = rule(proba)
    for _, i, t in cands[:40]:
        score = t + gap if s[i] <= t else t - gap
        moved = proba.copy()
        moved[i] = [1 - score, score]
        if rule(moved)[i] != base[i]:
            return i, score
    pytest.skip("no test row near a threshold of the served rule flips")


@pytest.fixture
def machine(monkeypatch):
    """``machine(run, gap, lo, hi, flip_class_id=None)``: install the simulated machine; returns what it did."""
    real = verify._serve
    seen = {}

    def install(run, gap, lo=0.0, hi=1e-3, flip_class_id=None):
        def serve(signature, loaded, data, part):
            proba, class_id = real(signature, loaded, data, part)
            if part is data.test:
                i, score = _across(run, data, proba, gap, lo, hi)
                proba = proba.copy()
                proba[i] = [1 - score, score]
                if flip_class_id is not None:
                    class_id = class_id.copy()
                    class_id[flip_class_id] = 1 - class_id[flip_class_id]
                seen.update(row=i, proba=proba, class_id=class_id, data=data, rule=_served_rule(run, data)[1])
            return proba, class_id

        monkeypatch.setattr(verify, "_serve", serve)
        return seen

    return install


def test_a_row_moved_across_its_threshold_by_float_noise_verifies_with_a_note(run, machine, capsys, monkeypatch):
    seen = machine(run, NEAR)
    code, out = _verify(run, capsys)
    assert code == 0, out
    assert "MISMATCH" not in out
    assert f"test row [{seen['row']}]" in out and "match an assignment" in out, out
    # without trying the assignments (what verify did before): the plain recomputation differs from the report,
    # in the served metrics, the fairness numbers and their bootstrap CIs
    monkeypatch.setattr(verify_ambiguous, "MAX_ROWS", 0)
    code, out = _verify(run, capsys)
    assert code == 2, out
    assert "MISMATCH evaluation.served.accuracy" in out, out
    assert any("_ci" in line for line in out.splitlines() if line.startswith("MISMATCH fairness.")), out
    assert "1 row(s) within 1e-05 of a decision threshold" in out and "assignments were not tried" in out, out


def test_gates_and_the_cross_check_read_the_adopted_assignment(run, machine, capsys, monkeypatch):
    """The adopted numbers equal scikit-learn's and fairlearn's on the adjusted decisions (the plain ones with the
    ambiguous row flipped back), and a gate at the recorded accuracy passes (it fails on the plain numbers)."""
    from fairlearn.metrics import MetricFrame, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    seen = machine(run, NEAR)
    captured = {}
    real_gates = verify._gates

    def gates(report, recomputed, extra, found):
        captured["recomputed"] = recomputed
        return real_gates(report, recomputed, extra, found)

    monkeypatch.setattr(verify, "_gates", gates)
    recorded = json.loads((run / "report.json").read_text())["evaluation"]["served"]["accuracy"]
    code, out = _verify(run, capsys)
    assert code == 0, out
    data, i = seen["data"], seen["row"]
    plain = seen["rule"](seen["proba"])
    adjusted = plain.copy()
    adjusted[i] = 1 - adjusted[i]
    assert np.array_equal(adjusted, seen["class_id"])  # the SavedModel's own decisions (the run's)
    y = np.asarray(data.test.y)
    served = captured["recomputed"]["evaluation"]["served"]
    assert served["accuracy"] == pytest.approx(accuracy_score(y, adjusted), abs=1e-12) == recorded
    assert served["accuracy"] != pytest.approx(accuracy_score(y, plain), abs=1e-12)
    for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert served[name] == pytest.approx(fn(y, adjusted), abs=1e-12), name
    sex = data.test.groups["sex"] if "sex" in data.test.groups else data.test.frame["sex"]
    sex = np.asarray(sex).astype(str)
    frame = MetricFrame(metrics={"selection_rate": selection_rate, "true_positive_rate": true_positive_rate},
                        y_true=y, y_pred=adjusted, sensitive_features=sex)
    by_group = captured["recomputed"]["fairness"]["sex"]["by_group"]
    for g, row in frame.by_group.iterrows():
        assert by_group[str(g).strip()]["selection_rate"] == pytest.approx(row["selection_rate"], abs=1e-12)
        assert by_group[str(g).strip()]["true_positive_rate"] == pytest.approx(row["true_positive_rate"], abs=1e-12)
    # a gate exactly at the recorded accuracy: the plain accuracy is 1/n on the wrong side of it
    op = ">=" if accuracy_score(y, plain) < recorded else "<="
    code, out = _verify(run, capsys, "--gate", f"accuracy {op} {recorded!r}")
    assert code == 0 and "gates passed" in out, out


@pytest.mark.parametrize("field", ["evaluation.served.accuracy", "fairness.sex.equal_opportunity_difference",
                                   "fairness.sex.equal_opportunity_difference_ci"])
def test_forgeries_are_still_caught_when_a_row_is_ambiguous(run, machine, capsys, field):
    """Unforged, this run verifies (the test above); forged by more than one row's flip explains, no assignment
    reproduces it and the plain recomputation's mismatches are reported."""
    machine(run, NEAR)
    n = json.loads((run / "report.json").read_text())["evaluation"]["served"]["rows"]

    def forge(report):
        *path, key = field.split(".")
        node = report
        for k in path:
            node = node[k]
        node[key] = [v + 0.01 for v in node[key]] if isinstance(node[key], list) else (
            node[key] + (3.0 / n if key == "accuracy" else 0.01))

    _edit(run, forge)
    code, out = _verify(run, capsys)
    assert code == 2, out
    assert f"MISMATCH {field}:" in out or f"MISMATCH {field}[0]:" in out, out
    assert "no assignment of their decisions (2^1 tried)" in out, out


def test_a_row_moved_far_across_its_threshold_still_fails(run, machine, capsys):
    machine(run, FAR, lo=5e-3, hi=3e-2)
    code, out = _verify(run, capsys)
    assert code == 2, out
    assert "MISMATCH evaluation.served.accuracy" in out and "saved_model class_id" in out, out
    assert "match an assignment" not in out


def test_class_id_of_an_ambiguous_row_is_settled_and_of_another_row_reported(run, machine, capsys):
    seen = machine(run, NEAR)
    code, out = _verify(run, capsys)
    assert code == 0, out  # the ambiguous row's class_id differs from the served rule on these scores
    proba = seen["proba"][:, 1]
    far = int(np.argmax(np.abs(proba - 0.5)))  # a row far from every threshold
    machine(run, NEAR, flip_class_id=far)
    code, out = _verify(run, capsys)
    assert code == 2 and "saved_model class_id" in out and "on 1 of" in out, out


def test_find_and_moved_on_synthetic_scores():
    """Binary: p1 within tol of a threshold (the evaluation's 0.5 or the fairness sweep's); multi-class: the top
    two within 2*tol. Moving a row by tol puts it on either side."""
    from types import SimpleNamespace

    tol = 1e-5

    def ctx(k, fairness=None):
        return SimpleNamespace(data=SimpleNamespace(num_classes=k, classes=[str(c) for c in range(k)]), config=SimpleNamespace(fairness=fairness),
                               serving=SimpleNamespace(postprocess=None))

    p = np.array([[0.5 + 4e-6, 0.5 - 4e-6], [0.25, 0.75], [0.7 - 9e-6, 0.3 + 9e-6], [0.5 - 2e-5, 0.5 + 2e-5]],
                 np.float32)
    rows = verify_ambiguous.find(ctx(2), {"test": p}, tol)
    assert [r.index for r in rows] == [0]
    fair = SimpleNamespace(thresholds=None, decision_threshold=0.5, positive_class=None)
    assert [r.index for r in verify_ambiguous.find(ctx(2, fair), {"test": p}, tol)] == [0, 2]
    up = verify_ambiguous.moved({"test": p}, rows, [1], tol)["test"]
    down = verify_ambiguous.moved({"test": p}, rows, [-1], tol)["test"]
    assert up[0, 1] >= 0.5 > down[0, 1] and np.array_equal(up[1:], p[1:])
    m = np.array([[0.4, 0.4 + 1.5e-5, 0.2 - 1.5e-5], [0.6, 0.3, 0.1], [0.2, 0.41, 0.39]], np.float32)
    rows = verify_ambiguous.find(ctx(3), {"test": m}, tol)
    assert [(r.index, r.up, r.down) for r in rows] == [(0, 1, 0)]
    for sign, winner in ((1, 1), (-1, 0)):
        assert verify_ambiguous.moved({"test": m}, rows, [sign], tol)["test"][0].argmax() == winner
    calls = []
    assert verify_ambiguous.search(rows * 2, {"test": m}, tol, lambda s: calls.append(s) or False) is None
    assert len(calls) == 4


def test_validation_rows_near_a_group_threshold_of_the_served_rule():
    """On validation the served rule's probability of a positive decision is read (the expected gap and accuracy
    of fairness.mitigation.validation): a row within tol of its group's t0 or t1, or of the default threshold for
    an unknown group, is ambiguous even where its randomized decision would not flip."""
    from types import SimpleNamespace

    import pandas as pd

    from tfresp.fairness.postprocess import GroupThresholds

    rule = {"p_ignore": 0.0, "constant": 0.0, "p0": 0.3, "op0": ">", "t0": 0.4, "p1": 0.7, "op1": ">", "t1": 0.6}
    module = GroupThresholds(["sex"], {"rules": {"Female": rule}, "default": 0.5}, ["sex"], 0, 1)
    frame = pd.DataFrame({"sex": ["Female", "Female", "Female", "Male", "Male"]})
    s = np.array([0.4 + 3e-6, 0.6 - 8e-6, 0.5, 0.5 + 1e-6, 0.6], np.float32)
    ctx = SimpleNamespace(data=SimpleNamespace(num_classes=2, validation=SimpleNamespace(frame=frame)),
                          config=SimpleNamespace(fairness=None), serving=SimpleNamespace(postprocess=module))
    rows = verify_ambiguous.find(ctx, {"validation": np.stack([1 - s, s], axis=1)}, 1e-5, threshold=0.7)
    assert [(r.split, r.index) for r in rows] == [("validation", 0), ("validation", 1), ("validation", 3)]


def test_a_report_without_per_example_stats_is_settled_too(run, machine, capsys):
    """An older report has no scorecard.per_example: it is not compared, so it cannot block the assignment."""
    _edit(run, lambda r: r["scorecard"].pop("per_example"))
    code, out = _verify(run, capsys)
    assert code == 0, out
    machine(run, NEAR)
    code, out = _verify(run, capsys)
    assert code == 0 and "match an assignment" in out, out


def test_settle_keeps_the_plain_numbers_unless_an_assignment_reproduces_every_one():
    tol = 1e-5
    p = {"test": np.array([[0.5 - 3e-6, 0.5 + 3e-6], [0.2, 0.8]], np.float32)}
    rows = [verify_ambiguous.Row("test", 0, 1, 0)]

    def recompute(scores):
        return int(scores["test"][0, 1] >= 0.5)  # "the numbers": the row's decision

    def check(recorded):
        return lambda numbers: (f"compared {numbers}", numbers == recorded)

    plain = recompute(p)
    assert verify_ambiguous.settle(rows, p, tol, plain, recompute, check(1)) == ("compared 1", 1, None)
    comparison, numbers, note = verify_ambiguous.settle(rows, p, tol, plain, recompute, check(0))
    assert (comparison, numbers) == ("compared 0", 0) and "match an assignment" in note and "[0]" in note
    comparison, numbers, note = verify_ambiguous.settle(rows, p, tol, plain, recompute, check(2))  # a forgery
    assert (comparison, numbers) == ("compared 1", 1) and "no assignment" in note
    comparison, numbers, note = verify_ambiguous.settle(rows * 7, p, tol, plain, recompute, check(0))
    assert (comparison, numbers) == ("compared 1", 1) and "were not tried" in note
