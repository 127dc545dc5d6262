"""Re-derive a finished run's privacy claim from its recorded mechanisms, its config and its ledger.

report.json lists every spend of the run's privacy budget with its parameters (DP-SGD: σ, q, steps,
sampling; Laplace/Gaussian releases: their noise scale). :func:`problems` checks, without trusting any
one of those numbers:

- the spends: each becomes a ``dp_accounting`` event again (:func:`tfresp.privacy.budget.event_from_params`,
  DP-SGD through :func:`tfresp.privacy.accounting.sgd_event`); composed with the recorded accountant at the
  accounting δ they must give the headline ``privacy.epsilon``;
- the DP-SGD spend against the run's config (σ when the config fixes it, sampling, clip norm, δ), the
  training section (steps per epoch, epochs run, batch size / training rows = q) and the ledger history
  (σ, q and steps of every accounted step); the top-level fields against the spend;
- the preprocessing spends the config implies: every column the saved preprocessing says was fitted under
  DP is covered by a recorded spend, and every ``dp`` coverage entry names a spend that is still recorded;
- the ε curve, the ``dp/epsilon`` training history and the plain-language statement (regenerated from the
  re-derived numbers).

A report that was edited, or written by code whose numbers no longer match its mechanisms, fails.
``tfresp verify`` (and its alias ``tfresp report RUN --check``) prints every problem.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import List, Optional

import dp_accounting

from tfresp.privacy import accounting
from tfresp.privacy.budget import event_from_params

RTOL = 1e-6


class Tally:
    """Numbers compared (``checked``) and the disagreements found (``problems``)."""

    def __init__(self):
        self.checked = 0
        self.problems: List[str] = []

    def same(self, field: str, recorded, derived, what: str, rel_tol: float = RTOL) -> bool:
        """Compare one recorded value with its re-derived value; record a problem naming ``field``."""
        self.checked += 1
        if _equal(recorded, derived, rel_tol):
            return True
        self.problems.append(f"`{field}`: does not match {what}. Received: {field.rsplit('.', 1)[-1]}="
                             f"{_fmt(recorded)}; re-derived {_fmt(derived)}. Remedy: the report was edited or is "
                             "stale; re-run the training")
        return False


def _equal(a, b, rel_tol) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    if a is None or b is None:  # JSON has no infinity: tfresp writes ε = ∞ as null
        return (a is None or a == math.inf) and (b is None or b == math.inf)
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    return fa == fb or math.isclose(fa, fb, rel_tol=rel_tol, abs_tol=1e-12)


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else repr(v)


def problems(report: dict, preprocessing: Optional[dict] = None) -> List[str]:
    """Every disagreement between the report's privacy claim and what re-derives it (empty: consistent)."""
    return check(report, preprocessing).problems


def check(report: dict, preprocessing: Optional[dict] = None) -> Tally:
    """:func:`problems` with the count of numbers compared. ``preprocessing``: the run's saved
    ``preprocessing/tabular.json`` (which columns were fitted under DP), when there is one."""
    tally = Tally()
    sec = report.get("privacy")
    if not sec:
        return tally
    budget = sec.get("budget")
    if sec.get("level") == "client" and budget is None:  # federated DP-FedAvg: one subsampled Gaussian per round
        _client_level(sec, tally)
        return tally
    if not isinstance(budget, dict) or not budget.get("spends"):
        tally.problems.append("`privacy.budget`: no recorded mechanisms to re-derive ε from. Received: "
                              f"{type(budget).__name__}. Remedy: re-run the training with this tfresp version")
        return tally
    spends = budget["spends"]
    try:
        delta = float(sec["delta"])
        noiseless = [s["source"] for s in spends if s["mechanism"] in ("dp_sgd", "gaussian")
                     and float(s["params"].get("noise_multiplier", 1)) <= 0]
        if noiseless:
            tally.problems.append(
                f"`privacy.noise_multiplier`: the recorded mechanism(s) {noiseless} add no noise (noise_multiplier "
                "0): the run has no differential-privacy guarantee (ε = ∞) and no finite ε can be verified. "
                "Remedy: re-run with privacy.noise_multiplier > 0 or privacy.target_epsilon")
            return tally
        events = [event_from_params(s["mechanism"], s["params"]) for s in spends]
        extra = sum(float(s["params"].get("delta", 0.0) or 0.0) for s in spends)
        derived = _compose(events, budget.get("accountant", sec.get("accountant", "pld")), delta - extra)
    except (KeyError, TypeError, ValueError) as err:
        tally.problems.append(f"`privacy.budget.spends`: a recorded mechanism is incomplete ({err}). Remedy: "
                              "re-run the training")
        return tally
    tally.same("privacy.epsilon", sec.get("epsilon"), derived,
               f"dp-accounting on the {len(events)} recorded spend(s) ({', '.join(s['source'] for s in spends)}) "
               f"at delta={delta - extra:g}")
    tally.same("privacy.budget.delta", budget.get("delta"), delta, "privacy.delta")
    tally.same("privacy.budget.extra_delta", budget.get("extra_delta", extra), extra,
               "the sum of the spends' own delta terms")
    config = (report.get("run") or {}).get("config") or {}
    pcfg = config.get("privacy") or {}
    n = _n_train(report, sec)
    if pcfg.get("delta", "auto") == "auto":
        if n:
            tally.same("privacy.delta", delta, accounting.default_delta(n),
                       f"privacy.delta 'auto' for n={n} training rows")
    else:
        tally.same("privacy.delta", delta, float(pcfg["delta"]), "the config's privacy.delta")
    sgd = [s for s in spends if s["source"] == "privacy.dp_sgd"]
    if len(sgd) > 1 or (not sgd and ("ledger" in sec or "noise_multiplier" in sec)):
        tally.problems.append(f"`privacy.budget.spends`: a DP-SGD run records exactly one privacy.dp_sgd spend; "
                              f"found {len(sgd)}. Remedy: the report was edited or is stale; re-run the training")
    elif sgd:
        _dp_sgd(report, sec, sgd[0]["params"], pcfg, n, tally, derived_without_sgd=[
            e for e, s in zip(events, spends) if s["source"] != "privacy.dp_sgd"], delta=delta - extra)
    _preprocessing(report, budget, preprocessing, config, tally)
    _statement(sec, derived, tally)
    return tally


def _compose(events, accountant: str, delta: float) -> float:
    acc = accounting.make_dp_accountant(accountant)
    acc.compose(dp_accounting.ComposedDpEvent(events))
    eps = float(acc.get_epsilon(delta))
    return eps if math.isfinite(eps) else math.inf


def _n_train(report, sec) -> Optional[int]:
    rows = (((report.get("data") or {}).get("splits") or {}).get("train") or {}).get("rows")
    return int(rows) if isinstance(rows, (int, float)) else None


def _dp_sgd(report, sec, params, pcfg, n, tally: Tally, derived_without_sgd, delta) -> None:
    """The DP-SGD spend against the top-level fields, the config, the training section and the ledger."""
    for key in ("noise_multiplier", "sampling_rate", "steps", "sampling", "steps_per_epoch", "l2_norm_clip"):
        if key in sec:
            tally.same(f"privacy.{key}", sec[key], params.get(key), "the recorded DP-SGD spend")
    if pcfg.get("noise_multiplier") is not None:
        tally.same("privacy.budget.spends[privacy.dp_sgd].noise_multiplier", params.get("noise_multiplier"),
                   float(pcfg["noise_multiplier"]), "the config's privacy.noise_multiplier")
    tally.same("privacy.budget.spends[privacy.dp_sgd].sampling", params.get("sampling"),
               pcfg.get("sampling", "poisson"), "the config's privacy.sampling")
    tally.same("privacy.budget.spends[privacy.dp_sgd].l2_norm_clip", params.get("l2_norm_clip"),
               float(pcfg.get("l2_norm_clip", 1.0)), "the config's privacy.l2_norm_clip")
    training = report.get("training") or {}
    batch = training.get("global_batch_size") or training.get("batch_size")
    if n and batch:
        tally.same("privacy.budget.spends[privacy.dp_sgd].sampling_rate", params.get("sampling_rate"),
                   float(batch) / n, f"batch size {batch} / {n} training rows")
    if training.get("steps_per_epoch") is not None:
        tally.same("privacy.budget.spends[privacy.dp_sgd].steps_per_epoch", params.get("steps_per_epoch"),
                   training["steps_per_epoch"], "training.steps_per_epoch")
    ledger = sec.get("ledger") or {}
    history = ((ledger.get("accountant") or {}).get("history"))
    if isinstance(history, list) and history:
        try:
            rows = [(float(h[0]), float(h[1]), int(h[2])) for h in history if int(h[2]) > 0]
        except (TypeError, ValueError, IndexError):
            rows = None
        if rows is None:
            tally.problems.append("`privacy.ledger.accountant.history`: not a list of [sigma, q, steps]. Remedy: "
                                  "the report was edited; re-run the training")
        else:
            tally.same("privacy.budget.spends[privacy.dp_sgd].steps", params.get("steps"),
                       sum(k for _, _, k in rows), "the steps of the privacy ledger's history")
            for i, (s, q, _) in enumerate(rows):
                tally.same("privacy.budget.spends[privacy.dp_sgd].noise_multiplier", params.get("noise_multiplier"),
                           s, f"the privacy ledger's history entry {i} (sigma)")
                tally.same("privacy.budget.spends[privacy.dp_sgd].sampling_rate", params.get("sampling_rate"), q,
                           f"the privacy ledger's history entry {i} (q)")
            if rows and all(r[0] > 0 for r in rows):
                try:
                    sampling = params.get("sampling", "poisson")
                    if sampling == "shuffle":
                        sgd_events = [accounting.sgd_event(min(r[0] for r in rows), 1.0, sum(r[2] for r in rows),
                                                           "shuffle", int(params.get("steps_per_epoch", 1)))]
                    else:
                        sgd_events = [accounting.sgd_event(s, q, k, sampling, int(params.get("steps_per_epoch", 1)))
                                      for s, q, k in rows]
                    from_ledger = _compose(list(derived_without_sgd) + sgd_events,
                                           sec.get("accountant", "pld"), delta)
                    tally.same("privacy.epsilon", sec.get("epsilon"), from_ledger,
                               "dp-accounting on the privacy ledger's history composed with the other spends")
                except (TypeError, ValueError) as err:
                    tally.problems.append(f"`privacy.ledger`: cannot re-derive ε from its history ({err})")
    epochs = training.get("epochs_run")
    spe = training.get("steps_per_epoch")
    if isinstance(epochs, int) and isinstance(spe, int) and not sec.get("stopped_early"):
        tally.checked += 1
        steps = params.get("steps")
        if not isinstance(steps, int) or steps > epochs * spe:
            tally.problems.append(f"`privacy.steps`: more steps than training ran. Received: steps={steps!r}; "
                                  f"training ran {epochs} epoch(s) x {spe} steps. Remedy: the report was edited")
    curve = sec.get("epsilon_curve") or []
    if curve:
        tally.same("privacy.epsilon_curve[-1].epsilon", curve[-1].get("epsilon"), sec.get("epsilon"),
                   "privacy.epsilon (the last point of the curve is the run's ε)")
        tally.same("privacy.epsilon_curve[-1].steps", curve[-1].get("steps"), params.get("steps"),
                   "the DP-SGD spend's steps")
    hist = (training.get("history") or {}).get("dp/epsilon")
    if isinstance(hist, list) and hist:
        tally.same("training.history.dp/epsilon[-1]", hist[-1], sec.get("epsilon"),
                   "privacy.epsilon (the ledger logs the run's ε after every epoch)", rel_tol=1e-5)


def _preprocessing(report, budget, preprocessing, config, tally: Tally) -> None:
    """Every DP-fitted column is covered by a recorded spend; no coverage entry names a deleted spend."""
    spends = budget["spends"]
    sources = {s["source"] for s in spends}
    for i, c in enumerate(budget.get("coverage") or []):
        if c.get("status") != "dp":
            continue
        named = str(c.get("detail", "")).split(" (", 1)[0]
        if not re.fullmatch(r"[\w.\-]+", named):  # covered by something described in words, not a spend source
            continue
        tally.checked += 1
        if named not in sources:
            tally.problems.append(f"`privacy.budget.spends`: the coverage entry {c.get('item')!r} is protected by "
                                  f"the spend {named!r}, which is not recorded (deleted?). Remedy: the report was "
                                  "edited; re-run the training")
    if not isinstance(preprocessing, dict):
        return
    declared = ((config.get("data") or {}).get("categories") or {})
    ranges = ((config.get("data") or {}).get("numeric_ranges") or {})
    columns_of = {}
    for s in spends:
        for col in (s.get("params") or {}).get("columns") or []:
            columns_of.setdefault(col, set()).add(s["source"])
    for col in preprocessing.get("columns") or []:
        name, kind, source = col.get("name"), col.get("kind"), col.get("source")
        if source != "dp":
            if kind == "categorical" and source == "declared" and name not in declared:
                tally.problems.append(f"`preprocessing/tabular.json`: column {name!r} is marked declared but the "
                                      "config declares no categories for it")
            continue
        # a numeric column whose noisy histogram kept no bin is dropped (dp_tabular: constant 0, clip [0, 0]): no
        # moments were drawn for it, so only the histogram spend covers it
        dropped = (kind == "numeric" and list(col.get("clip") or []) == [0.0, 0.0] and name not in ranges
                   and col.get("mean") == 0.0 and col.get("std") == 1.0)
        need = ["preprocessing.histogram"] if kind == "categorical" or dropped else (
            ["preprocessing.numeric_moments"] + ([] if name in ranges else ["preprocessing.histogram"]))
        for src in need:
            tally.checked += 1
            if src not in columns_of.get(name, set()):
                tally.problems.append(f"`privacy.budget.spends`: column {name!r} was fitted under DP (saved "
                                      f"preprocessing) but no recorded {src} spend covers it (a deleted spend?). "
                                      "Remedy: the report was edited; re-run the training")


def _statement(sec, derived, tally: Tally) -> None:
    text = sec.get("statement")
    if not isinstance(text, str):
        return
    try:
        from tfresp.privacy.statement import statement
    except ImportError:  # older layout
        from tfresp.privacy.concern import statement
    try:
        expected = statement({**sec, "epsilon": derived})
    except (KeyError, TypeError, ValueError):
        return
    tally.checked += 1
    if text != expected:
        i = next((k for k, (a, b) in enumerate(zip(text, expected)) if a != b), min(len(text), len(expected)))
        got, want = text[max(0, i - 40):i + 40], expected[max(0, i - 40):i + 40]
        tally.problems.append(f"`privacy.statement`: does not match the re-derived guarantee. Received: "
                              f"...{got!r}...; re-derived ...{want!r}... Remedy: the report was edited or is stale; re-run the training")


def _client_level(sec: dict, tally: Tally) -> None:
    try:
        derived = accounting.compute_epsilon(float(sec["effective_noise_multiplier"]), float(sec["sampling_rate"]),
                                             int(sec["rounds"]), float(sec["delta"]), sec.get("accountant", "pld"))
    except (KeyError, TypeError, ValueError) as err:
        tally.problems.append(f"`privacy`: the client-level mechanism is incomplete ({err}). Remedy: re-run the "
                              "training")
        return
    tally.same("privacy.epsilon", sec.get("epsilon"), derived, "the recorded client-level mechanism")


def check_run(run_dir) -> List[str]:
    """:func:`problems` of the report.json in ``run_dir`` (with its saved preprocessing)."""
    import json

    from tfresp.report.compare import load_report

    pre = Path(run_dir) / "preprocessing" / "tabular.json"
    try:
        preprocessing = json.loads(pre.read_text()) if pre.is_file() else None
    except (OSError, ValueError):
        preprocessing = None
    return problems(load_report(run_dir), preprocessing)
