"""Overhead of tfresp.fit with every concern off vs a hand-written Keras model.fit (issue 2).

Same model (tfresp.models.mlp.build_mlp), same encoded Adult arrays, same epochs/batch, same process; the
two are run alternately ``--repeats`` times and the median ratio is printed (goal <= 1.05 for the training
phase). The end-to-end ratio (tfresp.fit total, incl. data prep, SavedModel export and report, vs hand-written
prep + fit + SavedModel save) is printed too, for honesty.
"""
import argparse
import statistics
import tempfile
import time

import _common  # noqa: F401  (env switches first)

import tfresp  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfresp.config import load_config  # noqa: E402
from tfresp.data.dataset import prepare  # noqa: E402
from tfresp.models.mlp import build_mlp  # noqa: E402


def hand_written(cfg, epochs, batch):
    t0 = time.perf_counter()
    data = prepare(cfg)
    keras.utils.set_random_seed(cfg.seed)
    model = build_mlp(data.train.x.shape[1], data.num_classes, cfg.model.hidden)
    model.compile(optimizer=keras.optimizers.Adam(cfg.train.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t1, c1 = time.perf_counter(), time.process_time()
    model.fit(data.train.x, data.train.y, batch_size=batch, epochs=epochs,
              validation_data=(data.validation.x, data.validation.y), verbose=0)
    t2, c2 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as d:
        model.save(d + "/sm")
    t3 = time.perf_counter()
    return t2 - t1, t3 - t0, c2 - c1


def with_tfresp(cfg, out):
    t0 = time.perf_counter()
    res = tfresp.fit(cfg, out=out, overwrite=True, quiet=True)
    tm = res.context.timings
    return tm["fit_seconds"], time.perf_counter() - t0, res.metrics["accuracy"], tm["fit_cpu_seconds"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config({"name": "overhead", "data": {"sensitive": ["sex", "race"]},
                       "train": {"epochs": args.epochs, "batch_size": args.batch}})
    fit_ratios, total_ratios, cpu_ratios, rows = [], [], [], []
    with tempfile.TemporaryDirectory() as d:
        with_tfresp(cfg, d + "/warm")  # warm-up: graph tracing and file caches for both paths
        hand_written(cfg, 1, args.batch)
        for r in range(args.repeats):
            hf, ht, hc = hand_written(cfg, args.epochs, args.batch)
            tf_, tt, acc, tc = with_tfresp(cfg, f"{d}/run{r}")
            fit_ratios.append(tf_ / hf)
            total_ratios.append(tt / ht)
            cpu_ratios.append(tc / hc)
            rows.append({"hand_fit_s": hf, "tfresp_fit_s": tf_, "hand_total_s": ht, "tfresp_total_s": tt,
                         "hand_fit_cpu_s": hc, "tfresp_fit_cpu_s": tc, "tfresp_accuracy": acc})
            print(f"repeat {r}: fit {tf_:.2f}s vs hand {hf:.2f}s (x{tf_ / hf:.3f}); "
                  f"fit CPU {tc:.2f}s vs {hc:.2f}s (x{tc / hc:.3f}); "
                  f"end-to-end {tt:.2f}s vs {ht:.2f}s (x{tt / ht:.3f})")
    fit_med, tot_med = statistics.median(fit_ratios), statistics.median(total_ratios)
    cpu_med = statistics.median(cpu_ratios)
    print(f"RATIO training phase tfresp/hand = {fit_med:.3f} wall-clock, {cpu_med:.3f} CPU time (goal <= 1.05)")
    print(f"RATIO end-to-end tfresp/hand = {tot_med:.3f} (tfresp also writes report, plots, TensorBoard, "
          "round-trip check)")
    _common.write_result("overhead", {"epochs": args.epochs, "batch_size": args.batch, "repeats": rows,
                                      "fit_ratio_median": fit_med, "fit_cpu_ratio_median": cpu_med, "end_to_end_ratio_median": tot_med,
                                      "goal_fit_ratio": 1.05})


if __name__ == "__main__":
    main()
