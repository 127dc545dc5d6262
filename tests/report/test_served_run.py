"""End to end on Adult with threshold post-processing (raw and served decisions differ): gates and score terms
read the served model, and report.html shows the mitigation verdict. Oracle: the exported SavedModel's
decisions on the test rows."""
import numpy as np
import pytest
import tensorflow as tf

import tfresp
from tests.conftest import tiny_adult
from tfresp.report.gates import evaluate


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = tiny_adult(name="served-gates", train={"epochs": 2, "batch_size": 128},
                     fairness={"mitigation": "threshold", "constraint": "equalized_odds", "bootstrap": 20,
                               "min_group_size": 40},
                     gates=["accuracy >= 0", "evaluation.test.accuracy >= 0"],
                     scorecard={"ethics": [{"metric": "accuracy"}], "bias": []})
    return tfresp.fit(cfg, out=str(tmp_path_factory.mktemp("runs") / "thr"), quiet=True)


@pytest.mark.slow  # one Adult fit with post-processing and the HTML report: ~40 s on 2 shared cores
def test_gates_scores_and_html_read_the_served_model(run):
    ctx, report = run.context, run.report
    frame = ctx.data.test.frame
    sig = tf.saved_model.load(str(run.run_dir / "saved_model")).signatures["serving_default"]
    inputs = {k: tf.constant(frame[k].astype(str).to_numpy().astype(object)) if s.dtype == tf.string
              else tf.constant(frame[k].to_numpy().astype(s.dtype.as_numpy_dtype))
              for k, s in sig.structured_input_signature[1].items()}
    served_acc = float(np.mean(sig(**inputs)["class_id"].numpy() == ctx.data.test.y))
    raw_acc = report["evaluation"]["test"]["accuracy"]
    assert served_acc != pytest.approx(raw_acc, abs=1e-9), "post-processing did not change the decisions"
    bare, raw = report["gates"]["results"]
    assert bare["value"] == pytest.approx(served_acc, abs=1e-12) and bare["read"] == "evaluation.served.accuracy"
    assert raw["value"] == raw_acc and raw["model"].startswith("raw")
    term, = report["scorecard"]["ethics"]["terms"]
    assert term["value"] == pytest.approx(served_acc, abs=1e-12)
    mid = (served_acc + raw_acc) / 2  # a gate between the two decides on the served model
    assert evaluate([f"accuracy >= {mid}"], report)["passed"] == (served_acc >= mid)
    html = (run.run_dir / "report.html").read_text(encoding="utf-8")
    status = report["fairness"]["mitigation"]["verdict"]["status"]
    assert f'">{status}</span>' in html and "evaluation.served.accuracy" in html
