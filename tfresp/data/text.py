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

import math

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tfresp.data.bundle import DataBundle, Split, require_columns
from tfresp.data.preprocess import read_spec, write_spec
from tfresp.errors import ConfigError, DataError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
#: a finished tfresp BERT run keeps its checkpoint in ``RUN/bert/`` (``bert_config.json``, ``vocab.txt``, weights)
CHECKPOINT_DIR = "bert"
CHECKPOINT_CONFIG = "bert_config.json"
CHECKPOINT_LAYOUTS = ("a Hugging Face checkpoint (config.json + model.safetensors or tf_model.h5, tokenizer.json or "
                      "vocab.txt) or a tfresp run directory with bert/ (a finished bert run)")
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


def checkpoint_dir(path):
    """``(kind, directory)`` of a checkpoint: ``"tfresp"`` (a run dir or its ``bert/``) or ``"transformers"``.

    Raises:
        ConfigError: the path does not exist, or holds neither layout.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError([("model.checkpoint", str(path), "directory does not exist")])
    if (p / CHECKPOINT_DIR / CHECKPOINT_CONFIG).exists():
        p = p / CHECKPOINT_DIR
    if (p / CHECKPOINT_CONFIG).exists():
        return "tfresp", p
    if (p / "config.json").exists():
        return "transformers", p
    raise ConfigError([("model.checkpoint", str(path),
                        "expected " + CHECKPOINT_LAYOUTS)])


def checkpoint_vocab(path) -> dict:
    """The vocabulary a checkpoint was trained with: ``{"kind", "path", "vocab", "lowercase", "tokenizer_file"}``.

    Read here, in the data layer, so text preparation needs no model code; the model side
    (:func:`tfresp.models.bert.resolve_checkpoint`) adds the architecture and the weights.
    """
    import json

    kind, p = checkpoint_dir(path)
    if kind == "tfresp":
        meta = json.loads((p / CHECKPOINT_CONFIG).read_text())
        return {"kind": kind, "path": str(p), "vocab": read_vocab(p / "vocab.txt"), "tokenizer_file": "vocab.txt",
                "lowercase": meta.get("lowercase", True)}
    tok = checkpoint_tokenizer(p)
    return {"kind": kind, "path": str(p), "vocab": tok["vocab"], "lowercase": tok["lowercase"],
            "tokenizer_file": tok["file"]}


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


#: Distinct words one text may add to the DP word histogram (the rest of a longer text is not counted).
DP_WORDS_PER_ROW = 16


def dp_words(texts, lowercase: bool, budget, epsilon: float, words_per_row: int = DP_WORDS_PER_ROW):
    """DP word list of ``texts``: a Gaussian sparse histogram over BERT-pre-tokenized words (each text adds 1 to
    at most ``words_per_row`` distinct words, L2 sensitivity ``sqrt(words_per_row)``); a word is kept when its
    noisy count passes a threshold set so that a word held by one text passes with probability ≤ 10% of δ
    (see :mod:`tfresp.data.dp_stats`). Returns ``{word: noisy_count}`` (post-processing input for WordPiece)."""
    import dp_accounting
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    from tfresp.data import dp_stats
    from tfresp.data.dp_tabular import THRESHOLD_DELTA_SHARE

    norm = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase)
    pre = BertPreTokenizer()
    counts: Dict[str, int] = {}
    for text in texts:
        seen = list(dict.fromkeys(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(str(text)))))
        for w in seen[:words_per_row]:
            counts[w] = counts.get(w, 0) + 1
    delta_thr = THRESHOLD_DELTA_SHARE * budget.delta
    # the threshold's δ comes out of the run's δ first (PrivacyBudget.accounting_delta): calibrate at the rest
    mu = dp_stats.gaussian_noise_multiplier(epsilon, budget.accounting_delta - delta_thr)
    sigma = mu * math.sqrt(words_per_row)
    tau = dp_stats.threshold(sigma, words_per_row, delta_thr)
    budget.spend("preprocessing.word_histogram", dp_accounting.GaussianDpEvent(mu), mechanism="gaussian",
                 params={"noise_multiplier": mu, "sensitivity": math.sqrt(words_per_row), "std": sigma,
                         "threshold": tau, "delta": delta_thr, "words_per_row": words_per_row},
                 covers=["preprocessing/vocab.txt"])
    words, noisy = dp_stats.kept_keys(counts, sigma, tau, np.random.default_rng(budget.secret_seed()))
    return dict(zip(words, noisy)), {"epsilon": epsilon, "noise_std": sigma, "threshold": tau,
                                     "threshold_delta": delta_thr, "kept_words": len(words)}


def train_wordpiece_on_words(words: Dict[str, float], vocab_size: int, lowercase: bool,
                             min_frequency: int) -> List[str]:
    """WordPiece trained on a (DP) word list weighted by its (noisy) counts: post-processing of that list.

    A public base alphabet (ASCII letters, digits, punctuation, and their ``##`` forms) is always added, so
    any word can still be spelled when few words pass the DP threshold.
    """
    import string

    lines = (" ".join([w] * max(int(round(c)), 1)) for w, c in sorted(words.items()))
    vocab = train_wordpiece(lines, vocab_size, lowercase, min_frequency)
    chars = string.ascii_lowercase + string.digits + ("" if lowercase else string.ascii_uppercase)
    alphabet = set(chars) | {"##" + c for c in chars} | set(string.punctuation)
    rest = sorted((set(vocab) | alphabet) - set(SPECIAL_TOKENS))
    return list(SPECIAL_TOKENS) + rest


def trim_padding(x, y, extras):
    """Dataset map: cut a padded batch to its longest row (rounded up to a multiple of 8)."""
    mask = x["attention_mask"]
    full = tf.shape(mask)[1]
    longest = tf.reduce_max(tf.reduce_sum(mask, axis=1))
    width = tf.minimum(full, tf.maximum(longest + PAD_MULTIPLE - 1, PAD_MULTIPLE) // PAD_MULTIPLE * PAD_MULTIPLE)
    return {k: v[:, :width] for k, v in x.items()}, y, extras


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


def make_preprocessor(config, train_texts, budget=None) -> TextPreprocessor:
    """Vocabulary from the checkpoint, from ``data.tokenizer.vocab``, or trained on ``train_texts``.

    Under DP (``budget``), a checkpoint's or a declared file's vocabulary is public; a trained one is
    learnt from the DP word list of :func:`dp_words` only, so a word from one text cannot enter it.
    """
    dc, mc = config.data, config.model
    spec = _tokenizer_spec(config)
    if mc.checkpoint and mc.kind in ("checkpoint", "bert"):
        ck = checkpoint_vocab(mc.checkpoint)
        if budget is not None:
            budget.declare_public("preprocessing/vocab.txt", f"the checkpoint's own vocabulary ({ck['path']})")
        return TextPreprocessor(ck["vocab"], dc.text, dc.max_length, ck["lowercase"],
                                {"source": ck["kind"], "path": ck["path"], "file": ck.get("tokenizer_file")})
    if spec["vocab"]:
        if budget is not None:
            budget.declare_public("preprocessing/vocab.txt", f"declared in data.tokenizer.vocab ({spec['vocab']})")
        return TextPreprocessor(read_vocab(spec["vocab"]), dc.text, dc.max_length, bool(spec["lowercase"]),
                                {"source": "file", "path": str(spec["vocab"])})
    if budget is not None:
        from tfresp.data.dp_tabular import preprocessing_epsilon

        words, dp_info = dp_words(train_texts, bool(spec["lowercase"]), budget, preprocessing_epsilon(config.privacy))
        vocab = train_wordpiece_on_words(words, spec["vocab_size"], bool(spec["lowercase"]),
                                         int(spec["min_frequency"]))
        return TextPreprocessor(vocab, dc.text, dc.max_length, bool(spec["lowercase"]),
                                {"source": "trained on a DP word histogram of the training split "
                                           "(HF tokenizers WordPiece)", "requested_vocab_size": spec["vocab_size"],
                                 "dp": dp_info})
    vocab = train_wordpiece(train_texts, spec["vocab_size"], bool(spec["lowercase"]), int(spec["min_frequency"]))
    return TextPreprocessor(vocab, dc.text, dc.max_length, bool(spec["lowercase"]),
                            {"source": "trained on the training split (HF tokenizers WordPiece)",
                             "requested_vocab_size": spec["vocab_size"], "rows": int(len(train_texts))})


def check_text_frames(config, frames: dict, label: Optional[str]) -> None:
    """Columns and labels a text run needs, checked on every frame before splitting (``label`` None: mlm)."""
    dc = config.data
    train_df = frames["train"]
    require_columns(train_df, [dc.text] + ([label] if label else []) + list(dc.sensitive), "data.text")
    if label and train_df[label].isna().any():
        raise DataError(f"Invalid value in `data.label` column {label!r}: {int(train_df[label].isna().sum())} "
                        "missing labels")
    if "test" in frames:
        require_columns(frames["test"], [dc.text] + ([label] if label else []), "data.split.test")


def prepare_text(config, parts, info: dict, budget=None, preprocessor=None) -> DataBundle:
    """Encode split frames (:class:`~tfresp.data.split.Frames`) into a text :class:`DataBundle` (``kind="text"``)."""
    dc = config.data
    mlm = config.task == "mlm"
    label = None if mlm else dc.label
    train_df, val_df, test_df = parts.train, parts.validation, parts.test
    if parts.test_split:
        info = {**info, "test_split": parts.test_split}
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
    if budget is not None:
        budget.resolve_delta(len(train_df))
        budget.declare_not_covered("data.classes", "the label values seen in the training split (output width); "
                                                   "exact for text data")
    pre = preprocessor if preprocessor is not None else make_preprocessor(config, _clean(train_df[dc.text]), budget)

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
    if budget is not None:  # exact statistics of the private texts: not published under DP
        for key in ("tokens_per_row", "truncated_rows_fraction", "unknown_token_rate"):
            summary["text"].pop(key)
    return DataBundle(train=train, validation=validation, test=test, classes=classes, feature_columns=[dc.text],
                      sensitive=list(dc.sensitive), preprocessor=pre, info=info, kind="text",
                      extra={"vocab_size": pre.vocab_size, "max_length": dc.max_length, "summary": summary})
