"""Slow: full Adult through ``tfresp.fit`` at ε ∈ {1, 3, 8} and without DP; writes the accuracy/MIA table.

Run: ``.venv/bin/python -m pytest -q -m slow tests/privacy/test_adult_dp_accuracy.py -s``
(writes benchmarks/results/dp_adult_accuracy.json). Anchor: DP logistic/MLP models on Adult lose only a few
accuracy points at ε≈1 (the majority-class rate is ~0.76).
"""
import json
from pathlib import Path

import pytest

import tfresp

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _cfg(privacy):
    return {"name": "adult-dp", "seed": 0,
            "data": {"source": "adult", "label": "income", "sensitive": ["sex", "race"]},
            "model": {"kind": "mlp", "hidden": [64, 32]},
            "train": {"epochs": 5, "batch_size": 512, "optimizer": "adam", "learning_rate": 2e-3},
            "privacy": privacy, "export": {"saved_model": False}}


@pytest.mark.slow
def test_adult_accuracy_table(tmp_path):
    rows = {}
    for label, privacy in [("non-private", None), ("eps=8", {"target_epsilon": 8.0}),
                           ("eps=3", {"target_epsilon": 3.0}), ("eps=1", {"target_epsilon": 1.0})]:
        res = tfresp.fit(_cfg(privacy), out=tmp_path / label, quiet=True)
        row = {"test_accuracy": res.metrics["accuracy"], "fit_seconds": res.context.timings.get("fit_seconds")}
        if privacy:
            p = res.report["privacy"]
            row.update(epsilon=p["epsilon"], delta=p["delta"], noise_multiplier=p["noise_multiplier"],
                       steps=p["steps"], clipping=p["clipping"]["mode"], mia_auc=p["audit"]["mia_auc"],
                       mia_epsilon_lower_bound=p["audit"]["epsilon_lower_bound"])
        rows[label] = row
        print(label, row, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dp_adult_accuracy.json").write_text(json.dumps({"config": _cfg("<varies>"), "rows": rows},
                                                               indent=2))
    base = rows["non-private"]["test_accuracy"]
    assert base > 0.83
    assert rows["eps=8"]["test_accuracy"] > base - 0.03
    assert rows["eps=1"]["test_accuracy"] > base - 0.06
    for k in ("eps=1", "eps=3", "eps=8"):
        assert rows[k]["epsilon"] <= float(k.split("=")[1])
        assert rows[k]["mia_auc"] <= 0.55
