"""Cross-silo runs (``federated.sites``): config checks, declared-only preprocessing, the server never opening a site
file, example-level DP-SGD at every site (ε per site against dp-accounting), counts-only federated evaluation."""
import math
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("flwr")

import dp_accounting  # noqa: E402
from dp_accounting import pld  # noqa: E402

import tfresp  # noqa: E402
from tfresp.config import load_config  # noqa: E402
from tfresp.errors import ConfigError, DataError  # noqa: E402

SITE_MODULE = "tfresp/federated/site.py"


def _write_sites(directory, names=("north", "south"), rows=160, extra=None):
    rng = np.random.default_rng(1)
    paths = {}
    for k, name in enumerate(names):
        n = rows + 40 * k
        df = pd.DataFrame({"n": rng.uniform(0, 10, n), "c": rng.choice(["u", "v", "w"], n),
                           "sex": rng.choice(["F", "M"], n)})
        df["y"] = np.where((df["n"] > 5 + k) ^ (df["c"] == "u"), "yes", "no")
        if extra:
            df[extra] = 1.0
        paths[name] = directory / f"{name}.csv"
        df.to_csv(paths[name], index=False)
    return paths


def _config(paths, **over):
    cfg = {"name": "sites", "seed": 3,
           "federated": {"sites": [{"name": n, "source": str(p)} for n, p in paths.items()], "rounds": 1,
                         "local_batch_size": 16, "local_learning_rate": 0.1},
           "data": {"label": "y", "sensitive": ["sex"], "split": {"test": 0.25, "validation": 0.2},
                    "categories": {"y": ["no", "yes"], "c": ["u", "v", "w"]}, "numeric_ranges": {"n": [0, 10]}},
           "model": {"hidden": [8]}, "report": {"html": False}}
    for key, value in over.items():
        cfg[key] = value
    return cfg


@pytest.fixture(scope="module")
def site_files(tmp_path_factory):
    return _write_sites(tmp_path_factory.mktemp("site_files"))


def test_bad_sites_configs_fail_together_before_any_data(tmp_path):
    paths = _write_sites(tmp_path)
    cfg = _config(paths)
    cfg["federated"] = {**cfg["federated"], "clients": 7, "partition": "by_column:c", "dp": {"target_epsilon": 1},
                        "sites": [{"name": "a", "source": "x.csv"}, {"name": "a", "source": "x.csv"}]}
    cfg["data"] = {**cfg["data"], "source": "central.csv", "features": ["n", "c", "age"]}
    cfg["explain"] = {}
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    fields = [p[0] for p in err.value.problems]
    for f in ("federated.sites", "federated.clients", "federated.partition", "federated.dp", "data.source",
              "data.features", "explain"):
        assert f in fields, (f, fields)
    assert "['age']" in str(err.value)  # the undeclared column is named
    # one site only; the label's classes undeclared
    one = _config({"north": paths["north"]})
    one["data"]["categories"] = {"c": ["u", "v", "w"]}
    with pytest.raises(ConfigError) as err:
        load_config(one)
    fields = [p[0] for p in err.value.problems]
    assert "federated.sites" in fields and "data.categories.y" in fields


def test_cli_exits_2_on_a_bad_sites_config(tmp_path):
    import yaml

    from tfresp.cli import main

    paths = _write_sites(tmp_path)
    cfg = _config(paths)
    cfg["robustness"] = {}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["fit", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


def test_a_site_refuses_undeclared_columns_and_values(tmp_path):
    from tfresp.federated.site import Site

    paths = _write_sites(tmp_path, extra="income_band")
    cfg = load_config(_config(paths))
    with pytest.raises(DataError, match="income_band.*no declared values"):
        Site("north", str(paths["north"]), cfg)
    paths = _write_sites(tmp_path)
    bad = _config(paths)
    bad["data"]["categories"]["c"] = ["u", "v"]  # 'w' in the files, not declared
    with pytest.raises(DataError, match=r"values \['w'\] not declared"):
        Site("north", str(paths["north"]), load_config(bad))


def test_the_server_never_opens_a_site_file_and_holds_no_rows(site_files, tmp_path):
    """Every open of a site file comes from the site module's loader (audit hook with the call stack); the server
    runs from names alone (the sites built beforehand, then their files removed) and keeps no rows."""
    from tfresp.federated import sites_run
    from tfresp.federated.site import Site

    watched = {str(p.resolve()) for p in site_files.values()}
    opens = []

    names = {Path(p).name for p in watched}
    active = [True]  # an audit hook cannot be removed: it stops recording when this test ends

    def hook(event, args):
        if not active[0] or event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        if os.path.basename(os.fsdecode(args[0])) not in names:
            return
        try:
            path = str(Path(os.fsdecode(args[0])).resolve())
        except (OSError, ValueError):
            return
        if path in watched:
            opens.append((path, traceback.extract_stack()))

    def from_site_loader(stack):
        return any(f.filename.replace("\\", "/").endswith(SITE_MODULE) and f.name == "_load" for f in stack)

    sys.addaudithook(hook)  # cannot be removed: it only records opens of this test's files
    cfg = load_config(_config(site_files))
    result = tfresp.fit(cfg, out=tmp_path / "run", quiet=True)
    assert len(opens) >= len(site_files)
    for path, stack in opens:
        assert from_site_loader(stack), (path, [(f.filename, f.name) for f in stack[-6:]])
    before = len(opens)
    pd.read_csv(next(iter(site_files.values())))  # the check can fail: an open from elsewhere is caught
    assert len(opens) == before + 1 and not from_site_loader(opens[-1][1])
    assert result.report["federated"]["mode"] == "sites"

    # a deployment's server gets the names only: here the nodes (Sites) exist, their files are gone
    copies = {}
    for name, p in site_files.items():
        q = tmp_path / f"copy_{name}.csv"
        q.write_bytes(p.read_bytes())
        copies[name] = q
    nodes = {n: Site(n, str(p), cfg) for n, p in copies.items()}
    for q in copies.values():
        q.unlink()

    class NamesOnly:
        names = list(nodes)
        description = "remote sites (test)"

        def fit(self, name, weights, rnd):
            return nodes[name].fit(weights, rnd)

        def evaluate(self, name, weights, split):
            return nodes[name].evaluate(weights, split)

        def privacy(self, name):
            return nodes[name].privacy()

    server_cfg = _config(site_files)  # the server's config names the sites only
    server_cfg["federated"]["sites"] = [{"name": n} for n in site_files]
    server_cfg = load_config(server_cfg)
    with pytest.raises(ConfigError, match="no source"):
        sites_run.LocalSites(server_cfg)  # a simulation needs the sources; a deployment's server does not
    core = sites_run.schema.build_core(server_cfg)
    trained = sites_run.train_sites(server_cfg, NamesOnly(), core)
    server = trained["server"]
    shapes = {tuple(np.shape(w)) for w in server.weights}
    for value in vars(server).values():  # weights, counts and settings only: no frame, no row array
        assert not isinstance(value, pd.DataFrame)
        if isinstance(value, np.ndarray):
            assert value.shape in shapes
    assert trained["names"] == list(nodes)
    active[0] = False


def _oracle_epsilon(sigma, q, steps, delta):
    acc = pld.PLDAccountant(value_discretization_interval=1e-3)
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return acc.get_epsilon(delta)


def test_dp_sgd_at_every_site_epsilon_per_site_matches_dp_accounting(site_files, tmp_path):
    from tfresp.federated.site import Site

    cfg = load_config(_config(site_files, privacy={"target_epsilon": 3.0, "audit": False}),
                      overrides=["federated.rounds=2"])
    result = tfresp.fit(cfg, out=tmp_path / "dp", quiet=True)
    claim = result.report["privacy"]
    assert claim["level"] == "example (per site)" and "one person" in claim["statement"].lower()
    assert "several sites" in claim["statement"]
    for name, path in site_files.items():
        got = claim["sites"][name]
        # the site's training rows, recomputed from its file and the stratified split fractions (not from the run)
        n_train = 0
        for k in pd.read_csv(path)["y"].value_counts():
            rest = k - round(k * 0.25)
            n_train += rest - round(rest * 0.2)
        assert n_train == len(Site(name, str(path), cfg).train)
        q = 16 / n_train
        steps = 2 * 1 * math.ceil(n_train / 16)  # rounds x local epochs x steps per epoch
        assert got["steps"] == steps and got["sampling_rate"] == pytest.approx(q, rel=1e-12)
        delta = 10.0 ** -(len(str(10 * n_train - 1)))
        assert got["delta"] == delta
        oracle = _oracle_epsilon(got["noise_multiplier"], q, steps, delta)
        assert got["epsilon"] == pytest.approx(oracle, abs=1e-6)
        assert got["epsilon"] <= 3.0 and got["epsilon"] >= 2.9  # calibrated to the target over the planned rounds
        # the check can fail: 1% less noise is a different ε
        assert abs(_oracle_epsilon(got["noise_multiplier"] * 0.99, q, steps, delta) - got["epsilon"]) > 1e-3
    assert claim["epsilon"] == max(p["epsilon"] for p in claim["sites"].values())
    assert "equal site weights" in result.report["federated"]["aggregation"]
    md = (result.run_dir / "report.md").read_text()
    assert "| north |" in md and f"{claim['sites']['north']['epsilon']:.4g}" in md
    # the run's config.yaml loads again; commands that re-read a run's data refuse a sites run
    from tfresp.run.run_data import verify_source

    again = load_config(str(result.run_dir / "config.yaml"))
    assert again.federated.clients == 2 and again.privacy.audit is False
    with pytest.raises(DataError, match="sites run"):
        verify_source(result.run_dir, again, result.report)


def test_a_budget_that_cannot_cover_the_planned_rounds_is_refused_before_training(site_files):
    from tfresp.errors import BudgetExhaustedError
    from tfresp.federated.site import Site

    cfg = load_config(_config(site_files, privacy={"target_epsilon": 1.0, "noise_multiplier": 2.0}),
                      overrides=["federated.rounds=5"])
    with pytest.raises(BudgetExhaustedError, match="allows .* of the .* planned"):
        Site("north", str(site_files["north"]), cfg)


def test_under_dp_a_site_sends_no_row_count(site_files):
    from tfresp.federated import schema
    from tfresp.federated.site import Site

    cfg = load_config(_config(site_files, privacy={"noise_multiplier": 1.0, "audit": False}))
    site = Site("north", str(site_files["north"]), cfg)
    weights, rows = site.fit(schema.build_core(cfg).get_weights(), 1)
    assert rows is None and site.privacy()["steps"] == math.ceil(len(site.train) / 16)
    plain = Site("north", str(site_files["north"]), load_config(_config(site_files)))
    assert plain.fit(schema.build_core(cfg).get_weights(), 1)[1] == len(plain.train)


def test_federated_counts_equal_the_pooled_rows(site_files):
    """The pooled accuracy and sex gaps from summed counts equal those of the global model on all sites' test rows
    put together (computed here from the rows, which only a test may do)."""
    from tfresp.federated import schema, sites_run
    from tfresp.federated.site import Site
    from tfresp.run.context import predict_proba

    cfg = load_config(_config(site_files))
    transport = sites_run.LocalSites(cfg)
    core = schema.build_core(cfg)
    trained = sites_run.train_sites(cfg, transport, core)
    sec = sites_run.report_section(cfg, transport, trained, core)
    x = np.concatenate([transport._sites[n].test.x for n in transport.names])
    y = np.concatenate([transport._sites[n].test.y for n in transport.names])
    sex = np.concatenate([transport._sites[n].test.groups["sex"] for n in transport.names])
    pred = predict_proba(core, x).argmax(axis=1)
    pooled = sec["test"]["pooled"]
    assert pooled["rows"] == len(y)
    assert pooled["accuracy"] == pytest.approx(float(np.mean(pred == y)))
    sel = {g: float(np.mean(pred[sex == g])) for g in ("F", "M")}
    tpr = {g: float(np.mean(pred[(sex == g) & (y == 1)])) for g in ("F", "M")}
    gaps = pooled["fairness"]["sex"]["gaps"]
    assert gaps["demographic_parity_difference"] == pytest.approx(abs(sel["F"] - sel["M"]))
    assert gaps["equal_opportunity_difference"] == pytest.approx(abs(tpr["F"] - tpr["M"]))
    north = Site("north", str(site_files["north"]), cfg)
    assert sec["test"]["per_site"]["north"]["rows"] == len(north.test)
    assert len(sec["curve"]) == 1 and sec["curve"][0]["val_accuracy"] is not None


def test_a_site_that_sends_nothing_is_dropped_within_min_available(site_files, tmp_path):
    from tfresp.federated import schema, sites_run

    cfg = load_config(_config(site_files), overrides=["federated.min_available=1"])

    class Flaky(sites_run.LocalSites):
        def fit(self, name, weights, rnd):
            return None if name == "south" else super().fit(name, weights, rnd)

    transport = Flaky(cfg)
    core = schema.build_core(cfg)
    trained = sites_run.train_sites(cfg, transport, core)
    sec = sites_run.report_section(cfg, transport, trained, core)
    assert sec["dropped"] == [{"round": 1, "sites": ["south"]}]
    assert sec["participation"] == [{"round": 1, "sites": 1}]
    strict = load_config(_config(site_files))  # default: every site must answer
    from tfresp.federated.train import ClientsUnavailableError

    with pytest.raises(ClientsUnavailableError):
        sites_run.train_sites(strict, Flaky(strict), schema.build_core(strict))
