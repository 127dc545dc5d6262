"""report.json against the packaged JSON Schema (jsonschema as the independent validator)."""
import json

import jsonschema
import pytest

from tests.report.conftest import synthetic_report
from tfresp.report.derive import derive
from tfresp.report.schema import load_schema, validate
from tfresp.report.writer import SCHEMA_VERSION


def test_schema_is_a_valid_draft_2020_12_schema_and_versioned():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert SCHEMA_VERSION.split(".")[0] == "1"
    assert jsonschema.Draft202012Validator(schema["properties"]["schema_version"]).is_valid(SCHEMA_VERSION)
    assert "Changelog" in schema["description"] and SCHEMA_VERSION in schema["$id"]


def test_real_run_report_validates(report_run):
    report = json.loads((report_run / "report.json").read_text())
    assert report["schema_version"] == SCHEMA_VERSION
    jsonschema.validate(report, load_schema(), cls=jsonschema.Draft202012Validator)
    assert validate(report) == []
    # the sections the schema documents are really there and typed
    assert 0 <= report["evaluation"]["test"]["accuracy"] <= 1
    lo, hi = report["evaluation"]["test"]["accuracy_ci"]
    assert lo <= report["evaluation"]["test"]["accuracy"] <= hi
    assert report["gates"]["count"] == 2 and isinstance(report["scorecard"]["ethics"]["normalized"], float)
    pe = report["scorecard"]["per_example"]
    assert pe["n"] == report["evaluation"]["test"]["rows"]
    assert pe["correct"] == pytest.approx(report["evaluation"]["test"]["accuracy"])  # same predictions, same rule
    assert set(pe["group_balanced_correct"]) == {"sex", "race"}


def test_synthetic_full_report_validates():
    assert validate(derive(synthetic_report())) == []


@pytest.mark.parametrize("key,value,where", [
    ("privacy__epsilon", -1.0, "privacy.epsilon"),
    ("privacy__delta", 1.5, "privacy.delta"),
    ("evaluation__test__accuracy", 1.2, "evaluation.test.accuracy"),
    ("robustness", {"pgd@0.1": {"accuracy": "high"}}, "robustness.pgd@0.1.accuracy"),
    ("fairness__sex__equalized_odds_difference_ci", [0.1], "fairness.sex.equalized_odds_difference_ci"),
    ("compression__int8__bytes", 1.5, "compression.int8.bytes"),
    ("run__config_hash", "not-a-hash", "run.config_hash"),
])
def test_schema_rejects_malformed_fields(key, value, where):
    report = derive(synthetic_report(**{key: value}))
    problems = validate(report)
    assert any(p.startswith(where) for p in problems), problems


def test_schema_requires_top_level_keys():
    report = derive(synthetic_report())
    del report["privacy"]
    assert any("'privacy' is a required property" in p for p in validate(report))
