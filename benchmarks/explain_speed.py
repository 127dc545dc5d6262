"""LIME text explanation speed: tfresp's batched compiled predictor vs plain ``lime`` + ``model.predict``.

Model: MiniLM-L6-H384 (../shared/models/minilm-l6-h384-uncased) loaded with transformers
``TFBertForSequenceClassification.from_pretrained(..., num_labels=3)``. The classification head is
freshly initialised and NOT fine-tuned: this measures speed (the same forward passes either way),
not explanation quality.

Per tweet, in the same process and with the same LIME seed and ``num_samples``:

* naive: ``LimeTextExplainer(random_state=seed).explain_instance(text, fn)`` where ``fn`` tokenizes
  the perturbed strings (padding to the longest) and calls ``model.predict(...)`` (Keras default batch
  size 32), as a user of plain lime would write it;
* tfresp: :func:`tfresp.explain.lime_explain.explain_text` with
  :func:`tfresp.explain.predict.hf_text_predictor` (deduplicated perturbations, length-sorted chunks of
  128 rows padded to the chunk's longest row, one ``tf.function`` trace, and the exact CLS-only last
  encoder layer of :mod:`tfresp.explain._hf_bert`).

The machine is shared (2 cores, several other jobs), so besides wall-clock seconds the script records
process CPU seconds (all threads; what the explanation actually cost) and the number of token
positions each path ran through the encoder (a load-independent measure of the work). The ratio
against the goal is taken on CPU seconds; wall-clock ratios are reported too.

Both orders are alternated per tweet. The first explanation of each path includes tracing ("cold");
the ratio is reported on the warm explanations and on the totals. The LIME weights of the two paths
are compared (max |difference|): they differ only by float rounding of padded vs unpadded batches.

    .venv/bin/python benchmarks/explain_speed.py --texts 3 --num-samples 1000
"""
import argparse
import os
import resource
import statistics
import time

import _common  # noqa: F401  (env switches first)

import tfresp  # noqa: E402,F401
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from lime.lime_text import LimeTextExplainer  # noqa: E402

from tfresp.explain.lime_explain import explain_text  # noqa: E402
from tfresp.explain.predict import hf_text_predictor  # noqa: E402

MINILM = _common.REPO.parent / "shared" / "models" / "minilm-l6-h384-uncased"
TWEETS = _common.REPO.parent / "shared" / "data" / "tweets" / "sentiment_tweets.csv.gz"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=3, help="tweets explained (first one is the cold start)")
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--min-words", type=int, default=4)
    args = ap.parse_args()

    from transformers import AutoTokenizer, TFBertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(MINILM))
    model = TFBertForSequenceClassification.from_pretrained(str(MINILM), num_labels=3)
    df = pd.read_csv(TWEETS, encoding_errors="replace").dropna(subset=["text"])
    words = df["text"].astype(str).str.split().str.len()
    # a random sample of tweets (at least --min-words words): the speed-up depends on length, since
    # short texts have few distinct LIME perturbations (deduplicated) and long ones pad more
    texts = df[words >= args.min_words].sample(n=args.texts, random_state=args.seed)["text"].tolist()

    naive_tokens = [0]

    def naive_fn(strings):
        enc = tok(list(strings), padding=True, truncation=True, max_length=args.max_length, return_tensors="tf")
        naive_tokens[0] += int(np.prod(enc["input_ids"].shape))
        logits = model.predict(dict(enc), verbose=0).logits
        return tf.nn.softmax(logits).numpy()

    predictor = hf_text_predictor(model, tok, max_length=args.max_length, batch_size=128)
    rows = []
    for i, text in enumerate(texts):
        order = ("tfresp", "naive") if i % 2 == 0 else ("naive", "tfresp")
        res = {}
        for which in order:
            t0, c0 = time.perf_counter(), time.process_time()
            tokens0 = predictor.padded_tokens if which == "tfresp" else naive_tokens[0]
            rows0 = predictor.rows
            if which == "tfresp":
                exp = explain_text(text, predictor, seed=args.seed, num_samples=args.num_samples)
                res["tfresp_s"] = time.perf_counter() - t0
                res["tfresp_cpu_s"] = time.process_time() - c0
                res["tfresp_tokens"] = predictor.padded_tokens - tokens0
                res["unique"] = predictor.rows - rows0
                res["label"] = exp["label"]
                res["tfresp_weights"] = exp["all_weights"]
            else:
                label = int(np.argmax(naive_fn([text])[0]))
                plain = LimeTextExplainer(random_state=args.seed).explain_instance(
                    text, naive_fn, labels=(label,), num_features=10 ** 6, num_samples=args.num_samples)
                res["naive_s"] = time.perf_counter() - t0
                res["naive_cpu_s"] = time.process_time() - c0
                res["naive_tokens"] = naive_tokens[0] - tokens0
                res["naive_label"] = label
                res["naive_weights"] = dict(plain.as_list(label=label))
        diff = max(abs(res["tfresp_weights"].get(k, 0.0) - v) for k, v in res["naive_weights"].items())
        rows.append({"text_words": len(text.split()), "distinct_perturbations": res["unique"],
                     "tfresp_s": res["tfresp_s"], "naive_s": res["naive_s"],
                     "tfresp_cpu_s": res["tfresp_cpu_s"], "naive_cpu_s": res["naive_cpu_s"],
                     "ratio_wall": res["tfresp_s"] / res["naive_s"], "ratio": res["tfresp_cpu_s"] / res["naive_cpu_s"],
                     "tfresp_tokens": res["tfresp_tokens"], "naive_tokens": res["naive_tokens"],
                     "ratio_tokens": res["tfresp_tokens"] / res["naive_tokens"],
                     "same_label": res["label"] == res["naive_label"],
                     "max_abs_weight_diff": diff, "order": list(order)})
        r = rows[-1]
        print(f"tweet {i}: words={r['text_words']} distinct={r['distinct_perturbations']} "
              f"tfresp={r['tfresp_cpu_s']:.2f} cpu-s ({r['tfresp_s']:.2f} wall) "
              f"naive={r['naive_cpu_s']:.2f} cpu-s ({r['naive_s']:.2f} wall) ratio cpu={r['ratio']:.3f} "
              f"wall={r['ratio_wall']:.3f} tokens={r['ratio_tokens']:.3f} max|dw|={diff:.2e}")

    warm = rows[1:] or rows
    summary = {
        "ratio_warm_median": statistics.median(r["ratio"] for r in warm),
        "ratio_wall_warm_median": statistics.median(r["ratio_wall"] for r in warm),
        "ratio_tokens_median": statistics.median(r["ratio_tokens"] for r in rows),
        "ratio_total_cpu": sum(r["tfresp_cpu_s"] for r in rows) / sum(r["naive_cpu_s"] for r in rows),
        "ratio_total_wall": sum(r["tfresp_s"] for r in rows) / sum(r["naive_s"] for r in rows),
        "tfresp_cpu_seconds_warm_median": statistics.median(r["tfresp_cpu_s"] for r in warm),
        "naive_cpu_seconds_warm_median": statistics.median(r["naive_cpu_s"] for r in warm),
        "tfresp_seconds_warm_median": statistics.median(r["tfresp_s"] for r in warm),
        "naive_seconds_warm_median": statistics.median(r["naive_s"] for r in warm),
        "tfresp_seconds_cold": rows[0]["tfresp_s"], "naive_seconds_cold": rows[0]["naive_s"],
        "load_average_at_end": list(os.getloadavg()),
        "goal": "tfresp <= 0.5x naive", "max_abs_weight_diff": max(r["max_abs_weight_diff"] for r in rows),
        "predictor": {"inference_path": predictor.path, "path_check_max_abs_diff": predictor.path_check_max_abs_diff,
                      "traces": predictor.traces, "calls": predictor.calls, "batch_size": predictor.batch_size,
                      "max_rows_per_call": predictor.max_rows_per_call},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    summary["goal_met"] = summary["ratio_warm_median"] <= 0.5
    print(f"warm median: tfresp {summary['tfresp_cpu_seconds_warm_median']:.2f} cpu-s "
          f"({summary['tfresp_seconds_warm_median']:.2f} wall) vs naive {summary['naive_cpu_seconds_warm_median']:.2f} "
          f"cpu-s ({summary['naive_seconds_warm_median']:.2f} wall) -> ratio cpu {summary['ratio_warm_median']:.3f}, "
          f"wall {summary['ratio_wall_warm_median']:.3f}, tokens {summary['ratio_tokens_median']:.3f} "
          f"(totals incl. cold start: cpu {summary['ratio_total_cpu']:.3f}, wall {summary['ratio_total_wall']:.3f}; "
          f"goal <= 0.5)")
    _common.write_result("explain_speed", {
        "model": "MiniLM-L6-H384 (TFBertForSequenceClassification, num_labels=3, head not fine-tuned)",
        "num_samples": args.num_samples, "seed": args.seed, "texts": args.texts, "max_length": args.max_length,
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "per_text": rows, **summary})


if __name__ == "__main__":
    main()
