"""``tfresp explain RUN --input "text" | --row N``: LIME explanation of one prediction of a finished run.

The explained model is the run's exported SavedModel (``serving_default`` on raw inputs), i.e.
exactly what is deployed. ``--row N`` explains row ``N`` of the run's test split (rebuilt from the
run's resolved ``config.yaml``; tabular runs are explained over raw columns); ``--input`` explains
a raw text for text runs. Prints the top features and the stability of the top-k set across
seeds; ``--json`` prints the explanation as JSON instead.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfresp.errors import ConfigError, DataError


def _load_run(run: str):
    from tfresp.config import load_config

    root = Path(run)
    if not (root / "config.yaml").is_file():
        raise ConfigError([("run", run, "is not a tfresp run directory (no config.yaml)")])
    if not (root / "saved_model").is_dir():
        raise ConfigError([("run", run, "has no saved_model/; re-run with export.saved_model: true")])
    config = load_config(str(root / "config.yaml"))
    if config.data.text:
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops the text SavedModel uses)
    loaded = tf.saved_model.load(str(root / "saved_model"))
    signature = loaded.signatures["serving_default"]
    signature._tfresp_owner = loaded  # the signature's variables live as long as the loaded object
    return root, config, signature


def _signature_inputs(signature) -> dict:
    _, kwargs = signature.structured_input_signature
    return dict(kwargs)


def _print(exp: dict, stab: dict, header: str) -> None:
    print(header)
    print(f"predicted class: {exp['class_name']} (p={exp['probability']:.4f}); LIME local R^2={exp['local_r2']:.3f}; "
          f"seed={exp['seed']}, num_samples={exp['num_samples']}")
    for f in exp["features"]:
        name = f.get("condition", f["feature"])
        print(f"  {f['weight']:+.4g}  {name}")
    print(f"stability: Jaccard of top-{stab['top_k']} over seeds {stab['seeds']}: mean {stab['jaccard_mean']:.3f}, "
          f"min {stab['jaccard_min']:.3f}")


def run(args) -> int:
    from tfresp.explain.lime_explain import TabularLime, explain_text, stability
    from tfresp.explain.predict import BatchedPredictor, serving_proba_fn

    if (args.input is None) == (args.row is None):
        raise ConfigError([("explain", None, "give exactly one of --input TEXT or --row N")])
    if args.input is not None and not args.input.strip():
        raise ConfigError([("--input", args.input, "is empty; give the text to explain")])
    seed = int(getattr(args, "seed", 0) or 0)
    num_samples = int(getattr(args, "num_samples", None) or 1000)
    top_k = int(getattr(args, "top_k", None) or 5)
    seeds = range(seed, seed + 5)
    root, config, signature = _load_run(args.run)
    spec = _signature_inputs(signature)
    text_input = len(spec) == 1 and next(iter(spec.values())).dtype == tf.string and config.data.text

    if args.input is not None:
        if not text_input:
            raise ConfigError([("--input", args.input, f"is for text runs; this run takes columns {sorted(spec)}; "
                                "use --row N")])
        text, header = args.input, "explaining --input text"
        report = root / "report.json"
        classes = json.loads(report.read_text()).get("data", {}).get("classes") if report.is_file() else None
    else:
        from tfresp.data.dataset import prepare, saved_preprocessor

        from tfresp.report.compare import load_report
        from tfresp.run.run_data import check_prepared, verify_source

        if config.data.source == "memory":
            raise DataError(f"`--row`: this run was trained on in-memory data, whose rows are not saved with the "
                            f"run, so its test split cannot be rebuilt. Received: run={str(root)!r}. Remedy: write "
                            "the frame to a CSV file and fit with data.source set to it, or explain in Python with "
                            "tfresp.explain.lime_explain.TabularLime on tfresp.load(RUN)")
        report = load_report(root)
        from tfresp.federated.sites_report import refuse_rows
        from tfresp.run.relocate import locate

        refuse_rows(root, report, "explain")  # a sites run's rows stay at the sites

        config = locate(root, config, report, source=getattr(args, "data", None))  # also after the run moved
        verify_source(root, config, report)
        data = prepare(config, preprocessor=saved_preprocessor(root))  # the run's own encoding
        check_prepared(root, data, report)
        n = len(data.test)
        if not 0 <= args.row < n:
            raise ConfigError([("--row", args.row, f"must be in [0, {n}) (rows of the run's test split)")])
        classes = [str(c) for c in data.classes]
        header = f"explaining test row {args.row} (true class: {classes[int(data.test.y[args.row])]})"
        if text_input:
            text = str(data.test.frame[config.data.text].iloc[args.row])
        elif data.kind == "tabular":
            pre = data.preprocessor
            if (root / "preprocessing" / "tabular.json").is_file():  # the run's own fitted encoders
                from tfresp.data.preprocess import TabularPreprocessor

                pre = TabularPreprocessor.load(root / "preprocessing")
            lime = TabularLime(pre, None, data.train.frame, class_names=classes,
                               raw_proba=serving_proba_fn(signature), seed=seed)
            row = data.test.frame.iloc[[args.row]]
            exp = lime.explain(row, seed=seed, num_samples=num_samples, top_k=top_k)
            stab = stability(lambda s: exp if s == seed else lime.explain(row, seed=s, num_samples=num_samples,
                                                                          top_k=top_k), seeds, top_k)
            return _emit(args, exp, stab, header, {"row": args.row})
        else:
            raise ConfigError([("--row", args.row, f"the command explains tabular and text runs; this run's data "
                                f"kind is {data.kind!r} (see the report's explanations section)")])
    name = next(iter(spec))
    predict = BatchedPredictor(lambda s: signature(**{name: s})["probabilities"], tf.TensorSpec([None], tf.string),
                               512, dedup=True, sort_by_length=True, cache_size=200_000)
    run_one = lambda s: explain_text(text, predict, seed=s, num_samples=num_samples, top_k=top_k,  # noqa: E731
                                     class_names=classes)
    exp = run_one(seed)
    stab = stability(lambda s: exp if s == seed else run_one(s), seeds, top_k)
    return _emit(args, exp, stab, header, {"text": text})


def _emit(args, exp, stab, header, where) -> int:
    exp = {k: v for k, v in exp.items() if k != "all_weights"}
    if getattr(args, "json", False):
        print(json.dumps({**where, "run": str(args.run), "explanation": exp, "stability": stab}, indent=1,
                         default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    else:
        _print(exp, stab, header)
    return 0
