"""Messy real data and real models (issue 25): each case is detected and handled, or refused before training
with one ``tfresp: error:`` line naming the problem and the remedy, exit 2, nothing left behind."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import tf_keras as keras

import tfresp
from tests.hostile.conftest import base_config, frame
from tests.hostile.harness import (REPO, assert_clean_error, env, listing, run_inprocess, tree_hash,
                                   write_yaml)
from tfresp.errors import BudgetExhaustedError, ConfigError, DataError, IncompatibleModelError, TfrespError


def _fit_cli(work, cfg, out="r"):
    write_yaml(work / "c.yaml", cfg)
    return run_inprocess(["fit", work / "c.yaml", "--out", work / "runs" / out, "--quiet"], work)


def _refused_cli(work, cfg, *fields):
    write_yaml(work / "c.yaml", cfg)
    h = tree_hash(work)
    rc, out, err = _fit_cli(work, cfg)
    line = assert_clean_error(rc, out, err, fields[0])
    for f in fields[1:]:
        assert f in line, f"{f!r} not in {line}"
    assert listing(work / "runs") == [] and tree_hash(work) == h
    return line


def _report(work, out="r"):
    return json.loads((work / "runs" / out / "report.json").read_text())


def _cfg(**kw):  # a Python-API config (in-memory data)
    cfg = {"name": "m", "seed": 0, "data": {"label": "y", "sensitive": ["g"], "split": {"test": 0.25,
                                                                                       "validation": 0.0}},
           "train": {"epochs": 1, "batch_size": 32}, "export": {"saved_model": False}, "report": {"html": False}}
    for k, v in kw.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    return cfg


def _keras_model(k=2, act=None, dim=None):
    def build(spec):
        inp = keras.Input(spec.shape)
        return keras.Model(inp, keras.layers.Dense(k, activation=act)(keras.layers.Dense(4)(inp)))
    return build


# -- names TensorFlow would rename -------------------------------------------------------------------
def test_dash_and_dot_column_names_train_export_and_serve(work):
    df = frame().rename(columns={"a": "loan-amount"})
    df["interest.rate"] = np.random.default_rng(1).normal(size=len(df))
    df.to_csv(work / "d.csv", index=False)
    rc, out, err = _fit_cli(work, base_config(work / "d.csv", export={"saved_model": True}))
    assert rc == 0, err[-3000:]
    served = tfresp.load(work / "runs" / "r").predict_rows(df.drop(columns=["y"]).head(5))
    assert served["probabilities"].shape == (5, 2) and np.isfinite(served["probabilities"]).all()
    renamed = _report(work)["data"]["serving_inputs"]["renamed"]
    assert renamed == {"loan-amount": "loan_amount", "interest.rate": "interest_rate"}


def test_columns_sharing_a_served_name_are_refused_before_training(work):
    df = frame()
    df["monthly income"], df["monthly-income"] = df.a * 2, df.a * 3 + 1
    df.to_csv(work / "d.csv", index=False)
    line = _refused_cli(work, base_config(work / "d.csv", export={"saved_model": True}), "data.features",
                        "'monthly income'", "'monthly-income'", "Remedy")
    assert "monthly_income" in line


# -- numbers -------------------------------------------------------------------------------------------
def test_extreme_finite_values_are_refused_before_training(work):
    df = frame().assign(a=lambda d: d.a * 1e300)
    df.to_csv(work / "d.csv", index=False)
    _refused_cli(work, base_config(work / "d.csv"), "data", "'a': 240", "numeric_ranges")


def test_non_finite_loss_stops_cleanly_and_leaves_nothing(tmp_path):
    def build(spec):
        inp = keras.Input(spec.shape)
        z = keras.layers.Dense(2)(inp)
        return keras.Model(inp, keras.layers.Lambda(lambda t: t * float("inf"))(z))
    with pytest.raises(TfrespError, match="`train`: the training loss became nan") as exc:
        tfresp.fit(_cfg(), data=frame(), model=build, out=tmp_path / "r", quiet=True)
    assert exc.value.exit_code == 2 and "learning_rate" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_absurd_target_epsilon_is_one_clean_error(work):
    line = _refused_cli(work, base_config(work / "data.csv", privacy={"target_epsilon": 1e-9}),
                        "privacy.target_epsilon", "Remedy")
    assert "brentq" not in line


# -- labels and outputs --------------------------------------------------------------------------------------
def test_one_hot_y_is_refused_with_the_remedy(tmp_path):
    df = frame()
    y = np.eye(2)[df.y.to_numpy()]
    with pytest.raises(DataError, match=r"one-hot.*argmax"):
        tfresp.fit(_cfg(data={"sensitive": []}), data=(df[["a"]].to_numpy(), y), out=tmp_path / "r")
    assert list(tmp_path.iterdir()) == []


def test_multi_output_model_is_refused(tmp_path):
    def build(spec):
        inp = keras.Input(spec.shape)
        return keras.Model(inp, [keras.layers.Dense(2)(inp), keras.layers.Dense(1)(inp)])
    with pytest.raises(IncompatibleModelError, match="2 outputs"):
        tfresp.fit(_cfg(), data=frame(), model=build, out=tmp_path / "r", quiet=True)
    assert list(tmp_path.iterdir()) == []


# -- signals -----------------------------------------------------------------------------------------------
def test_repeated_ctrl_c_exits_130_without_a_traceback(work):
    write_yaml(work / "c.yaml", base_config(work / "data.csv", train={"epochs": 100000, "batch_size": 8}))
    p = subprocess.Popen([sys.executable, "-m", "tfresp.cli", "fit", "c.yaml", "--out", "runs/r", "--quiet"],
                         cwd=work, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not any((work / "runs").glob(".*staging*")) and p.poll() is None:
        time.sleep(0.2)
    time.sleep(2)
    for _ in range(5):
        p.send_signal(signal.SIGINT)
        time.sleep(0.05)
    out, err = p.communicate(timeout=240)
    assert p.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    assert not [n for n in listing(work / "runs") if "staging" in n]


# -- reading files --------------------------------------------------------------------------------------------
def test_semicolon_separated_csv_is_sniffed(work):
    frame().to_csv(work / "d.csv", index=False, sep=";")
    rc, out, err = _fit_cli(work, base_config(work / "d.csv"))
    assert rc == 0, err[-3000:]
    rep = _report(work)
    assert rep["data"]["features"] == ["a", "b"] and rep["data"]["source"]["delimiter"] == ";"


def test_latin1_csv_is_decoded_with_a_warning(work):
    df = frame().assign(b=lambda d: d.b.map({"red": "educación", "green": "año", "blue": "niño"}))
    df.to_csv(work / "d.csv", index=False, encoding="latin-1")
    rc, out, err = _fit_cli(work, base_config(work / "d.csv"))
    assert rc == 0, err[-3000:]
    assert any("not UTF-8; decoded as cp1252" in w for w in _report(work)["data"]["warnings"])
    vocab = json.dumps(_report(work), ensure_ascii=False)
    assert "\ufffd" not in vocab
    pre = json.loads((work / "runs" / "r" / "preprocessing" / "tabular.json").read_text(encoding="utf-8"))
    assert "educación" in json.dumps(pre, ensure_ascii=False)


def test_datetime_column_is_refused_with_a_remedy(work):
    df = frame()
    df["opened"] = pd.date_range("2020-01-01", periods=len(df), freq="D").strftime("%Y-%m-%d")
    df.loc[1::2, "opened"] = df.loc[0::2, "opened"].to_numpy()  # repeated dates: not unique per row
    df.to_csv(work / "d.csv", index=False)
    _refused_cli(work, base_config(work / "d.csv"), "data.features", "'opened'", "dates", "year, month")


def test_id_like_column_is_excluded_with_a_warning_unless_declared(work):
    df = frame()
    df["customer_id"] = np.random.default_rng(3).permutation(len(df)) + 700000
    df["ref"] = [f"C-{i:05d}" for i in range(len(df))]
    df.to_csv(work / "d.csv", index=False)
    rc, out, err = _fit_cli(work, base_config(work / "d.csv"))
    assert rc == 0, err[-3000:]
    rep = _report(work)
    assert rep["data"]["features"] == ["a", "b"]
    shown = " ".join(rep["data"]["warnings"])
    assert "'customer_id' looks like a row identifier" in shown and "'ref' looks like" in shown
    rc, out, err = _fit_cli(work, base_config(work / "d.csv", data={"features": ["a", "b", "customer_id"]}), "r2")
    assert rc == 0 and _report(work, "r2")["data"]["features"] == ["a", "b", "customer_id"]


def test_score_and_score_dot_1_are_two_columns(work):
    df = frame()
    df["score"], df["score.1"] = df.a, -df.a
    df.to_csv(work / "d.csv", index=False)
    rc, out, err = _fit_cli(work, base_config(work / "d.csv"))
    assert rc == 0, err[-3000:]
    assert {"score", "score.1"} <= set(_report(work)["data"]["features"])
    (work / "dup.csv").write_text("score,score,g,y\n" + "\n".join(f"{i},{i},f,{i % 2}" for i in range(40)))
    (work / "runs" / "r").rename(work / "keep")
    line = _refused_cli(work, base_config(work / "dup.csv"), "data.source", "['score']")
    assert "score.1" not in line


# -- own models ----------------------------------------------------------------------------------------------
def test_softmax_model_declared_as_logits_is_refused(tmp_path):
    with pytest.raises(IncompatibleModelError, match="model.outputs.*softmax.*contradicts"):
        tfresp.fit(_cfg(model={"outputs": "logits"}), data=frame(), model=_keras_model(2, "softmax"),
                   out=tmp_path / "r", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_linear_model_declared_as_probabilities_is_refused(tmp_path):
    with pytest.raises(IncompatibleModelError, match="model.outputs.*linear"):
        tfresp.fit(_cfg(model={"outputs": "probabilities"}), data=frame(), model=_keras_model(2),
                   out=tmp_path / "r", quiet=True)
    assert list(tmp_path.iterdir()) == []


class _OwnStep(keras.Model):
    def __init__(self):
        super().__init__()
        self.d = keras.layers.Dense(2)
        self.calls = 0

    def call(self, x):
        return self.d(x)

    def train_step(self, data):
        self.calls += 1
        return super().train_step(data)


def test_model_with_its_own_train_step_is_refused(tmp_path):
    with pytest.raises(IncompatibleModelError, match="train_step"):
        tfresp.fit(_cfg(), data=frame(), model=_OwnStep(), out=tmp_path / "r", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_the_models_own_compile_is_honoured_or_a_conflict_refused(tmp_path):
    def build(spec):
        m = _keras_model(2)(spec)
        m.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m
    run = tfresp.fit(_cfg(), data=frame(), model=build, out=tmp_path / "r", quiet=True)
    opt = run.context.model.optimizer
    assert type(opt).__name__ == "SGD" and abs(float(opt.learning_rate.numpy()) - 0.5) < 1e-9
    assert run.report["model"]["compile"]["optimizer"]["class_name"].lower() == "sgd"
    with pytest.raises(ConfigError, match=r"train.learning_rate.*SGD"):
        tfresp.fit(_cfg(train={"learning_rate": 0.01}), data=frame(), model=build, out=tmp_path / "r2")

    def mse(spec):
        m = _keras_model(2)(spec)
        m.compile("adam", "mse")
        return m
    with pytest.raises(IncompatibleModelError, match="'mse'"):
        tfresp.fit(_cfg(), data=frame(), model=mse, out=tmp_path / "r3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


# -- the Python API's inputs ------------------------------------------------------------------------------------
def test_dataframe_and_series_keep_column_names_and_sensitive_columns(tmp_path):
    df = frame()
    run = tfresp.fit(_cfg(data={"sensitive": ["g"]}), data=(df[["a", "b", "g"]], df["y"]), out=tmp_path / "r",
                     quiet=True, fairness={"sensitive": ["g"]})
    assert run.report["data"]["features"] == ["a", "b"]
    assert "g" in json.dumps(run.report["fairness"])


def test_predict_rows_refuses_text_and_nan_instead_of_deciding(tmp_path):
    df = frame()
    tfresp.fit(_cfg(export={"saved_model": True}), data=df, out=tmp_path / "r", quiet=True)
    served = tfresp.load(tmp_path / "r")
    rows = df.drop(columns="y").head(3).astype({"a": object})
    rows.loc[0, "a"] = "forty"
    with pytest.raises(DataError, match="'forty'"):
        served.predict_rows(rows)
    rows.loc[0, "a"] = np.nan
    with pytest.raises(DataError, match="does not impute"):
        served.predict_rows(rows)


# -- reports and federated splits --------------------------------------------------------------------------------
def test_worse_than_chance_is_called_worse_not_near():
    from tfresp.evaluation.degenerate import findings

    rep = {"data": {"classes": ["0", "1"]},
           "evaluation": {"test": {"balanced_accuracy": 0.277, "confusion_matrix": [[30, 70], [75, 25]]}}}
    msgs = [f["message"] for f in findings(rep) if f["code"] == "chance_balanced_accuracy"]
    assert msgs and "worse than chance" in msgs[0] and "within" not in msgs[0]
    rep["evaluation"]["test"]["balanced_accuracy"] = 0.52
    msgs = [f["message"] for f in findings(rep) if f["code"] == "chance_balanced_accuracy"]
    assert msgs and "within 0.05 of chance" in msgs[0]


def test_partition_by_a_column_with_one_value_is_refused():
    from tfresp.federated.partition import partition

    f = frame().assign(site="A")
    with pytest.raises(ConfigError, match="single value"):
        partition(3, "by_column:site", f.y.to_numpy(), f, 0)
    parts = partition(2, "by_column:g", f.y.to_numpy(), frame(), 0)  # two values: two clients, one value each
    assert sorted(len(set(frame().g.to_numpy()[p])) for p in parts) == [1, 1]


# -- found by the new-user trial ------------------------------------------------------------------------------
def test_decimal_comma_in_a_semicolon_file_is_read_as_numbers(work):
    df = frame()
    text = df.assign(a=df.a.map(lambda v: f"{v:.4f}".replace(".", ","))).to_csv(index=False, sep=";")
    (work / "d.csv").write_text(text)
    rc, out, err = _fit_cli(work, base_config(work / "d.csv"))
    assert rc == 0, err[-3000:]
    spec = json.loads((work / "runs" / "r" / "preprocessing" / "tabular.json").read_text())["columns"]
    a = next(c for c in spec if c["name"] == "a")
    assert a["kind"] == "numeric"
    train = _report(work)["data"]["splits"]["train"]["rows"]
    assert abs(a["mean"]) < 0.5 and train > 100  # the parsed values (frame().a is N(0, 1)), not categories
    assert _report(work)["data"]["source"]["decimal_comma"] == ["a"]


@pytest.mark.parametrize("sep,name", [("\t", "d.csv"), ("|", "d.csv.gz")])
def test_tab_and_pipe_separated_files_are_sniffed(work, sep, name):
    import gzip

    raw = frame().to_csv(index=False, sep=sep).encode()
    (work / name).write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    rc, out, err = _fit_cli(work, base_config(work / name))
    assert rc == 0, err[-3000:]
    assert _report(work)["data"]["features"] == ["a", "b"]


def test_trailing_delimiter_column_is_dropped_with_a_warning(work):
    (work / "d.csv").write_text(frame().to_csv(index=False).replace("\n", ",\n"))
    rc, out, err = _fit_cli(work, base_config(work / "d.csv"))
    assert rc == 0, err[-3000:]
    rep = _report(work)
    assert rep["data"]["features"] == ["a", "b"]
    assert any("unnamed empty column" in w for w in rep["data"]["warnings"])


def test_integer_column_names_are_addressed_as_text(tmp_path):
    df = frame()
    df.columns = [0, 1, "g", "y"]
    run = tfresp.fit(_cfg(), data=df, out=tmp_path / "r", quiet=True)
    assert run.report["data"]["features"] == ["0", "1"]


def test_high_cardinality_text_column_is_warned(tmp_path):
    df = frame()
    df["zip"] = [f"Z{v}" for v in np.random.default_rng(4).integers(0, 2000, len(df))]
    with pytest.warns(UserWarning, match="'zip' has .* distinct values"):
        run = tfresp.fit(_cfg(), data=df, out=tmp_path / "r", quiet=True)
    assert any("'zip'" in w for w in run.report["data"]["warnings"])


def test_sensitive_nans_in_a_dataframe_series_pair_become_an_explicit_group(tmp_path):
    df = frame()
    df.loc[:30, "g"] = None
    run = tfresp.fit(_cfg(), data=(df[["a", "b", "g"]], df["y"]), out=tmp_path / "r", quiet=True)
    assert "<missing>" in run.report["data"]["splits"]["train"]["group_sizes"]["g"]


def test_under_dp_an_id_like_column_is_refused_not_silently_dropped(work):
    df = frame()
    df["ref"] = [f"C-{i:05d}" for i in range(len(df))]
    df.to_csv(work / "d.csv", index=False)
    _refused_cli(work, base_config(work / "d.csv", privacy={"target_epsilon": 3}), "data.features", "'ref'",
                 "row identifiers")
