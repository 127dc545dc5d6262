"""Where the XLA cost of the DP Adult MLP step goes on CPU: first call (trace + compile) and step time, eager vs
``jit_compile=True``, each XLA flag set in its own process (XLA reads ``XLA_FLAGS`` once per process).

Flag sets: none; ``--xla_backend_optimization_level=0`` (no LLVM optimisation: if compilation were LLVM's
optimiser, the first call would shrink); ``--xla_llvm_disable_expensive_passes=true``;
``--xla_cpu_use_thunk_runtime=false`` (the older CPU runtime). Step: the tfresp DP step (ghost clipping, σ = 1,
Philox noise) on a fixed batch of 376 rows (the static-shape ``batch_max`` of the DP quickstart), median of 200.
JSON to ``benchmarks/results/xla_compile_cpu[_TAG].json``.

    .venv/bin/python benchmarks/xla_compile_cpu.py --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

FLAGS = ["", "--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true",
         "--xla_cpu_use_thunk_runtime=false"]

CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, {bench!r})
import numpy as np
import tensorflow as tf
from dp_xla_cpu import build
from tfresp.config import load_config
from tfresp.data.dataset import prepare
data = prepare(load_config({{"data": {{"max_rows": 376 * 8}}}}))
x, y = data.train.x[:376].astype(np.float32), data.train.y[:376]
out = {{}}
for jit in (False, True):
    m = build("dp", jit, x)
    it = iter(tf.data.Dataset.from_tensors((x, y, {{"sample_weight": np.ones(len(y), np.float32)}})).repeat())
    m.train_function = m.make_train_function()
    t = time.perf_counter(); m.train_function(it); first = time.perf_counter() - t
    ts = []
    for _ in range(200):
        t = time.perf_counter(); logs = m.train_function(it)
        tf.nest.map_structure(lambda v: v.numpy(), logs); ts.append(time.perf_counter() - t)
    out["xla" if jit else "eager"] = {{"first_call_s": first, "step_s": statistics.median(ts)}}
print("RESULT " + json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    bench = str(Path(__file__).resolve().parent)
    runs = {f or "none": [] for f in FLAGS}
    for r in range(args.rounds):
        for f in (FLAGS if r % 2 == 0 else FLAGS[::-1]):
            env = dict(os.environ, XLA_FLAGS=f, TF_CPP_MIN_LOG_LEVEL="3")
            res = subprocess.run([sys.executable, "-c", CHILD.format(bench=bench)], env=env, capture_output=True,
                                 text=True, timeout=600)
            line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                raise SystemExit(f"{f or 'none'}: no result\n{res.stderr[-2000:]}")
            got = json.loads(line[0][7:])
            runs[f or "none"].append(got)
            print(f"{f or 'none':45s} eager first {got['eager']['first_call_s']:.2f}s step "
                  f"{got['eager']['step_s'] * 1e3:.3f}ms | xla first {got['xla']['first_call_s']:.2f}s step "
                  f"{got['xla']['step_s'] * 1e3:.3f}ms", flush=True)
    med = {k: {f"{mode}_{fig}": statistics.median(v[mode][fig] for v in vs)
               for mode in ("eager", "xla") for fig in ("first_call_s", "step_s")} for k, vs in runs.items()}
    write_result("xla_compile_cpu" + (f"_{args.tag}" if args.tag else ""),
                 {"batch": 376, "rounds": args.rounds, "method": "one process per flag set and round; alternating "
                  "order; median over rounds", "medians": med, "runs": runs})


if __name__ == "__main__":
    main()
