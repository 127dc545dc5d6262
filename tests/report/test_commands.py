"""`tfresp report RUN [--check]` and `tfresp compare RUN_A RUN_B` through the real CLI entry point."""
import json
import shutil

import pytest

from tests.report.conftest import synthetic_report
from tfresp.cli import main
from tfresp.report.compare import compare_reports


def _run_copy(report_run, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(report_run, dst, ignore=shutil.ignore_patterns("saved_model", "tensorboard", "checkpoints"))
    return dst


def test_report_rerenders_md_and_html(report_run, tmp_path, capsys):
    run = _run_copy(report_run, tmp_path)
    (run / "report.md").unlink()
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report.md").read_text().startswith("---\n")
    assert "<!DOCTYPE html>" in (run / "report.html").read_text()
    assert "re-rendered" in capsys.readouterr().out


def test_check_fails_then_passes_after_a_change(report_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(report_run, run)  # --check is `tfresp verify`: it needs the run's artifacts
    report = json.loads((run / "report.json").read_text())
    acc = report["evaluation"]["test"]["accuracy"]
    assert main(["report", str(run), "--check"]) == 0  # the run's own gates pass
    capsys.readouterr()
    # extra gates: the check fails with one line per failed gate, and writes nothing
    assert main(["report", str(run), "--check", "--gate", f"accuracy >= {acc + 0.05:.4f}",
                 "--gate", "privacy.epsilon <= 8"]) == 1
    out = capsys.readouterr().out.splitlines()
    failed = [line for line in out if line.startswith("FAILED gate")]
    assert len(failed) == 2
    assert failed[0].startswith(f"FAILED gate accuracy >= {acc + 0.05:.4f}: value {acc:.6g}")
    assert "privacy.epsilon <= 8" in failed[1]
    assert "2/4 gates passed" in out[-1]
    assert json.loads((run / "report.json").read_text()) == report
    # tightening a gate inside report.json is a forgery: run.config no longer matches its hash and config.yaml
    report["run"]["config"]["gates"] = [f"accuracy >= {acc + 0.05:.4f}"]
    (run / "report.json").write_text(json.dumps(report))
    assert main(["report", str(run), "--check"]) == 2
    assert "run.config_hash" in capsys.readouterr().out


def test_report_bad_inputs_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    (tmp_path / "report.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 2
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": "9.0", "run": {}}))
    assert main(["report", str(tmp_path)]) == 2
    r = synthetic_report()
    r["privacy"]["epsilon"] = -3
    (tmp_path / "report.json").write_text(json.dumps(r))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "privacy.epsilon" in err


def test_compare_deltas_and_outputs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    ra = synthetic_report(privacy=None)
    rb = synthetic_report(evaluation__test__accuracy=0.75, privacy__epsilon=2.0,
                          fairness__sex__equalized_odds_difference=0.03)
    rb["run"]["config"]["privacy"] = {"target_epsilon": 2.0}
    rb["run"]["name"] = "<dp-run>"
    (a / "report.json").write_text(json.dumps(ra))
    (b / "report.json").write_text(json.dumps(rb))
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {r["metric"]: r for r in compare_reports(ra, rb)}
    assert rows["evaluation.test.accuracy"]["delta"] == pytest.approx(-0.05)
    assert rows["evaluation.test.accuracy"]["verdict"] == "worse"
    assert rows["fairness.sex.equalized_odds_difference"]["delta"] == pytest.approx(-0.05)
    assert rows["fairness.sex.equalized_odds_difference"]["verdict"] == "better"
    assert rows["privacy.epsilon"]["a"] is None and rows["privacy.epsilon"]["b"] == 2.0
    assert "evaluation.test.accuracy" in printed and "-0.05" in printed
    md, html = (out / "compare.md").read_text(), (out / "compare.html").read_text()
    assert "| evaluation.test.accuracy | 0.8000 | 0.7500 | -0.05 | worse |" in md
    assert "`privacy.target_epsilon`" in md
    assert "&lt;dp-run&gt;" in html and "<dp-run>" not in html and "<script" not in html


def test_compare_missing_run_exit_2(tmp_path):
    assert main(["compare", str(tmp_path / "x"), str(tmp_path / "y")]) == 2


def test_fit_exits_1_with_one_line_per_failed_gate(tmp_path, capsys):
    import yaml

    from tests.conftest import tiny_adult

    cfg = tiny_adult(data={"max_rows": 1500}, gates=["accuracy >= 0.999", "accuracy >= 0.1"],
                     scorecard={"ethics": [{"metric": "accuracy"}], "min_ethics": 0.9999})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = main(["fit", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    failed = [line for line in captured.out.splitlines() if line.startswith("FAILED gate")]
    assert [line.split(":")[0] for line in failed] == ["FAILED gate accuracy >= 0.999",
                                                       "FAILED gate scorecard.ethics.normalized >= 0.9999"]
    assert "2 of 3 release gates failed" in captured.err
    report = json.loads((tmp_path / "run" / "report.json").read_text())  # the run is still written
    assert report["gates"]["passed"] is False and report["scorecard"]["source"] == "config"
