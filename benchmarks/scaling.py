"""Training throughput on CPU: 1 vs 2 logical devices (MirroredStrategy) and 1 vs 2 local workers
(MultiWorkerMirroredStrategy over 127.0.0.1, TF_CONFIG), same global batch, same model and data.

Each configuration runs ``tfresp.fit`` in fresh processes (logical devices and collectives must be set up
before TensorFlow starts). Throughput = training rows per second over the epochs after the first (the
first includes tracing), measured by a per-epoch timing callback; for 2 workers, the slower worker counts.
Also records the final test accuracy, to show the configurations train the same model.

The absolute numbers depend on the host: on the 2-core development machine, shared by other jobs, two
replicas compete for the same 2 cores, so a speed-up is not expected there; the script's point is that the
measurement is comparable across strategies. Run it on a multi-core / multi-GPU host for real scaling.

Usage:
    .venv/bin/python benchmarks/scaling.py                      # Adult 12k rows, MLP [256, 256], batch 512
    .venv/bin/python benchmarks/scaling.py --rows 30000 --epochs 4 --dp
Writes benchmarks/results/scaling.json and prints the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, write_result  # noqa: E402

MARK = "@@SCALING@@"


def child(args) -> None:
    import tfresp  # noqa: F401
    import tf_keras as keras

    from tfresp.run import builder
    from tfresp.run.distribute import logical_cpus

    if args.logical_cpus > 1:
        logical_cpus(args.logical_cpus)
    times = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    orig = builder._standard_callbacks
    builder._standard_callbacks = lambda ctx: [EpochTimer()] + orig(ctx)[1:]  # no TensorBoard in timings
    cfg = json.loads(args.config)
    result = tfresp.fit(cfg, out=args.out, quiet=True, overwrite=True)
    rows = result.report["data"]["splits"]["train"]["rows"]
    steady = times[1:] or times
    print(MARK + json.dumps({
        "rows_per_second": rows * len(steady) / sum(steady), "epoch_seconds": times,
        "test_accuracy": result.metrics.get("accuracy"),
        "training": {k: result.report["training"].get(k) for k in
                     ("strategy", "replicas", "workers", "global_batch_size", "per_replica_batch_size")},
        "epsilon": (result.report.get("privacy") or {}).get("epsilon")}))


def _env(**extra):
    e = dict(os.environ)
    e.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO))
    e.pop("TF_CONFIG", None)
    e.update(extra)
    return e


def _parse(out: str) -> dict:
    return json.loads(next(ln for ln in out.splitlines() if ln.startswith(MARK))[len(MARK):])


def _spawn(cfg, out, logical=1, env=None):
    return subprocess.Popen([sys.executable, __file__, "--child", "--config", json.dumps(cfg), "--out", str(out),
                             "--logical-cpus", str(logical)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env or _env(), cwd=REPO)


def _wait(procs, timeout=1200):
    res = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"child failed ({p.returncode}):\n{err[-3000:]}")
        res.append(_parse(out))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--logical-cpus", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=512, help="global batch size")
    ap.add_argument("--dp", action="store_true", help="train with DP-SGD (noise_multiplier 1.0)")
    ap.add_argument("--workdir", default="/tmp/tfresp-scaling")
    args = ap.parse_args()
    if args.child:
        return child(args)

    cfg = {"name": "scaling", "seed": 0,
           "data": {"source": "adult", "label": "income", "max_rows": args.rows},
           "model": {"kind": "mlp", "hidden": [256, 256]},
           "train": {"epochs": args.epochs, "batch_size": args.batch},
           "export": {"saved_model": False}, "report": {"html": False}}
    if args.dp:
        cfg["privacy"] = {"noise_multiplier": 1.0, "sampling": "shuffle", "audit": False}
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    print("single device ...", flush=True)
    results["single_device"] = _wait([_spawn({**cfg, "distribute": "none"}, work / "single")])[0]
    print("mirrored, 2 logical CPUs ...", flush=True)
    results["mirrored_2_logical_cpus"] = _wait([_spawn({**cfg, "distribute": "mirrored"}, work / "mirrored", 2)])[0]
    print("multi-worker, 2 local workers ...", flush=True)
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    addrs = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    for s in socks:
        s.close()
    procs = [_spawn({**cfg, "distribute": "multi_worker"}, work / f"worker{i}",
                    env=_env(TF_CONFIG=json.dumps({"cluster": {"worker": addrs},
                                                   "task": {"type": "worker", "index": i}})))
             for i in range(2)]
    workers = _wait(procs)
    slow = min(workers, key=lambda r: r["rows_per_second"])
    results["multi_worker_2_local"] = {**slow, "per_worker_rows_per_second": [w["rows_per_second"] for w in workers]}
    base = results["single_device"]["rows_per_second"]
    ratios = {"mirrored_2_vs_1": results["mirrored_2_logical_cpus"]["rows_per_second"] / base,
              "workers_2_vs_1": results["multi_worker_2_local"]["rows_per_second"] / base}
    for k, v in results.items():
        print(f"{k:>26}: {v['rows_per_second']:9.0f} rows/s  acc={v['test_accuracy']:.4f}  {v['training']}")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    write_result("scaling", {"config": cfg, "dp": args.dp, "results": results, "ratios": ratios,
                             "note": "CPU only; 2 replicas share the host's cores (2 on the dev machine, shared "
                                     "with other jobs): ratios below 1 there are expected"})


if __name__ == "__main__":
    main()
