"""The Poisson sampler's cost per DP step: one uniform per row (before) against geometric gaps (O(n·q), now).

Both draw the sorted indices of one Poisson sample of ``range(n)`` at ``q = B / n`` (B = 256) inside a
``tf.function``, as the DP dataset does for every step. Alternating rounds, median milliseconds per draw, for
n = 50k, 800k and 10M. The 10M-row DP quickstart takes ``n / B`` ≈ 31k such draws an epoch (before: 2,700 s of
training at 10M rows, most of it in this draw).

Usage: .venv/bin/python benchmarks/dp_sampler.py [--rounds 5] [--draws 50]
"""
import argparse
import statistics
import time

import _common  # noqa: F401  (environment, sys.path)
import tensorflow as tf

from tfresp.privacy.sampling import poisson_indices


def uniform_per_row(n, q, seed):  # the sampler before: O(n) per step
    u = tf.random.stateless_uniform([n], seed=seed)
    return tf.where(u < q)[:, 0]


def time_draws(fn, draws):
    fn(tf.constant([0, 0], tf.int64)).numpy()  # trace
    t0 = time.perf_counter()
    for i in range(draws):
        fn(tf.constant([1, i], tf.int64)).numpy()
    return (time.perf_counter() - t0) / draws * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--name", default="dp_sampler")
    args = ap.parse_args()
    out = {}
    for n in (50_000, 800_000, 10_000_000):
        q = 256 / n
        fns = {"uniform_per_row": tf.function(lambda s, n=n, q=q: uniform_per_row(n, q, s)),
               "geometric_gaps": tf.function(lambda s, n=n, q=q: poisson_indices(n, q, s))}
        ms = {k: [] for k in fns}
        for r in range(args.rounds):
            order = list(fns) if r % 2 == 0 else list(reversed(fns))
            for k in order:
                ms[k].append(time_draws(fns[k], args.draws))
        med = {k: statistics.median(v) for k, v in ms.items()}
        out[str(n)] = {"q": q, "ms_per_draw_median": med, "ms_per_draw_rounds": ms,
                       "speedup": med["uniform_per_row"] / med["geometric_gaps"],
                       "epoch_seconds_estimate": {k: v * n / 256 / 1e3 for k, v in med.items()}}
        print(n, {k: round(v, 3) for k, v in med.items()}, f"speed-up {out[str(n)]['speedup']:.1f}x")
    _common.write_result(args.name, {"batch_size": 256, "rounds": args.rounds, "draws": args.draws, "results": out})


if __name__ == "__main__":
    main()
