"""``tfresp verify RUN [--data FILE]``: re-derive every number of a finished run from its artifacts; write nothing.

An auditor receives a run directory. ``verify`` trusts none of report.json's numbers: it recomputes each one
that the artifacts determine and compares it with the recorded value, field by field:

- the manifest: the sha256 of every artifact (SavedModel files, TFLite, preprocessing, plots, config);
- the served SavedModel's test (and validation) metrics and their intervals, computed from the
  ``serving_default`` outputs on the re-prepared test rows (the test file's sha256 is checked first), and the
  per-group fairness metrics with their seeded bootstrap intervals (same seed as the run, same code);
- the served decisions of a post-processed model (group thresholds) against the SavedModel's ``class_id``;
- decisions of rows whose scores lie within SCORE_TOL of a threshold (another machine's float noise may put them on
  the other side): when the numbers differ, each assignment of those few rows is tried and one that reproduces
  every recorded number is accepted with a note naming the rows (:mod:`tfresp.commands.verify_ambiguous`);
- the release gates and the scorecard, re-evaluated from the recomputed numbers;
- compression: sparsity and sizes of the SavedModel weights and TFLite files, the TFLite accuracy and round trip;
  the SavedModel round trip;
- privacy (:mod:`tfresp.privacy.verify`): ε from the spends, the spends from the config and the ledger, the
  preprocessing spends the saved preprocessing implies, the statement.

Every mismatch is printed with both values, then the count of numbers checked and what could not be checked
(membership-inference and robustness audits, timings, training curves: they need the training process or
private rows). Exit 2 on any mismatch (or when the run cannot be checked), 1 when every number holds but a
release gate fails, 0 otherwise. ``tfresp report RUN --check`` is an alias.

Nothing is written into the run directory: concerns that draw plots or save thresholds while recomputing write
into a temporary directory that is removed.
"""
from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np

from tfresp.errors import DataError, TfrespError

#: absolute / relative tolerance of a recomputed number (the SavedModel and the Keras model the run evaluated
#: agree to ~1e-7 in probability; counts and rates computed from the same decisions are equal)
ABS_TOL = 1e-6
REL_TOL = 1e-6
#: how far a served probability may move between machines (the SavedModel and the run's scores are bit-identical on
#: one machine); rank metrics (ROC-AUC) are compared against the range this allows (metrics.roc_auc_interval)
SCORE_TOL = 1e-5
#: keys never compared: wall-clock measurements and text
SKIP_KEYS = {"latency_ms_p50", "latency_ms_p95", "latency_runs", "audited_by", "plots", "plot", "timings"}

NOT_CHECKED = [
    "privacy.audit (membership inference: attacks on the training rows' losses; re-run with `tfresp audit "
    "--privacy`)",
    "robustness (adversarial attacks; re-run with `tfresp audit --robustness`)",
    "explanations (LIME samples)",
    "training.history (per-epoch training curves: they need the training process)",
    "training.timings and latencies (wall-clock measurements)",
    "compression.keras.bytes / gzip_bytes of the in-memory Keras model",
]


class Interval:
    """A recomputed number known only to lie in [lo, hi] (a rank metric under float differences of the scores)."""

    def __init__(self, lo: float, hi: float, why: str):
        self.lo, self.hi, self.why = lo, hi, why

    def holds(self, recorded, tol: float = ABS_TOL) -> bool:
        """True when ``recorded`` is a number within ``tol`` of the range."""
        return isinstance(recorded, (int, float)) and not isinstance(recorded, bool) and (
            self.lo - tol <= float(recorded) <= self.hi + tol)


class Findings:
    """What ``verify`` found: numbers compared, mismatches (field, recorded, recomputed), what was not checked."""

    def __init__(self):
        self.checked = 0
        self.mismatches: List[str] = []
        self.cannot: List[str] = []
        self.notes: List[str] = []

    def add(self, message: str) -> None:
        self.mismatches.append(message)

    def compare(self, path: str, recorded, recomputed, abs_tol: float = ABS_TOL, rel_tol: float = REL_TOL) -> None:
        """Compare the numbers (and booleans) of ``recomputed`` with ``recorded`` at the same keys, recursively."""
        if isinstance(recomputed, dict):
            if not isinstance(recorded, dict):
                if recorded is not None or any(_has_number(v) for v in recomputed.values()):
                    self.checked += 1
                    self.add(f"{path}: report.json {_short(recorded)}; recomputed a section with "
                             f"{sum(_has_number(v) for v in recomputed.values())} number(s)")
                return
            for key, value in recomputed.items():
                if key in SKIP_KEYS or key not in recorded:
                    continue
                self.compare(f"{path}.{key}", recorded[key], value, abs_tol, rel_tol)
            return
        if isinstance(recomputed, Interval):
            self.checked += 1
            if not recomputed.holds(recorded, abs_tol):
                self.add(f"{path}: report.json {_short(recorded)}; recomputed [{recomputed.lo:.10g}, "
                         f"{recomputed.hi:.10g}] ({recomputed.why})")
            return
        if isinstance(recomputed, (list, tuple)):
            if not any(_has_number(v) for v in recomputed) and all(isinstance(v, str) for v in recomputed):
                if isinstance(recorded, list) and all(isinstance(v, str) for v in recorded) and path.endswith(
                        ".failed"):
                    self.checked += 1
                    if list(recorded) != list(recomputed):
                        self.add(f"{path}: report.json {recorded!r}; recomputed {list(recomputed)!r}")
                return
            if not isinstance(recorded, list) or len(recorded) != len(recomputed):
                self.checked += 1
                self.add(f"{path}: report.json {_short(recorded)}; recomputed {_short(list(recomputed))}")
                return
            for i, (a, b) in enumerate(zip(recorded, recomputed)):
                self.compare(f"{path}[{i}]", a, b, abs_tol, rel_tol)
            return
        if isinstance(recomputed, bool) or isinstance(recorded, bool):
            self.checked += 1
            if recorded is not recomputed and recorded != recomputed:
                self.add(f"{path}: report.json {recorded!r}; recomputed {recomputed!r}")
            return
        if isinstance(recomputed, (int, float, np.integer, np.floating)):
            value = float(recomputed)
            if math.isnan(value) or math.isinf(value):
                value = None  # JSON writes them as null
            self.checked += 1
            if value is None:
                if recorded is not None:
                    self.add(f"{path}: report.json {_short(recorded)}; recomputed {recomputed}")
                return
            if not isinstance(recorded, (int, float)) or isinstance(recorded, bool) or not math.isclose(
                    float(recorded), value, rel_tol=rel_tol, abs_tol=abs_tol):
                self.add(f"{path}: report.json {_short(recorded)}; recomputed {value:.10g}")
            return
        if recomputed is None and isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
            self.checked += 1
            self.add(f"{path}: report.json {_short(recorded)}; recomputed null (not computable)")


def _has_number(v) -> bool:
    if isinstance(v, bool):
        return True
    if isinstance(v, (int, float)):
        return True
    if isinstance(v, dict):
        return any(_has_number(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(_has_number(x) for x in v)
    return False


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.10g}"
    text = json.dumps(v, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


# ------------------------------------------------------------------------------------------------------------
def verify_run(run_dir, data: Optional[str] = None, gates=(), key: Optional[str] = None) -> Findings:
    """Recompute every checkable number of the run in ``run_dir`` and compare (see the module docstring)."""
    from tfresp.config import load_config
    from tfresp.report.compare import load_report
    from tfresp.report.gates import Gate

    for i, g in enumerate(gates):  # a malformed --gate fails first
        Gate.parse(g, i)
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not (run_dir / "report.json").is_file() or not (run_dir / "config.yaml").is_file():
        raise DataError(f"Invalid value for `RUN`: {str(run_dir)!r} is not a finished tfresp run (expected "
                        "report.json and config.yaml)")
    report = load_report(run_dir)
    from tfresp.federated.sites_report import is_sites_report

    if is_sites_report(report):  # a cross-silo run: its rows stay at the sites (tfresp/commands/verify_sites.py)
        from tfresp.commands import verify_sites

        return verify_sites.verify(run_dir, report, Findings(), key, gates, data)
    major = str(report.get("schema_version", "")).split(".")[0]
    if major != "1":
        raise DataError(f"Invalid value for `RUN`: report schema_version {report.get('schema_version')!r} is not "
                        "supported (expected 1.x)")
    found = Findings()
    _signature(run_dir, key, found)
    _manifest(run_dir, report, found)
    _config(run_dir, report, found)
    config = load_config(run_dir / "config.yaml")
    _privacy(run_dir, report, found)
    try:
        recomputed = _model_numbers(run_dir, config, report, data, found)
    except TfrespError:
        raise
    except Exception as exc:  # noqa: BLE001  (a corrupted artifact is a finding, not a crash)
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        found.add(f"saved_model: the served model could not be evaluated ({exc.__class__.__name__}: {first}); "
                  "no model number can be recomputed")
        recomputed = None
    _gates(report, recomputed, list(gates), found)
    found.cannot.extend(NOT_CHECKED)
    return found


def _signature(run_dir: Path, key: Optional[str], found: Findings) -> None:
    from tfresp.report.signing import record

    record(run_dir, key, found)


def _manifest(run_dir: Path, report: dict, found: Findings) -> None:
    from tfresp.report.manifest import record

    if not record(run_dir, report.get("manifest"), found):
        found.cannot.append("manifest: report.json has no manifest of the artifacts (a run written before "
                            "manifests, or the manifest was removed): the artifacts' bytes are not checked")


def _config(run_dir: Path, report: dict, found: Findings) -> None:
    from tfresp.config import load_config
    from tfresp.report.environment import config_hash

    run = report.get("run") or {}
    found.checked += 2
    recorded = run.get("config") or {}
    if config_hash(recorded) != run.get("config_hash"):
        found.add(f"run.config_hash: report.json {run.get('config_hash')!r}; recomputed from run.config "
                  f"{config_hash(recorded)!r} (run.config was edited)")
    try:
        on_disk = load_config(run_dir / "config.yaml").to_dict()
    except Exception as exc:  # noqa: BLE001  (a config that no longer loads is a finding, not a crash)
        found.add(f"config.yaml: does not load ({exc.__class__.__name__})")
        return
    if config_hash(on_disk) != config_hash(recorded):
        found.add("config.yaml: differs from run.config in report.json (one of them was edited)")


def _privacy(run_dir: Path, report: dict, found: Findings) -> None:
    from tfresp.privacy.verify import check

    if not report.get("privacy"):
        return
    pre = run_dir / "preprocessing" / "tabular.json"
    try:
        preprocessing = json.loads(pre.read_text()) if pre.is_file() else None
    except (OSError, ValueError):
        preprocessing = None
        found.add("preprocessing/tabular.json: not readable JSON")
    tally = check(report, preprocessing)
    found.checked += tally.checked
    found.mismatches.extend(tally.problems)


# ------------------------------------------------------------------------------------------------------------
def _prepare(run_dir: Path, config, report: dict, data_file: Optional[str], found: Findings):
    """The run's splits re-prepared from its data (located, fingerprint-checked) with its saved preprocessing."""
    from tfresp.data.dataset import prepare, saved_preprocessor
    from tfresp.run.relocate import locate, test_role
    from tfresp.run.run_data import check_prepared, verify_source

    if config.data.source == "memory":
        raise DataError(f"`RUN`: this run was trained on in-memory data, whose rows are not saved with the run, so "
                        f"its test numbers cannot be recomputed. Received: run={str(run_dir)!r}. Remedy: from Python "
                        "use tfresp.audit(RUN, data=df)")
    role = test_role(config)
    if data_file is not None and role is None:
        raise DataError(f"`--data`: this run's test split is part of the built-in data {config.data.source!r} "
                        f"(sha256 recorded in report.json), not a file. Received: --data={data_file!r}. Remedy: "
                        "leave out --data")
    config = locate(run_dir, config, report, source=data_file if role == "source" else None,
                    test=data_file if role == "test" else None)
    keyless = _keyed(lambda: verify_source(run_dir, config, report))
    data = prepare(config, preprocessor=saved_preprocessor(run_dir))
    keyless = _keyed(lambda: check_prepared(run_dir, data, report)) or keyless
    if keyless:
        found.cannot.append("the training data's identity: a DP run records keyed fingerprints whose key (private/) "
                            "is not part of a shared run; the test rows are checked by their count, label balance "
                            "and group sizes")
    splits = ((report.get("data") or {}).get("splits") or {})
    summary = (data.summary().get("splits") or {}).get("test")
    if isinstance(summary, dict) and isinstance(splits.get("test"), dict):
        found.compare("data.splits.test", splits["test"], {k: summary.get(k) for k in ("label_balance",
                                                                                        "group_sizes")})
    for name in ("train", "validation", "test"):
        part = getattr(data, name, None)
        if part is None or not isinstance(splits.get(name), dict):
            continue
        found.compare(f"data.splits.{name}.rows", splits[name].get("rows"), len(part))
    if splits.get("test", {}).get("rows") is not None and int(splits["test"]["rows"]) != len(data.test):
        raise DataError(f"`--data`: the run's test split had {splits['test']['rows']} rows but these data give "
                        f"{len(data.test)}: they are not the run's data. Remedy: give the run's own data file")
    return config, data


def _keyed(check) -> bool:
    """Run a data-identity check; True when it needs the DP run's private key, which a shared run lacks."""
    try:
        from tfresp.privacy.releases import KEY_FILE
    except ImportError:
        KEY_FILE = None
    try:
        check()
    except DataError as exc:
        if KEY_FILE is not None and KEY_FILE in str(exc):
            return True
        raise
    return False


def _serve(signature, loaded, data, part):
    """``(probabilities, class_id)`` of the SavedModel's ``serving_default`` on the raw rows of a split."""
    from tfresp.export.saved_model import load_layout, raw_inputs

    spec = dict(signature.structured_input_signature[1])
    layout = load_layout(loaded)
    known = set((layout or {}).get("inputs", {}).values()) | (
        {layout["packed"]["name"]} if layout and layout.get("packed") else set())
    pre_keys = set(data.preprocessor.input_signature())
    # raw string inputs a post-processor reads (e.g. the group column of fairness thresholds)
    extra = [raw for raw in (layout or {}).get("inputs", {}) if raw not in pre_keys]
    extra += [k for k in spec if layout is not None and k not in known and k not in extra]
    probs, ids = [], []
    frame = part.frame
    for start in range(0, len(frame), 4096):
        rows = frame.iloc[start:start + 4096]
        out = signature(**raw_inputs(data.preprocessor, rows, extra=extra))
        probs.append(out["probabilities"].numpy())
        ids.append(out["class_id"].numpy())
    return np.concatenate(probs).astype(np.float32), np.concatenate(ids)


def _model_numbers(run_dir: Path, config, report: dict, data_file, found: Findings) -> Optional[dict]:
    """Recompute evaluation, fairness, compression and export numbers from the SavedModel; None if impossible."""
    if config.task != "classification" or not (run_dir / "saved_model" / "saved_model.pb").is_file():
        found.cannot.append("evaluation / fairness / compression: the run has no classification SavedModel to "
                            "evaluate")
        return None
    import tensorflow as tf

    config, data = _prepare(run_dir, config, report, data_file, found)
    if data.kind != "tabular":
        found.cannot.append(f"evaluation / fairness: recomputation from the SavedModel supports tabular runs; this "
                            f"run's data kind is {data.kind!r}")
        return None
    if config.data.text:
        import tensorflow_text  # noqa: F401
    loaded = tf.saved_model.load(str(run_dir / "saved_model"))
    signature = loaded.signatures["serving_default"]
    proba, class_id = _serve(signature, loaded, data, data.test)
    predictions = {"test": proba}
    if data.validation is not None and len(data.validation):
        predictions["validation"] = _serve(signature, loaded, data, data.validation)[0]
    with tempfile.TemporaryDirectory(prefix="tfresp-verify-") as scratch:
        recomputed = _sections(Path(scratch), run_dir, config, data, loaded, predictions, class_id, report, found)
    _compression(run_dir, config, data, loaded, proba, report, found)
    return recomputed


def _sections(scratch: Path, run_dir: Path, config, data, loaded, predictions, class_id, report, found):
    from tfresp.commands import verify_ambiguous

    def recompute(scores):
        return _recompute(scratch, run_dir, config, data, loaded, scores, report)

    ctx, out = recompute(predictions)
    ev = out["evaluation"]
    # rows within SCORE_TOL of a threshold: on this machine they may fall on the other side than in the run
    rows = verify_ambiguous.find(ctx, predictions, SCORE_TOL, (ev.get("test") or {}).get("threshold"))
    settled = np.zeros(len(class_id), bool)
    settled[[r.index for r in rows if r.split == "test"]] = True
    served = ctx.serving.served_class_id_test
    if "fairness" in out and served is not None:  # the SavedModel applies the rule the served metrics come from
        found.checked += 1
        bad = int(np.sum((np.asarray(served) != class_id) & ~settled))
        if bad:
            found.add(f"saved_model class_id: the SavedModel's decisions differ from the report's served rule "
                      f"(preprocessing/thresholds.json) on {bad} of {len(class_id)} test rows")
    out = _settle(report, out, rows, recompute, data, predictions, found)
    export = (report.get("export") or {}).get("saved_model")
    if isinstance(export, dict):
        n = int(export.get("roundtrip_rows") or min(1000, len(data.test)))
        core = loaded.core
        x = data.test.x
        head = {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]
        import tensorflow as tf

        direct = tf.nn.softmax(core(tf.nest.map_structure(tf.constant, head), training=False)).numpy()
        size = sum(f.stat().st_size for f in (run_dir / "saved_model").rglob("*") if f.is_file())
        rec = {"roundtrip_rows": n, "roundtrip_max_abs_diff": float(np.max(np.abs(predictions["test"][:n] - direct))),
               "bytes": int(size)}
        if served is not None and "roundtrip_class_id_mismatches" in export:
            rec["roundtrip_class_id_mismatches"] = int(np.sum((class_id[:n] != np.asarray(served)[:n])
                                                              & ~settled[:n]))
        found.compare("export.saved_model", export, rec, abs_tol=1e-5)
    return out


def _recompute(scratch: Path, run_dir: Path, config, data, loaded, predictions, report):
    """``(ctx, {"evaluation", "fairness", "per_example"})``: the sections whose numbers the scores determine,
    recomputed from ``predictions`` as the run computes them (the fairness post-fit, then the audits)."""
    from tfresp.run.builder import RunContext
    from tfresp.evaluation.concern import Evaluation
    from tfresp.report.derive import add_metric_cis
    from tfresp.report.scorecard import per_example_stats

    ctx = RunContext(config=config, data=data, run_dir=scratch, core=loaded.core, quiet=True)
    ctx.predictions.update(predictions)
    fairness = _fairness_post_fit(ctx, run_dir, report) if config.fairness is not None else None
    ev = Evaluation().audit(ctx)  # after post-fit: the served metrics read the served rule (ctx.serving)
    ev.pop("baseline", None)
    ctx.report["evaluation"] = ev
    out = {"evaluation": ev}
    if fairness is not None:
        out["fairness"] = fairness.audit(ctx)
    add_metric_cis(ev)
    threshold = (ev.get("test") or {}).get("threshold") or 0.5
    out["per_example"] = per_example_stats(data.test.y, predictions["test"], getattr(data.test, "groups", None),
                                           threshold=threshold) if predictions["test"].ndim == 2 else None
    return ctx, out


def _decisions_found(report: dict, out: dict, data, predictions) -> Findings:
    """Evaluation and fairness of ``out`` compared with the report (ROC-AUC against the range of ``predictions``)."""
    found = Findings()
    found.compare("evaluation", report.get("evaluation"), _with_auc_intervals(out["evaluation"], data, predictions))
    if "fairness" in out:
        found.compare("fairness", report.get("fairness"), out["fairness"])
    return found


def _settle(report: dict, out: dict, rows, recompute, data, predictions, found: Findings) -> dict:
    """Compare evaluation and fairness; when they (or the per-example stats) differ and ``rows`` lie within
    SCORE_TOL of a threshold, accept the first assignment of those rows that reproduces every recorded number
    (:mod:`tfresp.commands.verify_ambiguous`). Returns the numbers the gates and scorecard are re-derived from."""
    from tfresp.commands import verify_ambiguous as amb

    scorecard = report.get("scorecard") if isinstance(report.get("scorecard"), dict) else {}

    def reproduces(candidate):  # (the comparison, whether every recorded number holds)
        mine = _decisions_found(report, candidate, data, predictions)
        pe = Findings()  # compared again by _gates; here only to decide (a report without it: not compared)
        pe.compare("scorecard", scorecard, {"per_example": candidate.get("per_example")})
        return mine, not mine.mismatches and not pe.mismatches

    first, out, note = amb.settle(rows, predictions, SCORE_TOL, out, lambda scores: recompute(scores)[1],
                                  reproduces)
    found.checked += first.checked
    found.mismatches.extend(first.mismatches)
    if note:
        found.notes.append(note)
    _adopt_consistent_aucs(out["evaluation"], _with_auc_intervals(out["evaluation"], data, predictions),
                           report.get("evaluation"))
    return out


def _with_auc_intervals(ev: dict, data, predictions: dict) -> dict:
    """A copy of ``ev`` whose ROC-AUCs are the ranges that scores within SCORE_TOL of the recomputed ones allow."""
    from tfresp.evaluation.metrics import roc_auc_interval

    out = copy.deepcopy(ev)
    for split, section in out.items():
        if not isinstance(section, dict) or not isinstance(section.get("roc_auc"), float):
            continue
        part, proba = (data.validation, predictions.get("validation")) if split == "validation" else (
            data.test, predictions["test"])
        if proba is None or getattr(proba, "ndim", 0) != 2:
            continue
        bounds = roc_auc_interval(part.y, proba, SCORE_TOL)
        if bounds is not None:
            section["roc_auc"] = Interval(*bounds, why=f"every score within {SCORE_TOL:g} of the SavedModel's")
    return out


def _adopt_consistent_aucs(ev: dict, bounded: dict, recorded) -> None:
    """Where a recorded ROC-AUC lies in its recomputed range, the gates and scorecard are re-derived from the
    recorded value (a gate such as ``roc_auc >= 0.6`` must not flip on float noise); outside it stays recomputed
    (and is already a mismatch)."""
    for split, section in bounded.items():
        mine = recorded.get(split) if isinstance(recorded, dict) else None
        value = mine.get("roc_auc") if isinstance(mine, dict) else None
        got = section.get("roc_auc") if isinstance(section, dict) else None
        if isinstance(got, Interval) and got.holds(value):
            ev[split]["roc_auc"] = value


def _fairness_post_fit(ctx, run_dir: Path, report: dict):
    """The fairness concern after its post-fit stage, as in a run (stages: post-fit, then audits): the group rule
    the run serves is reloaded from ``preprocessing/thresholds.json`` (never re-fitted) and applied to the test
    rows, so the audit reads the served decisions."""
    from tfresp.fairness.concern import Fairness

    class Unplotted(Fairness):  # verify compares no plot (SKIP_KEYS): drawing them was ~40 % of a recomputation
        def _plots(self, ctx, reports):
            return []

    saved = run_dir / "preprocessing" / "thresholds.json"
    if ctx.config.fairness.mitigation == "threshold" and saved.is_file():
        ctx.own(Fairness).saved_thresholds = json.loads(saved.read_text())
    concern = Unplotted()
    concern.validate(ctx)
    old = report.get("fairness") or {}
    ctx.own(Fairness).mitigation = dict(old.get("mitigation") or {"name": ctx.config.fairness.mitigation})
    concern.post_fit(ctx)
    return concern


def _compression(run_dir: Path, config, data, loaded, proba, report: dict, found: Findings) -> None:
    from tfresp.compression.measure import gzip_size, scores
    from tfresp.compression.pruning_scheduler import kernel_sparsity

    comp = report.get("compression")
    exp = (report.get("export") or {}).get("tflite") or {}
    if isinstance(comp, dict) and isinstance(comp.get("keras"), dict):
        variables = list(loaded.core.variables)
        sp = kernel_sparsity(variables)
        found.compare("compression.keras", comp["keras"], {
            "sparsity": sp["global"], "per_layer_sparsity": sp["per_layer"],
            "parameters": int(sum(int(np.prod(v.shape)) for v in variables)),
            "nonzero_parameters": int(sum(int(np.count_nonzero(v.numpy())) for v in variables))})
        found.compare("compression", {k: comp.get(k) for k in ("sparsity", "per_layer_sparsity")},
                      {"sparsity": sp["global"], "per_layer_sparsity": sp["per_layer"]})
    variants = {}
    for key, sec in list((comp or {}).items()) + [(k, v) for k, v in exp.items()]:
        if isinstance(sec, dict) and isinstance(sec.get("path"), str) and sec["path"].endswith(".tflite"):
            variants.setdefault(sec["path"], []).append((key, sec))
    for rel, entries in variants.items():
        path = run_dir / rel
        if not path.is_file() or Path(rel).is_absolute() or ".." in Path(rel).parts:
            found.checked += 1
            found.add(f"{entries[0][0]}.path: {rel!r} is not a file of the run")
            continue
        from tfresp.commands import verify_ambiguous as amb
        from tfresp.export.tflite import TFLiteModel, _softmax, roundtrip, tflite_sparsity

        content = path.read_bytes()
        sp = tflite_sparsity(content)
        got = _softmax(TFLiteModel(content).predict_logits(data.test.x))
        measured = {"bytes": len(content), "gzip_bytes": gzip_size(content), "sparsity": sp["global"],
                    "per_layer_sparsity": sp["per_layer"]}
        plain = scores(data.test.y, got, data.test.groups, data.num_classes)
        ambiguous = amb.argmax_rows(got, SCORE_TOL)  # the TFLite kernels' float noise differs between machines too
        for key, sec in entries:
            where = f"compression.{key}" if sec in (comp or {}).values() else f"export.tflite.{key}"
            rt = sec.get("roundtrip")
            if isinstance(rt, dict) and rt.get("rows"):
                n = int(rt["rows"])
                variant = "int8" if "tolerance_basis" in rt else (sec.get("variant") or key)
                try:
                    measured_rt = roundtrip(variant, proba[:n], got[:n])
                except KeyError:
                    measured_rt = None
                if measured_rt is not None:
                    found.compare(f"{where}.roundtrip", rt, _settled_roundtrip(
                        variant, rt, proba[:n], got[:n], measured_rt, f"{where}.roundtrip", found), abs_tol=1e-5)
            numbers = _settled(ambiguous, {"test": got}, plain, lambda p: scores(
                data.test.y, p["test"], data.test.groups, data.num_classes), where,
                {k: sec.get(k) for k in plain}, found)
            found.compare(where, sec, {**measured, **numbers})


def _settled(rows, predictions: dict, plain: dict, recompute, where: str, recorded: dict, found: Findings,
             abs_tol: float = ABS_TOL) -> dict:
    """``plain``, or the numbers of the first assignment of ``rows`` that reproduces ``recorded`` within ``abs_tol``
    (:func:`verify_ambiguous.settle`); its note goes to ``found``."""
    from tfresp.commands import verify_ambiguous as amb

    def check(numbers):
        mine = Findings()
        mine.compare(where, recorded, numbers, abs_tol=abs_tol)
        return mine, not mine.mismatches

    _, numbers, note = amb.settle(rows, predictions, SCORE_TOL, plain, recompute, check)
    if note:
        found.notes.append(f"{where}: {note}")
    return numbers


def _settled_roundtrip(variant: str, recorded: dict, proba, got, plain: dict, where: str, found: Findings) -> dict:
    """The round trip's numbers, with its ``agreement`` (argmax of the SavedModel vs the TFLite model) settled over
    the rows either of them puts within SCORE_TOL of its argmax boundary (:func:`verify_ambiguous.settle`); the
    differences stay those of the unmoved scores."""
    from tfresp.commands import verify_ambiguous as amb
    from tfresp.export.tflite import roundtrip

    rows = amb.argmax_rows(proba, SCORE_TOL, "saved_model") + amb.argmax_rows(got, SCORE_TOL, "tflite")
    numbers = _settled(rows, {"saved_model": proba, "tflite": got}, plain,
                       lambda p: roundtrip(variant, p["saved_model"], p["tflite"]), where, recorded, found,
                       abs_tol=1e-5 + 2 * SCORE_TOL)  # a trial moves scores by SCORE_TOL each side: diffs by twice
    return plain if numbers is plain else {**numbers, "max_abs_diff": plain["max_abs_diff"],
                                           "mean_abs_diff": plain["mean_abs_diff"]}


# ------------------------------------------------------------------------------------------------------------
def _gates(report: dict, recomputed: Optional[dict], extra_gates: list, found: Findings) -> None:
    """Re-derive gates, scorecard and warnings from the recomputed numbers and compare."""
    from tfresp.report.derive import derive
    from tfresp.report.gates import evaluate

    rec = copy.deepcopy(report)
    if recomputed is not None:
        rec["evaluation"] = recomputed["evaluation"]
        if "fairness" in recomputed:
            rec["fairness"] = recomputed["fairness"]
        rec["scorecard"] = {"per_example": recomputed.get("per_example")}
    else:
        rec["scorecard"] = {"per_example": (report.get("scorecard") or {}).get("per_example")}
    for key in ("gates", "warnings"):
        rec.pop(key, None)
    from tfresp.report.writer import _jsonable

    rec = derive(_jsonable(rec))
    found.compare("gates", report.get("gates"), rec.get("gates"))
    if report.get("gates") is None and rec.get("gates") is not None:
        found.checked += 1
        found.add("gates: report.json has no gates; the config's gates give "
                  f"{len(rec['gates'].get('results') or [])} result(s)")
    found.compare("scorecard", report.get("scorecard"), rec.get("scorecard"))
    found.gates = rec.get("gates")
    if extra_gates:
        cfg_gates = list(((rec.get("run") or {}).get("config") or {}).get("gates") or [])
        found.gates = evaluate(cfg_gates + extra_gates, rec, rec.get("scorecard"))


# ------------------------------------------------------------------------------------------------------------
def print_findings(found: Findings, run) -> int:
    """Print the findings; return the exit code (2 mismatch, 1 a gate fails, 0 all hold)."""
    from tfresp.report.gates import failure_lines

    for m in found.mismatches:
        print(f"MISMATCH {m}")
    for n in found.notes:
        print(f"note: {n}")
    print("not checked: " + "; ".join(found.cannot))
    gates = getattr(found, "gates", None)
    if found.mismatches:
        print(f"tfresp: verify FAILED: {len(found.mismatches)} mismatch(es) among {found.checked} numbers checked "
              f"in {run}")
        return 2
    print(f"tfresp: verify OK: {found.checked} numbers checked in {run}; all match report.json")
    if gates:
        lines = failure_lines(gates)
        for line in lines:
            print(line)
        print(f"tfresp: {gates['count'] - len(gates['failed'])}/{gates['count']} gates passed")
        return 1 if lines else 0
    return 0


def run(args) -> int:
    found = verify_run(args.run, getattr(args, "data", None), getattr(args, "gates", []) or [],
                       key=getattr(args, "key", None))
    return print_findings(found, args.run)
