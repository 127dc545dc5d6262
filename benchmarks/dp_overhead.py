"""DP-SGD step time: tfresp DP vs non-private Keras vs tensorflow-privacy's ``DPModel``, side by side.

For two models, in one process, on the same fixed batch:

* ``transformer``: functional Embedding + MultiHeadAttention + LayerNormalization + Dense classifier
  (B = 64, L = 64 by default).
* ``adult_mlp``:  the tfresp Adult MLP (Dense stack) on encoded Adult rows.

Contestants (each a compiled Keras train step, called directly, SGD):

* ``nonprivate``: ``TfrespModel`` with its default ``train_step``.
* ``tfresp_dp``: ``TfrespModel`` with tfresp's DP-SGD ``gradient_fn`` (clipping chosen by ``select_clipping``, which
  probes the model; ``--clipping vectorized`` forces the per-example path), σ = 1, C = 1, seeded noise.
* ``tfp_dpmodel``: tensorflow-privacy 0.9 ``DPModel`` with ghost ("fast gradient") clipping, its layer registry
  filled with Dense, Embedding, LayerNormalization, EinsumDense and MultiHeadAttention, ``use_xla=False`` (none of
  the contestants is XLA-compiled). tensorflow-privacy is NOT a tfresp dependency (it pins Python < 3.12 and numpy 1):
  install it for the benchmark only, ``pip install --no-deps --target /tmp/tfp tensorflow-privacy==0.9.0``, and pass
  ``--tfp-path /tmp/tfp`` (the default). When it cannot be imported the peer is skipped with a note.

Timing: ``--rounds`` rounds; in each round every contestant runs ``--steps`` steps in turn (alternating, so load
from other processes hits all of them alike); a contestant's time is the median over rounds of its per-round median
step time. Ratios are of medians measured in this one process; also given: the median of the per-round (paired)
ratios and the ratio of the best rounds, which a loaded machine disturbs less. JSON to ``benchmarks/results/dp_overhead[_TAG].json``.

Usage:
    .venv/bin/python benchmarks/dp_overhead.py                     # batch 64, 21 rounds x 5 steps
    .venv/bin/python benchmarks/dp_overhead.py --tag gpu --batch 256
    .venv/bin/python benchmarks/dp_overhead.py --models adult_mlp --rounds 31 --steps 20 --ablate-noise --tag adult_after
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402  (sets TF_USE_LEGACY_KERAS=1: tf.keras is tf_keras for the peer)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import tfresp  # noqa: E402,F401
from tfresp.models.base import ResponsibleModel as TfrespModel  # noqa: E402
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


def import_tfp(path):
    """tensorflow-privacy's DPModel pieces, or ``(None, why)``."""
    if path and Path(path).is_dir() and path not in sys.path:
        sys.path.append(path)
    sys.skip_tf_privacy_import = True  # its top-level __init__ imports everything (and breaks on new TF)
    try:
        from tensorflow_privacy.privacy.fast_gradient_clipping import layer_registry as lr
        from tensorflow_privacy.privacy.fast_gradient_clipping.registry_functions import (
            einsum_dense, layer_normalization, multi_head_attention)
        from tensorflow_privacy.privacy.keras_models import dp_keras_model
    except Exception as e:  # noqa: BLE001 - optional peer
        return None, f"tensorflow-privacy not importable ({type(e).__name__}: {e}); peer skipped"
    registry = lr.make_default_layer_registry()  # Dense, Embedding
    registry.insert(keras.layers.LayerNormalization, layer_normalization.layer_normalization_computation)
    registry.insert(keras.layers.EinsumDense, einsum_dense.einsum_layer_computation)
    registry.insert(keras.layers.MultiHeadAttention, multi_head_attention.multi_head_attention_layer_computation)
    return (dp_keras_model.DPModel, registry), None


def build(kind, make_core, tfp):
    keras.utils.set_random_seed(0)
    if kind == "tfp_dpmodel":
        cls, registry = tfp
        core = make_core()
        m = cls(l2_norm_clip=1.0, noise_multiplier=1.0, use_xla=False, layer_registry=registry,
                inputs=core.inputs, outputs=core.outputs)
        m.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m, None
    m = TfrespModel(make_core())
    info = None
    if kind in ("tfresp_dp", "tfresp_dp_nonoise"):
        info = clipping.select_clipping(m, build.clip_mode)
        seed = tf.Variable(1234, dtype=tf.int64, trainable=False)
        counter = tf.Variable(0, dtype=tf.int64, trainable=False)  # as DPSGD: noise keyed on its own counter
        sigma = 0.0 if kind == "tfresp_dp_nonoise" else 1.0  # σ = 0: a timing ablation only (never a DP run)
        m.gradient_fn = clipping.make_gradient_fn(info[0], 1.0, sigma, expected_batch_size=float(build.batch),
                                                  seed=seed, counter=counter)
    m.compile(keras.optimizers.SGD(0.01))
    return m, info


def noise_draw_seconds(params, rounds, draws=100):
    """Median time of one ``stateless_normal([params])`` Philox draw (the DP noise of one step), alone in a loop."""
    @tf.function
    def loop(seed):
        def body(i, acc):
            return i + 1, acc + tf.random.stateless_normal([params], seed=tf.stack([seed, tf.cast(i, tf.int64)]),
                                                           alg=clipping.NOISE_ALG)
        return tf.while_loop(lambda i, a: i < draws, body, (0, tf.zeros([params])))[1]

    seed = tf.constant(7, tf.int64)
    loop(seed)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        loop(seed).numpy()
        times.append((time.perf_counter() - t) / draws)
    return statistics.median(times)


def bench(name, make_core, x, y, batch, rounds, steps, tfp, clip_mode):
    build.clip_mode, build.batch = clip_mode, batch
    build.ablate = getattr(build, "ablate", False)
    kinds = ["nonprivate", "tfresp_dp"] + (["tfp_dpmodel"] if tfp else []) + \
        (["tfresp_dp_nonoise"] if build.ablate else [])
    models, iters, info = {}, {}, None
    for kind in kinds:
        m, i = build(kind, make_core, tfp)
        info = i or info
        data = (x[:batch], y[:batch]) if kind == "tfp_dpmodel" else \
            (x[:batch], y[:batch], {"sample_weight": np.ones(batch, np.float32)})
        iters[kind] = iter(tf.data.Dataset.from_tensors(data).repeat())
        m.train_function = m.make_train_function()
        for _ in range(3):  # trace + warm up
            m.train_function(iters[kind])
        models[kind] = m
    per_round = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind in kinds:
            times = []
            for _ in range(steps):
                t = time.perf_counter()
                logs = models[kind].train_function(iters[kind])
                tf.nest.map_structure(lambda v: v.numpy() if hasattr(v, "numpy") else v, logs)
                times.append(time.perf_counter() - t)
            per_round[kind].append(statistics.median(times))
    med = {k: statistics.median(v) for k, v in per_round.items()}
    best = {k: min(v) for k, v in per_round.items()}

    def paired(a, b):  # median over rounds of the ratio within a round (neighbours in time share the load)
        return statistics.median(x / y for x, y in zip(per_round[a], per_round[b]))

    res = {"step_seconds": med, "best_round_step_seconds": best, "per_round_medians": per_round,
           "clipping_mode": info[0], "clipping_reason": info[1],
           "ratio_dp_over_nonprivate": med["tfresp_dp"] / med["nonprivate"],
           "ratio_dp_over_tfp": med["tfresp_dp"] / med["tfp_dpmodel"] if tfp else None,
           "ratio_tfp_over_nonprivate": med["tfp_dpmodel"] / med["nonprivate"] if tfp else None,
           "paired_ratio_dp_over_nonprivate": paired("tfresp_dp", "nonprivate"),
           "paired_ratio_dp_over_tfp": paired("tfresp_dp", "tfp_dpmodel") if tfp else None,
           "best_ratio_dp_over_nonprivate": best["tfresp_dp"] / best["nonprivate"],
           "best_ratio_dp_over_tfp": best["tfresp_dp"] / best["tfp_dpmodel"] if tfp else None,
           "params": int(sum(np.prod(v.shape) for v in models["nonprivate"].core.trainable_variables))}
    if build.ablate:
        res["ratio_dp_nonoise_over_nonprivate"] = med["tfresp_dp_nonoise"] / med["nonprivate"]
        res["ratio_dp_nonoise_over_tfp"] = med["tfresp_dp_nonoise"] / med["tfp_dpmodel"] if tfp else None
        res["noise_draw_seconds"] = noise_draw_seconds(res["params"], rounds)
    peer = (f"tfp {med['tfp_dpmodel'] * 1e3:7.2f} ms  dp/tfp = {res['ratio_dp_over_tfp']:.2f} "
            f"(paired {res['paired_ratio_dp_over_tfp']:.2f}, best {res['best_ratio_dp_over_tfp']:.2f})" if tfp
            else "tfp skipped")
    print(f"{name:12s} params={res['params']:>7d} clipping={info[0]:10s} non-private {med['nonprivate'] * 1e3:7.2f} ms  "
          f"tfresp DP {med['tfresp_dp'] * 1e3:7.2f} ms  dp/non-private = {res['ratio_dp_over_nonprivate']:.2f} "
          f"(paired {res['paired_ratio_dp_over_nonprivate']:.2f}, best {res['best_ratio_dp_over_nonprivate']:.2f})   {peer}",
          flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--steps", type=int, default=5, help="steps per contestant per round")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--clipping", default="auto", choices=["auto", "ghost", "vectorized"])
    ap.add_argument("--tfp-path", default="/tmp/tfp", help="a --target folder holding tensorflow-privacy")
    ap.add_argument("--no-tfp", action="store_true", help="skip the tensorflow-privacy peer")
    ap.add_argument("--tag", default="")
    ap.add_argument("--models", default="transformer,adult_mlp")
    ap.add_argument("--ablate-noise", action="store_true",
                    help="also time tfresp's step with σ = 0 (clipping only) and one noise draw alone")
    args = ap.parse_args(argv)
    build.ablate = args.ablate_noise
    tfp, note = (None, "skipped by --no-tfp") if args.no_tfp else import_tfp(args.tfp_path)
    if note:
        print(note, flush=True)
    rng = np.random.default_rng(0)
    results = {}
    for name in args.models.split(","):
        if name == "transformer":
            x = rng.integers(0, 2000, (args.batch, args.seq_len)).astype(np.int32)
            y = rng.integers(0, 2, args.batch)
            results[name] = bench(name, lambda: transformer(length=args.seq_len), x, y, args.batch, args.rounds,
                                  args.steps, tfp, args.clipping)
        elif name == "adult_mlp":
            from tfresp.config import load_config
            from tfresp.data.dataset import prepare

            data = prepare(load_config({"data": {"max_rows": args.batch * 8}}))
            x, y = data.train.x[:args.batch], data.train.y[:args.batch]
            results[name] = bench(name, lambda: build_mlp(x.shape[1], 2, hidden=[64, 32]), x, y, args.batch,
                                  args.rounds, args.steps, tfp, args.clipping)
    gpus = tf.config.list_logical_devices("GPU")
    goals = {}
    for name, r in results.items():
        goals[f"{name} dp/non-private <= 1.3"] = r["ratio_dp_over_nonprivate"] <= 1.3
        goals[f"{name} dp/tfp <= 0.8"] = r["ratio_dp_over_tfp"] <= 0.8 if r["ratio_dp_over_tfp"] else None
    payload = {"device": "gpu" if gpus else "cpu", "batch_size": args.batch, "rounds": args.rounds,
               "steps_per_round": args.steps, "seq_len": args.seq_len, "clipping": args.clipping,
               "peer": "tensorflow-privacy 0.9.0 DPModel, ghost clipping, use_xla=False" if tfp else note,
               "method": "alternating rounds in one process; median over rounds of per-round median step time",
               "results": results, "goals": goals}
    write_result("dp_overhead" + (f"_{args.tag}" if args.tag else ""), payload)


if __name__ == "__main__":
    main()
