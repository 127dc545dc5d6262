"""The ServerApp's site transport in a deployment (``federated.sites``): each site is one SuperNode, reached over the
Flower grid by its name; the server process holds the names and node ids only (no path, no rows).

It offers what :mod:`tfresp.federated.sites_run` asks of a transport (``names``, ``description``, ``fit``,
``evaluate``, ``privacy``) plus ``fit_round`` — every sampled site in one batch of messages, or, with
``federated.secure_aggregation``, one SecAgg+ round (:func:`tfresp.federated.secagg.secure_round`) whose result is
only the sum (:class:`tfresp.federated.train.SecureSum`). Evaluation asks every site at once for a split and keeps
the answers for the other names of the same call sequence.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Dict, List, Optional

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

log = logging.getLogger("tfresp")


def site_nodes(grid, names: List[str], timeout: float) -> Dict[str, int]:
    """``{site name: node id}``: waits for one SuperNode per site, each naming a different site of the run."""
    t0 = time.monotonic()
    while len(list(grid.get_node_ids())) < len(names):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"only {len(list(grid.get_node_ids()))} of {len(names)} site SuperNodes connected "
                               f"within {timeout:g} s")
        time.sleep(0.5)
    msgs = [Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=n, message_type="query")
            for n in sorted(grid.get_node_ids())]
    found: Dict[str, int] = {}
    for reply in grid.send_and_receive(msgs, timeout=timeout):
        if not reply.has_content():
            raise RuntimeError(f"SuperNode {reply.metadata.src_node_id} failed the query: {reply.error.reason}")
        name = str(reply.content["config"]["site"])
        if name in found:
            raise RuntimeError(f"two SuperNodes say they hold site {name!r}")
        found[name] = reply.metadata.src_node_id
    if sorted(found) != sorted(names):
        raise RuntimeError(f"SuperNodes hold sites {sorted(found)}; the run's federated.sites are {sorted(names)}")
    return {n: found[n] for n in names}


def secure_for(config):
    """The SecAgg+ settings of a deployed sites run: ``federated.secure_aggregation`` as given — ``false`` turns it
    off —, and Flower's defaults when the key is absent (secure aggregation is on by default for sites
    deployments)."""
    from tfresp.federated.config import SecureAggregationConfig

    fed = config.federated
    if "secure_aggregation" not in fed.model_fields_set:
        return SecureAggregationConfig()
    return fed.secure_aggregation


def _digest(weights) -> str:
    h = hashlib.sha1()
    for w in weights:
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


class GridSites:
    def __init__(self, grid, nodes: Dict[str, int], timeout: float, secure=None, dp: bool = False):
        self.grid, self.nodes, self.timeout, self.dp = grid, dict(nodes), timeout, dp
        self.names = list(nodes)
        self.sa = secure
        self.secure = None
        how = "each round's updates are averaged in the ServerApp"
        if secure is not None:
            how = "secure aggregation (SecAgg+): the ServerApp unmasks only the sum of the sites' updates"
            self.secure = {"protocol": "SecAgg+ (Flower secaggplus_mod on each SuperNode, SecAggPlusWorkflow in the "
                                       "ServerApp)", **secure.model_dump()}
            if dp:
                self.secure["max_weight"] = 1.0  # equal site weights under DP
        self.description = (f"Flower deployment: {len(nodes)} SuperNodes, one per site; each site's file reaches "
                            f"only its node (node config); the ServerApp was given the site names only; {how}")
        self._eval: Dict[tuple, Dict[str, Optional[dict]]] = {}
        self._privacy: Dict[str, dict] = {}

    # -- training -------------------------------------------------------------------------------------
    def fit_round(self, names: List[str], weights, rnd: int):
        """Every site in ``names`` trains from ``weights``: ``{name: (weights, rows or None)}`` for the sites that
        answered, or a :class:`~tfresp.federated.train.SecureSum` over names under secure aggregation."""
        if self.sa is not None:
            return self._secure(names, weights, rnd)
        msgs = [Message(RecordDict({"arrays": ArrayRecord(numpy_ndarrays=[np.asarray(w) for w in weights]),
                                    "config": ConfigRecord({"round": int(rnd)})}),
                        dst_node_id=self.nodes[n], message_type="train", group_id=str(rnd)) for n in names]
        by_node = {nid: n for n, nid in self.nodes.items()}
        out = {}
        for reply in self.grid.send_and_receive(msgs, timeout=self.timeout):
            name = by_node.get(reply.metadata.src_node_id)
            if not reply.has_content():
                log.warning("federated round %d: site %s sent no update: %s", rnd, name, reply.error.reason)
                continue
            cfg = reply.content["config"]
            self._keep_privacy(name, cfg)
            rows = int(cfg["rows"])
            out[name] = (reply.content["arrays"].to_numpy_ndarrays(), None if rows < 0 else rows)
        return out

    def _secure(self, names, weights, rnd):
        from tfresp.federated.secagg import secure_round
        from tfresp.federated.train import SecureSum

        sa = self.sa.model_copy(update={"max_weight": 1.0}) if self.dp else self.sa
        index = {n: i for i, n in enumerate(self.names)}
        update, inside, rows, replies = secure_round(self.grid, {self.nodes[n]: [(index[n], 0)] for n in names}, rnd,
                                                     weights, sa, self.timeout, keep_replies=True)
        by_node = {nid: n for n, nid in self.nodes.items()}
        for nid, rec in replies.items():
            self._keep_privacy(by_node.get(nid), rec)
        inside_names = [by_node[nid] for nid in inside]
        if update is None:
            return SecureSum(None, inside_names, None)
        return SecureSum([np.asarray(w) + u.astype(np.asarray(w).dtype) for w, u in zip(weights, update)],
                         inside_names, None if self.dp else rows)

    def fit(self, name, weights, rnd):
        res = self.fit_round([name], weights, rnd)
        return res.get(name) if isinstance(res, dict) else None

    # -- evaluation, privacy ----------------------------------------------------------------------------
    def evaluate(self, name: str, weights, split: str) -> Optional[dict]:
        key = (split, _digest(weights))
        if key not in self._eval:
            self._eval = {}  # keep the latest weights' answers only
            msgs = [Message(RecordDict({"arrays": ArrayRecord(numpy_ndarrays=[np.asarray(w) for w in weights]),
                                        "config": ConfigRecord({"split": split})}),
                            dst_node_id=nid, message_type="evaluate") for nid in self.nodes.values()]
            by_node = {nid: n for n, nid in self.nodes.items()}
            got: Dict[str, Optional[dict]] = {n: None for n in self.names}
            for reply in self.grid.send_and_receive(msgs, timeout=self.timeout):
                n = by_node.get(reply.metadata.src_node_id)
                if reply.has_content():
                    got[n] = json.loads(str(reply.content["config"]["counts"]))
                else:
                    log.warning("site %s did not evaluate (%s): %s", n, split, reply.error.reason)
            self._eval[key] = got
        return self._eval[key].get(name)

    def privacy(self, name: str) -> Optional[dict]:
        """The site's DP account, asked of its node; a site that no longer answers gives the account it sent with
        its last update (it has not trained since, so that is its final ε)."""
        msg = Message(RecordDict({"config": ConfigRecord({"ask": "privacy"})}), dst_node_id=self.nodes[name],
                      message_type="query")
        for reply in self.grid.send_and_receive([msg], timeout=self.timeout):
            if reply.has_content():
                self._keep_privacy(name, reply.content["config"])
        return self._privacy.get(name)

    def _keep_privacy(self, name, rec) -> None:
        if name is not None and rec is not None and str(rec.get("privacy", "")):
            self._privacy[name] = json.loads(str(rec["privacy"]))
