"""Cross-silo evidence on Adult: three sites split by age (non-IID), centralized vs FedAvg vs site-level DP (ε = 3).

The Adult training file (32,561 rows, tfresp's embedded copy) is split by age into three site files written to a
temporary directory: ``young`` (age < 30), ``middle`` (30-45), ``older`` (> 45). Every site splits its own file
(20% test, 10% validation, stratified, seeded) and encodes it with the DECLARED schema only (category lists from
the public ``adult.names``, numeric ranges from the documented attribute ranges); the server never opens a file.

* ``centralized_sgd`` / ``centralized_adam``: the same model trained by plain Keras on the pooled training rows of
  the three sites (the oracle a consortium cannot run): with the sites' SGD, batch size and learning rate, epochs =
  rounds; and with Adam (1e-3, batch 256, same epochs).
* ``fedavg``: ``federated.sites``, FedAvg weighted by the sites' training rows.
* ``dp_eps3``: ``federated.sites`` + ``privacy: {target_epsilon: 3}``: DP-SGD at every site (ε per site ≤ 3 over
  the planned rounds), equal site weights.

All three are evaluated the same way: each site's held-out test rows, counts only, summed (pooled) and per site:
accuracy and the sex demographic-parity / equal-opportunity differences. Writes
benchmarks/results/federated_sites.json.

    python benchmarks/federated_sites.py [--rounds 10] [--seeds 3]
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
import numpy as np  # noqa: E402

import tfresp  # noqa: E402

MISSING = "<missing>"
# the public category lists of adult.names (UCI); '?' in the files is read as <missing>
CATEGORIES = {
    "workclass": ["Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov", "State-gov",
                  "Without-pay", "Never-worked", MISSING],
    "education": ["Bachelors", "Some-college", "11th", "HS-grad", "Prof-school", "Assoc-acdm", "Assoc-voc", "9th",
                  "7th-8th", "12th", "Masters", "1st-4th", "10th", "Doctorate", "5th-6th", "Preschool"],
    "marital_status": ["Married-civ-spouse", "Divorced", "Never-married", "Separated", "Widowed",
                       "Married-spouse-absent", "Married-AF-spouse"],
    "occupation": ["Tech-support", "Craft-repair", "Other-service", "Sales", "Exec-managerial", "Prof-specialty",
                   "Handlers-cleaners", "Machine-op-inspct", "Adm-clerical", "Farming-fishing", "Transport-moving",
                   "Priv-house-serv", "Protective-serv", "Armed-Forces", MISSING],
    "relationship": ["Wife", "Own-child", "Husband", "Not-in-family", "Other-relative", "Unmarried"],
    "race": ["White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black"],
    "native_country": ["United-States", "Cambodia", "England", "Puerto-Rico", "Canada", "Germany",
                       "Outlying-US(Guam-USVI-etc)", "India", "Japan", "Greece", "South", "China", "Cuba", "Iran",
                       "Honduras", "Philippines", "Italy", "Poland", "Jamaica", "Vietnam", "Mexico", "Portugal",
                       "Ireland", "France", "Dominican-Republic", "Laos", "Ecuador", "Taiwan", "Haiti", "Columbia",
                       "Hungary", "Guatemala", "Nicaragua", "Scotland", "Thailand", "Yugoslavia", "El-Salvador",
                       "Trinadad&Tobago", "Peru", "Hong", "Holand-Netherlands", MISSING],
    "income": ["<=50K", ">50K"],
}
# documented ranges (adult.names: age 17-90; education-num 1-16; hours 1-99); capital gains/losses clipped
RANGES = {"age": [17, 90], "education_num": [1, 16], "capital_gain": [0, 20000], "capital_loss": [0, 4000],
          "hours_per_week": [1, 99]}
FEATURES = list(CATEGORIES)[:-1] + list(RANGES)
SITES = {"young": lambda a: a < 30, "middle": lambda a: (a >= 30) & (a <= 45), "older": lambda a: a > 45}


def write_sites(directory: Path) -> dict:
    from tfresp.data.sources import load_adult

    frames, _ = load_adult()
    df = frames["train"]
    paths = {}
    for name, rule in SITES.items():
        paths[name] = directory / f"{name}.csv"
        df[rule(df["age"])].to_csv(paths[name], index=False)
    return paths


def config(paths: dict, rounds: int, dp: float = None) -> dict:
    fed = {"sites": [{"name": n, "source": str(p)} for n, p in paths.items()], "rounds": rounds,
           "local_epochs": 1, "local_batch_size": 64, "local_learning_rate": 0.05}
    cfg = {"name": "sites-bench", "seed": 0,
           "data": {"label": "income", "sensitive": ["sex"], "features": FEATURES, "categories": CATEGORIES,
                    "numeric_ranges": RANGES, "split": {"test": 0.2, "validation": 0.1}},
           "model": {"kind": "mlp", "hidden": [64, 32]}, "federated": fed}
    if dp:
        fed.update(local_batch_size=256, local_learning_rate=0.5)
        cfg["privacy"] = {"target_epsilon": dp, "l2_norm_clip": 1.0, "audit": False}
    return cfg


def summary(sec_test: dict) -> dict:
    def one(m):
        sex = (m.get("fairness") or {}).get("sex", {}).get("gaps", {})
        return {"rows": m["rows"], "accuracy": m["accuracy"],
                "sex_demographic_parity_difference": sex.get("demographic_parity_difference"),
                "sex_equal_opportunity_difference": sex.get("equal_opportunity_difference")}

    return {"pooled": one(sec_test["pooled"]), "per_site": {n: one(m) for n, m in sec_test["per_site"].items()}}


def centralized(cfg_dict: dict, optimizer: str = "sgd") -> dict:
    """The oracle: the same model trained on the pooled training rows (which no party of a consortium holds).
    ``sgd``: the sites' optimizer, batch and learning rate, epochs = rounds; ``adam``: tfresp's default central
    training (Adam 1e-3, batch 256, the same epochs)."""
    import tf_keras as keras

    from tfresp.config import load_config
    from tfresp.data.dataset import make_dataset
    from tfresp.federated import schema, sites_run
    from tfresp.models.base import ResponsibleModel

    cfg = load_config(cfg_dict)
    keras.utils.set_random_seed(cfg.seed)
    transport = sites_run.LocalSites(cfg)
    sites = [transport._sites[n] for n in transport.names]  # the benchmark may pool rows; tfresp never does
    x = np.concatenate([s.train.x for s in sites])
    y = np.concatenate([s.train.y for s in sites])
    core = schema.build_core(cfg)
    model = ResponsibleModel(core)  # the loss the sites train with (sparse cross-entropy from logits)
    fed = cfg.federated
    opt, batch = ((keras.optimizers.SGD(fed.local_learning_rate), fed.local_batch_size) if optimizer == "sgd"
                  else (keras.optimizers.Adam(1e-3), 256))
    model.compile(optimizer=opt, weighted_metrics=[])
    model.fit(make_dataset(x, y, {}, batch, shuffle=True, seed=cfg.seed), epochs=fed.rounds * fed.local_epochs,
              verbose=0)
    w = core.get_weights()
    test = {n: transport.evaluate(n, w, "test") for n in transport.names}
    classes = schema.classes(cfg)
    return {"pooled": sites_run.metrics_from_counts(sites_run._sum_counts(list(test.values())), classes),
            "per_site": {n: sites_run.metrics_from_counts(test[n], classes) for n in transport.names}}


def one_seed(paths: dict, tmp: Path, rounds: int, epsilon: float, seed: int) -> dict:
    runs = {}
    for name, opt in (("centralized_sgd", "sgd"), ("centralized_adam", "adam")):
        t0 = time.perf_counter()
        runs[name] = {**summary(centralized({**config(paths, rounds), "seed": seed}, opt)),
                      "seconds": time.perf_counter() - t0}
        print(seed, name, json.dumps(runs[name]["pooled"]))
    for name, dp in (("fedavg", None), (f"dp_eps{epsilon:g}", epsilon)):
        t0 = time.perf_counter()
        r = tfresp.fit({**config(paths, rounds, dp), "seed": seed}, out=tmp / "runs" / name, overwrite=True,
                       quiet=True)
        fed = r.report["federated"]
        row = {**summary(fed["test"]), "seconds": time.perf_counter() - t0, "aggregation": fed["aggregation"],
               "curve": fed["curve"]}
        if r.report.get("privacy"):
            row["privacy"] = {n: {k: p[k] for k in ("epsilon", "delta", "noise_multiplier", "sampling_rate",
                                                   "steps")} for n, p in r.report["privacy"]["sites"].items()}
        runs[name] = row
        print(seed, name, json.dumps(row["pooled"]), json.dumps(row.get("privacy", {})))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epsilon", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (each: the sites' splits and training)")
    args = ap.parse_args()
    out = {"benchmark": "federated_sites", "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "rounds": args.rounds, "sites": {n: "age < 30" if n == "young" else "30 <= age <= 45" if n == "middle"
                                            else "age > 45" for n in SITES},
           "how": {"centralized_sgd": "plain Keras on the pooled site training rows: the sites' model, SGD, batch "
                                      "and learning rate, epochs = rounds",
                   "centralized_adam": "the same pooled rows with Adam 1e-3, batch 256, epochs = rounds",
                   "fedavg": "federated.sites, FedAvg weighted by training rows",
                   f"dp_eps{args.epsilon:g}": "federated.sites + privacy: DP-SGD at every site (batch 256, lr 0.5, "
                                              "clip 1), equal site weights",
                   "evaluation": "every run: each site's own held-out 20% test rows, counts summed"},
           "per_seed": {}}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_sites(Path(tmp))
        out["site_rows"] = {n: sum(1 for _ in open(p)) - 1 for n, p in paths.items()}
        for seed in range(args.seeds):
            out["per_seed"][seed] = one_seed(paths, Path(tmp), args.rounds, args.epsilon, seed)
    names = list(out["per_seed"][0])
    keys = ("accuracy", "sex_demographic_parity_difference", "sex_equal_opportunity_difference")

    def stats(values):
        return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None}

    out["summary"] = {name: {"pooled": {k: stats([s[name]["pooled"][k] for s in out["per_seed"].values()])
                                        for k in keys},
                             "per_site": {site: {k: stats([s[name]["per_site"][site][k]
                                                           for s in out["per_seed"].values()]) for k in keys}
                                          for site in SITES},
                             "seconds_mean": float(np.mean([s[name]["seconds"] for s in out["per_seed"].values()]))}
                      for name in names}
    for name in names:
        p = out["summary"][name]["pooled"]
        print(f"{name:18s} acc {p['accuracy']['mean']:.4f}±{p['accuracy']['sd'] or 0:.4f}  "
              f"DP gap {p['sex_demographic_parity_difference']['mean']:.3f}  "
              f"EO gap {p['sex_equal_opportunity_difference']['mean']:.3f}")
    dest = Path(__file__).resolve().parent / "results" / "federated_sites.json"
    dest.write_text(json.dumps(out, indent=1))
    print("wrote", dest)


if __name__ == "__main__":
    main()
