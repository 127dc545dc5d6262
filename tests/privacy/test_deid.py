"""De-identification: pattern oracles, the shared tweets corpus, generalization and k-anonymity."""
import re

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TWEETS
from tfresp.config import DeidentifyConfig, DataConfig
from tfresp.data.sources import load_adult
from tfresp.errors import DataError
from tfresp.privacy.deid import deidentify_frames, find_identifiers, k_anonymity, luhn_valid, mask_text


def test_luhn_against_known_numbers():
    assert luhn_valid("4111 1111 1111 1111") and luhn_valid("5500-0000-0000-0004") and luhn_valid("378282246310005")
    assert not luhn_valid("4111 1111 1111 1112") and not luhn_valid("1234567890123")


@pytest.mark.parametrize("text,kind,gone", [
    ("mail me at jane.doe+x@example.co.uk today", "email", "jane.doe"),
    ("see https://t.co/AbC123?x=1 and www.example.org/path", "url", "t.co"),
    ("thanks @John_Smith99!", "handle", "John_Smith99"),
    ("call +1 (415) 555-2671 now", "phone", "555-2671"),
    ("call 415-555-2671 now", "phone", "555-2671"),
    ("server 192.168.10.254 down", "ip", "192.168.10.254"),
    ("card 4111 1111 1111 1111 exp", "card", "4111"),
])
def test_each_kind_is_masked(text, kind, gone):
    counts = {}
    out = mask_text(text, [kind], counts)
    assert gone not in out and counts == {kind: 1 if kind != "url" else 2}


def test_non_identifiers_survive():
    text = "In 2015 I paid 1234567890123 (not a card), version 1.2.3, score 10-4, email-free @ noon"
    assert mask_text(text, ["email", "url", "handle", "phone", "ip", "card"]) == text
    assert mask_text("a@b is not an email but @b is a handle", ["email"]) == "a@b is not an email but @b is a handle"


def test_tweets_corpus_has_no_handles_or_urls_left():
    if not TWEETS.exists():
        pytest.skip("shared tweets corpus not present")
    df = pd.read_csv(TWEETS, encoding="latin-1")
    # independent counts with simple regexes, before masking
    n_handles = int(df.text.str.count(r"(?<![\w@])@\w+").sum())
    n_urls = int(df.text.str.count(r"https?://\S+").sum())
    assert n_handles > 1000 and n_urls > 1000
    cfg = DataConfig(source="x", label="sentiment", text="text", deidentify=DeidentifyConfig())
    frames, report = deidentify_frames({"train": df}, cfg)
    out = frames["train"].text
    counts = report["text"]["counts"]
    assert counts["handle"] >= 0.95 * n_handles and counts["url"] >= n_urls
    assert report["text"]["rows_changed"] > 0
    assert not out.str.contains(r"(?<![\w@])@\w+", regex=True).any()
    assert not out.str.contains(r"https?://", regex=True).any()
    assert sum(sum(find_identifiers(t).values()) for t in out.head(3000)) == 0
    assert len(frames["train"]) == len(df) and (frames["train"].sentiment == df.sentiment).all()


def test_tables_drop_generalize_and_k_anonymity():
    frames, _ = load_adult()
    frames = {k: v.head(5000) for k, v in frames.items()}
    raw_k = k_anonymity(frames["train"], ["age", "sex", "race"])["k"]
    cfg = DataConfig(deidentify=DeidentifyConfig(
        text=[], drop=["fnlwgt"], generalize={"age": 10, "capital_gain": {"top": 10000},
                                              "native_country": {"min_count": 50}},
        k_anonymity=["age", "sex", "race"]))
    out, report = deidentify_frames(frames, cfg)
    tr = out["train"]
    assert "fnlwgt" not in tr.columns and "fnlwgt" not in out["test"].columns
    assert set(np.unique(tr.age) % 10) == {0} and tr.age.min() >= 10
    assert tr["capital_gain"].max() <= 10000 and frames["train"]["capital_gain"].max() > 10000
    assert tr["native_country"].value_counts().min() >= 50 or "Other" in set(tr["native_country"])
    # k-anonymity oracle: smallest group by a plain pandas groupby
    k = int(tr.groupby(["age", "sex", "race"]).size().min())
    assert report["k_anonymity"]["k"] == k and k >= raw_k
    assert report["dropped"] == ["fnlwgt"] and set(report["generalized"]) == {"age", "capital_gain", "native_country"}


def test_bad_declarations_raise_data_error():
    frames, _ = load_adult()
    frames = {"train": frames["train"].head(100)}
    with pytest.raises(DataError, match="drop"):
        deidentify_frames(frames, DataConfig(deidentify=DeidentifyConfig(drop=["ssn"])))
    with pytest.raises(DataError, match="not numeric"):
        deidentify_frames(frames, DataConfig(deidentify=DeidentifyConfig(generalize={"sex": 10})))
