"""End-to-end: tfresp.fit on a slice of Adult writes a complete, reloadable, reproducible run."""
import json

import numpy as np
import pytest
import tensorflow as tf

import tfresp
from tests.conftest import tiny_adult
from tfresp.export.saved_model import raw_inputs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return tfresp.fit(tiny_adult(), out=out, quiet=True)


def test_run_directory_layout(run):
    names = {p.name for p in run.run_dir.iterdir()}
    assert {"config.yaml", "report.json", "report.md", "saved_model", "tensorboard", "preprocessing",
            "plots"} <= names
    assert not list(run.run_dir.parent.glob(".tiny.staging-*"))
    report = json.loads((run.run_dir / "report.json").read_text())
    assert report["schema_version"] and report["run"]["seed"] == 0
    assert report["data"]["splits"]["train"]["group_sizes"]["sex"]
    assert report["report_md"] if False else (run.run_dir / "report.md").read_text().startswith("---\n")


def test_metrics_are_on_the_test_split(run):
    ev = run.report["evaluation"]["test"]
    ctx = run.context
    assert ev["rows"] == len(ctx.data.test)
    acc = float(np.mean(ctx.predictions["test"].argmax(1) == ctx.data.test.y))
    assert ev["accuracy"] == pytest.approx(acc)
    assert 0.5 < ev["roc_auc"] <= 1.0


def test_saved_model_takes_raw_rows_and_matches(run):
    ctx = run.context
    loaded = tf.saved_model.load(str(run.run_dir / "saved_model"))
    inputs = raw_inputs(ctx.data.preprocessor, ctx.data.test.frame, 300)
    served = loaded.signatures["serving_default"](**inputs)
    np.testing.assert_allclose(served["probabilities"].numpy(), ctx.predictions["test"][:300], atol=1e-6)
    names = served["class_name"].numpy().astype(str)
    assert set(names) <= {"<=50K", ">50K"}
    assert run.report["export"]["saved_model"]["roundtrip_max_abs_diff"] < 1e-5


def test_same_seed_same_metrics(run, tmp_path):
    again = tfresp.fit(tiny_adult(), out=tmp_path / "again", quiet=True)
    assert again.metrics["accuracy"] == run.metrics["accuracy"]
    assert again.history["loss"] == run.history["loss"]


def test_existing_run_dir_kept_unless_overwrite(run, tmp_path):
    target = tmp_path / "keep"
    target.mkdir()
    (target / "precious.txt").write_text("mine")
    for overwrite in (False, True):  # a user's directory is never replaced, not even with overwrite=True
        with pytest.raises(tfresp.ConfigError, match="already exists"):
            tfresp.fit(tiny_adult(), out=target, overwrite=overwrite, quiet=True)
    assert (target / "precious.txt").read_text() == "mine"
    first = tfresp.fit(tiny_adult(), out=tmp_path / "run", quiet=True)
    old_marker = (first.run_dir / ".tfresp-run").read_text()
    with pytest.raises(tfresp.ConfigError, match="already exists"):
        tfresp.fit(tiny_adult(), out=first.run_dir, quiet=True)
    res = tfresp.fit(tiny_adult(), out=first.run_dir, overwrite=True, quiet=True)  # a tfresp run dir: replaced
    assert (res.run_dir / "report.json").exists() and (res.run_dir / ".tfresp-run").read_text() != old_marker
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".keep", ".run"))]
