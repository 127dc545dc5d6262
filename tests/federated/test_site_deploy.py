"""Sites in a deployment (``federated.sites`` on Flower SuperNodes), driven over an in-process grid that delivers each
message to the tfresp ClientApp as a site's node would (node config ``site``/``site-file``, one Context per node, a
fresh process per message: the site cache is cleared before every message). The deployed rounds give the
simulation's result (plain), or the same within the SecAgg+ quantization error (secure); under DP each site's ε,
kept in the node's run state across processes, equals the simulation's; a site that stops answering is named in
the report's dropped rounds; the server copy of the YAML names no site file."""
import copy
import json

import numpy as np
import pytest
import yaml

pytest.importorskip("flwr")

import tfresp  # noqa: E402
from tests.federated.test_sites import _config, _write_sites  # noqa: E402

NAMES = ("north", "south", "east")


class SiteGrid:
    def __init__(self, cfg_path, files):
        from flwr.app import Context, RecordDict

        self.node_ids = [101 + i for i in range(len(files))]
        self.ctx = {n: Context(run_id=1, node_id=n, state=RecordDict(), run_config={"config": str(cfg_path)},
                               node_config={"site": name, "site-file": str(path)})
                    for n, (name, path) in zip(self.node_ids, files.items())}
        self.drop, self.sent = set(), []

    def get_node_ids(self):
        return list(self.node_ids)

    def send_and_receive(self, messages, timeout=None):
        from flwr.app import Error, Message

        from tfresp.federated import app, site_node

        replies = []
        for msg in messages:
            nid = msg.metadata.dst_node_id
            self.sent.append(msg.metadata.message_type)
            if nid in self.drop:
                continue
            site_node._load.cache_clear()  # Flower: a fresh ClientApp process per message
            try:
                replies.append(copy.deepcopy(app.client_app(copy.deepcopy(msg), self.ctx[nid])))
            except Exception as exc:  # as a SuperNode does: an error reply
                replies.append(Message(Error(code=0, reason=repr(exc)), reply_to=msg))
        return replies


def _deployed(tmp_path, cfg, out, drop_after=None, monkeypatch=None):
    """The ServerApp's path (server copy of the YAML, GridSites, run_sites) over a SiteGrid."""
    from tfresp.config import load_config
    from tfresp.federated.deploy import _server_copy
    from tfresp.federated.grid_sites import GridSites, secure_for, site_nodes
    from tfresp.federated.sites_run import run_sites

    src = tmp_path / f"{out}.yaml"
    src.write_text(yaml.safe_dump(cfg))
    server_yaml, files = _server_copy(src, tmp_path / f"{out}-server")
    config = load_config(str(server_yaml))
    grid = SiteGrid(server_yaml, files)
    if drop_after is not None:
        from tfresp.federated import train as ftrain

        monkeypatch.setattr(ftrain, "on_round", lambda ev, rnd, w: grid.drop.add(grid.node_ids[drop_after[1]])
                            if (ev, rnd) == ("end", drop_after[0]) else None)
    names = [s.name for s in config.federated.sites]
    transport = GridSites(grid, site_nodes(grid, names, 10), 60, secure_for(config), config.privacy is not None)
    res = run_sites(config, tmp_path / out, quiet=True, transport=transport)
    return res, server_yaml, files, grid


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _write_sites(tmp_path_factory.mktemp("sites3"), names=NAMES, rows=300)


def _fed(files, **fed):
    cfg = _config(files)
    cfg["federated"] = {**cfg["federated"], "rounds": 2, "secure_aggregation": False, **fed}
    return cfg


def test_deployed_sites_match_the_simulation_and_the_server_copy_names_no_file(tmp_path, identity, files):
    cfg = _fed(files)
    dep, server_yaml, got, grid = _deployed(tmp_path, cfg, "dep")
    sim = tfresp.fit(cfg, out=str(tmp_path / "sim"), quiet=True)
    text = server_yaml.read_text() + (dep["run_dir"] / "config.yaml").read_text() + \
        (dep["run_dir"] / "report.json").read_text()
    for name, path in files.items():
        assert got[name] == str(path.resolve())
        assert str(path) not in text and path.name not in text  # neither the server copy nor the run dir
    for a, b in zip(dep["model"].get_weights(), sim.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    fed = dep["report"]["federated"]
    assert "one per site" in fed["clients_run"] and fed["dropped"] == []
    assert grid.sent.count("evaluate") == 3 * 3  # validation after 2 rounds + test: one batch of 3 each


def test_secure_aggregation_is_on_by_default_for_a_deployed_sites_run(files):
    from tfresp.config import load_config
    from tfresp.federated.grid_sites import secure_for

    cfg = _fed(files)
    cfg["federated"].pop("secure_aggregation")
    assert secure_for(load_config(cfg)) is not None  # absent: on (Flower's defaults)
    assert secure_for(load_config(_fed(files))) is None  # `false`: off


def test_secure_sites_within_quantization_of_plain(tmp_path, identity, files):
    plain, *_ = _deployed(tmp_path, _fed(files), "plain")
    sec, *_ = _deployed(tmp_path, _fed(files, secure_aggregation={"max_weight": 1000}), "sec")
    fed = sec["report"]["federated"]
    assert fed["secure_aggregation"]["applied"] is True
    rows = fed["secure_aggregation"]["rows_per_round"]
    assert len(rows) == 2 and rows[0] == rows[1] > 0
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(sec["model"].get_weights(), plain["model"].get_weights()))
    assert err < 1e-3, err
    assert abs(sec["metrics"]["accuracy"] - plain["metrics"]["accuracy"]) <= 0.02


def test_dp_sites_keep_their_ledger_across_processes(tmp_path, identity, files):
    """Under privacy every message is a new process: the site's DP-SGD steps are restored from the node's run state,
    so each site's ε after 2 rounds equals the in-process simulation's (same steps, same q, same σ)."""
    cfg = _fed(files, secure_aggregation=True)
    cfg["privacy"] = {"target_epsilon": 3.0, "audit": False}
    dep, *_ = _deployed(tmp_path, cfg, "dp")
    sim = tfresp.fit(cfg, out=str(tmp_path / "dpsim"), quiet=True)
    d, s = dep["report"]["privacy"]["sites"], sim.report["privacy"]["sites"]
    assert set(d) == set(NAMES)
    for n in NAMES:
        assert d[n]["steps"] == s[n]["steps"] > 0 and d[n]["rounds_trained"] == 2
        assert abs(d[n]["epsilon"] - s[n]["epsilon"]) <= 1e-6
    assert "only the sum of the sites' DP-noised model updates" in dep["report"]["privacy"]["statement"]


def test_a_site_that_stops_answering_is_named_per_round(tmp_path, identity, files, monkeypatch):
    cfg = _fed(files, rounds=3, min_available=2, secure_aggregation=True)
    dep, *_ = _deployed(tmp_path, cfg, "drop", drop_after=(1, 2), monkeypatch=monkeypatch)
    fed = dep["report"]["federated"]
    assert fed["rounds"] == 3
    assert fed["dropped"] == [{"round": 2, "sites": ["east"]}, {"round": 3, "sites": ["east"]}]
    assert fed["test"]["per_site"]["east"] is None  # it could not evaluate either
    json.dumps(dep["report"])


@pytest.mark.slow
def test_real_deployment_tls_secagg_kill_and_the_server_never_opens_a_site_file(tmp_path, files, monkeypatch):
    """SuperLink + one SuperNode per site (TLS, authenticated nodes, SecAgg+). The ServerApp process records every
    file it opens (an audit hook): no site file is among them, and its run config names none. Site "east"'s
    SuperNode is killed once it has sent its round-1 validation counts: with min_available=2, round 2 completes
    with north and south (SecAgg+ unmasks their sum) and the report names east as dropped in round 2."""
    import os
    import signal
    import threading
    import time

    from tfresp.federated.deploy import deploy

    cfg = _fed(files, min_available=2, secure_aggregation={"max_weight": 1000})
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump(cfg))
    opened = tmp_path / "server-opens.txt"
    monkeypatch.setenv("TFRESP_SERVER_OPEN_LOG", str(opened))
    killed = {}

    def kill_east_after_round_1(info):
        node, log = info["procs"]["supernode-2"], info["tmp"] / "supernode-2.log"

        def watch():
            t0 = time.monotonic()
            while time.monotonic() - t0 < 600:
                try:
                    if "Sending: evaluate message" in log.read_text(errors="replace"):
                        os.killpg(node.pid, signal.SIGKILL)  # the node and its ClientApp processes
                        killed["at"] = time.monotonic()
                        return
                except OSError:
                    pass
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()

    logs = tmp_path / "logs"
    run_dir = deploy(str(path), str(tmp_path / "deployed"), timeout=900, wait=120,
                     _on_started=kill_east_after_round_1, keep_logs=str(logs))
    assert "at" in killed
    rep = json.loads((run_dir / "report.json").read_text())
    fed = rep["federated"]
    assert fed["rounds"] == 2 and fed["dropped"] == [{"round": 2, "sites": ["east"]}], fed["dropped"]
    assert fed["secure_aggregation"]["applied"] is True and "TLS" not in fed["clients_run"]
    assert fed["test"]["per_site"]["east"] is None and fed["test"]["per_site"]["north"]["rows"] > 0
    assert "SuperNode authentication is disabled" not in (logs / "superlink.log").read_text()
    seen = opened.read_text().splitlines()
    assert any(p.endswith("app-config/config.yaml") for p in seen), seen[:20]  # the hook ran in the ServerApp
    for name, f in files.items():
        assert not [p for p in seen if os.path.basename(p) == f.name], name
    text = (run_dir / "config.yaml").read_text()
    assert all(str(f) not in text for f in files.values())


def test_too_few_sites_stop_the_run_and_say_it_cannot_resume(tmp_path, identity, files, monkeypatch):
    """Default min_available (every site): a site that stops answering stops the run; the message says a sites run
    cannot be resumed (no checkpoints yet) rather than pointing at --resume."""
    from tfresp.federated.train import ClientsUnavailableError

    with pytest.raises(ClientsUnavailableError, match="cannot be resumed yet.*start the run again"):
        _deployed(tmp_path, _fed(files, secure_aggregation=True), "stop", drop_after=(1, 0), monkeypatch=monkeypatch)
