"""The Flower App of a deployed tfresp federated run: a ServerApp (on the SuperLink's side) and a ClientApp (on each
SuperNode). Started by :mod:`tfresp.federated.deploy` (or by hand with ``flwr run``, see README).

ServerApp: runs the whole tfresp job (:func:`tfresp.fit`: data, concerns, report, export, per-round checkpoints)
with the clients reached through the Flower grid instead of in-process: each round, the same
:class:`tfresp.federated.train.Server` as in simulation samples the clients, sends the global weights to the
SuperNodes that host them, and aggregates (clipping + noise under ``federated.dp``) the local weights they return.

ClientApp: a SuperNode with node config ``partition-id=j num-partitions=M`` hosts the clients ``k`` with
``k % M == j`` of the run's partition (:func:`tfresp.federated.partition.partition`, a public function of the config)
and keeps only those rows; it trains the run's Keras model (every loss term of the concerns attached) on one client's
rows at a time with :func:`tfresp.federated.train.local_fit` — the code the simulation runs.

A SuperNode with node config ``site=NAME site-file=PATH`` is one site of a ``federated.sites`` run
(:mod:`tfresp.federated.site_node`); the ServerApp then runs :func:`tfresp.federated.sites_run.run_sites` over
:class:`tfresp.federated.grid_sites.GridSites`. With ``federated.secure_aggregation`` the train handler runs under
Flower's ``secaggplus_mod`` (:mod:`tfresp.federated.secagg`) and each round is a SecAgg+ round.

Run config keys (``[tool.flwr.app.config]``): ``config`` (the tfresp YAML, an absolute path), ``out`` (run
directory), ``overwrite``, ``resume``, ``nodes`` (SuperNodes to wait for), ``timeout`` (seconds per wait).
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import time
from typing import Dict, List

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

log = logging.getLogger("tfresp")
server_app = ServerApp()
client_app = ClientApp()


def _nodes(grid: Grid, want: int, timeout: float) -> Dict[int, int]:
    """``{partition-id: node id}`` of ``want`` connected SuperNodes (asked with a ``query`` message)."""
    t0 = time.monotonic()
    while len(list(grid.get_node_ids())) < want:
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"only {len(list(grid.get_node_ids()))} of {want} SuperNodes connected "
                               f"within {timeout:g} s")
        time.sleep(0.5)
    msgs = [Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=n, message_type="query")
            for n in sorted(grid.get_node_ids())]
    found = {}
    for reply in grid.send_and_receive(msgs, timeout=timeout):
        if not reply.has_content():
            raise RuntimeError(f"SuperNode {reply.metadata.src_node_id} failed the query: {reply.error.reason}")
        cfg = reply.content["config"]
        if int(cfg["num-partitions"]) != want:
            raise RuntimeError(f"SuperNode {reply.metadata.src_node_id} has num-partitions="
                               f"{cfg['num-partitions']}, the run expects {want}")
        found[int(cfg["partition-id"])] = reply.metadata.src_node_id
    if sorted(found) != list(range(want)):
        raise RuntimeError(f"SuperNodes report partition ids {sorted(found)}; expected 0..{want - 1} once each")
    return found


def grid_transport(grid: Grid, nodes: Dict[int, int], timeout: float, secure=None):
    """A :data:`tfresp.federated.train.Transport` over the Flower grid: one message per SuperNode and round.

    ``secure``: a ``federated.secure_aggregation`` section: each round is Flower's SecAgg+ protocol
    (:func:`tfresp.federated.secagg.secure_round`) and the transport returns only the sum
    (:class:`tfresp.federated.train.SecureSum`)."""
    m = len(nodes)

    def run(rnd: int, weights: List[np.ndarray], jobs):
        by_node: Dict[int, list] = {}
        for k, seed in jobs:
            by_node.setdefault(k % m, []).append((k, seed))
        if secure is not None:
            return _secure(rnd, weights, by_node)
        msgs = []
        for part, node_jobs in by_node.items():
            content = RecordDict({"arrays": ArrayRecord(numpy_ndarrays=list(weights)),
                                  "config": ConfigRecord({"round": rnd, "clients": [k for k, _ in node_jobs],
                                                          "seeds": [s for _, s in node_jobs]})})
            msgs.append(Message(content, dst_node_id=nodes[part], message_type="train", group_id=str(rnd)))
        out = {}
        # a SuperNode that failed, died or did not answer within ``timeout`` sends no update: its clients are left
        # out of ``out``, and the Server completes the round without them or stops resumably (min_available)
        for reply in grid.send_and_receive(msgs, timeout=timeout):
            if not reply.has_content():
                log.warning("federated round %d: SuperNode %s sent no update: %s", rnd, reply.metadata.src_node_id,
                            reply.error.reason)
                continue
            rows = reply.content["config"]
            for key, rec in reply.content.array_records.items():
                k = int(key[len("client-"):])
                out[k] = (rec.to_numpy_ndarrays(), int(rows[key]))
        return out

    def _secure(rnd, weights, by_node):
        from tfresp.federated.secagg import secure_round
        from tfresp.federated.train import SecureSum

        part_of = {nid: part for part, nid in nodes.items()}
        update, inside, rows = secure_round(grid, {nodes[p]: js for p, js in by_node.items()}, rnd, weights,
                                            secure, timeout)
        clients = [k for nid in inside for k, _ in by_node[part_of[nid]]]
        if update is None:
            return SecureSum(None, clients, None)
        return SecureSum([np.asarray(w) + u.astype(np.asarray(w).dtype) for w, u in zip(weights, update)],
                         clients, rows)

    if secure is not None:
        run.secure = {"protocol": "SecAgg+ (Flower secaggplus_mod on each SuperNode, SecAggPlusWorkflow in the "
                                  "ServerApp)", **secure.model_dump()}
    return run


def _log_opens(path: str) -> None:
    """Append the path of every file this process opens to ``path`` (a Python audit hook; for tests that show the
    ServerApp never opens a site's file)."""
    fh = open(path, "a", buffering=1)

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            fh.write(os.fsdecode(args[0]) + "\n")

    sys.addaudithook(hook)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    import tfresp
    from tfresp.federated.train import use_transport

    from tfresp.config import load_config

    rc = context.run_config
    timeout = float(rc["timeout"])
    if os.environ.get("TFRESP_SERVER_OPEN_LOG"):  # tests: record every file this ServerApp process opens
        _log_opens(os.environ["TFRESP_SERVER_OPEN_LOG"])
    config = load_config(str(rc["config"]))
    secure = config.federated.secure_aggregation
    if config.federated.sites:  # cross-silo: one SuperNode per site; this process knows the site names only
        from tfresp.federated.grid_sites import GridSites, secure_for, site_nodes
        from tfresp.federated.sites_run import run_sites
        from tfresp.run.rundir import resolve_out

        names = [s.name for s in config.federated.sites]
        transport = GridSites(grid, site_nodes(grid, names, timeout), timeout, secure_for(config),
                              config.privacy is not None)
        run_sites(config, resolve_out(str(rc["out"]), config.name), overwrite=bool(rc["overwrite"]),
                  resume=bool(rc["resume"]), quiet=True, transport=transport)
        return
    nodes = _nodes(grid, int(rc["nodes"]), timeout)
    where = (f"Flower deployment: {len(nodes)} SuperNodes (clients k with k mod {len(nodes)} = partition-id), "
             + ("secure aggregation (SecAgg+): the ServerApp unmasks only the sum of the nodes' updates"
                if secure is not None else "aggregation in the ServerApp"))
    with use_transport(grid_transport(grid, nodes, timeout, secure), where):
        tfresp.fit(str(rc["config"]), out=str(rc["out"]), overwrite=bool(rc["overwrite"]),
                   resume=bool(rc["resume"]), quiet=True)


@client_app.query()
def query(msg: Message, context: Context) -> Message:
    nc = context.node_config
    if "site" in nc:  # a site's node: it names its site (never its file)
        from tfresp.federated import site_node

        return site_node.query(msg, context)
    return Message(RecordDict({"config": ConfigRecord({"partition-id": int(nc["partition-id"]),
                                                       "num-partitions": int(nc["num-partitions"])})}),
                   reply_to=msg)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    from tfresp.federated import site_node

    return site_node.evaluate(msg, context)


class _Node:
    """What one SuperNode holds: the run's model and the rows of its own clients only."""

    def __init__(self, config_path: str, part: int, n_parts: int):
        import tempfile

        from tfresp.run.builder import RunContext, plan, set_seed
        from tfresp.config import load_config
        from tfresp.data.dataset import prepare
        from tfresp.federated.partition import partition
        from tfresp.federated.train import compile_local
        from tfresp.models.base import ResponsibleModel
        from tfresp.models.registry import build_core

        cfg = load_config(config_path)
        set_seed(cfg.seed)
        data = prepare(cfg)
        with tempfile.TemporaryDirectory(prefix="tfresp-node-") as tmp:
            ctx = RunContext(config=cfg, data=data, run_dir=tmp, quiet=True)
            ctx.core = build_core(cfg, data)
            ctx.model = ResponsibleModel(ctx.core)
            plan(ctx)  # the concerns' loss terms, as in the server's model
        train = data.train
        parts = partition(cfg.federated.clients, cfg.federated.partition, train.y, getattr(train, "frame", None),
                          cfg.seed)
        # this node's clients; every other row is dropped here, before any training
        self.rows = {k: (train.x[idx], train.y[idx], {n: v[idx] for n, v in ctx.train_extras.items()})
                     for k, idx in enumerate(parts) if k % n_parts == part}
        self.cfg, self.model, self.core = cfg.federated, ctx.model, ctx.core
        compile_local(self.model, self.cfg)


@functools.lru_cache(maxsize=2)
def _node(config_path: str, part: int, n_parts: int) -> _Node:
    """Flower starts one ClientApp process per message, so this cache only helps where a process serves several
    messages (Flower's ``process`` isolation, tests)."""
    return _Node(config_path, part, n_parts)


def _secure_mod(msg, ctx, call_next):
    from tfresp.federated.secagg import secure_mod

    return secure_mod(msg, ctx, call_next)


@client_app.train(mods=[_secure_mod])
def train(msg: Message, context: Context) -> Message:
    from tfresp.federated import secagg

    nc = context.node_config
    if "site" in nc:  # a site's node (federated.sites)
        from tfresp.federated import site_node

        return site_node.train(msg, context)
    node = _node(str(context.run_config["config"]), int(nc["partition-id"]), int(nc["num-partitions"]))
    if secagg.is_secure(msg):
        return _train_secure(node, msg, nc)
    weights = msg.content["arrays"].to_numpy_ndarrays()
    cfg = msg.content["config"]
    return _train_plain(node, msg, weights, zip(cfg["clients"], cfg["seeds"]), nc)


def _train_plain(node, msg, weights, jobs, nc) -> Message:
    from tfresp.federated.train import local_fit

    records, rows = {}, {}
    for k, seed in jobs:
        if k not in node.rows:
            raise ValueError(f"client {k} is not hosted by partition {nc['partition-id']}")
        x, y, extras = node.rows[k]
        records[f"client-{k}"] = ArrayRecord(numpy_ndarrays=local_fit(node.model, node.core, weights, x, y,
                                                                      extras, node.cfg, seed))
        rows[f"client-{k}"] = int(len(y))
    return Message(RecordDict({**records, "config": ConfigRecord(rows)}), reply_to=msg)


def _train_secure(node, msg, nc) -> Message:
    """SecAgg+: this node's clients train; one rows-weighted mean update (local − global) leaves the handler, and
    ``secaggplus_mod`` masks it before it leaves the node."""
    from tfresp.federated import secagg
    from tfresp.federated.train import local_fit

    weights, jobs, max_weight, clip = secagg.instructions(msg)
    acc, rows = None, 0
    for k, seed in jobs:
        if k not in node.rows:
            raise ValueError(f"client {k} is not hosted by partition {nc['partition-id']}")
        x, y, extras = node.rows[k]
        local = local_fit(node.model, node.core, weights, x, y, extras, node.cfg, seed)
        delta = [(np.asarray(a, np.float64) - np.asarray(b, np.float64)) * len(y) for a, b in zip(local, weights)]
        acc = delta if acc is None else [p + d for p, d in zip(acc, delta)]
        rows += len(y)
    if rows > max_weight:
        raise ValueError(f"`federated.secure_aggregation.max_weight`: this node trains on {rows} rows, more than "
                         f"max_weight={max_weight:g}; SecAgg+ would overflow its weight factor. Remedy: raise "
                         f"max_weight to at least the largest node's rows")
    update = [a / rows for a in acc]
    peak = max(float(np.max(np.abs(u))) for u in update) * rows / max_weight
    if peak > clip:
        log.warning("SecAgg+: this node's scaled update reaches %.3g, beyond clipping_range=%g: coordinates are "
                    "clipped before masking", peak, clip)
    return secagg.reply(msg, update, rows)
