"""A site's SuperNode (``federated.sites`` deployed): the ClientApp handlers that run one
:class:`tfresp.federated.site.Site`.

The node is started with ``--node-config 'site="NAME" site-file="/path/to/its/file"'``: the file reaches this node
only, through its own node config; the run config (shared with the server) carries the tfresp YAML with every site's
source replaced by a placeholder. Messages:

* ``query`` — ``{}``: the node's site name (its file is never named); ``{"ask": "privacy"}``: the site's DP account.
* ``train`` — the global weights: plain (the site's new weights and rows, or rows -1 under DP) or, with the SecAgg+
  record, the site's update (local − global) for ``secaggplus_mod`` to mask, weighted by its rows (1 under DP: the
  sites are averaged with equal weights, as in simulation).
* ``evaluate`` — the global weights and a split: the site's counts (:meth:`Site.evaluate`).

Flower starts a fresh ClientApp process per message, so what must outlive one — the site's DP-SGD state (steps taken,
datasets issued) and the number of rounds it trained — is kept in the node's run state (``context.state``, which
never leaves the node) and restored into each new process's :class:`Site`. The secret noise seed is not kept: each
process draws a fresh one, which is as secret.
"""
from __future__ import annotations

import functools
import json
import logging
from typing import List

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

STATE = "tfresp.site"
log = logging.getLogger("tfresp")


@functools.lru_cache(maxsize=2)
def _load(config_path: str, name: str, source: str):
    from tfresp.config import load_config
    from tfresp.federated.site import Site

    config = load_config(config_path)
    names = [s.name for s in config.federated.sites]
    if name not in names:
        raise ValueError(f"this node's site {name!r} is not among the run's federated.sites {names}")
    return Site(name, source, config)


def _site(context: Context):
    nc = context.node_config
    site = _load(str(context.run_config["config"]), str(nc["site"]), str(nc["site-file"]))
    rec = context.state.config_records.get(STATE)
    if rec is not None:  # restore what an earlier message's process did at this node
        site.rounds_fit = int(rec["rounds_fit"])
        if site.config.privacy is not None:
            site._model()
            site.dp.set_state(json.loads(str(rec["dp"])))
    return site


def _save(site, context: Context) -> None:
    dp = json.dumps(site.dp.get_state()) if site.dp is not None else "{}"
    context.state.config_records[STATE] = ConfigRecord({"rounds_fit": int(site.rounds_fit), "dp": dp})


def _privacy(site) -> str:
    p = site.privacy()
    return json.dumps(p) if p is not None else ""


def query(msg: Message, context: Context) -> Message:
    ask = str(msg.content["config"].get("ask", "")) if "config" in msg.content.config_records else ""
    out = {"site": str(context.node_config["site"])}
    if ask == "privacy":
        out["privacy"] = _privacy(_site(context))
    return Message(RecordDict({"config": ConfigRecord(out)}), reply_to=msg)


def train(msg: Message, context: Context) -> Message:
    from tfresp.federated import secagg

    site = _site(context)
    if secagg.is_secure(msg):
        weights, jobs, max_weight, clip = secagg.instructions(msg)
        rnd = int(msg.content["fitins.config"]["round"])
        local, rows = site.fit(weights, rnd)
        _save(site, context)
        weight = 1 if rows is None else int(rows)  # under DP: equal site weights, no row count
        if weight > max_weight:
            raise ValueError(f"`federated.secure_aggregation.max_weight`: site {site.name!r} trains on {weight} rows, "
                             f"more than max_weight={max_weight:g}. Remedy: raise max_weight to at least the largest "
                             "site's training rows")
        update = [np.asarray(a, np.float64) - np.asarray(b, np.float64) for a, b in zip(local, weights)]
        peak = max(float(np.max(np.abs(u))) for u in update) * weight / max_weight
        if peak > clip:
            log.warning("SecAgg+: site %s's scaled update reaches %.3g, beyond clipping_range=%g: coordinates are "
                        "clipped before masking", site.name, peak, clip)
        reply = secagg.reply(msg, update, weight)
        if rows is None and site.config.privacy is not None:  # the site's ε (public, with its sampling rate)
            reply.content.config_records["tfresp.privacy"] = ConfigRecord({"privacy": _privacy(site)})
        return reply
    weights = msg.content["arrays"].to_numpy_ndarrays()
    rnd = int(msg.content["config"]["round"])
    local, rows = site.fit(weights, rnd)
    _save(site, context)
    cfg = {"rows": -1 if rows is None else int(rows)}
    if site.config.privacy is not None:
        cfg["privacy"] = _privacy(site)
    return Message(RecordDict({"arrays": ArrayRecord(numpy_ndarrays=list(local)), "config": ConfigRecord(cfg)}),
                   reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    site = _site(context)
    weights: List[np.ndarray] = msg.content["arrays"].to_numpy_ndarrays()
    counts = site.evaluate(weights, str(msg.content["config"]["split"]))
    return Message(RecordDict({"config": ConfigRecord({"counts": json.dumps(counts)})}), reply_to=msg)
