"""One split implementation (tfresp.data.split) for tabular, text and image data."""
import json

import numpy as np
import pandas as pd
import pytest

from tfresp.config import load_config
from tfresp.data import split
from tfresp.data.dataset import prepare
from tfresp.data.sources import load_adult

WORDS = ["late", "flight", "great", "crew", "seat", "bag", "delay", "food", "gate", "rude", "kind", "fast"]


def frame(n=600, seed=0):
    """ids, a text column, one numeric feature, an imbalanced 3-class label (60/30/10%)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(["a", "b", "c"], size=n, p=[0.6, 0.3, 0.1])
    text = [" ".join(rng.choice(WORDS, size=5)) for _ in range(n)]
    return pd.DataFrame({"id": np.arange(n), "text": text, "x": rng.normal(size=n), "y": y})


def ids(bundle):
    return {s: sorted(getattr(bundle, s).frame["id"].tolist()) for s in ("train", "validation", "test")}


def test_select_rows_is_exact_stratified_seeded_and_keeps_order():
    df = frame(1000)
    counts = df["y"].value_counts()
    for n in (7, 100, 333):
        out = split.select_rows(df, n, seed=3, label="y")
        assert len(out) == n and out["id"].is_monotonic_increasing and set(out["id"]) <= set(df["id"])
        got = out["y"].value_counts()
        for c, total in counts.items():  # every class keeps its share, to less than one row
            assert abs(got.get(c, 0) - n * total / len(df)) < 1
        assert out.equals(split.select_rows(df, n, seed=3, label="y"))
    assert not split.select_rows(df, 100, 3, "y")["id"].equals(split.select_rows(df, 100, 4, "y")["id"])
    assert split.select_rows(df, 5000, 0, "y") is df
    # without a label: df.sample, as for masked-LM pretraining before
    assert split.select_rows(df, 50, 1)["id"].tolist() == df.sample(n=50, random_state=1)["id"].tolist()


def test_split_frames_stratifies_test_and_validation():
    df = frame(1000)
    parts = split.split_frames({"train": df}, "y", 0.2, validation=0.1, max_rows=500, seed=0)
    assert len(parts.train) + len(parts.validation) + len(parts.test) == 500
    assert not set(parts.train["id"]) & set(parts.test["id"]) and not set(parts.train["id"]) & set(
        parts.validation["id"])
    chosen = pd.concat([parts.train, parts.validation, parts.test])
    for held, whole, frac in ((parts.test, chosen, 0.2),
                              (parts.validation, pd.concat([parts.train, parts.validation]), 0.1)):
        for c, n_c in whole["y"].value_counts().items():  # round(frac * n_c) rows of each class held out
            assert (held["y"] == c).sum() == int(round(frac * n_c))
    assert parts.test_split == "stratified 20% of the source (seed 0)"


def test_tabular_and_text_paths_choose_the_same_rows():
    df = frame(600)
    data = {"label": "y", "max_rows": 400, "split": {"test": 0.25, "validation": 0.1}}
    tab = prepare(load_config({"data": {**data, "features": ["x"]}, "model": {"kind": "mlp", "hidden": [4]}}),
                  memory=df)
    txt = prepare(load_config({"data": {**data, "text": "text", "max_length": 16,
                                        "tokenizer": {"vocab_size": 100, "min_frequency": 1}},
                               "model": {"kind": "bert", "bert": {"hidden": 8, "layers": 1, "heads": 2}}}),
                  memory=df)
    assert tab.kind == "tabular" and txt.kind == "text"
    assert ids(tab) == ids(txt)
    assert sum(len(v) for v in ids(tab).values()) == 400  # max_rows of the 600
    assert tab.info["test_split"] == txt.info["test_split"]


def test_a_user_test_file_for_text(tmp_path):
    df = frame(300)
    test = frame(40, seed=1).assign(id=lambda d: d["id"] + 10_000)
    path = tmp_path / "test.csv"
    test.to_csv(path, index=False)
    cfg = {"data": {"label": "y", "text": "text", "max_length": 16, "split": {"test": str(path), "validation": 0.1},
                    "tokenizer": {"vocab_size": 100, "min_frequency": 1}},
           "model": {"kind": "bert", "bert": {"hidden": 8, "layers": 1, "heads": 2}}}
    b = prepare(load_config(cfg), memory=df)
    assert ids(b)["test"] == test["id"].tolist()
    assert len(b.train) + len(b.validation) == 300 and b.info["test_file"]["name"] == "test.csv"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_user_test_file_for_images(tmp_path, fmt):
    """Before the one split module, an image run with `data.split.test: <path>` failed (float('<path>'))."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = np.isin(bunch.target, [0, 1, 2])
    images, labels = bunch.images[keep][-30:], bunch.target[keep][-30:]
    rows = pd.DataFrame({"image": [im.tolist() for im in images], "label": labels})
    path = tmp_path / f"test.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows.to_dict("records")))
    else:
        rows.to_parquet(path)
    cfg = {"data": {"source": "digits:0-2", "label": "label", "max_rows": 200,
                    "split": {"test": str(path), "validation": 0.1}}, "model": {"kind": "cnn"}}
    b = prepare(load_config(cfg))
    assert b.kind == "image" and len(b.test) == 30 and len(b.train) == 200
    np.testing.assert_allclose(b.test.x[..., 0], images / 16.0, atol=1e-6)
    assert [b.classes[i] for i in b.test.y] == [str(v) for v in labels]
    assert b.info["test_file"]["name"] == path.name
    for s in (b.train, b.validation):  # max_rows and validation stratified: every class in each
        assert set(np.unique(s.y)) == {0, 1, 2}


def test_image_max_rows_counts_training_rows_and_keeps_the_whole_test_split():
    """digits_finetune.yaml / benchmarks/robustness.py: `max_rows: 25` means 25 labelled training rows."""
    from sklearn.datasets import load_digits

    b = prepare(load_config({"data": {"source": "digits:5-9", "label": "label", "max_rows": 25,
                                      "split": {"test": 0.2, "validation": 0.1}}, "model": {"kind": "cnn"}}))
    target = load_digits().target
    per_class = {c: int((target == c).sum()) for c in range(5, 10)}
    assert len(b.train) == 25 and set(np.unique(b.train.y)) == set(range(5))
    assert len(b.test) == sum(int(round(0.2 * n)) for n in per_class.values())
    assert "stratified 20%" in b.info["test_split"]


def test_adult_without_max_rows_keeps_the_official_test_split_and_a_stratified_validation():
    frames, _ = load_adult()
    b = prepare(load_config({"data": {"source": "adult", "label": "income", "sensitive": ["sex"]},
                             "model": {"kind": "mlp", "hidden": [4]}}))
    assert len(b.test) == len(frames["test"])
    assert len(b.train) + len(b.validation) == len(frames["train"])
    train_counts = frames["train"]["income"].value_counts()
    val = b.validation.frame["income"].value_counts()
    assert {c: int(val[c]) for c in train_counts.index} == {c: int(round(0.1 * n)) for c, n in train_counts.items()}


def test_a_user_test_file_is_de_identified_like_the_source(tmp_path):
    """Before, the test file was read after de-identification and kept the dropped column."""
    df = frame(200).assign(ssn="123-45-6789")
    path = tmp_path / "test.csv"
    frame(30, seed=2).assign(ssn="987-65-4321").to_csv(path, index=False)
    cfg = {"data": {"label": "y", "features": ["x"], "split": {"test": str(path)},
                    "deidentify": {"drop": ["ssn"]}}, "model": {"kind": "mlp", "hidden": [4]}}
    b = prepare(load_config(cfg), memory=df)
    assert len(b.test) == 30 and "ssn" not in b.test.frame.columns and "ssn" not in b.train.frame.columns


def _old_two_step(df, label, frac, validation, seed):
    """The split before issue 26's one-copy path (the oracle): test split, then validation from the kept frame."""
    def strat(d, f, s):
        rng = np.random.default_rng(s)
        held = []
        for _, idx in d.groupby(label, sort=True, observed=True).indices.items():
            idx = np.array(idx)
            rng.shuffle(idx)
            held.extend(idx[:int(round(len(idx) * f))].tolist())
        mask = np.zeros(len(d), dtype=bool)
        mask[held] = True
        return d[~mask].reset_index(drop=True), d[mask].reset_index(drop=True)

    def rand(d, f, s):
        idx = np.random.default_rng(s).permutation(len(d))
        n = int(round(len(d) * f))
        return d.iloc[idx[n:]].reset_index(drop=True), d.iloc[idx[:n]].reset_index(drop=True)

    cut = rand if label is None else strat
    train, test = cut(df, frac, seed)
    train, val = cut(train, validation, seed + 1)
    return train, val, test


@pytest.mark.parametrize("label", ["y", None])
def test_one_copy_split_equals_the_two_step_split(label):
    df = frame(997, seed=5)
    df["y"] = df["y"].astype("category")
    parts = split.split_frames({"train": df}, label, 0.2, validation=0.1, max_rows=None, seed=3)
    for got, want in zip((parts.train, parts.validation, parts.test), _old_two_step(df, label, 0.2, 0.1, 3)):
        pd.testing.assert_frame_equal(got, want)
    other = split.split_frames({"train": df}, label, 0.2, validation=0.1, max_rows=None, seed=4)
    assert not other.test["id"].equals(parts.test["id"])  # the comparison can fail: another seed, other rows


def test_attach_test_file_copies_only_frames_the_run_does_not_own():
    from tfresp.data.sources import reads_file

    df = frame(50)
    keep, _, _ = split.attach_test_file({"train": df}, {}, 0.2)
    assert keep["train"] is not df and keep["train"].equals(df)  # the user's (or a cached) frame: copied
    keep, _, _ = split.attach_test_file({"train": df}, {}, 0.2, owned=True)
    assert keep["train"] is df  # just read from a file for this run: not copied
    assert reads_file("rows.csv") and not reads_file("rows.csv", memory=df)
    assert not reads_file("adult") and not reads_file("tfds:mnist") and not reads_file("digits:8")


def test_prepare_leaves_the_callers_frame_untouched():
    df = frame(300)
    df["g"] = np.where(np.arange(300) % 2, "p", "q").astype(object)
    df.loc[3, "g"] = None  # repaired in place (the group <missing>) on the run's frames
    df["n"] = ["1,5"] * 300  # numbers as text: parsed in place
    before = df.copy()
    cfg = load_config({"data": {"source": "memory", "label": "y", "features": ["x", "n"], "sensitive": ["g"],
                                "split": {"test": 0.2, "validation": 0.1}}})
    prepare(cfg, memory=df)
    pd.testing.assert_frame_equal(df, before)


def test_a_user_test_file_is_read_with_the_declared_delimiter_and_encoding(tmp_path):
    # one '|' and one ',' a line: the sniffer alone would split at ','; cp1251 text is not detected reliably
    rng = np.random.default_rng(0)
    names = ["\u041c\u043e\u0441\u043a\u0432\u0430", "\u041a\u0438\u0435\u0432"]  # Moscow, Kiev (Cyrillic)

    def write(path, n):
        rows = ["x|city,zone|y"] + [f"{rng.normal():.3f}|{names[i % 2]},z{i % 3}|{'ab'[i % 2]}" for i in range(n)]
        path.write_bytes(("\n".join(rows) + "\n").encode("cp1251"))
        return str(path)

    cfg = load_config({"data": {"source": write(tmp_path / "tr.csv", 200), "label": "y", "delimiter": "|",
                                "encoding": "cp1251", "split": {"test": write(tmp_path / "te.csv", 60),
                                                                "validation": 0.0}},
                       "model": {"kind": "mlp", "hidden": [4]}})
    b = prepare(cfg)
    assert set(b.test.frame["city,zone"]) == {f"{names[i % 2]},z{i % 3}" for i in range(6)}
    assert b.info["test_file"].get("delimiter") == "|" and b.info["test_file"].get("encoding") == "cp1251"


def test_splits_follow_the_seed_and_the_row_order_as_documented():
    # README "Data": same rows, same order -> same splits; the index is not used; another order -> other splits
    df = frame(300)
    df["id"] = np.arange(300)
    cfg = load_config({"data": {"source": "memory", "label": "y", "features": ["x"],
                                "split": {"test": 0.2, "validation": 0.1}}, "model": {"kind": "mlp", "hidden": [4]}})

    def test_ids(d):
        return prepare(cfg, memory=d).test.frame["id"].tolist()

    first = test_ids(df)
    assert test_ids(df.copy()) == first
    assert test_ids(df.set_index(np.arange(300)[::-1])) == first
    assert test_ids(df.iloc[::-1].reset_index(drop=True)) != first


def test_a_whole_number_column_is_named_alike_in_the_source_and_the_test_file(tmp_path):
    # the test file's sensitive column has a missing value: pandas reads it as floats (1.0) where the source has
    # ints (1); its groups were '0.0'/'1.0' beside the training groups '0'/'1' (fairness matched no group)
    rng = np.random.default_rng(0)
    (tmp_path / "tr.csv").write_text("x,g,y\n" + "".join(f"{rng.normal():.3f},{i % 2},{'ab'[i % 3 == 0]}\n"
                                                          for i in range(300)))
    (tmp_path / "te.csv").write_text("x,g,y\n" + "".join(f"{rng.normal():.3f},{'' if i == 0 else i % 2},"
                                                          f"{'ab'[i % 3 == 0]}\n" for i in range(100)))
    cfg = load_config({"data": {"source": str(tmp_path / "tr.csv"), "label": "y", "sensitive": ["g"],
                                "split": {"test": str(tmp_path / "te.csv"), "validation": 0.1}},
                       "model": {"kind": "mlp", "hidden": [4]}})
    with pytest.warns(UserWarning, match="missing values"):
        b = prepare(cfg)
    assert sorted(set(b.train.groups["g"])) == ["0", "1"]
    assert sorted(set(b.test.groups["g"])) == ["0", "1", "<missing>"]
