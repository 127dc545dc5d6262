"""DP-SGD step-time overhead: non-private vs tfresp DP vs a plain per-example-clipping baseline.

For two models, in one process, on the same fixed batches:

* ``transformer``: functional Embedding + MultiHeadAttention + LayerNormalization + Dense classifier.
* ``adult_mlp``:  the tfresp Adult MLP (Dense stack) on encoded Adult rows.

and three ways to train them:

* (a) ``nonprivate``: ``TfrespModel`` with its default ``train_step``.
* (b) ``tfresp_dp``: ``TfrespModel`` with tfresp's DP-SGD ``gradient_fn`` (clipping mode chosen by
  ``select_clipping``: ghost for both models here; ``--clipping vectorized`` forces the per-example path).
* (c) the per-example baseline, ``--baseline``:

  * ``vectorized`` (default): tfresp's own per-example clipping (``tf.vectorized_map`` of per-example gradients).
  * ``tfp``: a plain Keras model compiled with tensorflow-privacy's ``VectorizedDPKerasSGDOptimizer``
    (``num_microbatches`` = batch size). tensorflow-privacy is not a tfresp dependency (it pins Python < 3.12
    and numpy 1); this baseline runs only when it is installed.
  * ``none``: skip (c).

Step time = median wall clock of ``train_on_batch``-equivalent steps (``fit`` with a timing callback), after
warm-up steps that include tracing. Prints the ratios (b)/(a) and (c)/(b), writes
``benchmarks/results/dp_overhead.json``. Numbers on a shared CPU are noisy: compare ratios from one run.

Usage:
    .venv/bin/python benchmarks/dp_overhead.py                  # defaults: batch 64, 30 timed steps
    .venv/bin/python benchmarks/dp_overhead.py --batch 256 --steps 50 --tag gpu
    .venv/bin/python benchmarks/dp_overhead.py --baseline tfp   # needs tensorflow-privacy (--no-deps) installed
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

import tfresp  # noqa: E402,F401
from tfresp.models.base import TfrespModel  # noqa: E402
from tfresp.models.mlp import build_mlp  # noqa: E402
from tfresp.privacy import clipping  # noqa: E402


def transformer(vocab=2000, length=64, dim=64, heads=4, classes=2):
    inp = keras.Input((length,), dtype="int32")
    e = keras.layers.Embedding(vocab, dim)(inp)
    a = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=dim // heads)(e, e)
    h = keras.layers.LayerNormalization()(e + a)
    f = keras.layers.Dense(dim * 2, activation="relu")(h)
    h = keras.layers.LayerNormalization()(h + keras.layers.Dense(dim)(f))
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inp, keras.layers.Dense(classes)(h), name="tiny_transformer")


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def time_fit(model, ds, warmup, steps):
    timer = StepTimer()
    model.fit(ds.take(warmup + steps), epochs=1, verbose=0, callbacks=[timer])
    return statistics.median(timer.times[warmup:]), timer.times[warmup:]


def tfp_optimizer(batch):
    """tensorflow-privacy's VectorizedDPKerasSGDOptimizer, or ``None`` when it is not installed."""
    sys.skip_tf_privacy_import = True  # its top-level __init__ crashes on TF >= 2.16; import the submodule only
    try:
        from tensorflow_privacy.privacy.optimizers import dp_optimizer_keras_vectorized as vec
    except ImportError:
        return None
    return vec.VectorizedDPKerasSGDOptimizer(l2_norm_clip=1.0, noise_multiplier=1.0, num_microbatches=batch,
                                             learning_rate=0.01)


def baseline_step(make_core, x, y, batch, warmup, steps, baseline, jit):
    """Median step time of the per-example baseline (c), or ``None`` when it is skipped/unavailable."""
    keras.utils.set_random_seed(0)
    if baseline == "vectorized":
        m = TfrespModel(make_core())
        m.gradient_fn = clipping.make_gradient_fn("vectorized", 1.0, 1.0, expected_batch_size=float(batch))
        m.compile(keras.optimizers.SGD(0.01), jit_compile=jit)
        ds = tf.data.Dataset.from_tensor_slices((x, y, {"sample_weight": np.ones(len(y), np.float32)}))
        return time_fit(m, ds.batch(batch, drop_remainder=True).repeat().prefetch(2), warmup, steps)[0]
    opt = tfp_optimizer(batch) if baseline == "tfp" else None
    if opt is None:
        if baseline == "tfp":
            print("tensorflow-privacy is not installed: baseline (c) skipped", flush=True)
        return None
    core = make_core()
    core.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                 reduction=keras.losses.Reduction.NONE))
    ds2 = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat().prefetch(2)
    return time_fit(core, ds2, warmup, steps)[0]


def bench(name, make_core, x, y, batch, warmup, steps, clip_mode, jit=False, baseline="vectorized"):
    ds = tf.data.Dataset.from_tensor_slices((x, y, {"sample_weight": np.ones(len(y), np.float32)}))
    ds = ds.batch(batch, drop_remainder=True).repeat().prefetch(2)
    out = {}
    keras.utils.set_random_seed(0)
    m = TfrespModel(make_core())
    m.compile(keras.optimizers.SGD(0.01), jit_compile=jit)
    out["nonprivate"], _ = time_fit(m, ds, warmup, steps)

    keras.utils.set_random_seed(0)
    m = TfrespModel(make_core())
    mode, reason = clipping.select_clipping(m, clip_mode)
    m.gradient_fn = clipping.make_gradient_fn(mode, 1.0, 1.0, expected_batch_size=float(batch))
    m.compile(keras.optimizers.SGD(0.01), jit_compile=jit)
    out["tfresp_dp"], _ = time_fit(m, ds, warmup, steps)

    base = baseline_step(make_core, x, y, batch, warmup, steps, baseline, jit)
    res = {"step_seconds": {**out, "baseline_" + baseline: base}, "baseline": baseline, "clipping_mode": mode,
           "clipping_reason": reason, "ratio_dp_over_nonprivate": out["tfresp_dp"] / out["nonprivate"],
           "ratio_baseline_over_dp": base / out["tfresp_dp"] if base else None,
           "params": int(sum(np.prod(v.shape) for v in make_core().trainable_variables))}
    shown = f"(c) {base * 1e3:8.2f} ms   (c)/(b) = {res['ratio_baseline_over_dp']:.2f}" if base else "(c) skipped"
    print(f"{name:12s} params={res['params']:>8d} clipping={mode:10s} "
          f"(a) {out['nonprivate'] * 1e3:8.2f} ms  (b) {out['tfresp_dp'] * 1e3:8.2f} ms  "
          f"(b)/(a) = {res['ratio_dp_over_nonprivate']:.2f}   {shown}", flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--clipping", default="auto", choices=["auto", "ghost", "vectorized"])
    ap.add_argument("--jit", action="store_true", help="XLA-compile (a), (b) and the vectorized baseline")
    ap.add_argument("--baseline", default="vectorized", choices=["vectorized", "tfp", "none"],
                    help="per-example baseline (c); tfp needs tensorflow-privacy installed")
    ap.add_argument("--tag", default="")
    ap.add_argument("--models", default="transformer,adult_mlp")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    n = args.batch * 8
    results = {}
    for name in args.models.split(","):
        if name == "transformer":
            x = rng.integers(0, 2000, (n, args.seq_len)).astype(np.int32)
            y = rng.integers(0, 2, n)
            results[name] = bench(name, lambda: transformer(length=args.seq_len), x, y, args.batch, args.warmup,
                                  args.steps, args.clipping, args.jit, args.baseline)
        elif name == "adult_mlp":
            from tfresp.config import load_config
            from tfresp.data.dataset import prepare

            data = prepare(load_config({"data": {"max_rows": n}}))
            x, y = data.train.x, data.train.y
            reps = int(np.ceil(n / len(y)))
            x, y = np.concatenate([x] * reps)[:n], np.concatenate([y] * reps)[:n]
            results[name] = bench(name, lambda: build_mlp(x.shape[1], 2, hidden=[64, 32]), x, y, args.batch,
                                  args.warmup, args.steps, args.clipping, args.jit, args.baseline)
    gpus = tf.config.list_logical_devices("GPU")
    payload = {"device": "gpu" if gpus else "cpu", "batch_size": args.batch, "timed_steps": args.steps,
               "seq_len": args.seq_len, "clipping": args.clipping, "jit_compile": args.jit, "results": results,
               "goals": {"transformer (b)/(a) <= 1.3": None, "transformer (c)/(b) >= 5": None}}
    if "transformer" in results:
        t = results["transformer"]
        ratio = t["ratio_baseline_over_dp"]
        payload["goals"] = {"transformer (b)/(a) <= 1.3": t["ratio_dp_over_nonprivate"] <= 1.3,
                            "transformer (c)/(b) >= 5": ratio >= 5 if ratio is not None else None}
    write_result("dp_overhead" + (f"_{args.tag}" if args.tag else ""), payload)


if __name__ == "__main__":
    main()
