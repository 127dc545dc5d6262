"""Deployed = simulated, on Adult split by age into three sites (non-IID): a real Flower deployment on this machine
(SuperLink + one SuperNode per site, TLS with a generated CA, authenticated SuperNodes, SecAgg+ secure
aggregation; each SuperNode told only its own site file) against the in-process simulation of the same config.

Site files and config are those of ``benchmarks/federated_sites.py`` (declared schema, 20% test / 10% validation per
site). Runs:

* ``simulation``: ``tfresp.fit`` (sites in-process, plain FedAvg weighted by rows).
* ``deployed_secagg``: ``python -m tfresp.federated.deploy`` path (``deploy()``), ``federated.secure_aggregation``
  on (Flower SecAgg+ defaults, max_weight 100000).
* with ``--dp``: ``dp_simulation`` ×2 and ``dp_deployed_secagg``: ``privacy: {target_epsilon: 3}`` at every site.
  DP-SGD noise comes from fresh secrets in every run, so "within noise" is judged against the spread of two
  simulations.

Without DP both runs use the same seeds (site splits, shuffles), so they differ only by SecAgg+'s stochastic
quantization (and float round-off across processes): reported as the max |Δ weight| and the accuracy / sex-gap
differences, pooled and per site. Writes benchmarks/results/federated_sites_deployed.json.

    python benchmarks/federated_sites_deployed.py [--rounds 5] [--dp]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import yaml  # noqa: E402

import tfresp  # noqa: E402
from federated_sites import SITES, config, summary, write_sites  # noqa: E402


def _weights(run_dir: Path):
    import tf_keras as keras

    return keras.models.load_model(run_dir / "model.keras", compile=False).get_weights()


def _diff(a: dict, b: dict) -> dict:
    out = {}
    for where in ["pooled"] + [f"per_site.{n}" for n in SITES]:
        ra = a["pooled"] if where == "pooled" else a["per_site"][where.split(".")[1]]
        rb = b["pooled"] if where == "pooled" else b["per_site"][where.split(".")[1]]
        out[where] = {k: (None if ra.get(k) is None or rb.get(k) is None else abs(ra[k] - rb[k]))
                      for k in ("accuracy", "sex_demographic_parity_difference", "sex_equal_opportunity_difference")}
    return out


def main() -> None:
    from tfresp.federated.deploy import deploy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dp", action="store_true", help="also the site-level DP (ε = 3) comparison")
    args = ap.parse_args()
    out = {"benchmark": "federated_sites_deployed", "machine": {"cpus": os.cpu_count(),
                                                                "platform": platform.platform()},
           "rounds": args.rounds, "deployment": "SuperLink + 3 SuperNodes on 127.0.0.1, TLS (generated CA), "
                                                "SuperNode authentication, SecAgg+ (Flower defaults, "
                                                "max_weight 100000)", "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_sites(tmp)
        out["site_rows"] = {n: sum(1 for _ in open(p)) - 1 for n, p in paths.items()}
        plans = [("simulation", None, False), ("deployed_secagg", None, True)]
        if args.dp:
            plans += [("dp_simulation_a", 3.0, False), ("dp_simulation_b", 3.0, False),
                      ("dp_deployed_secagg", 3.0, True)]
        for name, dp, deployed in plans:
            cfg = config(paths, args.rounds, dp)
            if deployed:
                cfg["federated"]["secure_aggregation"] = True
            path = tmp / f"{name}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            t0 = time.perf_counter()
            if deployed:
                run_dir = deploy(str(path), str(tmp / "runs" / name), timeout=5400, wait=600)
                rep = json.loads((run_dir / "report.json").read_text())
            else:
                r = tfresp.fit(str(path), out=str(tmp / "runs" / name), overwrite=True, quiet=True)
                rep, run_dir = r.report, Path(r.run_dir)
            fed = rep["federated"]
            row = {**summary(fed["test"]), "seconds": time.perf_counter() - t0, "clients_run": fed["clients_run"],
                   "aggregation": fed["aggregation"], "dropped": fed.get("dropped")}
            if fed.get("secure_aggregation"):
                row["secure_aggregation"] = {k: v for k, v in fed["secure_aggregation"].items() if k != "statement"}
            if rep.get("privacy"):
                row["privacy"] = {n: {k: p[k] for k in ("epsilon", "delta", "noise_multiplier", "steps")}
                                  for n, p in rep["privacy"]["sites"].items()}
            row["_weights"] = _weights(run_dir)
            out["runs"][name] = row
            print(name, f"{row['seconds']:.0f}s", json.dumps(row["pooled"]), flush=True)
            _save(out)  # partial results survive an interrupted benchmark
    runs = out["runs"]

    def maxdiff(a, b):
        return max(float(np.max(np.abs(x - y))) for x, y in zip(runs[a]["_weights"], runs[b]["_weights"]))

    out["comparison"] = {"deployed_secagg_vs_simulation": {"max_abs_weight_difference":
                                                           maxdiff("deployed_secagg", "simulation"),
                                                           **_diff(runs["deployed_secagg"], runs["simulation"])}}
    if args.dp:
        out["comparison"]["dp_simulation_a_vs_b (noise)"] = _diff(runs["dp_simulation_a"], runs["dp_simulation_b"])
        out["comparison"]["dp_deployed_vs_simulation_a"] = _diff(runs["dp_deployed_secagg"], runs["dp_simulation_a"])
        out["comparison"]["dp_deployed_vs_simulation_b"] = _diff(runs["dp_deployed_secagg"], runs["dp_simulation_b"])
    dest = _save(out)
    print(json.dumps(out["comparison"], indent=1))
    print("wrote", dest)


def _save(out: dict) -> Path:
    plain = {**out, "runs": {n: {k: v for k, v in r.items() if k != "_weights"} for n, r in out["runs"].items()}}
    dest = Path(__file__).resolve().parent / "results" / "federated_sites_deployed.json"
    tmp = dest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(plain, indent=1))
    os.replace(tmp, dest)
    return dest


if __name__ == "__main__":
    main()
