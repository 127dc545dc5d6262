"""Secure aggregation (Flower SecAgg+) in the deployed run: rounds go through Flower's own workflow and client mod
(driven here over an in-process grid that keeps each node's context, as a SuperNode does); the server's inbox holds
no individual update (a detector that finds them when the masks are switched off); the aggregate equals plain FedAvg
up to the quantization error, which is measured; DP-FedAvg with secure aggregation is refused."""
import copy

import numpy as np
import pytest
import yaml

pytest.importorskip("flwr")

import tfresp  # noqa: E402
from tests.conftest import tiny_adult  # noqa: E402

CFG = tiny_adult(federated={"clients": 3, "partition": "iid", "rounds": 2, "clients_per_round": 3,
                            "local_batch_size": 64, "local_learning_rate": 0.1},
                 export={"saved_model": False})
SECURE = {**CFG, "federated": {**CFG["federated"], "secure_aggregation": True}}
# 3,000 rows, 10 % validation: ~900 training rows per node; max_weight just above keeps the weight factor near 1
PRECISE = {**CFG, "federated": {**CFG["federated"], "secure_aggregation": {"max_weight": 1000}}}


class SecureGrid:
    """Delivers each message to the tfresp ClientApp (mods included) as node ``dst_node_id``, keeping one Context per
    node across messages (the SuperNode's run state, where secaggplus_mod keeps its keys). Records every reply the
    server receives, and each node's plain update before the mod masks it."""

    def __init__(self, cfg_path, node_ids):
        from flwr.app import Context, RecordDict

        self.node_ids = node_ids
        self.ctx = {n: Context(run_id=1, node_id=n, state=RecordDict(), run_config={"config": str(cfg_path)},
                               node_config={"partition-id": i, "num-partitions": len(node_ids)})
                    for i, n in enumerate(node_ids)}
        self.inbox, self.plain, self.drop = [], [], set()

    def get_node_ids(self):
        return list(self.node_ids)

    def send_and_receive(self, messages, timeout=None):
        from tfresp.federated import app

        replies = []
        for msg in messages:
            nid = msg.metadata.dst_node_id
            if nid in self.drop:
                continue  # a dead node: no reply (Flower's grid returns none within the timeout)
            # a real grid serializes every message: the node gets its own copy (the mod edits records in place)
            try:
                reply = copy.deepcopy(app.client_app(copy.deepcopy(msg), self.ctx[nid]))
            except Exception as exc:  # as a SuperNode does: the ClientApp's exception becomes an error reply
                from flwr.app import Error, Message

                reply = Message(Error(code=0, reason=repr(exc)), reply_to=msg)
            self.inbox.append(reply)
            replies.append(reply)
        return replies


def _write(tmp_path, cfg, name="fed.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(path, out, grid, secure):
    from tfresp.config import load_config
    from tfresp.federated.app import _nodes, grid_transport
    from tfresp.federated.train import use_transport

    sa = load_config(str(path)).federated.secure_aggregation if secure else None
    nodes = _nodes(grid, len(grid.node_ids), 10)
    with use_transport(grid_transport(grid, nodes, 60, sa), "secure grid"):
        return tfresp.fit(str(path), out=str(out), quiet=True)


def _record_plain(monkeypatch, grid):
    from tfresp.federated import secagg

    real = secagg.reply

    def spy(msg, update, rows):
        grid.plain.append(([np.array(u) for u in update], rows))
        return real(msg, update, rows)

    monkeypatch.setattr(secagg, "reply", spy)


def _visible(grid, sa):
    """(the best correlation between anything array-like the server received and any node's quantized plain update
    — ~1 if an update is in the clear, ~0 if every one is masked —, how many candidates had the update's size,
    the update's size d: a masked vector's correlation is ~N(0, 1/√d))."""
    from flwr.common import bytes_to_ndarray

    def decode(item):
        try:
            return bytes_to_ndarray(item)
        except Exception:  # a key, a ciphertext: not an array
            return None

    received = []
    for reply in grid.inbox:
        c = reply.content
        for rec in c.array_records.values():
            received.append([np.asarray(a.numpy()) for a in rec.values()])
        for rec in c.config_records.values():
            for v in rec.values():
                items = v if isinstance(v, list) else [v]
                arrays = [decode(i) for i in items if isinstance(i, bytes)]
                arrays = [a for a in arrays if a is not None]
                if arrays:
                    received.append(arrays)  # a list of arrays (Flower sends one masked array per layer)
                    received.extend([a] for a in arrays)
    best, compared, size = 0.0, 0, 1
    for update, rows in grid.plain:
        flat = np.concatenate([u.ravel() for u in update]) * rows / sa.max_weight
        size = flat.size
        for arrays in received:
            a = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in arrays]) if arrays else np.zeros(0)
            if a.size == flat.size + 1:  # Flower prepends the weight factor
                a = a[1:]
            if a.size == flat.size:
                compared += 1
                if np.std(a) > 0:
                    best = max(best, abs(float(np.corrcoef(a, flat)[0, 1])))
    return best, compared, size


def test_secure_round_hides_updates_and_matches_fedavg(tmp_path, identity, monkeypatch):
    from tfresp.config import load_config
    from tfresp.federated import train as ftrain

    sec, plain = _write(tmp_path, PRECISE, "sec.yaml"), _write(tmp_path, CFG, "plain.yaml")
    ends = []
    monkeypatch.setattr(ftrain, "on_round", lambda ev, rnd, w: ends.append([np.array(a) for a in w])
                        if (ev, rnd) == ("end", 1) else None)
    sa = load_config(str(sec)).federated.secure_aggregation
    grid = SecureGrid(sec, [11, 22, 33])
    _record_plain(monkeypatch, grid)
    res = _run(sec, tmp_path / "sec", grid, secure=True)
    fed = res.report["federated"]
    assert fed["secure_aggregation"]["applied"] is True and "CANNOT see one node's update" in \
        fed["secure_aggregation"]["statement"]
    assert fed["participation"] == [3, 3] and len(grid.plain) == 6  # 3 nodes x 2 rounds, one client each
    rows = sum(r for _, r in grid.plain[:3])
    assert fed["secure_aggregation"]["rows_per_round"] == [rows, rows]  # the server learns only the sum
    for reply in grid.inbox:  # no plain row count beside the masked vector
        rec = reply.content.metric_records.get("fitres.num_examples")
        assert rec is None or rec["num_examples"] == 0
    corr, compared, d = _visible(grid, sa)
    # every masked vector was looked at; none shows (6/√d: six standard deviations of a masked vector's correlation)
    assert compared >= 6 and corr < 6 / np.sqrt(d), (corr, compared, d)
    # the same rounds through plain FedAvg (same seeds, same local training): equal up to the quantization error
    ref = _run(plain, tmp_path / "plain", SecureGrid(plain, [11, 22, 33]), secure=False)
    assert len(ends) == 2  # round 1's global weights: secure, then plain
    err1 = max(float(np.max(np.abs(a - b))) for a, b in zip(*ends))
    step = 2 * sa.clipping_range / sa.quantization_range  # one quantization level, in scaled units
    # Σ_j (rows_j/max_weight · u_j + e_j) / Σ_j rows_j/max_weight with |e_j| < 1 level (stochastic rounding),
    # plus float32 round-off of the weights
    bound = 3 * step * sa.max_weight / rows + 1e-6
    assert 0 < err1 <= bound, (err1, bound)
    err2 = max(float(np.max(np.abs(a - b))) for a, b in zip(res.model.get_weights(), ref.model.get_weights()))
    print(f"SecAgg+ vs FedAvg max |Δw|: round 1 {err1:.3g} (bound {bound:.3g}), after round 2 {err2:.3g}; "
          f"test accuracy {res.metrics['accuracy']:.4f} vs {ref.metrics['accuracy']:.4f}")
    assert err2 < 50 * bound and abs(res.metrics["accuracy"] - ref.metrics["accuracy"]) <= 0.01


def test_the_detector_sees_updates_when_masks_are_off(tmp_path, identity, monkeypatch):
    """Break the protocol on purpose (every mask zero, on both sides so the sum still unmasks): the masked vectors
    are then the quantized updates, and the same detector finds them."""
    import importlib

    from tfresp.config import load_config

    client_mod = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
    server_wf = importlib.import_module("flwr.server.workflow.secure_aggregation.secaggplus_workflow")

    def zeros(seed, num_range, dims):
        return [np.zeros(d, dtype=np.int64) for d in dims]

    monkeypatch.setattr(client_mod, "pseudo_rand_gen", zeros)
    monkeypatch.setattr(server_wf, "pseudo_rand_gen", zeros)
    cfg = {**SECURE, "federated": {**SECURE["federated"], "rounds": 1}}
    sec = _write(tmp_path, cfg)
    grid = SecureGrid(sec, [11, 22, 33])
    _record_plain(monkeypatch, grid)
    _run(sec, tmp_path / "sec", grid, secure=True)
    corr, compared, _ = _visible(grid, load_config(str(sec)).federated.secure_aggregation)
    assert compared >= 3 and corr > 0.99, (corr, compared)


def test_a_node_that_drops_out_leaves_the_sum_of_the_others(tmp_path, identity, monkeypatch):
    """Node 33 never answers from round 2 on: with min_available=2 the round unmasks the sum of nodes 11 and 22
    (its pairwise masks are removed with its key shares) and the report names client 2 as dropped."""
    from tfresp.federated import train as ftrain

    cfg = {**SECURE, "federated": {**SECURE["federated"], "min_available": 2}}
    sec = _write(tmp_path, cfg)
    grid = SecureGrid(sec, [11, 22, 33])
    _record_plain(monkeypatch, grid)
    monkeypatch.setattr(ftrain, "on_round", lambda ev, rnd, w: grid.drop.add(33) if (ev, rnd) == ("end", 1)
                        else None)
    res = _run(sec, tmp_path / "sec", grid, secure=True)
    fed = res.report["federated"]
    assert fed["participation"] == [3, 2] and fed["dropped"] == [{"round": 2, "clients": [2]}]
    rows2 = sum(r for _, r in grid.plain[3:])
    assert len(grid.plain) == 5 and fed["secure_aggregation"]["rows_per_round"][1] == rows2


def test_secure_aggregation_with_client_level_dp_is_refused(tmp_path):
    from tfresp.errors import ConfigError

    cfg = {**SECURE, "federated": {**SECURE["federated"], "dp": {"noise_multiplier": 1.0}}}
    with pytest.raises(ConfigError, match="secure_aggregation.*cannot clip one update"):
        tfresp.fit(cfg, out=str(tmp_path / "x"), quiet=True)


def test_in_process_simulation_says_it_did_not_apply(tmp_path):
    res = tfresp.fit(dict(SECURE, federated={**SECURE["federated"], "rounds": 1}), out=str(tmp_path / "s"),
                     quiet=True)
    assert res.report["federated"]["secure_aggregation"]["applied"] is False
