"""A cross-silo run (``federated.sites``): the server side, which knows the sites by name only.

The server builds the model from the declared schema (:mod:`tfresp.federated.schema`, no data), runs the rounds
with :class:`tfresp.federated.train.Server` (site sampling with ``clients_per_round``, FedAvg through Flower's
strategy) and sums the sites' evaluation counts. Everything that touches a site's rows happens in
:class:`tfresp.federated.site.Site`, reached through a *site transport*: :class:`LocalSites` (simulation: every
site in this process) or a deployment's (each site on its own node; the server is given the names only).

A transport offers ``names``, ``description``, ``fit(name, weights, round) -> (weights, rows or None)`` (or None
when the site sent no update: it is dropped from the round as ``federated.min_available`` allows),
``evaluate(name, weights, split) -> counts or None`` and ``privacy(name) -> dict or None``.

The report (``federated`` section): the validation curve per round (pooled and per site), test accuracy and the
``data.sensitive`` gaps pooled and per site from counts, and under ``privacy:`` ε per site (``privacy`` section)
with the statement of what a person's guarantee is and what the server sees.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from tfresp.errors import ConfigError
from tfresp.federated import schema

log = logging.getLogger("tfresp")


class LocalSites:
    """Simulation transport: each site is a :class:`~tfresp.federated.site.Site` in this process (it alone reads
    its file). The server-side code sees only this object's four calls."""

    def __init__(self, config):
        from tfresp.federated.site import Site

        missing = [s.name for s in config.federated.sites if s.source is None]
        if missing:
            raise ConfigError([("federated.sites", missing, "these sites have no source: a simulation runs every "
                                "site in this process and needs each site's file (in a deployment each node is "
                                "given its own). Remedy: give every site its source")])
        self._sites = {s.name: Site(s.name, s.source, config) for s in config.federated.sites}
        self.names = list(self._sites)
        self.description = "sites simulated in-process (each site reads only its own file)"

    def fit(self, name, weights, rnd):
        return self._sites[name].fit(weights, rnd)

    def evaluate(self, name, weights, split):
        return self._sites[name].evaluate(weights, split)

    def privacy(self, name):
        return self._sites[name].privacy()


# -- counts -> metrics ------------------------------------------------------------------------------
def _sum_counts(parts: List[Optional[dict]]) -> Optional[dict]:
    parts = [p for p in parts if p]
    if not parts:
        return None
    out = {"rows": sum(p["rows"] for p in parts), "loss_sum": sum(p["loss_sum"] for p in parts),
           "confusion": np.sum([np.asarray(p["confusion"]) for p in parts], axis=0).tolist()}
    if all("groups" in p for p in parts):
        groups: Dict[str, Dict[str, np.ndarray]] = {}
        for p in parts:
            for attr, cells in p["groups"].items():
                for g, c in cells.items():
                    cur = groups.setdefault(attr, {}).get(g)
                    groups[attr][g] = np.asarray(c) if cur is None else cur + np.asarray(c)
        out["groups"] = {a: {g: c.tolist() for g, c in cells.items()} for a, cells in groups.items()}
    return out


def metrics_from_counts(counts: Optional[dict], classes: List[str]) -> Optional[dict]:
    """Accuracy, loss, per-class rates and (binary) the sensitive-group gaps from summed counts."""
    from tfresp.fairness.metrics import gaps_from_counts

    if not counts or not counts["rows"]:
        return None
    conf = np.asarray(counts["confusion"], np.float64)
    n = conf.sum()
    out = {"rows": int(n), "accuracy": float(np.trace(conf) / n), "loss": float(counts["loss_sum"] / n),
           "confusion": counts["confusion"], "classes": classes}
    if len(classes) == 2:
        tp, fn, fp = conf[1, 1], conf[1, 0], conf[0, 1]
        out["positive_class"] = classes[1]
        out["recall"] = float(tp / (tp + fn)) if tp + fn else None
        out["precision"] = float(tp / (tp + fp)) if tp + fp else None
    if counts.get("groups"):
        out["fairness"] = {a: gaps_from_counts(cells) for a, cells in counts["groups"].items()}
    return out


# -- the rounds ------------------------------------------------------------------------------------
def train_sites(config, transport, core) -> dict:
    """Run ``federated.rounds`` over ``transport``'s sites from ``core``'s initial weights (set to the final
    global weights). Returns the history and the server state (no rows: counts and weights only)."""
    from tfresp.federated.train import Server, on_round

    cfg = config.federated
    names = list(transport.names)
    dp = config.privacy is not None
    server = Server(cfg, len(names), [np.array(w) for w in core.get_weights()], config.seed)
    per_site_curve = {n: [] for n in names}
    for rnd in range(1, cfg.rounds + 1):
        t0 = time.perf_counter()
        on_round("start", rnd, server.weights)
        jobs = server.jobs()
        local = {}
        for k, _seed in jobs:
            res = transport.fit(names[k], server.weights, rnd)
            if res is None:  # the site sent no update (a node that died): federated.min_available decides
                continue
            w, rows = res
            # under DP the sites send no row count: equal weights (a row count would be released outside ε)
            local[k] = (w, 1 if (dp or rows is None) else int(rows))
        weights = server.finish_round(rnd, jobs, local)
        val = {n: transport.evaluate(n, weights, "validation") for n in names}
        pooled = metrics_from_counts(_sum_counts(list(val.values())), schema.classes(config))
        server.history["val_loss"].append(pooled["loss"] if pooled else None)
        server.history["val_accuracy"].append(pooled["accuracy"] if pooled else None)
        for n in names:
            m = metrics_from_counts(val[n], schema.classes(config))
            per_site_curve[n].append(None if m is None else {"round": rnd, "val_loss": m["loss"],
                                                            "val_accuracy": m["accuracy"]})
        server.seconds += time.perf_counter() - t0
        on_round("end", rnd, weights)
    core.set_weights(server.weights)
    return {"server": server, "per_site_curve": per_site_curve, "names": names}


def statement(sites: Dict[str, dict], rounds: int) -> str:
    eps = ", ".join(f"{n}: ε={p['epsilon']:.3g} at δ={p['delta']:.1e}" for n, p in sites.items())
    return (
        "Each site trained with example-level DP-SGD on its own rows (its own secret Poisson sampling at rate "
        "q = batch/rows, per-example gradient clipping, Gaussian noise, its own accountant composing every local "
        f"step of every round it joined; rounds planned: {rounds}). Per site ({eps}): adding or removing ONE person's "
        "row in that site's file changes the distribution of everything that site sent (its model updates, hence "
        "the global model and every later round) by at most that (ε, δ). A person whose rows are in several sites' "
        "files is protected by the composition of those sites' guarantees (at most the sum of their ε and of their "
        "δ); several rows of one person in one site: group privacy. What the server sees: each site's DP-noised model update (no "
        "secure aggregation in this simulation); the global model and everything computed from the updates are "
        "post-processing. Not covered by ε (public or held out): the declared schema (data.categories, "
        "data.numeric_ranges: no statistic was fitted on rows); each site's training-row count enters its sampling "
        "rate and step count, which the report gives (treated as public, as in central DP-SGD), although updates "
        "are averaged with equal site weights and no row count is sent; the validation and test rows are held out "
        "from training and their evaluation counts (accuracy, group cells, the validation curve) are released as "
        "in central DP runs, so their sizes are public; which sites took part in each round is the server's public "
        "choice.")


def report_section(config, transport, trained: dict, core) -> dict:
    """The ``federated`` section (and, under privacy, the ``privacy`` claim) of a sites run."""
    server, names = trained["server"], trained["names"]
    classes = schema.classes(config)
    w = [np.array(x) for x in core.get_weights()]
    test = {n: transport.evaluate(n, w, "test") for n in names}
    hist = server.history
    sec = {"mode": "sites", "sites": names, "rounds": server.rounds_done, "rounds_planned": config.federated.rounds,
           "clients_run": transport.description, "clients_per_round": config.federated.per_round(),
           "local_epochs": config.federated.local_epochs, "local_batch_size": config.federated.local_batch_size,
           "aggregation": "FedAvg (Flower strategy), " + ("equal site weights (DP: no row counts sent)"
                                                          if config.privacy is not None else
                                                          "weighted by each site's training rows"),
           "participation": [{"round": r, "sites": n} for r, n in zip(hist["round"], hist["participants"])],
           "dropped": [{"round": r, "sites": [names[k] for k in d]} for r, d in zip(hist["round"], hist["dropped"])
                       if d],
           "curve": [{"round": r, "val_loss": l, "val_accuracy": a}
                     for r, l, a in zip(hist["round"], hist["val_loss"], hist["val_accuracy"])],
           "curve_per_site": trained["per_site_curve"],
           "test": {"pooled": metrics_from_counts(_sum_counts(list(test.values())), classes),
                    "per_site": {n: metrics_from_counts(test[n], classes) for n in names}},
           "evaluation_note": "each site evaluated the global model on its own held-out test rows and sent counts "
                              "only (label x prediction, per data.sensitive group); the server summed them",
           "preprocessing": "declared schema only (data.categories, data.numeric_ranges); nothing fitted on rows",
           "seconds": server.seconds,
           "not_run": ["membership-inference audit", "monitor reference", "SavedModel serving export"]}
    if config.privacy is not None:
        per_site = {n: transport.privacy(n) for n in names}
        priv = {"level": "example (per site)", "mechanism": "DP-SGD at every site (Poisson sampling, per-example "
                "clipping, Gaussian noise), FedAvg of the noised updates",
                "adjacency": "add/remove one row in one site's file", "sites": per_site,
                "epsilon": max(p["epsilon"] for p in per_site.values()),
                "delta": max(p["delta"] for p in per_site.values()),
                "epsilon_is": "the largest per-site ε (each site's guarantee covers its own file)",
                "target_epsilon": config.privacy.target_epsilon, "accountant": config.privacy.accountant}
        priv["statement"] = statement(per_site, config.federated.rounds)
        sec["privacy"] = {k: priv[k] for k in ("epsilon", "delta", "level")}
        sec["privacy_claim"] = priv
    return sec


def run_sites(config, target: Path, *, overwrite: bool = False, quiet: bool = False, resume: bool = False,
              transport=None) -> dict:
    """A whole sites run into ``target`` (staged, committed atomically). ``transport``: default
    :class:`LocalSites`. Returns ``{model, history, metrics, report, run_dir, paths}``."""
    from tfresp.report.environment import config_hash, versions
    from tfresp.run import rundir
    from tfresp.run.io import atomic_write

    if resume:
        raise ConfigError([("--resume", True, "a sites run cannot be resumed yet; start it again")])
    rundir.check_target(target, overwrite, False)
    import tf_keras as keras

    keras.utils.set_random_seed(config.seed)
    t0 = time.perf_counter()
    with rundir.locked(target) as run_id:
        transport = transport if transport is not None else LocalSites(config)
        pre = schema.preprocessor(config)
        core = schema.build_core(config, pre)
        trained = train_sites(config, transport, core)
        sec = report_section(config, transport, trained, core)
        claim = sec.pop("privacy_claim", None)
        hist = trained["server"].history
        report = {"schema_version": "sites-1", "run": {"name": config.name, "seed": config.seed,
                                                       "config_hash": config_hash(config.to_dict()),
                                                       "versions": versions(), "config": config.to_dict()},
                  "data": {"kind": "tabular", "features": schema.feature_columns(config), "classes":
                           schema.classes(config), "sensitive": list(config.data.sensitive),
                           "sites": {s.name: {"source": "held by the site (not read by the server)"}
                                     for s in config.federated.sites}},
                  "model": {"kind": config.model.kind, "parameters": int(core.count_params())},
                  "training": {"history": {k: hist[k] for k in ("round", "val_loss", "val_accuracy")},
                               "seconds": time.perf_counter() - t0},
                  "evaluation": {"test": sec["test"]["pooled"]},
                  "federated": sec, "privacy": claim}
        stage = rundir.staging_dir(target, run_id)
        try:
            (stage / "config.yaml").write_text(config.to_yaml())
            pre.save(stage / "preprocessing")
            core.save(stage / "model.keras")
            atomic_write(stage / "report.json", json.dumps(_plain(report), indent=2, allow_nan=False))
            atomic_write(stage / "report.md", markdown(report))
            final = rundir.commit(stage, target, overwrite)
        except BaseException:
            rundir.discard(stage)
            raise
    paths = {"report_json": str(final / "report.json"), "report_md": str(final / "report.md"),
             "model": str(final / "model.keras"),
             "config": str(final / "config.yaml")}
    metrics = dict(sec["test"]["pooled"] or {})
    return {"model": core, "history": {k: hist[k] for k in ("round", "val_loss", "val_accuracy")},
            "metrics": metrics, "report": report, "run_dir": final, "paths": paths}


def markdown(report: dict) -> str:
    """A short human-readable report of a sites run: test metrics pooled and per site, the curve, ε per site."""
    fed, priv = report["federated"], report.get("privacy")

    def fmt(v):
        return "-" if v is None else f"{v:.4f}"

    lines = [f"# {report['run']['name']}: federated run over {len(fed['sites'])} sites", "",
             f"{fed['rounds']} of {fed['rounds_planned']} rounds; {fed['aggregation']}; {fed['clients_run']}.",
             f"Preprocessing: {fed['preprocessing']}.", "", "## Test (each site's held-out rows, counts only)", ""]
    attrs = list(report["data"]["sensitive"])
    head = "| | rows | accuracy |" + "".join(f" {a} DP diff | {a} EO diff |" for a in attrs)
    lines += [head, "|" + "---|" * (3 + 2 * len(attrs))]
    rows = [("pooled", fed["test"]["pooled"])] + list(fed["test"]["per_site"].items())
    for name, m in rows:
        if m is None:
            lines.append(f"| {name} | 0 | - |" + " - | - |" * len(attrs))
            continue
        cells = ""
        for a in attrs:
            gaps = ((m.get("fairness") or {}).get(a) or {}).get("gaps") or {}
            cells += f" {fmt(gaps.get('demographic_parity_difference'))} |" \
                     f" {fmt(gaps.get('equal_opportunity_difference'))} |"
        lines.append(f"| {name} | {m['rows']} | {fmt(m['accuracy'])} |{cells}")
    lines += ["", "## Validation curve (pooled)", "", "| round | val_loss | val_accuracy |", "|---|---|---|"]
    lines += [f"| {c['round']} | {fmt(c['val_loss'])} | {fmt(c['val_accuracy'])} |" for c in fed["curve"]]
    if fed.get("dropped"):
        lines += ["", "Rounds that lacked a site: " + "; ".join(f"round {d['round']}: {', '.join(d['sites'])}"
                                                               for d in fed["dropped"])]
    if priv:
        lines += ["", "## Privacy (example-level DP-SGD at every site)", "", "| site | ε | δ | σ | q | steps |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {p['epsilon']:.4g} | {p['delta']:.1e} | {p['noise_multiplier']:.4g} | "
                  f"{p['sampling_rate']:.4g} | {p['steps']} |" for n, p in priv["sites"].items()]
        lines += ["", priv["statement"]]
    lines += ["", "Not run in a sites run: " + ", ".join(fed["not_run"]) + "."]
    return "\n".join(lines) + "\n"


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
