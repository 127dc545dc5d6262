"""Robustness evidence through tfresp.fit: digits CNN (standard vs Madry vs TRADES), Adult MLP, fine-tuning.

1. Digits CNN (sklearn 8x8 digits, pixels in [0, 1]): for train = none / madry / trades (same seed,
   split, model, epochs), clean accuracy and robust accuracy under PGD-``eval_steps`` x ``restarts``
   (L∞) at ε ∈ {0.1, 0.2, 0.3} on the whole test split, the gradient-masking checks, D(θ), and the
   training-time ratio (fit seconds of the run / fit seconds of the standard run).
2. Adult MLP: robust accuracy on the standardized numeric features (one-hot columns frozen) at small ε,
   standard vs Madry training.
3. Pretrain on digits 0-4, fine-tune on 5-9 with few labelled rows: frozen pretrained base (head only)
   vs full fine-tuning vs random init, same epochs.

Everything is written to ``benchmarks/results/robustness.json`` and printed.

Usage:
    .venv/bin/python benchmarks/robustness.py                  # everything (~10 min on 2 busy cores)
    .venv/bin/python benchmarks/robustness.py --only digits --epochs 10
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

import tfresp  # noqa: E402


def _fit(cfg, out):
    cfg = {**cfg, "report": {"html": False}}  # the numbers are what we need; keep the benchmark lean
    t0, c0 = time.perf_counter(), time.process_time()
    res = tfresp.fit(cfg, out=out, overwrite=True, quiet=True)
    res.cpu_seconds = time.process_time() - c0  # CPU time of this process: less distorted by a busy machine
    return res, time.perf_counter() - t0


def _rob_summary(rob, epsilons):
    return {"clean_accuracy": rob["clean_accuracy"],
            **{f"pgd@{e:g}": rob[f"pgd@{e:g}"]["accuracy"] for e in epsilons},
            **{f"fgsm@{e:g}": rob[f"fgsm@{e:g}"]["accuracy"] for e in epsilons},
            **{f"noise@{e:g}": rob[f"noise@{e:g}"]["accuracy"] for e in epsilons},
            "sanity": rob["sanity"], "warnings": rob["warnings"],
            "parameter_sensitivity": (rob.get("sensitivity") or {}).get("parameter_sensitivity"),
            "input_gradient_norm": (rob.get("sensitivity") or {}).get("input_gradient_norm"),
            "step_time_ratio": (rob.get("training_time") or {}).get("step_time_ratio"),
            "examples": rob["examples"]}


def digits(args, tmp):
    eps = [0.1, 0.2, 0.3]
    base = {"seed": 0, "data": {"source": "digits", "label": "label"},
            "model": {"kind": "cnn", "hidden": [16, 32]},
            "train": {"epochs": args.epochs, "batch_size": 64, "learning_rate": 3e-3},
            "export": {"saved_model": False}}
    rob = {"epsilon": args.train_epsilon, "steps": args.train_steps, "epsilon_warmup": args.epsilon_warmup,
           "eval_epsilons": eps,
           "eval_steps": args.eval_steps, "restarts": args.restarts, "eval_examples": 10_000}
    rows = {}
    for method, extra in (("standard", {"train": "none"}), ("madry", {"train": "madry"}),
                          ("trades", {"train": "trades", "trades_beta": 6.0})):
        res, wall = _fit({**base, "name": f"digits-{method}", "robustness": {**rob, **extra}}, tmp / method)
        rows[method] = {**_rob_summary(res.report["robustness"], eps),
                        "fit_seconds": res.report["training"]["timings"]["fit_seconds"], "wall_seconds": wall,
                        "fit_cpu_seconds": res.report["training"]["timings"].get("fit_cpu_seconds"),
                        "run_cpu_seconds": res.cpu_seconds}
        print(f"digits {method:9s} " + " ".join(f"{k}={v:.3f}" for k, v in rows[method].items()
                                                  if isinstance(v, float) and not k.startswith(("fgsm", "noise"))))
    for m in rows:
        rows[m]["training_time_ratio_vs_standard"] = rows[m]["fit_seconds"] / rows["standard"]["fit_seconds"]
        if rows[m].get("fit_cpu_seconds") and rows["standard"].get("fit_cpu_seconds"):
            rows[m]["training_cpu_time_ratio_vs_standard"] = (rows[m]["fit_cpu_seconds"]
                                                              / rows["standard"]["fit_cpu_seconds"])
    return {"epsilons": eps, "norm": "linf", "train_epsilon": args.train_epsilon, "train_steps": args.train_steps,
            "epsilon_warmup": args.epsilon_warmup,
            "eval": f"PGD-{args.eval_steps} x {args.restarts} restarts, whole test split", "epochs": args.epochs,
            "results": rows}


def adult(args, tmp):
    eps = [0.05, 0.1, 0.25]
    base = {"seed": 0, "data": {"source": "adult", "label": "income", "max_rows": args.adult_rows},
            "model": {"kind": "mlp", "hidden": [64, 32]},
            "train": {"epochs": 3, "batch_size": 256, "learning_rate": 3e-3}, "export": {"saved_model": False}}
    rob = {"epsilon": 0.1, "steps": 7, "eval_epsilons": eps, "eval_steps": args.eval_steps,
           "restarts": args.restarts, "eval_examples": 2000}
    rows = {}
    for method, extra in (("standard", {"train": "none"}), ("madry", {"train": "madry"})):
        res, wall = _fit({**base, "name": f"adult-{method}", "robustness": {**rob, **extra}}, tmp / f"adult-{method}")
        r = res.report["robustness"]
        rows[method] = {**_rob_summary(r, eps), "attackable_dims": r["attackable_dims"],
                        "fit_seconds": res.report["training"]["timings"]["fit_seconds"]}
        print(f"adult  {method:9s} clean={r['clean_accuracy']:.3f} " +
              " ".join(f"pgd@{e:g}={r[f'pgd@{e:g}']['accuracy']:.3f}" for e in eps))
    return {"epsilons": eps, "units": "standard deviations of numeric features; one-hot columns frozen",
            "results": rows}


def finetune(args, tmp):
    base = {"seed": 0, "data": {"label": "label"}, "model": {"kind": "cnn", "hidden": [16, 32]},
            "train": {"batch_size": 8, "learning_rate": 3e-3}, "export": {"saved_model": True}}
    pre, _ = _fit({**base, "name": "digits-pretrain", "data": {"source": "digits:0-4", "label": "label"},
                   "train": {**base["train"], "batch_size": 32, "epochs": args.epochs}}, tmp / "pretrain")
    out = {"pretrain": {"labels": "0-4", "test_accuracy": pre.metrics["accuracy"]}, "results": {}}
    for rows in args.finetune_rows:
        variants = (("random_init", {}, {}),
                    ("full_finetune_pretrained", {"checkpoint": str(pre.run_dir)}, {}),
                    ("freeze_stage0_pretrained", {"checkpoint": str(pre.run_dir), "freeze": 3}, {}),
                    # a linear probe: head only, with the larger learning rate and longer schedule it needs
                    ("head_only_pretrained", {"checkpoint": str(pre.run_dir), "freeze": "all-but-head"},
                     {"learning_rate": 3e-2, "epochs": 2 * args.finetune_epochs}))
        for name, model, train in variants:
            cfg = {**base, "name": f"ft-{name}-{rows}", "data": {"source": "digits:5-9", "label": "label",
                                                                   "max_rows": rows},
                   "model": {**base["model"], **model},
                   "train": {**base["train"], "epochs": args.finetune_epochs, **train},
                   "export": {"saved_model": False}}
            accs = []
            for seed in range(args.finetune_seeds):
                res, _ = _fit({**cfg, "seed": seed}, tmp / f"ft-{name}-{rows}-{seed}")
                accs.append(res.metrics["accuracy"])
            out["results"][f"{name}@{rows}"] = {
                "train_rows": rows, "test_accuracy_mean": sum(accs) / len(accs), "test_accuracy": accs,
                "trainable_parameters": res.report["model"]["trainable_parameters"],
                "parameters": res.report["model"]["parameters"]}
            print(f"finetune {name:26s} rows={rows:4d} acc={sum(accs) / len(accs):.3f} "
                  f"trainable={res.report['model']['trainable_parameters']}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="digits,adult,finetune")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--train-epsilon", type=float, default=0.2)
    p.add_argument("--train-steps", type=int, default=7)
    p.add_argument("--epsilon-warmup", type=float, default=0.4)
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--adult-rows", type=int, default=10_000)
    p.add_argument("--finetune-rows", type=int, nargs="+", default=[10, 25, 100])
    p.add_argument("--finetune-epochs", type=int, default=30)
    p.add_argument("--finetune-seeds", type=int, default=3)
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    import json

    from _common import RESULTS

    previous = RESULTS / "robustness.json"
    payload = json.loads(previous.read_text()) if previous.exists() else {}
    payload.pop("benchmark", None)
    payload.pop("machine", None)
    payload["config"] = vars(args)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, fn in (("digits", digits), ("adult", adult), ("finetune", finetune)):
            if name in only:
                t0 = time.perf_counter()
                payload[name] = fn(args, tmp)
                payload[name]["seconds"] = time.perf_counter() - t0
                write_result("robustness", payload)
    return payload


if __name__ == "__main__":
    main()
