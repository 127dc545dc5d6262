"""The concern protocol: how privacy, fairness, robustness, compression and explanations plug into a run.

A concern is registered with :func:`register` and has three things:

* ``config_key``: the config section that turns it on (``privacy``, ``fairness``, ...);
* ``plan(ctx) -> Contribution``: what it adds to the run before ``fit``;
* ``audit(ctx) -> dict | None``: its report section, computed after ``fit`` from that run.

The builder calls ``plan`` in ascending ``order`` and applies each contribution in that
order. The documented order matters (as in Optax's ``chain``): loss terms from fairness
(10) and robustness (20) are attached first, compression callbacks (40) next, and privacy
(90) last so that every loss term is inside per-example clipping.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional

_REGISTRY: Dict[str, "Concern"] = {}


def register(concern_cls):
    """Class decorator adding a concern to the registry under its ``config_key``."""
    inst = concern_cls()
    _REGISTRY[inst.config_key] = inst
    return concern_cls


def registered() -> List["Concern"]:
    """All registered concerns, sorted by their ``order``."""
    _load_builtin()
    return sorted(_REGISTRY.values(), key=lambda c: c.order)


def get(key: str) -> "Concern":
    _load_builtin()
    if key not in _REGISTRY:
        raise KeyError(f"Unknown concern {key!r}. Registered: {sorted(_REGISTRY)}")
    return _REGISTRY[key]


def _load_builtin():
    # Importing a concern package registers it (decorator). Import lazily to keep `import tfresp` light.
    import importlib

    for mod in ("tfresp.evaluation", "tfresp.fairness", "tfresp.robustness", "tfresp.compression",
                "tfresp.privacy", "tfresp.explain", "tfresp.federated"):
        try:
            importlib.import_module(mod + ".concern")
        except ModuleNotFoundError as exc:
            if exc.name != mod + ".concern":
                raise


@dataclasses.dataclass
class Contribution:
    """What a concern adds to a run. Every field is optional.

    Attributes:
        per_example_losses: callables ``fn(model, x, y, logits, extras, training) -> [B]`` added to the
            per-example training loss (inside DP clipping when privacy is on).
        batch_losses: callables returning a scalar computed over the whole batch (cannot be made
            private by per-example clipping; the privacy concern refuses them).
        input_transform: ``fn(model, x, y, extras) -> x'`` applied before the forward pass
            (adversarial examples); at most one concern may set it.
        gradient_fn: replaces the gradient computation (DP-SGD):
            ``fn(model, x, y, extras) -> (loss, grads)``; at most one concern may set it.
        sample_weight: per-training-row weights, multiplied into existing ones.
        callbacks: Keras callbacks added to ``fit``.
        train_dataset: ``fn(ctx) -> tf.data.Dataset`` that replaces the default training pipeline
            (e.g. Poisson sampling); at most one concern may set it.
        wrap_core: ``fn(core_model, ctx) -> core_model`` (e.g. pruning wrappers).
        optimizer: ``fn(optimizer, ctx) -> optimizer``.
        notes: free-text notes recorded in the report.
    """

    per_example_losses: List[Callable] = dataclasses.field(default_factory=list)
    batch_losses: List[Callable] = dataclasses.field(default_factory=list)
    input_transform: Optional[Callable] = None
    gradient_fn: Optional[Callable] = None
    sample_weight: Any = None
    callbacks: List[Any] = dataclasses.field(default_factory=list)
    train_dataset: Optional[Callable] = None
    wrap_core: Optional[Callable] = None
    optimizer: Optional[Callable] = None
    notes: List[str] = dataclasses.field(default_factory=list)


class Concern:
    """Base class: subclasses set ``config_key`` and ``order`` and override what they need."""

    config_key: str = ""
    order: int = 50
    report_key: Optional[str] = None  # defaults to config_key

    def enabled(self, config) -> bool:
        return getattr(config, self.config_key, None) is not None

    def section(self, config):
        return getattr(config, self.config_key)

    def validate(self, ctx) -> None:
        """Raise a TfrespError if this concern cannot run with this data/model (called before fit)."""

    def plan(self, ctx) -> Contribution:
        return Contribution()

    def audit(self, ctx) -> Optional[dict]:
        return None
