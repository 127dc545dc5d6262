"""Registry of core-model builders keyed by ``model.kind``."""
from __future__ import annotations

from typing import Callable, Dict

from tfresp.errors import ConfigError

_BUILDERS: Dict[str, Callable] = {}


def register_model(kind: str):
    """Decorator: ``@register_model("mlp") def build(config, data) -> keras.Model``."""

    def deco(fn):
        _BUILDERS[kind] = fn
        return fn

    return deco


@register_model("mlp")
def _mlp(config, data):
    from tfresp.models.mlp import build_mlp

    if data.kind != "tabular":
        raise ConfigError([("model.kind", "mlp", f"an MLP needs tabular data, but the data is {data.kind}")])
    m = config.model
    return build_mlp(int(data.input_shape[0]), data.num_classes, m.hidden, m.dropout, m.activation)


def _load_optional():
    import importlib

    for mod in ("tfresp.models.cnn", "tfresp.models.bert"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def build_core(config, data):
    """Build the core (logits) model for ``config.model.kind``."""
    _load_optional()
    kind = config.model.kind
    if kind == "keras":
        raise ConfigError([("model.kind", kind, "'keras' is the user's own model: pass it as "
                            "tfresp.fit(config, model=my_keras_model_or_builder); the CLI cannot receive one")])
    if kind not in _BUILDERS:
        raise ConfigError([("model.kind", kind, f"no builder registered; available: {sorted(_BUILDERS)}")])
    return _BUILDERS[kind](config, data)


def build_user_core(config, data, model):
    """``(core, report_info)`` for a user's ``keras.Model`` or builder ``fn(input_spec) -> keras.Model``."""
    from tfresp.models.user import resolve

    return resolve(model, config, data)
