"""Fixtures of the report tests: one real tiny run (shared by the module tests) and synthetic reports."""
import copy
import hashlib
import json

import pytest

from tests.conftest import tiny_adult

HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="session")
def report_run(tmp_path_factory):
    """A real Adult run (3,000 rows, 1 epoch) with a fairness audit, gates and hostile report text."""
    import tfresp

    out = tmp_path_factory.mktemp("report") / "run"
    cfg = tiny_adult(
        fairness={"bootstrap": 20, "intersectional": False},
        gates=["accuracy >= 0.5",
               {"metric": "fairness.sex.equalized_odds_difference", "op": "<=", "threshold": 0.9, "weight": 2.0}],
        report={"description": "Tiny run. " + HOSTILE, "intended_use": "Tests only & <b>nothing</b> else.",
                "out_of_scope": "Everything", "limitations": "Toy " + HOSTILE, "license": "apache-2.0"})
    tfresp.fit(cfg, out=str(out), quiet=True)
    return out


@pytest.fixture(scope="session")
def served_run(tmp_path_factory):
    """A run whose SavedModel post-processes its output: fairness group thresholds on sex (3,000 rows, 3 epochs)."""
    import tfresp

    out = tmp_path_factory.mktemp("served") / "run"
    cfg = tiny_adult(train={"epochs": 3},
                     fairness={"sensitive": ["sex"], "bootstrap": 20, "mitigation": "threshold",
                               "mitigate_on": ["sex"], "constraint": "equal_opportunity"},
                     export={"saved_model": True})
    res = tfresp.fit(cfg, out=str(out), quiet=True)
    if not res.report["fairness"]["mitigation"].get("served"):
        pytest.skip("the threshold rule was refused on this data: nothing is post-processed")
    return out


def synthetic_report(**over) -> dict:
    """A schema-shaped report with every schema section filled (no training needed)."""
    cfg = {"name": "synthetic", "seed": 0, "data": {"sensitive": ["sex"]}, "gates": [], "scorecard": None,
           "fairness": {"min_group_size": 30}, "report": {}}
    r = {
        "schema_version": "1.1",
        "run": {"name": "synthetic", "created": "2026-01-01T00:00:00+00:00", "seed": 0,
                "config_hash": hashlib.sha256(b"x").hexdigest(), "git_hash": None,
                "versions": {"python": "3.11"}, "config": cfg, "intended_use": "research",
                "out_of_scope": "decisions", "description": "", "limitations": "", "license": "apache-2.0"},
        "data": {"source": {"name": "adult", "kind": "embedded"}, "kind": "tabular", "classes": ["no", "yes"],
                 "sensitive": ["sex"],
                 "splits": {"train": {"rows": 1000, "label_balance": {"no": 0.75, "yes": 0.25},
                                      "group_sizes": {"sex": {"F": 300, "M": 700}}},
                            "validation": None,
                            "test": {"rows": 400, "label_balance": {"no": 0.75, "yes": 0.25},
                                     "group_sizes": {"sex": {"F": 20, "M": 380}}}}},
        "model": {"kind": "mlp", "name": "mlp", "parameters": 100, "trainable_parameters": 100,
                  "trainable_percent": 100.0, "base_checkpoint": None, "architecture": []},
        "training": {"history": {"loss": [0.6, 0.5]}, "epochs_run": 2, "epochs_requested": 2, "timings": {}},
        "evaluation": {"test": {"rows": 400, "accuracy": 0.8, "balanced_accuracy": 0.7, "f1": 0.6,
                                "precision": 0.7, "recall": 0.5, "roc_auc": 0.85,
                                "confusion_matrix": [[270, 30], [50, 50]]}},
        "privacy": {"epsilon": 3.0, "delta": 1e-5, "noise_multiplier": 1.1, "steps": 100, "sampling_rate": 0.01,
                    "audit": {"mia_auc": 0.52}},
        "fairness": {"sex": {"demographic_parity_difference": 0.12, "demographic_parity_difference_ci": [0.05, 0.2],
                             "equalized_odds_difference": 0.08, "equalized_odds_difference_ci": [0.02, 0.15],
                             "by_group": {"F": {"selection_rate": 0.1, "selection_rate_ci": [0.05, 0.2]},
                                          "M": {"selection_rate": 0.22, "selection_rate_ci": [0.18, 0.26]}}}},
        "robustness": {"pgd@0.05": {"accuracy": 0.6}, "pgd@0.1": {"accuracy": 0.4}},
        "explanations": None,
        "compression": {"int8": {"accuracy": 0.79, "bytes": 2000, "gzip_bytes": 1500, "latency_ms_p50": 0.1}},
        "export": None,
        "gates": None,
    }
    for key, value in over.items():
        node, parts = r, key.split("__")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = copy.deepcopy(value)
    return r


def verify_cli(run, capsys, *extra):
    """``(exit code, stdout + stderr)`` of ``tfresp verify RUN [extra]``."""
    from tfresp.cli import main

    code = main(["verify", str(run), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def edit_report(run, fn):
    """Apply ``fn`` to the run's report.json in place."""
    path = run / "report.json"
    report = json.loads(path.read_text())
    fn(report)
    path.write_text(json.dumps(report, indent=2))
