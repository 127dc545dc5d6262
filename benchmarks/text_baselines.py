"""Is the big model worth it? TF-IDF + logistic regression vs tfresp fine-tuning of MiniLM on tweet sentiment.

One shared test set (``--test`` tweets, stratified, held out once); training subsets of ``--sizes`` labelled rows
drawn nested from the rest with one seeded permutation (the 600 rows are inside the 2,000, which are inside the
8,000). Every method sees the same training rows; the validation rows are carved from them by tfresp's own
stratified split (``data.split.validation``, seed + 1), and the TF-IDF baseline uses the very same carve to choose
its C. Methods:

* ``tfidf``: TF-IDF word 1-2 grams (sublinear tf, min_df 2) + logistic regression, C in {0.25, 1, 4, 16} by
  validation accuracy (scikit-learn);
* ``full``: ``tfresp.fit`` with ``model.kind: checkpoint`` and no train keys (``train.recipe: auto``);
* ``lora``: the same plus ``model.lora: {rank: 8, alpha: 16, targets: [query, value]}``;
* ``dp``: the same as ``full`` plus ``privacy: {target_epsilon: 8}`` (delta auto), DP-SGD with ghost clipping.

Usage (CPU; writes benchmarks/results/text_baselines.json after every run, so partial results survive):
    nice -n 10 python benchmarks/text_baselines.py --sizes 600 2000 8000 --methods tfidf full lora dp \
        --plan 600:full 600:dp 2000:full 8000:full --max-epochs 8000:1 600:dp:3
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (environment switches)
from _common import REPO, RESULTS, write_result

import numpy as np
import pandas as pd

TWEETS = REPO.parent / "shared" / "data" / "tweets" / "sentiment_tweets.csv.gz"
MINILM = REPO.parent / "shared" / "models" / "minilm-l6-h384-uncased"
NAME = "text_baselines"


def splits(test_rows: int, sizes, seed: int, work: Path):
    """Write test.jsonl and train_<n>.jsonl (nested subsets); returns their paths."""
    from tfresp.data.dataset import _stratified_split

    df = pd.read_csv(TWEETS, encoding_errors="replace")[["sentiment", "text"]]
    df["text"] = df["text"].fillna("").astype(str)
    rest, test = _stratified_split(df, "sentiment", test_rows / len(df), seed)
    rest = rest.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    work.mkdir(parents=True, exist_ok=True)
    test.to_json(work / "test.jsonl", orient="records", lines=True)  # JSONL: tweets hold stray \r
    paths = {}
    for n in sizes:
        rest.iloc[:n].to_json(work / f"train_{n}.jsonl", orient="records", lines=True)
        paths[n] = work / f"train_{n}.jsonl"
    return work / "test.jsonl", paths


def tfidf(train_path: Path, test_path: Path, validation: float, seed: int) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from tfresp.data.dataset import _stratified_split

    t0 = time.perf_counter()
    train = pd.read_json(train_path, lines=True)
    test = pd.read_json(test_path, lines=True)
    fit, val = _stratified_split(train, "sentiment", validation, seed + 1)  # tfresp's validation carve
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    xf = vec.fit_transform(fit.text.astype(str))
    scores = {}
    for c in (0.25, 1.0, 4.0, 16.0):
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(xf, fit.sentiment)
        scores[c] = float(np.mean(clf.predict(vec.transform(val.text.astype(str))) == val.sentiment))
    best = max(scores, key=lambda c: (scores[c], -abs(np.log(c))))
    clf = LogisticRegression(C=best, max_iter=3000, random_state=seed).fit(xf, fit.sentiment)
    acc = float(np.mean(clf.predict(vec.transform(test.text.astype(str))) == test.sentiment))
    return {"accuracy": acc, "C": best, "validation_accuracy_by_C": {str(k): v for k, v in scores.items()},
            "train_rows": int(len(fit)), "validation_rows": int(len(val)), "test_rows": int(len(test)),
            "seconds": round(time.perf_counter() - t0, 1)}


def tfresp_run(method: str, train_path: Path, test_path: Path, validation: float, seed: int, out: Path,
               max_epochs=None) -> dict:
    import tfresp

    cfg = {"name": f"tb-{method}", "seed": seed,
           "data": {"source": str(train_path), "text": "text", "label": "sentiment",
                    "split": {"test": str(test_path), "validation": validation}},
           "model": {"kind": "checkpoint", "checkpoint": str(MINILM)},
           "export": {"saved_model": False}, "report": {"html": False}}
    if method == "lora":
        cfg["model"]["lora"] = {"rank": 8, "alpha": 16, "targets": ["query", "value"]}
    if method == "dp":
        cfg["privacy"] = {"target_epsilon": 8.0}
    if max_epochs:
        cfg["train"] = {"epochs": int(max_epochs)}
    t0 = time.perf_counter()
    res = tfresp.fit(cfg, out=str(out), overwrite=True, quiet=True)
    r = res.report
    tr, ev = r["training"], r["evaluation"]
    row = {"accuracy": ev["test"]["accuracy"], "accuracy_ci": ev["test"].get("accuracy_ci"),
           "macro_f1": ev["test"].get("f1"), "seconds": round(time.perf_counter() - t0, 1),
           "fit_seconds": round(tr["timings"].get("fit_seconds", float("nan")), 1),
           "epochs_requested": tr["epochs_requested"], "epochs_run": tr["epochs_run"],
           "batch_size": tr["batch_size"], "learning_rate": tr["learning_rate"],
           "train_rows": r["data"]["splits"]["train"]["rows"], "test_rows": r["data"]["splits"]["test"]["rows"],
           "recipe": r["model"].get("recipe"), "max_length": r["run"]["config"]["data"]["max_length"],
           "trainable_parameters": r["model"]["trainable_parameters"],
           "in_run_baseline": ev.get("baseline")}
    if method == "dp":
        p = r.get("privacy") or {}
        row["privacy"] = {k: p.get(k) for k in ("epsilon", "delta", "noise_multiplier", "accountant", "steps")
                          if k in p}
    return row


def table(results: dict, sizes, methods) -> str:
    lines = ["rows    " + "".join(f"{m:>14}" for m in methods)]
    for n in sizes:
        cells = []
        for m in methods:
            v = results.get(str(n), {}).get(m)
            cells.append(f"{v['accuracy']:>14.3f}" if v and "accuracy" in v else f"{'-':>14}")
        lines.append(f"{n:<8}" + "".join(cells))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[600, 2000, 8000])
    ap.add_argument("--methods", nargs="+", default=["tfidf", "full", "lora", "dp"])
    ap.add_argument("--plan", nargs="*", default=None,
                    help="only these size:method pairs of the tfresp methods, e.g. 600:full 8000:full")
    ap.add_argument("--max-epochs", nargs="*", default=[],
                    help="epoch caps for CPU time: size:epochs or size:method:epochs, e.g. 8000:1 600:dp:3")
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--validation", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None)
    ap.add_argument("--note", action="append", default=[], help="a note stored in the JSON")
    ap.add_argument("--resume", action="store_true", help="keep results already in the JSON")
    args = ap.parse_args(argv)
    caps = {}  # (size, method or None) -> epochs
    for spec in args.max_epochs:
        parts = spec.split(":")
        caps[(int(parts[0]), parts[1] if len(parts) == 3 else None)] = int(parts[-1])
    plan = None if args.plan is None else {tuple(s.split(":")) for s in args.plan}
    work = Path(args.work or tempfile.mkdtemp(prefix="text_baselines_"))
    test_path, train_paths = splits(args.test, args.sizes, args.seed, work)
    path = RESULTS / f"{NAME}.json"
    results = json.loads(path.read_text()).get("results", {}) if args.resume and path.exists() else {}
    meta = {"args": vars(args), "data": str(TWEETS.name), "model": "MiniLM-L6-H384 (all-MiniLM-L6-v2 encoder)",
            "test_rows": args.test, "notes": list(args.note), "skipped": {}}

    def save():  # merge with the cells on disk: runs of other sizes may go in a parallel process
        merged = json.loads(path.read_text()).get("results", {}) if path.exists() else {}
        for n, cells in results.items():
            merged.setdefault(n, {}).update(cells)
        write_result(NAME, {**meta, "results": merged, "table": table(merged, args.sizes, args.methods)})

    cells = [(n, m) for n in args.sizes for m in args.methods if m == "tfidf"]
    if plan is None:
        cells += [(n, m) for n in args.sizes for m in args.methods if m != "tfidf"]
    else:  # the plan's order: the most important cells first
        cells += [(int(n), m) for n, m in (s.split(":") for s in args.plan)]
        meta["skipped"] = {f"{n}:{m}": "not run: outside the CPU budget of this run (see notes)"
                           for n in args.sizes for m in args.methods
                           if m != "tfidf" and (str(n), m) not in plan}
    for n, m in cells:
        if True:
            if results.get(str(n), {}).get(m):
                continue
            print(f"== {n} rows, {m}", flush=True)
            try:
                if m == "tfidf":
                    row = tfidf(train_paths[n], test_path, args.validation, args.seed)
                else:
                    row = tfresp_run(m, train_paths[n], test_path, args.validation, args.seed,
                                     work / f"run_{n}_{m}", caps.get((n, m), caps.get((n, None))))
            except Exception as exc:  # record and go on: one failure must not lose the other cells
                row = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            results.setdefault(str(n), {})[m] = row
            print(json.dumps({k: v for k, v in row.items() if k not in ("recipe", "in_run_baseline")}), flush=True)
            save()
    save()
    print(table(results, args.sizes, args.methods))


if __name__ == "__main__":
    sys.exit(main())
