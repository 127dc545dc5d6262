"""Why XLA does not pay on CPU for the DP Adult MLP step: per-step time and first-call (trace + compile) time,
eager vs ``jit_compile=True``, side by side in one process.

Contestants: the Adult MLP (``build_mlp``, hidden [64, 32]) in a ``ResponsibleModel`` compiled with Adam and
accuracy, on one fixed batch of ``--batch`` rows (376 = the static-shape ``batch_max`` of the DP quickstart at an
expected batch of 256):

* ``nonprivate``: the plain Keras step;
* ``dp_nonoise``: the ghost-clipped step with σ = 0 (clipping only; a timing ablation, never a DP run);
* ``dp``: the DP step (ghost clipping, σ = 1, noise keyed on a step counter), Philox noise (tfresp's generator);
* ``dp_autoalg`` (``--autoalg``): as ``dp`` with ``alg="auto_select"``, the generator before the fix: ThreeFry
  under XLA.

Each in eager (``jit_compile=False``) and XLA form. Timing: ``--rounds`` alternating rounds of ``--steps`` steps;
per contestant the median over rounds of the per-round median step time. JSON to
``benchmarks/results/dp_xla_cpu[_TAG].json``.

    python benchmarks/dp_xla_cpu.py --rounds 15 --autoalg
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfresp.models.base import ResponsibleModel  # noqa: E402
from tfresp.models.mlp import build_mlp  # noqa: E402
from tfresp.privacy import clipping  # noqa: E402


def build(kind, jit, x):
    keras.utils.set_random_seed(0)
    m = ResponsibleModel(build_mlp(x.shape[1], 2, hidden=[64, 32]))
    if kind.startswith("dp"):
        seed = tf.Variable(1234, dtype=tf.int64, trainable=False)
        counter = tf.Variable(0, dtype=tf.int64, trainable=False)
        m.gradient_fn = clipping.make_gradient_fn("ghost", 1.0, 0.0 if kind == "dp_nonoise" else 1.0,
                                                  expected_batch_size=256.0, seed=seed, counter=counter)
    m.compile(keras.optimizers.Adam(0.003), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"], jit_compile=jit)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=376)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--autoalg", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    from tfresp.config import load_config
    from tfresp.data.dataset import prepare

    data = prepare(load_config({"data": {"max_rows": args.batch * 8}}))
    x, y = data.train.x[:args.batch].astype(np.float32), data.train.y[:args.batch]
    kinds = ["nonprivate", "dp_nonoise", "dp"] + (["dp_autoalg"] if args.autoalg else [])
    cases = [(k, j) for k in kinds for j in (False, True)]
    models, iters, first = {}, {}, {}
    for kind, jit in cases:
        clipping.NOISE_ALG = "auto_select" if kind == "dp_autoalg" else "philox"  # read when the step is traced
        m = build(kind, jit, x)
        it = iter(tf.data.Dataset.from_tensors((x, y, {"sample_weight": np.ones(len(y), np.float32)})).repeat())
        m.train_function = m.make_train_function()
        t = time.perf_counter()
        m.train_function(it)
        first[f"{kind}/{'xla' if jit else 'eager'}"] = time.perf_counter() - t
        for _ in range(2):
            m.train_function(it)
        models[(kind, jit)], iters[(kind, jit)] = m, it
    clipping.NOISE_ALG = "philox"
    per = {c: [] for c in cases}
    for _ in range(args.rounds):
        for c in cases:
            ts = []
            for _ in range(args.steps):
                t = time.perf_counter()
                logs = models[c].train_function(iters[c])
                tf.nest.map_structure(lambda v: v.numpy(), logs)
                ts.append(time.perf_counter() - t)
            per[c].append(statistics.median(ts))
    name = {c: f"{c[0]}/{'xla' if c[1] else 'eager'}" for c in cases}
    med = {name[c]: statistics.median(v) for c, v in per.items()}
    ratios = {f"{k}: xla/eager": med[f"{k}/xla"] / med[f"{k}/eager"] for k in kinds}
    ratios.update({f"{k}/xla over nonprivate/eager": med[f"{k}/xla"] / med["nonprivate/eager"] for k in kinds})
    for k, v in med.items():
        print(f"{k:22s} step {v * 1e3:7.3f} ms   first call (trace+compile) {first[k]:6.2f} s")
    print(ratios)
    write_result("dp_xla_cpu" + (f"_{args.tag}" if args.tag else ""),
                 {"device": "gpu" if tf.config.list_logical_devices("GPU") else "cpu", "batch": args.batch,
                  "rounds": args.rounds, "steps_per_round": args.steps,
                  "method": "alternating rounds in one process; median over rounds of per-round median step time",
                  "step_seconds": med, "first_call_seconds": first, "ratios": ratios,
                  "per_round_medians": {name[c]: v for c, v in per.items()}})


if __name__ == "__main__":
    main()
