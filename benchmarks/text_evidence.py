"""Accuracy evidence for text pretraining and fine-tuning, every number from a real ``tfresp.fit`` run.

Two experiment groups (CPU-sized subsets; sizes are recorded in the JSON):

* ``pretrain``: MLM-pretrain the small BERT of configs/tweets_mlm.yaml on tweet *text* (the training rows
  only: the sentiment test rows are written to a separate file first, so pretraining never sees them), then
  fine-tune it on sentiment and compare with the same architecture from random init
  (configs/tweets_finetune.yaml vs configs/tweets_scratch.yaml).
* ``minilm``: MiniLM-L6-H384 on tweet sentiment: full fine-tune, frozen encoder (all-but-head), LoRA r=8,
  and DP-SGD at epsilon 3 and 8 (configs/minilm_*.yaml).

Usage:
    python benchmarks/text_evidence.py pretrain --rows 12000
    python benchmarks/text_evidence.py minilm --rows 2400
Writes benchmarks/results/text_<group>.json after every run (partial results survive interruption).
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (environment switches)
from _common import REPO, write_result

import numpy as np
import pandas as pd

TWEETS = REPO.parent / "shared" / "data" / "tweets" / "sentiment_tweets.csv.gz"


def split_files(rows: int, test_frac: float, seed: int, out: Path):
    df = pd.read_csv(TWEETS, encoding_errors="replace")
    df = df.sample(n=min(rows, len(df)), random_state=seed).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    test_idx = []
    for _, idx in df.groupby("sentiment").indices.items():
        idx = np.array(idx)
        rng.shuffle(idx)
        test_idx.extend(idx[: int(round(len(idx) * test_frac))])
    mask = np.zeros(len(df), bool)
    mask[test_idx] = True
    out.mkdir(parents=True, exist_ok=True)
    # JSONL: tweets contain stray carriage returns that do not survive a CSV round trip
    df[~mask].to_json(out / "train.jsonl", orient="records", lines=True)
    df[mask].to_json(out / "test.jsonl", orient="records", lines=True)
    return out / "train.jsonl", out / "test.jsonl", int((~mask).sum()), int(mask.sum())


def run(config, out, **over):
    import tfresp

    t0 = time.perf_counter()
    res = tfresp.fit(config, out=str(out), overwrite=True, quiet=True, **over)
    r = res.report
    m = r["model"]
    row = {"seconds": round(time.perf_counter() - t0, 1), "test": r["evaluation"]["test"],
           "train_rows": r["data"]["splits"]["train"]["rows"], "test_rows": r["data"]["splits"]["test"]["rows"],
           "trainable_parameters": m["trainable_parameters"], "trainable_percent": m["trainable_percent"],
           "parameters": m["parameters"], "epochs_run": r["training"]["epochs_run"], "run_dir": str(res.run_dir)}
    for k in ("lora", "peft", "frozen_layers", "dp_layer_support"):
        if k in m:
            row[k] = m[k]
    if r.get("privacy"):
        p = r["privacy"]
        row["privacy"] = {k: p.get(k) for k in ("epsilon", "delta", "noise_multiplier", "steps", "sampling_rate")}
        row["privacy"]["clipping"] = res.context.own("privacy").clipping_mode
    if r.get("export") and r["export"].get("saved_model"):
        row["saved_model_roundtrip_max_abs_diff"] = r["export"]["saved_model"]["roundtrip_max_abs_diff"]
    return row


def pretrain(args, results):
    work = Path(args.work)
    train_csv, test_csv, ntr, nte = split_files(args.rows, 0.15, 0, work / "data")
    results["sizes"] = {"rows": args.rows, "train_file_rows": ntr, "test_rows": nte}
    common = {"data.source": str(train_csv), "data.max_length": args.max_length,
              "data.tokenizer": {"vocab_size": args.vocab_size}}
    arch = {"model.bert": {"hidden": args.hidden, "layers": 2, "heads": 2, "intermediate": 4 * args.hidden}}
    results["sizes"].update(max_length=args.max_length, vocab_size=args.vocab_size, arch=arch["model.bert"])
    mlm = run(str(REPO / "configs/tweets_mlm.yaml"), work / "tweets-mlm",
              **common, **arch, **{"train.epochs": args.mlm_epochs, "data.split.test": 0.05})
    import json

    ev = json.loads((Path(mlm["run_dir"]) / "report.json").read_text())["evaluation"]
    mlm["mlm"] = {k: ev["mlm"][k] for k in ("loss_start", "loss_end", "uniform_perplexity")}
    mlm["mlm"]["loss_curve"] = ev["mlm"]["loss_curve"]
    results["mlm"] = mlm
    write_result(args.tag or "text_pretrain", results)
    ft_over = {**common, "data.split.test": str(test_csv), "train.epochs": args.ft_epochs}
    results["finetune_pretrained"] = run(str(REPO / "configs/tweets_finetune.yaml"), work / "tweets-finetune",
                                         **ft_over, **{"model.checkpoint": mlm["run_dir"]})
    write_result(args.tag or "text_pretrain", results)
    results["finetune_scratch"] = run(str(REPO / "configs/tweets_scratch.yaml"), work / "tweets-scratch",
                                      **ft_over, **arch)
    a = results["finetune_pretrained"]["test"]["accuracy"]
    b = results["finetune_scratch"]["test"]["accuracy"]
    results["summary"] = {"mlm_loss_start": mlm["mlm"]["loss_start"], "mlm_loss_end": mlm["mlm"]["loss_end"],
                          "mlm_test_perplexity": mlm["test"]["perplexity"],
                          "mlm_test_masked_accuracy": mlm["test"]["masked_accuracy"],
                          "accuracy_pretrained": a, "accuracy_scratch": b, "pretraining_gain": a - b}
    print(results["summary"])
    write_result(args.tag or "text_pretrain", results)


def minilm(args, results):
    work = Path(args.work)
    train_csv, test_csv, ntr, nte = split_files(args.rows, 0.2, 0, work / "data")
    results["sizes"] = {"rows": args.rows, "train_file_rows": ntr, "test_rows": nte, "max_length": args.max_length}
    common = {"data.source": str(train_csv), "data.split.test": str(test_csv), "data.max_length": args.max_length}
    variants = {
        "full": ("minilm_tweets", {}),
        "frozen_encoder": ("minilm_tweets", {"model.freeze": "all-but-head", "train.learning_rate": 1e-3}),
        "lora_r8": ("minilm_lora", {}),
        "dp_eps8": ("minilm_dp", {"privacy.target_epsilon": 8, "train.batch_size": args.dp_batch}),
        "dp_eps3": ("minilm_dp", {"privacy.target_epsilon": 3, "train.batch_size": args.dp_batch}),
    }
    for name in args.only or list(variants):
        cfg, over = variants[name]
        try:
            results[name] = run(str(REPO / f"configs/{cfg}.yaml"), work / f"minilm-{name}",
                                **common, **{"train.epochs": args.epochs}, **over)
        except Exception as exc:  # keep the other variants' numbers; say what failed
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(name, {k: results[name].get(k) for k in ("test", "trainable_percent", "privacy", "error")})
        write_result(args.tag or "text_minilm", results)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("group", choices=["pretrain", "minilm"])
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--mlm-epochs", type=int, default=3)
    ap.add_argument("--ft-epochs", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--tag", default=None, help="result file name (default text_<group>)")
    ap.add_argument("--hidden", type=int, default=128, help="pretrain: BERT hidden size (2 layers, 2 heads)")
    ap.add_argument("--vocab-size", type=int, default=8000, help="pretrain: WordPiece vocabulary size")
    ap.add_argument("--dp-batch", type=int, default=256, help="minilm: batch size of the DP runs")
    ap.add_argument("--work", default=tempfile.mkdtemp(prefix="tfresp-text-"))
    args = ap.parse_args(argv)
    if args.rows is None:
        args.rows = 12000 if args.group == "pretrain" else 2400
    results = {"group": args.group, "args": {k: v for k, v in vars(args).items()}}
    (pretrain if args.group == "pretrain" else minilm)(args, results)


if __name__ == "__main__":
    sys.exit(main())
