"""``tfresp verify RUN`` on a sites run (``federated.sites``): what can be re-derived without the sites' rows.

Checked (each mismatch names the report field):

- the signature (``tfresp sign``) and the manifest: the sha256 of every artifact (:mod:`tfresp.report.manifest`);
- ``run.config_hash`` against ``run.config`` and ``config.yaml``;
- the saved preprocessing against the declared schema of ``config.yaml`` (a sites run fits nothing on rows, so
  ``preprocessing/tabular.json`` must be exactly what the config declares);
- the model: ``model.keras`` loads, its parameter count is ``model.parameters``, and the SavedModel serves the
  same probabilities and decisions as ``model.keras`` on probe rows built from the declared schema
  (``export.saved_model.roundtrip_*``);
- every pooled and per-site metric (test accuracy, loss, recall, precision, confusion, the ``data.sensitive``
  groups and gaps; the validation curve pooled and per site; ``evaluation.test``; ``training.history``) from the
  counts each site sent (``federated.counts``): pooled = the sum of the per-site counts;
- privacy: each site's ε from its recorded σ, q, steps and δ with dp-accounting (:mod:`tfresp.privacy.verify`'s
  composition), q = batch / the site's training rows, steps per epoch, planned steps and δ ('auto') from those
  rows, σ / clip / sampling against the config, the largest per-site ε and δ as ``privacy.epsilon`` / ``delta``,
  and the statement regenerated from the re-derived ε.

Not checkable here, and said so: the model's metrics on rows (the rows stay at the sites: verify shows that every
number follows from the counts the sites sent, not that the sites counted right), the training itself (the
noise the sites drew), timings.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from tfresp.errors import DataError

ABS_TOL = 1e-6

NOT_CHECKED = [
    "model metrics on rows: the rows stay at the sites, so the counts each site sent cannot be recounted here "
    "(verify checks that every pooled and per-site number follows from those counts)",
    "training (the sites' local DP-SGD steps and the noise they drew) and timings",
    "membership-inference audit (not run in a sites run)",
]


def verify(run_dir: Path, report: dict, found, key: Optional[str] = None, gates=(), data=None):
    """Fill ``found`` (a :class:`tfresp.commands.verify.Findings`) for the sites run in ``run_dir``."""
    from tfresp.config import load_config

    if gates:
        raise DataError("`--gate`: a sites run has no release gates (the pooled report is built from the sites' "
                        f"counts). Received: --gate {list(gates)!r}. Remedy: leave out --gate")
    if data is not None:
        raise DataError("`--data`: a sites run's rows stay at the sites; verify reads only the run directory. "
                        f"Received: --data={data!r}. Remedy: leave out --data")
    run_dir = Path(run_dir)
    from tfresp.report.signing import record

    record(run_dir, key, found)  # the same signature check as a central run
    _manifest(run_dir, report, found)
    _config(run_dir, report, found)
    try:
        config = load_config(run_dir / "config.yaml")
    except Exception as exc:  # noqa: BLE001  (reported by _config; nothing else can be re-derived)
        found.cannot.append(f"everything that needs config.yaml ({exc.__class__.__name__})")
        return found
    _preprocessing(run_dir, config, found)
    _model(run_dir, config, report, found)
    _counts(report, config, found)
    _privacy(report, config, found)
    found.cannot.extend(NOT_CHECKED)
    return found


def _manifest(run_dir: Path, report: dict, found) -> None:
    from tfresp.report.manifest import record

    if not record(run_dir, report.get("manifest"), found):
        found.add("manifest: report.json has no manifest of the artifacts (every sites run writes one): the "
                  "artifacts' bytes cannot be checked")


def _config(run_dir: Path, report: dict, found) -> None:
    from tfresp.config import load_config
    from tfresp.report.environment import config_hash

    run = report.get("run") or {}
    recorded = run.get("config") or {}
    found.checked += 2
    if config_hash(recorded) != run.get("config_hash"):
        found.add(f"run.config_hash: report.json {run.get('config_hash')!r}; recomputed from run.config "
                  f"{config_hash(recorded)!r} (run.config was edited)")
    try:
        on_disk = load_config(run_dir / "config.yaml").to_dict()
    except Exception as exc:  # noqa: BLE001
        found.add(f"config.yaml: does not load ({exc.__class__.__name__})")
        return
    if config_hash(on_disk) != config_hash(recorded):
        found.add("config.yaml: differs from run.config in report.json (one of them was edited)")


def _preprocessing(run_dir: Path, config, found) -> None:
    from tfresp.federated import schema

    found.checked += 1
    path = run_dir / "preprocessing" / "tabular.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        found.add("preprocessing/tabular.json: missing or not JSON")
        return
    declared = json.loads(json.dumps(schema.preprocessor(config).to_json()))
    if saved != declared:
        found.add("preprocessing/tabular.json: differs from the preprocessing the config declares "
                  "(data.categories, data.numeric_ranges); a sites run fits nothing on rows")


def _model(run_dir: Path, config, report: dict, found) -> None:
    """model.keras against model.parameters; the SavedModel against model.keras on declared probe rows."""
    import tf_keras as keras

    from tfresp.data.preprocess import TabularPreprocessor
    from tfresp.federated.sites_report import probe_frame, serve_probe
    from tfresp.run.context import predict_proba

    try:
        core = keras.models.load_model(str(run_dir / "model.keras"), compile=False)
    except Exception as exc:  # noqa: BLE001  (a corrupted artifact is a finding)
        found.add(f"model.keras: does not load ({exc.__class__.__name__}); no model number can be recomputed")
        return
    found.compare("model.parameters", (report.get("model") or {}).get("parameters"), int(core.count_params()))
    export = (report.get("export") or {}).get("saved_model")
    if not isinstance(export, dict):
        found.add("export.saved_model: report.json records no SavedModel (every sites run exports one)")
        return
    try:
        pre = TabularPreprocessor.load(run_dir / "preprocessing")
        probe = probe_frame(config)
        proba, class_id = serve_probe(str(run_dir / "saved_model"), pre, probe)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        found.add(f"saved_model: the served model could not be evaluated ({exc.__class__.__name__}: {first})")
        return
    direct = predict_proba(core, pre.transform_frame(probe), batch_size=4096)
    found.compare("export.saved_model", export, {
        "roundtrip_rows": len(probe), "roundtrip_max_abs_diff": float(np.max(np.abs(proba - direct))),
        "roundtrip_class_id_mismatches": int(np.sum(class_id != direct.argmax(axis=1)))}, abs_tol=1e-5)
    found.checked += 1
    if float(np.max(np.abs(proba - direct))) > 1e-5:
        found.add("saved_model: serves other probabilities than model.keras on the declared probe rows (max |dp| "
                  f"{float(np.max(np.abs(proba - direct))):.3g}): the served model is not the reported model")


# -- metrics from counts --------------------------------------------------------------------------------------
def _counts(report: dict, config, found) -> None:
    from tfresp.federated import schema
    from tfresp.federated.sites_run import _sum_counts, metrics_from_counts

    fed = report.get("federated") or {}
    counts = fed.get("counts")
    if not isinstance(counts, dict) or not isinstance(counts.get("test"), dict):
        found.add("federated.counts: report.json has no per-site counts (every sites run records them): the pooled "
                  "and per-site metrics cannot be re-derived")
        return
    classes = schema.classes(config)
    sites = list(fed.get("sites") or [])
    found.checked += 1
    if sorted(counts["test"]) != sorted(sites):
        found.add(f"federated.counts.test: sites {sorted(counts['test'])} do not match federated.sites {sorted(sites)}")
    try:
        test = {n: _plain_counts(c) for n, c in counts["test"].items()}
        pooled = metrics_from_counts(_sum_counts(list(test.values())), classes)
        per_site = {n: metrics_from_counts(c, classes) for n, c in test.items()}
    except (KeyError, TypeError, ValueError) as err:
        found.add(f"federated.counts.test: malformed counts ({err})")
        return
    recorded = fed.get("test") or {}
    _same_section(found, "federated.test.pooled", recorded.get("pooled"), pooled)
    _same_section(found, "evaluation.test", (report.get("evaluation") or {}).get("test"), pooled)
    from tfresp.federated.sites_report import fairness_section

    fair = fairness_section(pooled)
    if fair is not None or report.get("fairness") is not None:
        _same_section(found, "fairness", report.get("fairness"), fair)
    for n, m in per_site.items():
        _same_section(found, f"federated.test.per_site.{n}", (recorded.get("per_site") or {}).get(n), m)
    _curve(report, fed, counts, classes, found)


def _plain_counts(c):
    if c is None:
        return None
    out = {"rows": int(c["rows"]), "loss_sum": float(c["loss_sum"]), "confusion": c["confusion"]}
    if "groups" in c:
        out["groups"] = c["groups"]
    return out


def _same_section(found, path, recorded, recomputed) -> None:
    if recomputed is None:
        found.checked += 1
        if recorded is not None:
            found.add(f"{path}: report.json has metrics; the counts give none (no rows)")
        return
    if not isinstance(recorded, dict):
        found.checked += 1
        found.add(f"{path}: report.json has no metrics here; the counts give "
                  + (f"accuracy {recomputed['accuracy']:.10g}" if "accuracy" in recomputed else "a section"))
        return
    found.compare(path, recorded, recomputed, abs_tol=ABS_TOL)


def _curve(report: dict, fed: dict, counts: dict, classes, found) -> None:
    from tfresp.federated.sites_run import _sum_counts, metrics_from_counts

    val = counts.get("validation")
    if not isinstance(val, list):
        found.cannot.append("the validation curve (federated.counts.validation is missing)")
        return
    by_round = {int(v["round"]): v.get("sites") or {} for v in val if isinstance(v, dict) and "round" in v}
    hist = (report.get("training") or {}).get("history") or {}
    curve = fed.get("curve") or []
    found.checked += 1
    if len(curve) != len(by_round):
        found.add(f"federated.curve: {len(curve)} round(s); the counts hold {len(by_round)}")
    for i, point in enumerate(curve):
        sites = by_round.get(int(point.get("round", -1)))
        if sites is None:
            continue
        parts = {n: _plain_counts(c) for n, c in sites.items()}
        m = metrics_from_counts(_sum_counts(list(parts.values())), classes) or {}
        rec = {"val_loss": m.get("loss"), "val_accuracy": m.get("accuracy")}
        found.compare(f"federated.curve[{i}]", point, rec)
        for key in ("val_loss", "val_accuracy"):
            series = hist.get(key)
            if isinstance(series, list) and i < len(series):
                found.compare(f"training.history.{key}[{i}]", series[i], rec[key])
        for n, c in parts.items():
            ms = metrics_from_counts(c, classes)
            site_curve = (fed.get("curve_per_site") or {}).get(n) or []
            if i < len(site_curve) and ms is not None:
                found.compare(f"federated.curve_per_site.{n}[{i}]", site_curve[i],
                              {"val_loss": ms["loss"], "val_accuracy": ms["accuracy"]})


# -- privacy --------------------------------------------------------------------------------------------------
def _privacy(report: dict, config, found) -> None:
    from tfresp.privacy import accounting
    from tfresp.privacy.verify import Tally, _compose
    from tfresp.run.training import steps_per_epoch

    priv = report.get("privacy")
    if config.privacy is None:
        if priv:
            found.checked += 1
            found.add("privacy: report.json makes a privacy claim but config.yaml has no privacy section")
        return
    if not isinstance(priv, dict) or not isinstance(priv.get("sites"), dict):
        found.checked += 1
        found.add("privacy.sites: the config asks for DP-SGD at every site but report.json records no per-site "
                  "account")
        return
    tally = Tally()
    pc, fed = config.privacy, config.federated
    derived = {}
    names = list((report.get("federated") or {}).get("sites") or [])
    tally.checked += 1
    if sorted(priv["sites"]) != sorted(names):
        tally.problems.append(f"`privacy.sites`: accounts for {sorted(priv['sites'])}, not for the run's sites "
                              f"{sorted(names)}")
    for n, p in priv["sites"].items():
        field = f"privacy.sites.{n}"
        try:
            sigma, q, steps = float(p["noise_multiplier"]), float(p["sampling_rate"]), int(p["steps"])
            delta, spe = float(p["delta"]), int(p["steps_per_epoch"])
            sampling = p.get("sampling", "poisson")
            eps = _compose([accounting.sgd_event(sigma, q, steps, sampling, spe)],
                           p.get("accountant") or pc.accountant, delta)
        except (KeyError, TypeError, ValueError) as err:
            tally.problems.append(f"`{field}`: the site's mechanism is incomplete ({err}). Remedy: re-run")
            continue
        derived[n] = eps
        tally.same(f"{field}.epsilon", p.get("epsilon"), eps,
                   f"dp-accounting on the site's recorded mechanism (sigma={sigma:g}, q={q:g}, steps={steps}, "
                   f"delta={delta:g})")
        batch = int(fed.local_batch_size)
        if q < 1.0:  # q = min(batch, rows) / rows: the site's training rows follow from q (public, see statement)
            rows = int(round(batch / q))
            tally.same(f"{field}.sampling_rate", q, batch / rows, f"local_batch_size {batch} / {rows} training rows")
            tally.same(f"{field}.steps_per_epoch", spe, steps_per_epoch(rows, batch),
                       f"ceil({rows} training rows / batch {batch})")
            if pc.delta == "auto":
                tally.same(f"{field}.delta", delta, accounting.default_delta(rows),
                           f"privacy.delta 'auto' for the site's {rows} training rows")
        if pc.delta != "auto":
            tally.same(f"{field}.delta", delta, float(pc.delta), "the config's privacy.delta")
        tally.same(f"{field}.planned_steps", p.get("planned_steps"), spe * fed.rounds * fed.local_epochs,
                   f"steps per epoch x federated.rounds {fed.rounds} x local_epochs {fed.local_epochs}")
        tally.checked += 1
        rounds = p.get("rounds_trained")
        if not isinstance(rounds, int) or rounds > fed.rounds or steps != rounds * fed.local_epochs * spe:
            tally.problems.append(f"`{field}.steps`: does not match the rounds the site trained. Received: steps="
                                  f"{steps}, rounds_trained={rounds!r}; expected rounds_trained x local_epochs "
                                  f"{fed.local_epochs} x steps per epoch {spe}. Remedy: the report was edited")
        if pc.noise_multiplier is not None:
            tally.same(f"{field}.noise_multiplier", sigma, float(pc.noise_multiplier),
                       "the config's privacy.noise_multiplier")
        tally.same(f"{field}.l2_norm_clip", p.get("l2_norm_clip"), float(pc.l2_norm_clip),
                   "the config's privacy.l2_norm_clip")
        tally.same(f"{field}.sampling", sampling, pc.sampling, "the config's privacy.sampling")
        if pc.target_epsilon is not None:
            tally.checked += 1
            if eps > float(pc.target_epsilon) * (1 + 1e-6):
                tally.problems.append(f"`{field}.epsilon`: the re-derived ε {eps:.6g} exceeds the budget "
                                      f"privacy.target_epsilon={pc.target_epsilon:g}")
    if derived and len(derived) == len(priv["sites"]):
        tally.same("privacy.epsilon", priv.get("epsilon"), max(derived.values()), "the largest re-derived per-site ε")
        tally.same("privacy.delta", priv.get("delta"), max(float(p["delta"]) for p in priv["sites"].values()),
                   "the largest per-site δ")
        fp = (report.get("federated") or {}).get("privacy") or {}
        if fp:
            tally.same("federated.privacy.epsilon", fp.get("epsilon"), max(derived.values()),
                       "the largest re-derived per-site ε")
        secure = bool((((report.get("federated") or {}).get("secure_aggregation")) or {}).get("applied"))
        _statement(priv, derived, fed.rounds, secure, tally, found)
    found.checked += tally.checked
    found.mismatches.extend(tally.problems)


def _statement(priv: dict, derived: dict, rounds: int, secure: bool, tally, found) -> None:
    from tfresp.federated.sites_run import statement

    text = priv.get("statement")
    sites = {n: {**p, "epsilon": derived[n]} for n, p in priv["sites"].items()}
    try:  # under secure aggregation the statement says the server saw only the sum
        expected = statement(sites, rounds, True) if secure else statement(sites, rounds)
    except (KeyError, TypeError, ValueError):
        found.cannot.append("privacy.statement (the recorded per-site accounts do not regenerate it)")
        return
    tally.checked += 1
    if text != expected:
        text = text if isinstance(text, str) else repr(text)
        i = next((k for k, (a, b) in enumerate(zip(text, expected)) if a != b), min(len(text), len(expected)))
        tally.problems.append(f"`privacy.statement`: does not match the statement regenerated from the re-derived "
                              f"per-site ε. Received: ...{text[max(0, i - 40):i + 40]!r}...; re-derived "
                              f"...{expected[max(0, i - 40):i + 40]!r}... Remedy: the report was edited; re-run")

