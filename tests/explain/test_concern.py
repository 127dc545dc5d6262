"""The explanations concern inside a real run, and the `tfresp explain` command on that run."""
import json

import numpy as np
import pytest

from tfresp.cli import main
from tfresp.config import load_config
from tfresp.errors import ConfigError


def test_report_section(adult_run):
    ctx = adult_run.context
    sec = adult_run.report["explanations"]
    assert sec == json.loads((adult_run.run_dir / "report.json").read_text())["explanations"]
    assert len(sec["examples"]) == 2
    for item in sec["examples"]:
        lime = item["lime"]
        assert len(lime["features"]) == 5
        assert all(f["feature"] in ctx.data.feature_columns for f in lime["features"])
        assert 0.0 <= lime["stability"]["jaccard_mean"] <= 1.0
        assert item["ig"]["completeness_error"] <= 0.05
        assert (adult_run.run_dir / item["plot"]).is_file()
    assert 0.0 <= sec["stability"]["jaccard_mean"] <= 1.0
    assert sec["integrated_gradients"]["all_converged"]
    glob = sec["global_importance"]
    assert set(glob["features"]) == set(ctx.data.preprocessor.columns)
    vals = list(glob["features"].values())
    assert vals == sorted(vals, reverse=True) and min(vals) >= 0
    assert glob["completeness"]["completeness_error"]["max"] <= 0.05
    assert (adult_run.run_dir / glob["plot"]).is_file() and glob["plot"] in sec["plots"]
    assert sec["predictor"]["compiled_traces"] == 1
    assert sec["predictor"]["max_rows_per_call"] <= sec["predictor"]["batch_size"]


def test_misclassified_by_group_counts(adult_run):
    ctx = adult_run.context
    sec = adult_run.report["explanations"]["misclassified_by_group"]
    pred = ctx.predictions["test"].argmax(axis=1)
    wrong = pred != ctx.data.test.y
    for attr in ("sex", "race"):
        groups = ctx.data.test.groups[attr]
        for g, entry in sec[attr].items():
            assert entry["rows"] == int((groups == g).sum())
            assert entry["misclassified"] == int((wrong & (groups == g)).sum())
            for ex in entry.get("examples", []):
                assert groups[ex["row"]] == g and pred[ex["row"]] != ctx.data.test.y[ex["row"]]


def test_config_validation():
    with pytest.raises(ConfigError):
        load_config({"explain": {"num_samples": 1}})
    from tfresp.run.builder import RunContext
    from tfresp.concerns import get

    cfg = load_config({"explain": {"ig_steps": 64, "ig_max_steps": 8}})
    with pytest.raises(ConfigError, match="ig_max_steps"):
        get("explain").validate(RunContext(config=cfg, data=None, run_dir=None))


def test_explain_command_row(adult_run, capsys):
    code = main(["explain", str(adult_run.run_dir), "--row", "3", "--num-samples", "200", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    feats = out["explanation"]["features"]
    assert len(feats) == 5 and out["row"] == 3
    ctx = adult_run.context
    assert all(f["feature"] in ctx.data.feature_columns for f in feats)
    # the SavedModel explained is the run's model: same probability for that row
    p = ctx.predictions["test"][3]
    assert out["explanation"]["probability"] == pytest.approx(float(p[out["explanation"]["label"]]), abs=1e-5)
    again = main(["explain", str(adult_run.run_dir), "--row", "3", "--num-samples", "200", "--json"])
    assert again == 0 and json.loads(capsys.readouterr().out)["explanation"] == out["explanation"]


@pytest.mark.parametrize("argv", [["--row", "999999"], ["--input", "hello"], []])
def test_explain_command_bad_input(adult_run, argv, capsys):
    assert main(["explain", str(adult_run.run_dir), *argv]) == 2
    assert "tfresp: error:" in capsys.readouterr().err


def test_explain_command_not_a_run(tmp_path, capsys):
    assert main(["explain", str(tmp_path), "--row", "0"]) == 2


@pytest.mark.slow
def test_image_run_lime_and_ig(tmp_path):
    """Digits CNN: LIME over grid superpixels and IG with the completeness check, plots written."""
    import tfresp

    cfg = {"name": "dig", "data": {"source": "digits", "label": "label", "max_rows": 600},
           "model": {"kind": "cnn", "hidden": [8]}, "train": {"epochs": 1, "batch_size": 64},
           "explain": {"method": "both", "examples": 1, "num_samples": 100, "stability_seeds": 2, "ig_steps": 4}}
    res = tfresp.fit(cfg, out=str(tmp_path / "dig"), quiet=True)
    sec = res.report["explanations"]
    item = sec["examples"][0]
    assert len(item["lime"]["features"]) == 5
    assert all(f["feature"].startswith("segment_") for f in item["lime"]["features"])
    assert item["ig"]["completeness_error"] <= 0.05
    assert sec["integrated_gradients"]["all_converged"]
    assert all((res.run_dir / p).is_file() for p in sec["plots"]) and len(sec["plots"]) == 2


@pytest.mark.slow
def test_text_run_and_command(tmp_path, capsys):
    """A tiny text run (tfresp's own text pipeline): LIME words + HTML, IG on token embeddings, --input."""
    import tfresp
    from tests.conftest import TWEETS

    if not TWEETS.exists():
        pytest.skip("../shared tweets not present")
    cfg = {"name": "txt", "data": {"source": str(TWEETS), "text": "text", "label": "sentiment", "max_rows": 400,
                                   "max_length": 32},
           "model": {"kind": "bert", "bert": {"hidden": 32, "layers": 1, "heads": 2}},
           "train": {"epochs": 1, "batch_size": 64},
           "explain": {"method": "both", "examples": 1, "num_samples": 100, "stability_seeds": 2}}
    res = tfresp.fit(cfg, out=str(tmp_path / "txt"), quiet=True)
    sec = res.report["explanations"]
    item = sec["examples"][0]
    assert item["html"].startswith('<p class="tfresp-lime-text">') and "tfresp-lime" in item["html"]
    assert item["ig"]["converged"] and sec["integrated_gradients"]["all_converged"]
    capsys.readouterr()
    assert main(["explain", str(res.run_dir), "--input", "late flight <script>", "--num-samples", "100",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["explanation"]["class_name"] in res.report["data"]["classes"]
    assert "<script>" not in out["explanation"]["html"] and "&lt;" in out["explanation"]["html"]
