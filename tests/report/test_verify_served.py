"""`tfresp verify` on a run whose SavedModel post-processes its output (fairness group thresholds): the served
metrics are recomputed from the SavedModel's own decisions, and a swapped threshold file is caught."""
import json
import shutil

import pytest

from tfresp.cli import main


@pytest.fixture
def run(served_run, tmp_path):
    shutil.copytree(served_run, tmp_path / "run")
    return tmp_path / "run"


def _verify(run, capsys):
    code = main(["verify", str(run)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_served_metrics_verify_and_a_forged_one_is_caught(run, capsys):
    code, out = _verify(run, capsys)
    assert code == 0, out
    path = run / "report.json"
    report = json.loads(path.read_text())
    assert report["evaluation"]["served"]["accuracy"] != report["evaluation"]["test"]["accuracy"]
    report["evaluation"]["served"]["accuracy"] = report["evaluation"]["test"]["accuracy"]
    path.write_text(json.dumps(report))
    code, out = _verify(run, capsys)
    assert code == 2 and "evaluation.served.accuracy" in out, out


def test_swapped_thresholds_are_caught(run, capsys):
    path = run / "preprocessing" / "thresholds.json"
    rules = json.loads(path.read_text())
    for rule in rules["rules"].values():
        for k in ("t0", "t1"):
            if k in rule and rule[k] < 1.0:
                rule[k] = 0.999  # almost nobody positive
    path.write_text(json.dumps(rules))
    code, out = _verify(run, capsys)
    assert code == 2
    assert "manifest.files.preprocessing/thresholds.json" in out
    assert "saved_model class_id" in out  # the SavedModel no longer serves the rule the file describes
