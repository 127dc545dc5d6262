"""Text data: a text column (+ label) -> WordPiece ids, with tokenization that also runs in the SavedModel.

The vocabulary comes from a checkpoint (``vocab.txt`` of a transformers dir or a tfresp run) or is
**trained on the training split** with HF ``tokenizers`` WordPiece (Wu et al., 2016; BERT's
tokenizer, Devlin et al., 2019) and saved with the run under ``preprocessing/``. Tokenization itself
is always done by ``tensorflow_text.FastBertTokenizer`` (Song et al., 2021, "Fast WordPiece
Tokenization") on that vocabulary, both for training and inside the exported graph, so serving
on raw strings sees exactly the ids the model was trained on.

Padding is dynamic: splits are stored padded to ``data.max_length``, and every batch is trimmed to
its longest row (rounded up to a multiple of 8) by :func:`trim_padding`.

Example:
    >>> cfg = load_config({"data": {"source": "tweets.csv.gz", "text": "text", "label": "sentiment"},
    ...                    "model": {"kind": "bert", "bert": {"hidden": 64, "layers": 2, "heads": 2}}})
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tfresp.data.preprocess import read_spec, write_spec
from tfresp.errors import ConfigError, DataError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_TOKENIZER_KEYS = {"vocab", "vocab_size", "lowercase", "min_frequency"}
PAD_MULTIPLE = 8


def _clean(series: pd.Series) -> np.ndarray:
    return series.fillna("").astype(str).to_numpy().astype(object)


class TokenizedText(dict):
    """``{"input_ids", "attention_mask"}`` numpy arrays that slice like one array (``x[:n]``, ``x[idx]``).

    Lets code written for tabular ``Split.x`` (export round trips, audits) take row subsets of text inputs.
    """

    def __getitem__(self, key):
        if isinstance(key, str):
            return dict.__getitem__(self, key)
        return TokenizedText({k: v[key] for k, v in self.items()})

    @property
    def shape(self):
        return dict.__getitem__(self, "input_ids").shape

    @property
    def rows(self) -> int:
        return int(self.shape[0])


class TextPreprocessor(tf.Module):
    """Raw strings -> ``{"input_ids", "attention_mask"}`` with a WordPiece vocabulary.

    Same interface as :class:`~tfresp.data.preprocess.TabularPreprocessor` (``transform``,
    ``input_signature``, ``frame_to_inputs``, ``save``), so the SavedModel export takes raw text.

    Args:
        vocab: WordPiece vocabulary (index = token id); must contain ``[PAD] [UNK] [CLS] [SEP] [MASK]``.
        column: name of the raw text input.
        max_length: maximum sequence length including ``[CLS]`` and ``[SEP]``.
        lowercase: lower-case, NFD-normalise and strip accents before WordPiece (uncased models).
    """

    def __init__(self, vocab: List[str], column: str, max_length: int, lowercase: bool = True,
                 trained: Optional[dict] = None):
        super().__init__(name="text_preprocessor")
        import tensorflow_text as tf_text

        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise DataError(f"Invalid vocabulary: special tokens {missing} are missing")
        self.vocab, self.column, self.max_length, self.lowercase = list(vocab), column, int(max_length), lowercase
        self.trained = trained
        index = {t: i for i, t in enumerate(self.vocab)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (index[t] for t in SPECIAL_TOKENS)
        self.tokenizer = tf_text.FastBertTokenizer(
            vocab=self.vocab, suffix_indicator="##", max_bytes_per_word=100, token_out_type=tf.int64,
            unknown_token="[UNK]", no_pretokenization=False, support_detokenization=False,
            lower_case_nfd_strip_accents=lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def special_ids(self) -> List[int]:
        return [self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id]

    def input_signature(self) -> Dict[str, tf.TensorSpec]:
        return {self.column: tf.TensorSpec([None], tf.string, name=self.column)}

    def encode(self, text: tf.Tensor, pad_to: Optional[int] = None) -> Dict[str, tf.Tensor]:
        """Tokenize a ``[batch]`` string tensor; pad to the batch's longest row or to ``pad_to``."""
        pieces = self.tokenizer.tokenize(clean_text(tf.reshape(text, [-1])))
        if isinstance(pieces, tf.RaggedTensor) and pieces.ragged_rank > 1:
            pieces = pieces.merge_dims(-2, -1)
        pieces = pieces[:, : self.max_length - 2]
        n = tf.shape(pieces.row_lengths())[0]
        cls = tf.fill([n, 1], tf.constant(self.cls_id, tf.int64))
        sep = tf.fill([n, 1], tf.constant(self.sep_id, tf.int64))
        ids = tf.concat([cls, pieces, sep], axis=1)
        lengths = ids.row_lengths()
        if pad_to is not None:
            dense = ids.to_tensor(default_value=self.pad_id, shape=[None, pad_to])
        else:
            dense = ids.to_tensor(default_value=self.pad_id)  # the batch's longest row
        width = tf.shape(dense)[1]
        mask = tf.sequence_mask(lengths, width, dtype=tf.int32)
        return {"input_ids": tf.cast(dense, tf.int32), "attention_mask": mask}

    def transform(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """Raw ``{column: [batch] strings}`` -> model inputs (used for training data and in serving)."""
        return self.encode(inputs[self.column])

    def frame_to_inputs(self, df: pd.DataFrame) -> Dict[str, np.ndarray]:
        if self.column not in df.columns:
            raise DataError(f"Invalid value for `data.text`: column {self.column!r} is missing from the rows")
        return {self.column: _clean(df[self.column])}

    def transform_frame(self, df: pd.DataFrame, batch: int = 4096) -> "TokenizedText":
        """Encode a frame padded to ``max_length`` (numpy, for tf.data and ``predict``)."""
        text = self.frame_to_inputs(df)[self.column]
        parts = [self.encode(tf.constant(text[i:i + batch], tf.string), pad_to=self.max_length)
                 for i in range(0, len(text), batch)] or [self.encode(tf.constant([], tf.string), self.max_length)]
        return TokenizedText({k: np.concatenate([p[k].numpy() for p in parts]) for k in ("input_ids", "attention_mask")})

    # -- persistence ---------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"type": "text", "column": self.column, "max_length": self.max_length, "lowercase": self.lowercase,
                "vocab_size": self.vocab_size, "vocab_file": "vocab.txt", "tokenizer": "FastBertTokenizer",
                "trained": self.trained}

    def save(self, directory: Path) -> Path:
        path = write_spec(directory, "text.json", self.to_json())
        (path.parent / "vocab.txt").write_text("\n".join(self.vocab) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path) -> "TextPreprocessor":
        meta = read_spec(directory, "text.json")
        return cls(read_vocab(Path(directory) / "vocab.txt"), meta["column"], meta["max_length"], meta["lowercase"],
                   meta.get("trained"))


def clean_text(text: tf.Tensor) -> tf.Tensor:
    """BERT's text cleaning in-graph: whitespace controls -> space; drop other control/format chars and U+FFFD.

    Matches transformers' ``BasicTokenizer._clean_text`` so mis-encoded bytes do not turn whole words into
    ``[UNK]``.
    """
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    text = tf.strings.regex_replace(text, r"[\t\n\r]", " ")
    return tf.strings.regex_replace(text, r"[\p{Cc}\p{Cf}\p{Co}\p{Cs}\x{FFFD}]", "")


def read_vocab(path) -> List[str]:
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    return lines


def checkpoint_tokenizer(directory) -> dict:
    """WordPiece vocabulary and casing of a Hugging Face checkpoint dir: ``tokenizer.json``, else ``vocab.txt``.

    ``tokenizer.json`` is read with HF ``tokenizers`` (the vocabulary, ordered by id) and its normalizer settings;
    casing for ``vocab.txt`` comes from ``tokenizer_config.json``. Only WordPiece tokenizers whose normalizer
    :class:`TextPreprocessor` reproduces in-graph are accepted (the SavedModel tokenizes raw strings itself).

    Returns:
        ``{"vocab": [token, ...], "lowercase": bool, "file": "tokenizer.json" | "vocab.txt"}``.

    Raises:
        ConfigError: no tokenizer file, a non-WordPiece tokenizer (RoBERTa's byte-level BPE, SentencePiece), or
            lower-casing without accent stripping.
    """
    import json

    d = Path(directory)
    if (d / "tokenizer.json").exists():
        from tokenizers import Tokenizer

        spec = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
        kind = (spec.get("model") or {}).get("type")
        if kind != "WordPiece":
            raise ConfigError([("model.checkpoint", str(d / "tokenizer.json"),
                                f"a WordPiece tokenizer (BERT, DistilBERT, MiniLM); this one is {kind!r}. tfresp "
                                "tokenizes inside the exported SavedModel with tensorflow-text's FastBertTokenizer, "
                                "which has no byte-level BPE or SentencePiece. Remedy: use a WordPiece checkpoint, "
                                "or load the weights with tfresp.models.hf_loading.read_checkpoint in your own "
                                "Keras code and tokenize outside the model")])
        vocab_map = Tokenizer.from_file(str(d / "tokenizer.json")).get_vocab(with_added_tokens=True)
        vocab = [t for t, _ in sorted(vocab_map.items(), key=lambda kv: kv[1])]
        if [vocab_map[t] for t in vocab] != list(range(len(vocab))):
            raise ConfigError([("model.checkpoint", str(d / "tokenizer.json"), "token ids 0..n-1 without gaps")])
        norm = spec.get("normalizer") or {}
        lower = bool(norm.get("lowercase", False)) if norm.get("type") == "BertNormalizer" else False
        strip = norm.get("strip_accents")
        if norm.get("type") not in ("BertNormalizer", None) or (strip is not None and bool(strip) != lower):
            raise ConfigError([("model.checkpoint", str(d / "tokenizer.json"),
                                f"a BertNormalizer whose accent stripping follows lowercase; received {norm}. The "
                                "in-graph tokenizer lower-cases and strips accents together or does neither")])
        return {"vocab": vocab, "lowercase": lower, "file": "tokenizer.json"}
    if (d / "vocab.txt").exists():
        lower = True
        if (d / "tokenizer_config.json").exists():
            lower = bool(json.loads((d / "tokenizer_config.json").read_text()).get("do_lower_case", True))
        return {"vocab": read_vocab(d / "vocab.txt"), "lowercase": lower, "file": "vocab.txt"}
    raise ConfigError([("model.checkpoint", str(d), "has no tokenizer.json or vocab.txt (WordPiece vocabulary)")])


def train_wordpiece(texts, vocab_size: int = 8000, lowercase: bool = True, min_frequency: int = 2) -> List[str]:
    """Train a BERT WordPiece vocabulary with HF ``tokenizers`` on ``texts`` (the training split only)."""
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=lowercase, clean_text=True,
                                 handle_chinese_chars=True)
    tok.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=SPECIAL_TOKENS, limit_alphabet=1000, wordpieces_prefix="##",
                            show_progress=False)
    # tokenizers breaks frequency ties nondeterministically (a piece or two at the cut-off can differ between
    # runs); sorting makes the order canonical. The vocabulary actually used is saved with the run.
    rest = sorted(t for t in tok.get_vocab() if t not in SPECIAL_TOKENS)
    return list(SPECIAL_TOKENS) + rest


def trim_padding(x, y, extras):
    """Dataset map: cut a padded batch to its longest row (rounded up to a multiple of 8)."""
    mask = x["attention_mask"]
    full = tf.shape(mask)[1]
    longest = tf.reduce_max(tf.reduce_sum(mask, axis=1))
    width = tf.minimum(full, tf.maximum(longest + PAD_MULTIPLE - 1, PAD_MULTIPLE) // PAD_MULTIPLE * PAD_MULTIPLE)
    return {k: v[:, :width] for k, v in x.items()}, y, extras


def _random_split(df: pd.DataFrame, frac: float, seed: int):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(df))
    n = int(round(len(df) * frac))
    return df.iloc[idx[n:]].reset_index(drop=True), df.iloc[idx[:n]].reset_index(drop=True)


def _tokenizer_spec(config) -> dict:
    spec = {"vocab": None, "vocab_size": 8000, "lowercase": True, "min_frequency": 2, **(config.data.tokenizer or {})}
    problems = [(f"data.tokenizer.{k}", spec[k], f"unknown key; expected one of {sorted(_TOKENIZER_KEYS)}")
                for k in sorted(set(spec) - _TOKENIZER_KEYS)]
    if not isinstance(spec["vocab_size"], int) or spec["vocab_size"] < 100:
        problems.append(("data.tokenizer.vocab_size", spec["vocab_size"], "an integer >= 100"))
    if spec["vocab"] is not None and not Path(str(spec["vocab"])).is_file():
        problems.append(("data.tokenizer.vocab", spec["vocab"], "path to an existing vocab.txt"))
    if problems:
        raise ConfigError(problems)
    return spec


def make_preprocessor(config, train_texts) -> TextPreprocessor:
    """Vocabulary from the checkpoint, from ``data.tokenizer.vocab``, or trained on ``train_texts``."""
    dc, mc = config.data, config.model
    spec = _tokenizer_spec(config)
    if mc.checkpoint and mc.kind in ("checkpoint", "bert"):
        from tfresp.models.bert import resolve_checkpoint

        ck = resolve_checkpoint(mc.checkpoint)
        return TextPreprocessor(ck["vocab"], dc.text, dc.max_length, ck["lowercase"],
                                {"source": ck["kind"], "path": ck["path"], "file": ck.get("tokenizer_file")})
    if spec["vocab"]:
        return TextPreprocessor(read_vocab(spec["vocab"]), dc.text, dc.max_length, bool(spec["lowercase"]),
                                {"source": "file", "path": str(spec["vocab"])})
    vocab = train_wordpiece(train_texts, spec["vocab_size"], bool(spec["lowercase"]), int(spec["min_frequency"]))
    return TextPreprocessor(vocab, dc.text, dc.max_length, bool(spec["lowercase"]),
                            {"source": "trained on the training split (HF tokenizers WordPiece)",
                             "requested_vocab_size": spec["vocab_size"], "rows": int(len(train_texts))})


def prepare_text(config, frames: dict, info: dict):
    """Build a text :class:`~tfresp.data.dataset.DataBundle` (``kind="text"``) from raw frames."""
    from tfresp.data.dataset import DataBundle, Split, _require_columns, _stratified_split

    dc = config.data
    mlm = config.task == "mlm"
    label = None if mlm else dc.label
    train_df = frames["train"]
    _require_columns(train_df, [dc.text] + ([label] if label else []) + list(dc.sensitive), "data.text")
    if not mlm and train_df[label].isna().any():
        raise DataError(f"Invalid value in `data.label` column {label!r}: {int(train_df[label].isna().sum())} "
                        "missing labels")
    if dc.max_rows and len(train_df) > dc.max_rows:
        train_df = train_df.sample(n=dc.max_rows, random_state=config.seed).reset_index(drop=True)

    def split(df, frac, seed):
        return _random_split(df, frac, seed) if mlm else _stratified_split(df, label, frac, seed)

    split_test = dc.split.test
    if isinstance(split_test, str) and split_test != "official":  # a separate test file
        from tfresp.data.sources import load_file

        test_frames, test_info = load_file(split_test, dc.format)
        frames = {**frames, "test": test_frames["train"]}
        info = {**info, "test_file": test_info}
        split_test = "official"
    if "test" in frames and split_test == "official":
        _require_columns(frames["test"], [dc.text] + ([label] if label else []), "data.split.test")
        test_df = frames["test"]
        if dc.max_rows and len(test_df) > dc.max_rows:
            test_df = test_df.sample(n=dc.max_rows, random_state=config.seed).reset_index(drop=True)
    else:
        frac = 0.2 if split_test == "official" else float(split_test)
        train_df, test_df = split(train_df, frac, config.seed)
        info = {**info, "test_split": f"{'random' if mlm else 'stratified'} {frac:.0%} of the source "
                                      f"(seed {config.seed})"}
    val_df = None
    if dc.split.validation > 0:
        train_df, val_df = split(train_df, dc.split.validation, config.seed + 1)

    if mlm:
        classes: List[str] = []
    else:
        classes = sorted(train_df[label].astype(str).unique().tolist())
        if len(classes) < 2:
            raise DataError(f"Invalid value for `data.label`: column {label!r} has a single class {classes}")
        for name, df in (("test", test_df), ("validation", val_df)):
            if df is not None:
                unseen = sorted(set(df[label].astype(str)) - set(classes))
                if unseen:
                    raise DataError(f"Invalid value in `data.label`: the {name} split has labels {unseen[:5]} "
                                    f"never seen in training (training classes: {classes[:10]})")
    index = {c: i for i, c in enumerate(classes)}
    pre = make_preprocessor(config, _clean(train_df[dc.text]))

    def make(df):
        if df is None:
            return None
        x = pre.transform_frame(df)
        y = (np.zeros(len(df), np.int64) if mlm else df[label].astype(str).map(index).to_numpy(np.int64))
        return Split(x=x, y=y, frame=df.reset_index(drop=True),
                     groups={a: df[a].astype(str).to_numpy() for a in dc.sensitive})

    train, validation, test = make(train_df), make(val_df), make(test_df)
    lengths = train.x["attention_mask"].sum(axis=1)
    unk = float(np.mean(train.x["input_ids"][train.x["attention_mask"] == 1] == pre.unk_id))
    summary = {"text": {"column": dc.text, "max_length": dc.max_length, "vocab_size": pre.vocab_size,
                        "tokenizer": pre.trained, "lowercase": pre.lowercase,
                        "tokens_per_row": {"mean": float(lengths.mean()), "p50": float(np.median(lengths)),
                                           "p95": float(np.percentile(lengths, 95)), "max": int(lengths.max())},
                        "truncated_rows_fraction": float(np.mean(lengths >= dc.max_length)),
                        "unknown_token_rate": unk, "padding": "dynamic (per batch, multiple of 8)"}}
    return DataBundle(train=train, validation=validation, test=test, classes=classes, feature_columns=[dc.text],
                      sensitive=list(dc.sensitive), preprocessor=pre, info=info, kind="text",
                      extra={"vocab_size": pre.vocab_size, "max_length": dc.max_length, "summary": summary})
