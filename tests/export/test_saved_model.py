"""SavedModel export: arbitrary column names (spaces, `$`, parentheses, unicode), wide data, imputation."""
import json
import time

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfresp
from tfresp.data.preprocess import TabularPreprocessor
from tfresp.export import saved_model as sm

ODD = ["loan amount", "Annual Income ($)", "prêt", "état civil", "2nd (try)"]


def test_safe_names_are_valid_unique_and_keep_valid_names():
    names = sm.safe_names(ODD + ["loan_amount", "age", "$$"])
    assert names["age"] == "age" and names["loan_amount"] == "loan_amount"
    assert names["loan amount"] == "loan_amount_2"  # the valid column keeps its own name
    assert names["Annual Income ($)"] == "Annual_Income" and names["prêt"] == "pret"
    assert names["2nd (try)"] == "col_2nd_try" and names["$$"] == "column"
    assert len(set(names.values())) == len(names)
    assert all(sm._VALID.match(n) for n in names.values())


def _frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"loan amount": rng.normal(1000, 300, n), "Annual Income ($)": rng.normal(5e4, 1e4, n),
                       "prêt": rng.integers(0, 5, n).astype(float),
                       "état civil": rng.choice(["marié", "célibataire", "veuf"], n),
                       "2nd (try)": rng.choice(["oui", "non"], n), "g": rng.choice(["f", "m"], n)})
    df["y"] = ((df["loan amount"] - 1000) / 300 + (df["état civil"] == "marié") + rng.normal(0, .5, n) > .5)
    df["y"] = df["y"].map({True: "yes", False: "no"})
    return df


@pytest.fixture(scope="module")
def unicode_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "unicode"
    cfg = {"name": "u", "data": {"label": "y", "sensitive": ["g"], "split": {"test": 0.25, "validation": 0.0}},
           "model": {"kind": "mlp", "hidden": [8]}, "train": {"epochs": 2, "batch_size": 32},
           "report": {"html": False}}
    return tfresp.fit(cfg, data=_frame(), out=out, quiet=True)


def test_unicode_and_spaced_column_names_round_trip(unicode_run):
    """save -> fresh tf.saved_model.load -> serving_default on those columns == the model's probabilities."""
    run, ctx = unicode_run, unicode_run.context
    loaded = tf.saved_model.load(str(run.run_dir / "saved_model"))
    layout = sm.load_layout(loaded)
    recorded = json.loads((run.run_dir / "preprocessing" / "serving_inputs.json").read_text(encoding="utf-8"))
    assert layout == recorded and set(layout["inputs"]) >= set(ODD)
    test = ctx.data.test.frame
    columns = {c: (test[c].to_numpy(np.float32) if test[c].dtype.kind == "f" else test[c].to_numpy().astype(object))
               for c in ODD}
    sig = loaded.signatures["serving_default"]
    served = sig(**{layout["inputs"][c]: tf.constant(v) for c, v in columns.items()})["probabilities"].numpy()
    expected = ctx.predictions["test"]
    np.testing.assert_allclose(served, expected, atol=1e-5)
    # the raw column names are accepted too
    by_raw = loaded.predict_columns({c: tf.constant(v) for c, v in columns.items()})["probabilities"].numpy()
    np.testing.assert_allclose(by_raw, expected, atol=1e-5)
    section = run.report["export"]["saved_model"]
    assert section["renamed_inputs"]["prêt"] == "pret" and section["roundtrip_max_abs_diff"] < 1e-5
    assert run.report["data"]["serving_inputs"]["renamed"]["Annual Income ($)"] == "Annual_Income"


def _wide(n_cols, rows=64, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(rows, n_cols)).astype(np.float32),
                      columns=[f"x {i} ($)" for i in range(n_cols)])
    df["colour é"] = rng.choice(["a", "b", "c"], rows)
    return df


def _export_and_compare(df, path):
    pre = TabularPreprocessor.fit(df, list(df.columns))
    core = tf.keras.Sequential([tf.keras.Input((pre.encoded_dim,)), tf.keras.layers.Dense(3)])
    module = sm.ServingModule(pre, core, ["a", "b", "c"], layout=sm.serving_layout(pre))
    t0, c0 = time.perf_counter(), time.process_time()
    sm.save_module(module, pre.input_signature(), path)
    loaded = tf.saved_model.load(str(path))
    served = loaded.signatures["serving_default"](**sm.raw_inputs(pre, df))["probabilities"].numpy()
    seconds = (time.perf_counter() - t0, time.process_time() - c0)  # wall, CPU (shared CI machines)
    direct = tf.nn.softmax(core(pre.transform_frame(df))).numpy()
    # an independent encoding (numpy, not the TF transform) of the same rows
    enc = np.concatenate([((df[c["name"]].to_numpy(np.float64) - c["mean"]) / c["std"])[:, None]
                          if c["kind"] == "numeric" else
                          (df[c["name"]].to_numpy()[:, None] == np.array(c["vocab"])[None]).astype(float)
                          for c in pre.spec], axis=1)
    oracle = tf.nn.softmax(core(enc.astype(np.float32))).numpy()
    return seconds, served, direct, oracle, sm.load_layout(loaded)


def test_500_numeric_columns_export_packed_and_fast(tmp_path):
    seconds, served, direct, oracle, layout = _export_and_compare(_wide(500), tmp_path / "sm")
    assert layout["packed"]["name"] == "numeric_features" and len(layout["packed"]["columns"]) == 500
    assert layout["inputs"] == {"colour é": "colour_e"}
    np.testing.assert_allclose(served, direct, atol=1e-6)
    np.testing.assert_allclose(served, oracle, atol=1e-5)
    assert seconds[1] < 30, f"500-column export + reload + call took {seconds[1]:.1f} s CPU ({seconds[0]:.1f} s wall)"


@pytest.mark.slow
def test_10000_numeric_columns_export_time(tmp_path):
    (wall, cpu), served, direct, oracle, _ = _export_and_compare(_wide(10_000), tmp_path / "sm")
    print(f"10,000-column export + reload + call: {wall:.1f} s wall, {cpu:.1f} s CPU")
    np.testing.assert_allclose(served, oracle, atol=1e-5)
    assert cpu <= 30, f"{cpu:.1f} s CPU ({wall:.1f} s wall)"


def test_imputation_is_recorded_and_applied_inside_the_saved_model(tmp_path):
    df = _frame(seed=1)
    df.loc[::7, "loan amount"] = np.nan
    df.loc[::11, "état civil"] = np.nan
    df["id"] = np.arange(len(df))
    cfg = {"name": "imp", "data": {"label": "y", "sensitive": ["g"], "missing": "impute", "features": ODD,
                                   "split": {"test": 0.25, "validation": 0.0}},
           "model": {"kind": "mlp", "hidden": [8]}, "train": {"epochs": 1, "batch_size": 32},
           "report": {"html": False}}
    run = tfresp.fit(cfg, data=df, out=tmp_path / "imp", quiet=True)
    imp = run.report["data"]["imputation"]
    train = run.context.data.train.frame
    original = df.set_index("id").loc[train["id"]]  # the training rows before imputation
    assert imp["loan amount"]["from"] == "median of the training split"
    assert imp["loan amount"]["value"] == pytest.approx(original["loan amount"].median())  # pandas skips NaN
    assert imp["état civil"]["value"] == original["état civil"].value_counts().idxmax()
    spec = {c["name"]: c for c in json.loads((run.run_dir / "preprocessing" / "tabular.json").read_text())["columns"]}
    assert spec["loan amount"]["impute"] == imp["loan amount"]["value"]
    assert spec["état civil"]["impute"] == imp["état civil"]["value"]
    assert not train["loan amount"].isna().any()
    loaded = tf.saved_model.load(str(run.run_dir / "saved_model"))
    layout = sm.load_layout(loaded)
    sig = loaded.signatures["serving_default"]
    row = {c: [1.0] for c in ("Annual Income ($)", "prêt")} | {"2nd (try)": ["oui"]}

    def proba(loan, etat):
        cols = {**row, "loan amount": [loan], "état civil": [etat]}
        cols = {c: tf.constant(np.asarray(v, np.float32) if isinstance(v[0], float) else np.asarray(v, object))
                for c, v in cols.items()}
        return sig(**{layout["inputs"][c]: v for c, v in cols.items()})["probabilities"].numpy()

    np.testing.assert_allclose(proba(np.nan, ""), proba(imp["loan amount"]["value"], imp["état civil"]["value"]),
                               atol=1e-6)
