"""Federated evidence on Adult: centralized vs FedAvg vs client-level DP-FedAvg (ε = 3 and 8).

Clients: the training split partitioned by `occupation` (every client holds rows of one occupation: non-IID).
FedAvg uses 30 clients (10 per round); DP-FedAvg needs many clients for client-level DP to be useful, so it uses
600 clients of ~45 rows (q = 0.1, 60 per round). Prints test accuracy and the sex equal-opportunity gap; writes
benchmarks/results/federated_adult.json.

    python benchmarks/federated_adult.py
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tfresp  # noqa: E402

BASE = {"name": "fed-bench", "seed": 0,
        "data": {"source": "adult", "label": "income", "sensitive": ["sex"]},
        "model": {"kind": "mlp", "hidden": [64, 32]},
        "train": {"epochs": 5, "batch_size": 256, "learning_rate": 0.003},
        "fairness": {"sensitive": ["sex"], "bootstrap": 0}, "export": {"saved_model": False}}


def run(name, **over):
    cfg = {**BASE, **over}
    t0 = time.perf_counter()
    r = tfresp.fit(cfg, out=f"/tmp/fed-bench/{name}", overwrite=True, quiet=True)
    sex = r.report["fairness"]["sex"]
    row = {"accuracy": r.metrics["accuracy"], "sex_equal_opportunity_difference":
           sex.get("equal_opportunity_difference"), "seconds": time.perf_counter() - t0}
    fed = r.report.get("federated")
    if fed:
        row.update(rounds=fed["rounds"], clients=fed["clients"], per_client_spread=fed["per_client"].get("spread"))
    if r.report.get("privacy"):
        row.update(epsilon=r.report["privacy"]["epsilon"], delta=r.report["privacy"]["delta"],
                   level=r.report["privacy"].get("level", "example"))
    print(name, json.dumps(row))
    return row


def main():
    fed = {"partition": "by_column:occupation", "local_epochs": 1, "local_batch_size": 32,
           "local_learning_rate": 0.05}
    out = {"centralized": run("centralized"),
           "fedavg": run("fedavg", federated={**fed, "clients": 30, "clients_per_round": 10, "rounds": 30})}
    for eps in (8.0, 3.0):
        out[f"dp_fedavg_eps{eps:g}"] = run(f"dp{eps:g}", federated={
            **fed, "clients": 600, "clients_per_round": 60, "rounds": 40, "server_optimizer": "fedavg",
            "dp": {"target_epsilon": eps, "clip_norm": 0.5}})
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/federated_adult.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
