"""Secure aggregation of a deployed round with Flower's SecAgg+ (``federated.secure_aggregation``).

Server side (in the ServerApp): :func:`secure_round` runs one round as Flower's own
:class:`flwr.server.workflow.SecAggPlusWorkflow` (setup → share keys → collect masked vectors → unmask) over the
grid; a small adapter stands in for the legacy strategy the workflow talks to (it names the round's nodes and their
instructions, and receives the unmasked aggregate). Flower's code does every cryptographic step.

Client side (on each SuperNode): :func:`secure_mod` wraps Flower's ``secaggplus_mod`` around the ClientApp's
``train`` handler for messages that carry the SecAgg+ record. The handler returns the node's mean update (local −
global weights, weighted by each of its clients' rows) with its row count as the weight; the mod quantizes and masks
it. After the mod, :func:`secure_mod` also blanks the plain ``num_examples`` field that Flower's legacy reply format
would otherwise carry beside the masked vector, so the server learns only the *sum* of rows (the weight factor is
inside the masked vector).

What the server sees per round: which nodes took part and which dropped out (the protocol needs it), the masked
vectors (uniform mod ``modulus_range`` to anyone without the masks), the key shares it must relay (encrypted for the
receiving node), and after unmasking only Σ_nodes rows_j·update_j / Σ rows_j and Σ rows_j. It does not see a node's
update or row count. Flower's SecAgg+ is the semi-honest variant: it assumes the server follows the protocol (a server
that lies about which nodes dropped out could ask for both kinds of key shares of one node) and that fewer than
``threshold`` nodes collude with it.
"""
from __future__ import annotations

import logging
import types
from typing import Dict, List, Tuple

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common import Code, FitIns, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS as RECORD
from flwr.compat.common import recorddict_compat as compat
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState

log = logging.getLogger("tfresp")

FITINS = "fitins.parameters"


class _Workflow(SecAggPlusWorkflow):
    """Flower's workflow, keeping its state: the nodes whose masked vector entered the sum, and the failures."""

    def __call__(self, grid, context) -> None:
        from flwr.server.workflow.secure_aggregation import secaggplus_workflow as wf

        state = self.state = WorkflowState()
        self.collected: set = set()
        self.factor_sum = None
        real = wf.factor_extract

        def spy(parameters):  # the unmask stage's sum of weight factors, which Flower does not keep
            factor, rest = real(parameters)
            self.factor_sum = int(factor)
            return factor, rest

        steps = (self.setup_stage, self.share_keys_stage, self.collect_masked_vectors_stage, self.unmask_stage)
        wf.factor_extract = spy
        try:
            for i, step in enumerate(steps):
                ok = step(grid, context, state)
                if ok and i < 2:
                    _forget_absent(state)
                if i == 2:  # the masked vectors that were summed: those nodes' updates are in the aggregate
                    self.collected = set(state.active_node_ids)
                if not ok:
                    return
        finally:
            wf.factor_extract = real


def _forget_absent(state) -> None:
    """After the setup and share-keys stages: a node that did not answer never took part in the key exchange (no
    public keys, or no key shares sent), so no other node masks with it and no node holds a share of its keys. Flower
    1.42 keeps it among the sampled nodes and, at unmask, asks the others for its key shares, which they do not have:
    every node fails and the round is lost (tests/federated/test_secagg.py shows it). Here it leaves the protocol:
    the round goes on with the nodes that did exchange keys; the threshold check still applies to them."""
    active = set(state.active_node_ids)
    state.sampled_node_ids = set(active)
    state.nid_to_neighbours = {n: nb & active for n, nb in state.nid_to_neighbours.items() if n in active}


class _Strategy:
    """What SecAggPlusWorkflow asks of a legacy strategy: the round's nodes and instructions, and the aggregate."""

    def __init__(self, fitins: Dict[int, FitIns]):
        self.fitins, self.aggregate = fitins, None

    def configure_fit(self, server_round, parameters, client_manager):
        return [(types.SimpleNamespace(node_id=nid), ins) for nid, ins in self.fitins.items()]

    def aggregate_fit(self, server_round, results, failures):
        # every result carries the same unmasked aggregate (Flower writes it into each); nothing per node
        self.aggregate = parameters_to_ndarrays(results[0][1].parameters) if results else None
        return None, {}


class _Recording:
    """The grid, keeping each node's plain ``tfresp.privacy`` record (a site's public DP account) from its replies."""

    def __init__(self, grid):
        self.grid, self.extra = grid, {}

    def get_node_ids(self):
        return self.grid.get_node_ids()

    def send_and_receive(self, messages, timeout=None):
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        for r in replies:
            if r.has_content() and "tfresp.privacy" in r.content.config_records:
                self.extra[r.metadata.src_node_id] = r.content.config_records["tfresp.privacy"]
        return replies


def secure_round(grid, node_jobs: Dict[int, List[Tuple[int, int]]], rnd: int, weights: List[np.ndarray], sa,
                 timeout: float, keep_replies: bool = False):
    """One SecAgg+ round over ``node_jobs`` ({node id: [(client, seed)]}).

    Returns (the rows-weighted mean update of the nodes whose masked vector entered the sum — None when the
    protocol halted —, those node ids, the sum of their rows) and, with ``keep_replies``, each node's plain
    ``tfresp.privacy`` record."""
    grid = _Recording(grid)
    params = ndarrays_to_parameters([np.asarray(w) for w in weights])
    fitins = {nid: FitIns(params, {"round": rnd, "clients": ",".join(str(k) for k, _ in jobs),
                                   "seeds": ",".join(str(s) for _, s in jobs), "max_weight": float(sa.max_weight),
                                   "clipping_range": float(sa.clipping_range)})
              for nid, jobs in node_jobs.items()}
    strategy = _Strategy(fitins)
    ctx = LegacyContext(Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
                        strategy=strategy)
    ctx.state.config_records["config"] = ConfigRecord({"current_round": rnd})
    ctx.state.array_records["parameters"] = compat.parameters_to_arrayrecord(params, keep_input=True)
    flow = _Workflow(sa.num_shares, sa.reconstruction_threshold, max_weight=float(sa.max_weight),
                     clipping_range=float(sa.clipping_range), quantization_range=int(sa.quantization_range),
                     modulus_range=int(sa.modulus_range), timeout=timeout)
    flow(grid, ctx)
    for failure in flow.state.failures:
        log.warning("federated round %d (SecAgg+): a SuperNode sent no reply: %s", rnd, failure)
    if strategy.aggregate is None:
        return (None, sorted(flow.collected), None) + ((grid.extra,) if keep_replies else ())
    # Σ rows of the summed nodes, from the sum of the quantized weight factors round(rows_j / max_weight · levels)
    rows = None if flow.factor_sum is None else \
        int(round(flow.factor_sum * float(sa.max_weight) / int(sa.quantization_range)))
    out = [np.asarray(u, dtype=np.float64) for u in strategy.aggregate], sorted(flow.collected), rows
    return out + ((grid.extra,) if keep_replies else ())


def secure_mod(msg: Message, ctx: Context, call_next) -> Message:
    """Flower's ``secaggplus_mod`` for messages that carry the SecAgg+ record; other messages pass through."""
    if RECORD not in msg.content.config_records:
        return call_next(msg, ctx)
    from flwr.client.mod import secaggplus_mod

    reply = secaggplus_mod(msg, ctx, call_next)
    if reply.has_content() and "fitres.num_examples" in reply.content.metric_records:
        # the node's row count travels inside the masked vector (its weight factor); the plain field would show it
        reply.content.metric_records["fitres.num_examples"] = MetricRecord({"num_examples": 0})
    return reply


def is_secure(msg: Message) -> bool:
    return FITINS in msg.content.array_records


def instructions(msg: Message):
    """(global weights, [(client, seed)], max_weight, clipping_range) of a SecAgg+ train message."""
    ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    cfg = ins.config
    clients = [int(k) for k in str(cfg["clients"]).split(",") if k != ""]
    seeds = [int(s) for s in str(cfg["seeds"]).split(",") if s != ""]
    return (parameters_to_ndarrays(ins.parameters), list(zip(clients, seeds)), float(cfg["max_weight"]),
            float(cfg["clipping_range"]))


def reply(msg: Message, update: List[np.ndarray], rows: int) -> Message:
    """The node's mean update as a legacy FitRes (what ``secaggplus_mod`` reads before masking it)."""
    res = FitRes(status=Status(code=Code.OK, message=""), parameters=ndarrays_to_parameters(update),
                 num_examples=int(rows), metrics={})
    return Message(compat.fitres_to_recorddict(res, keep_input=True), reply_to=msg)
