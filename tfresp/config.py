"""The run config: one pydantic model, loaded from YAML, dicts or kwargs, plus ``--set`` overrides.

Every problem is collected and raised as one :class:`~tfresp.errors.ConfigError` naming each
field path and the received value.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from tfresp._configbase import Section
from tfresp.compression.config import CompressionConfig
from tfresp.errors import ConfigError
from tfresp.explain.config import ExplainConfig
from tfresp.fairness.config import FairnessConfig
from tfresp.federated.config import FederatedConfig
from tfresp.privacy.config import PrivacyConfig
from tfresp.report.config import GateSpec, ScorecardConfig, check_gate_string
from tfresp.robustness.config import RobustnessConfig


class SplitConfig(Section):
    """``test``: ``official`` (the source's own test split), a fraction held out, or a path to a test file."""

    test: Union[float, str] = "official"
    validation: float = Field(0.1, ge=0, lt=1)

    @field_validator("test")
    @classmethod
    def _test_fraction(cls, v):
        if isinstance(v, float) and not 0 < v < 1:
            raise ValueError("must be 'official', a fraction in (0, 1), or a path to a test file")
        if isinstance(v, str) and not v:
            raise ValueError("must be 'official', a fraction in (0, 1), or a path to a test file")
        return v


class DeidentifyConfig(Section):
    """De-identification applied before anything else sees the data."""

    text: List[Literal["email", "url", "handle", "phone", "ip", "card"]] = [
        "email", "url", "handle", "phone", "ip", "card"]
    drop: List[str] = []
    generalize: dict = {}
    k_anonymity: Optional[List[str]] = None


class DataConfig(Section):
    source: str = "adult"
    label: Optional[str] = None
    sensitive: List[str] = []
    features: Optional[List[str]] = None
    use_sensitive: bool = False
    text: Optional[str] = None
    format: Literal["auto", "csv", "parquet", "jsonl"] = "auto"
    #: CSV: the field delimiter (default: measured by csv.Sniffer among , ; tab |)
    delimiter: Optional[str] = Field(None, min_length=1, max_length=1)
    #: CSV: the text encoding (default: UTF-8, else measured by charset-normalizer, with a warning)
    encoding: Optional[str] = Field(None, min_length=1, max_length=40)
    split: SplitConfig = SplitConfig()
    deidentify: Optional[DeidentifyConfig] = None
    max_rows: Optional[int] = Field(None, ge=1)
    max_length: int = Field(64, ge=4, le=512)
    tokenizer: Optional[dict] = None  # text: {vocab: path | null (train WordPiece), vocab_size, lowercase}
    positive_class: Optional[str] = None  # binary tasks: the class reported as positive (tfresp/data/labels.py)
    # data checks (tfresp/data/checks.py): missing feature values are an error or imputed (median /
    # most frequent value of the training split, or the public values declared in impute_values)
    missing: Literal["error", "impute"] = "error"
    impute_values: Optional[Dict[str, Union[float, str]]] = None
    min_class_rows: int = Field(5, ge=1)
    #: declared (public) category lists ``{column: [values]}``: the one-hot vocabulary, no privacy cost
    categories: Optional[Dict[str, List[Union[str, int, float, bool]]]] = None
    #: declared (public) numeric ranges ``{column: [lo, hi]}``: the column is clipped and scaled to [-1, 1]
    numeric_ranges: Optional[Dict[str, List[float]]] = None

    @field_validator("categories")
    @classmethod
    def _categories(cls, v):
        for col, values in (v or {}).items():
            if not values:
                raise ValueError(f"column {col!r}: give at least one value")
            if len({str(x) for x in values}) != len(values):
                raise ValueError(f"column {col!r}: values must be distinct")
        return v

    @field_validator("numeric_ranges")
    @classmethod
    def _ranges(cls, v):
        for col, bounds in (v or {}).items():
            if len(bounds) != 2 or not bounds[0] < bounds[1]:
                raise ValueError(f"column {col!r}: expected [lo, hi] with lo < hi, got {bounds}")
        return v


class ModelConfig(Section):
    """The core model. ``kind: keras`` is the user's own ``keras.Model`` (or builder) passed as
    ``tfresp.fit(config, model=...)``; ``outputs`` says whether it outputs logits or probabilities when tfresp
    cannot tell (``auto``: read from the output layer, or from the outputs of a subclassed model)."""

    kind: Literal["mlp", "cnn", "bert", "checkpoint", "keras"] = "mlp"
    outputs: Literal["auto", "logits", "probabilities"] = "auto"
    hidden: List[int] = [64, 32]
    dropout: float = Field(0.0, ge=0, lt=1)
    activation: str = "relu"
    checkpoint: Optional[str] = None
    freeze: Optional[Union[int, Literal["embeddings", "all-but-head"]]] = None
    lora: Optional[dict] = None
    adapters: Optional[dict] = None
    bert: Optional[dict] = None
    #: BERT classifier head: ``cls`` (tanh pooler on [CLS]) | ``mean`` (masked mean of the last hidden states);
    #: unset: ``cls``, or what ``train.recipe: auto`` picks
    pooling: Optional[Literal["cls", "mean"]] = None

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v):
        if any(h <= 0 for h in v):
            raise ValueError("every layer width must be a positive integer")
        return v


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, le=100000)
    batch_size: int = Field(256, ge=1, le=1_000_000)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0, le=10)
    warmup: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    early_stopping: Optional[int] = Field(None, ge=1)
    #: what early stopping watches on the validation split (the best epoch's weights are restored)
    early_stopping_monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    mixed_precision: bool = False
    jit_compile: Union[Literal["auto"], bool] = "auto"
    clipnorm: Optional[float] = Field(None, gt=0)
    class_weight: Optional[Literal["balanced"]] = None
    checkpoint_every: Optional[int] = Field(None, ge=1)
    steps_per_execution: int = Field(1, ge=1)
    #: text fine-tuning from a pretrained checkpoint: ``auto`` fills every train/model/data key the config does
    #: not set with size-based defaults (tfresp/tasks/recipe.py; the report's ``model.recipe`` lists them);
    #: ``none``: the plain defaults above
    recipe: Literal["auto", "none"] = "auto"
    #: layer-wise learning-rate decay (Sun et al., 2019; ELECTRA's form): the head trains at the learning rate,
    #: encoder layer i (of L) at ``lr * layer_decay**(L - i)``, the embeddings at ``lr * layer_decay**(L + 1)``
    layer_decay: Optional[float] = Field(None, gt=0, le=1)
    #: LP-FT (Kumar et al., 2022): fit the linear head on frozen-encoder features (logistic regression) first
    linear_probe: Optional[bool] = None


class ExportConfig(Section):
    saved_model: bool = True
    tflite: List[Literal["float", "int8", "dynamic", "float16"]] = []


class ReportConfig(Section):
    description: str = ""
    intended_use: str = ""
    out_of_scope: str = ""
    limitations: str = ""
    license: str = "other"
    html: bool = True


class RunConfig(Section):
    """The whole run. A section that is absent or null is off."""

    name: str = "run"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    task: Literal["classification", "mlm"] = "classification"
    train: TrainConfig = TrainConfig()
    privacy: Optional[PrivacyConfig] = None
    fairness: Optional[FairnessConfig] = None
    robustness: Optional[RobustnessConfig] = None
    explain: Optional[ExplainConfig] = None
    compression: Optional[CompressionConfig] = None
    federated: Optional[FederatedConfig] = None
    export: ExportConfig = ExportConfig()
    distribute: Literal["auto", "none", "mirrored", "multi_worker", "tpu"] = "auto"
    gates: List[Union[str, GateSpec]] = []
    scorecard: Optional[ScorecardConfig] = None
    report: ReportConfig = ReportConfig()
    out: Optional[str] = None
    #: sections of concerns registered outside this file (a concern's ``Config``), by config key; a top-level
    #: key naming such a concern is moved here (see :mod:`tfresp.concerns`)
    extensions: Dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _extension_sections(cls, data):
        if not isinstance(data, dict):
            return data
        from tfresp import concerns

        unknown = [k for k in data if k not in cls.model_fields]
        ext = dict(data.get("extensions") or {})
        if not unknown and not ext:
            return data
        out = {k: v for k, v in data.items() if k != "extensions"}
        for key in unknown:
            if concerns.config_of(key) is not None:
                ext[key] = out.pop(key)
        for key, value in ext.items():
            section_cls = concerns.config_of(key)
            if section_cls is None:
                raise ValueError(f"extensions.{key}: no registered concern has config key {key!r}")
            if value is not None and not isinstance(value, section_cls):
                try:
                    ext[key] = section_cls.model_validate(value)
                except ValidationError as exc:
                    raise ValueError(f"section {key!r}: " + "; ".join(
                        f"{'.'.join(map(str, e['loc'])) or key}: {e['msg']}" for e in exc.errors())) from None
        out["extensions"] = ext
        return out

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not v or "/" in v or "\\" in v or v in (".", ".."):
            raise ValueError("must be a non-empty name without path separators")
        return v

    @field_validator("gates")
    @classmethod
    def _gates(cls, v):
        for g in v:
            if isinstance(g, str):
                check_gate_string(g)
        return v

    @model_validator(mode="after")
    def _cross(self):
        from tfresp.federated.config import sites_problems

        problems = sites_problems(self)  # a sites run: checked before the label default below applies
        if problems:
            raise ConfigError(problems)  # not a ValueError: pydantic passes it through, one message, exit 2
        if self.federated is not None and self.federated.sites:
            object.__setattr__(self.federated, "clients", len(self.federated.sites))  # one client per site
            if self.privacy is not None and "audit" not in self.privacy.model_fields_set:
                object.__setattr__(self.privacy, "audit", False)  # no MIA audit without central rows
        if self.task == "classification" and self.data.source == "adult" and self.data.label is None:
            self.data.label = "income"
        if self.task == "classification" and not self.data.label:
            raise ValueError("data.label is required for task 'classification'")
        return self

    def to_dict(self) -> dict:
        out = self.model_dump(mode="json")
        if not out.get("extensions"):  # no extension concern: the same dict (and config hash) as before it existed
            out.pop("extensions", None)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_SECTION_DEFAULTS = {"privacy": {"target_epsilon": 8.0}}


def _format_loc(loc) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in ("function-after", "function-before") or "[" in str(p) and "Literal" in str(p):
            continue
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "config"


def _from_validation_error(err: ValidationError, raw: dict) -> ConfigError:
    problems = []
    seen = set()
    for e in err.errors():
        loc = [p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function")))]
        path = _format_loc(loc)
        if path in seen:
            continue
        seen.add(path)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        value = e.get("input", ConfigError.MISSING)
        if e["type"] == "missing":
            value = ConfigError.MISSING
        problems.append((path, value, msg))
    return ConfigError(problems)


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``a.b=VALUE`` where VALUE is YAML (so ``3`` is an int, ``[sex]`` a list)."""
    if "=" not in item:
        raise ConfigError([("--set", item, "expected key=value")])
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError([("--set", item, "expected a dotted key path like train.epochs")])
    try:
        value = yaml.load(raw, Loader=_StrictSafeLoader) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError([(key, raw, f"value is not valid YAML ({exc.__class__.__name__})")]) from None
    return key, value


def apply_override(cfg: dict, key: str, value: Any) -> None:
    node = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = dict(_SECTION_DEFAULTS.get(part, {})) if node is cfg else {}
            node[part] = nxt
        elif not isinstance(nxt, dict):
            raise ConfigError([(key, value, f"`{part}` is not a section")])
        node = nxt
    node[parts[-1]] = value


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line = key, line


MAX_CONFIG_BYTES = 1 << 20  # a config is a few KB; a bigger file is a mistake (or /dev/zero)
MAX_CONFIG_VALUES = 100_000  # scalars+collections after alias expansion ("billion laughs" bound)


class _TooBig(yaml.YAMLError):
    pass


def _expanded_size(node, memo: dict, active: set) -> int:
    """Number of nodes ``node`` stands for once every alias is expanded (memoised: linear in the file)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _TooBig("an alias refers to its own anchor (a recursive structure)")
    active.add(key)
    if isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded_size(c, memo, active) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded_size(k, memo, active) + _expanded_size(v, memo, active) for k, v in node.value)
    else:
        n = 1
    active.discard(key)
    memo[key] = n
    if n > MAX_CONFIG_VALUES:
        raise _TooBig(f"expands to more than {MAX_CONFIG_VALUES} values through YAML anchors/aliases")
    return n


class _StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python tags) that refuses duplicate mapping keys and alias bombs.

    PyYAML shares aliased nodes, so a "billion laughs" file loads in little memory, but everything that
    walks the result (validation, error messages) sees it expanded; the expanded size is bounded here.
    """

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return self.construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key) if isinstance(key, (str, int, float, bool)) else None
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Union[str, os.PathLike]) -> dict:
    from tfresp.run.io import is_regular_file

    p = Path(path)
    if not p.exists():  # a bare name is a shipped config (`tfresp fit quickstart`); a path wins when it exists
        from tfresp import configs as shipped

        if shipped.path(path) is None:
            raise ConfigError([("config", str(p), "file does not exist. Remedy: give a YAML file, or the name of a "
                                f"shipped config ({', '.join(shipped.names())}; `tfresp configs` lists them)")])
        p = shipped.path(path)
    if p.is_dir():
        raise ConfigError([("config", str(p), "is a directory, expected a YAML file")])
    if not is_regular_file(p):  # a named pipe would block, /dev/zero never end
        raise ConfigError([("config", str(p), "is not a regular file (a named pipe or device?); give a YAML file")])
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([("config", str(p), f"cannot be read ({exc.strerror or exc.__class__.__name__})")]) \
            from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([("config", str(p), f"is larger than {MAX_CONFIG_BYTES} bytes; a config is a short "
                            "YAML file")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([("config", str(p), "is not UTF-8 text")]) from None
    try:
        data = yaml.load(text, Loader=_StrictSafeLoader)
    except _TooBig as exc:
        raise ConfigError([("config", str(p), f"is refused: it {exc}")]) from None
    except _DuplicateKey as exc:
        raise ConfigError([(str(exc.key), ConfigError.MISSING, f"appears twice in the YAML file (again on line "
                            f"{exc.line}; the second would silently replace the first); keep one")]) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConfigError([("config", str(p), f"is not valid safe YAML ({first})")]) from None
    if data is None:
        raise ConfigError([("config", str(p), "is empty")])
    if not isinstance(data, dict):
        raise ConfigError([("config", type(data).__name__, "top level must be a mapping of sections")])
    return data


def _explicit(section) -> dict:
    """The keys of ``section`` that were set (recursively), with their values: a RunConfig passed back to
    :func:`load_config` keeps its defaults as defaults (``train.recipe`` fills only unset keys). A sub-section
    counts when it was set or any key inside it was (pydantic's ``exclude_unset`` would drop a default
    section whose keys were assigned later)."""
    from pydantic import BaseModel

    out = {}
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            sub = _explicit(value)
            if sub or name in section.model_fields_set:
                out[name] = sub
        elif name in section.model_fields_set:
            out[name] = section.model_dump(mode="json", include={name})[name]
    return out


def is_dp_run(config) -> bool:
    """Does the run claim differential privacy (example-level ``privacy:`` or client-level ``federated.dp``)?"""
    fed = getattr(config, "federated", None)
    return getattr(config, "privacy", None) is not None or (fed is not None and getattr(fed, "dp", None) is not None)


def load_config(config=None, overrides=None, **kwargs) -> RunConfig:
    """Resolve a :class:`RunConfig`.

    Args:
        config: a YAML path, a dict, a :class:`RunConfig`, or None (all defaults).
        overrides: ``["train.epochs=3", ...]`` applied after ``config``.
        **kwargs: top-level sections or dotted keys (``train={"epochs": 3}``, ``**{"train.epochs": 3}``).

    Example:
        >>> cfg = load_config({"train": {"epochs": 2}}, overrides=["privacy.target_epsilon=3"])
    """
    if isinstance(config, RunConfig):  # only the keys that were set: defaults stay defaults (train.recipe)
        raw = _explicit(config)
    elif config is None:
        raw = {}
    elif isinstance(config, dict):
        raw = copy.deepcopy(config)
    elif isinstance(config, (str, os.PathLike)):
        raw = read_yaml(config)
    else:
        raise ConfigError([("config", type(config).__name__, "expected a path, dict or RunConfig")])
    for key, value in kwargs.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            for k2, v2 in value.items():
                apply_override(raw, f"{key}.{k2}", v2)
        else:
            apply_override(raw, key, value)
    for item in overrides or []:
        k, v = parse_override(item) if isinstance(item, str) else item
        apply_override(raw, k, v)
    for section, defaults in _SECTION_DEFAULTS.items():
        if isinstance(raw.get(section), dict):
            sec = raw[section]
            if section == "privacy" and "noise_multiplier" in sec and sec.get("noise_multiplier") is not None:
                continue
            for k, v in defaults.items():
                sec.setdefault(k, v)
        elif raw.get(section) == {}:
            raw[section] = dict(defaults)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise _from_validation_error(err, raw) from None
