"""Federated evidence on Adult: centralized vs FedAvg vs client-level DP-FedAvg (ε = 3 and 8).

Clients: the training split partitioned by `occupation` (every client holds rows of one occupation: non-IID).
FedAvg uses 30 clients (10 per round); DP-FedAvg needs many clients for client-level DP to be useful, so it uses
600 clients of ~45 rows (q = 0.1, 60 per round). Prints test accuracy and the sex equal-opportunity gap; writes
benchmarks/results/federated_adult.json.

    python benchmarks/federated_adult.py
    python benchmarks/federated_adult.py --deployment [--rounds 10] [--nodes 2] [--dp 8 --no-simulation]

``--deployment``: the FedAvg config (30 clients by occupation, 10 per round) run twice — in-process and through
Flower's deployment runtime (a SuperLink and ``--nodes`` SuperNodes on 127.0.0.1, :mod:`tfresp.federated.deploy`);
writes benchmarks/results/federated_adult_deployment.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
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


FED = {"partition": "by_column:occupation", "local_epochs": 1, "local_batch_size": 32, "local_learning_rate": 0.05}


def deployment(rounds: int, nodes: int, dp: float = None, simulate: bool = True):
    import yaml

    from tfresp.federated.deploy import deploy

    if dp:  # the DP-FedAvg config of main() (its rounds), client-level ε = dp
        fed = {**FED, "clients": 600, "clients_per_round": 60, "rounds": 40, "dp": {"target_epsilon": dp,
                                                                                     "clip_norm": 0.5}}
    else:
        fed = {**FED, "clients": 30, "clients_per_round": 10, "rounds": rounds}
    cfg = {**BASE, "federated": fed}
    out = {"simulation": run("fedavg-sim", federated=fed) if simulate else None}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fed.yaml"
        path.write_text(yaml.safe_dump({**cfg, "name": "fed-bench"}))
        t0 = time.perf_counter()
        run_dir = deploy(str(path), f"/tmp/fed-bench/{'dp' if dp else 'fedavg'}-deployed", nodes=nodes,
                         overwrite=True, timeout=5400,
                         wait=600)
        seconds = time.perf_counter() - t0
    rep = json.loads((run_dir / "report.json").read_text())
    acc = rep["evaluation"]["test"]["accuracy"] if "evaluation" in rep else None
    out["deployment"] = {"accuracy": acc, "sex_equal_opportunity_difference":
                         rep["fairness"]["sex"].get("equal_opportunity_difference"), "nodes": nodes,
                         "rounds": rep["federated"]["rounds"],
                         "engine": rep["federated"]["engine"], "seconds": seconds,
                         "curve": rep["federated"]["curve"]}
    if rep.get("privacy"):
        out["deployment"].update(epsilon=rep["privacy"]["epsilon"], delta=rep["privacy"]["delta"])
    if simulate:
        sim = json.loads(Path("/tmp/fed-bench/fedavg-sim/report.json").read_text())
        out["simulation"]["curve"] = sim["federated"]["curve"]
    print("deployment", json.dumps(out["deployment"]))
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    name = f"federated_adult_deployment{f'_dp{dp:g}' if dp else ''}.json"
    Path("benchmarks/results", name).write_text(json.dumps(out, indent=1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deployment", action="store_true")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--dp", type=float, default=None, help="with --deployment: DP-FedAvg at this client-level ε")
    ap.add_argument("--no-simulation", action="store_true", help="with --deployment: skip the in-process run")
    a = ap.parse_args()
    if a.deployment:
        return deployment(a.rounds, a.nodes, a.dp, not a.no_simulation)
    fed = FED
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
