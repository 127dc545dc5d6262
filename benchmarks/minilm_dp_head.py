"""DP-SGD fine-tuning of MiniLM's classification head (frozen encoder) on tweet sentiment, through tfresp.fit.

A CPU-sized companion to benchmarks/text_evidence.py: full DP fine-tuning of MiniLM runs at ~8 examples/s on
this 2-core CPU, too slow for enough DP steps; a frozen pretrained encoder with a private head is the standard
DP transfer-learning baseline and needs far fewer FLOPs per step. Non-private head-only tuning is run beside
it in the same process for the comparison. Writes benchmarks/results/minilm_dp_head.json.
"""
import argparse
import tempfile
import time

import _common  # noqa: F401  (environment switches)
from _common import REPO, write_result

import tfresp  # noqa: E402

MINILM = REPO.parent / "shared" / "models" / "minilm-l6-h384-uncased"
TWEETS = REPO.parent / "shared" / "data" / "tweets" / "sentiment_tweets.csv.gz"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epsilons", type=float, nargs="*", default=[8.0, 3.0])
    args = ap.parse_args()
    base = {"seed": 0,
            "data": {"source": str(TWEETS), "text": "text", "label": "sentiment", "max_length": 48,
                     "max_rows": args.rows, "split": {"test": 0.2, "validation": 0.0}},
            "model": {"kind": "checkpoint", "checkpoint": str(MINILM), "freeze": "all-but-head"},
            "train": {"epochs": args.epochs, "batch_size": args.batch, "learning_rate": 5e-3},
            "report": {"html": False}}
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for eps in [None, *args.epsilons]:
            cfg = {**base, "name": f"minilm-head-{eps or 'np'}"}
            if eps is not None:
                cfg["privacy"] = {"target_epsilon": eps, "audit": False}
            t0 = time.perf_counter()
            res = tfresp.fit(cfg, out=f"{d}/{cfg['name']}", quiet=True)
            p = res.report.get("privacy") or {}
            row = {"epsilon_target": eps, "epsilon": p.get("epsilon"), "noise_multiplier": p.get("noise_multiplier"),
                   "steps": p.get("steps"), "clipping": (p.get("clipping") or {}).get("mode"),
                   "test_accuracy": res.metrics["accuracy"], "macro_f1": res.metrics["f1"],
                   "trainable_percent": res.report["model"]["trainable_percent"],
                   "train_rows": res.report["data"]["splits"]["train"]["rows"],
                   "test_rows": res.metrics["rows"], "seconds": time.perf_counter() - t0}
            rows.append(row)
            print(row, flush=True)
            write_result("minilm_dp_head", {"args": vars(args), "runs": rows})


if __name__ == "__main__":
    main()
