"""report.md: a Hugging Face model card whose YAML header and tables carry the run's numbers."""
import json

import pytest
import yaml

from tests.report.conftest import HOSTILE, synthetic_report
from tfresp.report.derive import derive
from tfresp.report.markdown import md_escape, render_markdown


def _header(md):
    assert md.startswith("---\n")
    head, _, body = md[4:].partition("\n---\n")
    return yaml.safe_load(head), body


def test_model_card_header_follows_hub_metadata():
    r = derive(synthetic_report())
    header, body = _header(render_markdown(r))
    assert header["license"] == "apache-2.0" and header["library_name"] == "tf-keras"
    assert header["datasets"] == ["adult"] and header["pipeline_tag"] == "tabular-classification"
    assert {"differential-privacy", "fairness", "adversarial-robustness", "model-compression"} <= set(header["tags"])
    result = header["model-index"][0]["results"][0]
    metrics = {m["name"]: m["value"] for m in result["metrics"]}
    assert metrics["Test accuracy"] == 0.8 and metrics["DP epsilon (delta=1e-05)"] == 3.0
    assert metrics["equalized_odds_difference (sex)"] == 0.08
    assert metrics["Robust accuracy pgd@0.1"] == 0.4
    assert all(m["verified"] is False for m in result["metrics"])
    assert set(header["metrics"]) == {m["type"] for m in result["metrics"]}
    for section in ("## Model details", "## Intended use", "## Data", "## Evaluation", "## Privacy",
                    "## Fairness", "## Robustness", "## Compression", "## Ethics scorecard",
                    "## Limitations and ethical considerations"):
        assert section in body


def test_user_text_cannot_inject_html():
    r = derive(synthetic_report(run__description=HOSTILE, run__limitations=HOSTILE, run__name="<b>x</b>"))
    md = render_markdown(r)
    header, body = _header(md)
    assert "<script>" not in body and "<img" not in body
    assert "&lt;script&gt;" in body
    assert header["model-index"][0]["name"] == "<b>x</b>"  # YAML keeps the literal string, safely quoted


@pytest.mark.parametrize("text,expected", [("a|b", "a\\|b"), ("<x>", "\\<x\\>"), ("*y*", "\\*y\\*"), (None, "")])
def test_md_escape(text, expected):
    assert md_escape(text) == expected


def test_real_run_card(report_run):
    md = (report_run / "report.md").read_text()
    report = json.loads((report_run / "report.json").read_text())
    header, body = _header(md)
    acc = next(m["value"] for m in header["model-index"][0]["results"][0]["metrics"] if m["type"] == "accuracy")
    assert acc == pytest.approx(report["evaluation"]["test"]["accuracy"], abs=1e-6)
    assert "## Release gates: PASSED" in body and "<script>" not in body
