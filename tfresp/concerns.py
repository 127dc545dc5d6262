"""The concern protocol: how privacy, fairness, robustness, compression and explanations plug into a run.

A concern is registered with :func:`register` and has:

* ``config_key``: the config section that turns it on (``privacy``, ``fairness``, ...);
* ``plan(ctx) -> Contribution``: what it adds to the run before ``fit``;
* ``post_fit(ctx)``: what it fits or converts after training and before any audit (group thresholds, stripping
  pruning wrappers); values other sections need go into typed fields of the context (``ctx.serving``);
* ``audit(ctx) -> dict | None``: its own report section only, computed from the trained (post-fitted) run;
* ``State``: optional dataclass for the values private to the concern (``ctx.own(self)`` returns this run's one);
* ``audit_after``: the config keys of concerns whose audits must run before its own.

Two orders, each declared by what it is about (not one integer for both):

**Training composition: fixed slots.** Every enabled concern plans in registration order, except the one that
provides the gradient transform (``gradient_transform = True``: privacy), which plans last so that it sees, and
clips, every loss term the others added, and those that set up the core (``core_setup = True``: the text
fine-tuning recipe), which plan first, before any concern wraps the core. Each contribution goes into the fixed slots of the train step
(:mod:`tfresp.models.base`)::

    1. loss terms          per-example terms (inside DP clipping), batch terms (refused under DP)
    2. input transform     at most one (adversarial / noisy inputs)
    3. gradient transform  at most one, last (DP-SGD: clips the whole per-example loss of slots 1-2)
    4. callbacks, core wrappers, sample weights, optimizer, training dataset

**Stages of a run.** data -> build -> plan -> train -> post-fit (every concern's ``post_fit``, then the TFLite
conversion) -> audits -> export -> report. Fitting happens in train or post-fit, never inside an audit.

**Audits: declared dependencies.** Audits run in the topological order of ``audit_after`` (ties keep the
registration order); a dependency on a concern that is off is ignored, a cycle is an error.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

from tfresp.errors import ConfigError

_REGISTRY: Dict[str, "Concern"] = {}

#: The built-in concern modules; importing one registers its concern. Third-party concerns register through the
#: ``tfresp.concerns`` entry-point group (``[project.entry-points."tfresp.concerns"] name = "pkg.module"``)
#: or by importing a module that applies :func:`register` before the run.
BUILTIN = ("tfresp.fairness.concern", "tfresp.robustness.concern", "tfresp.compression.concern",
           "tfresp.privacy.concern", "tfresp.explain.concern", "tfresp.federated.concern")
ENTRY_POINT_GROUP = "tfresp.concerns"

_HOOKS: Dict[str, "Hook"] = {}
#: The task and model hooks (no config section: switched on by ``task`` / ``model.kind``); importing a module
#: registers its hook.
BUILTIN_HOOKS = ("tfresp.evaluation.concern", "tfresp.tasks.mlm", "tfresp.tasks.text_model",
                 "tfresp.tasks.recipe")


def _add(table: dict, cls, what: str):
    inst = cls()
    if not inst.config_key:
        raise TypeError(f"{cls.__name__}: set `config_key` ({what})")
    table[inst.config_key] = inst
    return cls


def register(concern_cls):
    """Class decorator adding a concern to the registry under its ``config_key``."""
    return _add(_REGISTRY, concern_cls, "the config section that turns it on")


def register_hook(hook_cls):
    """Class decorator adding a task or model :class:`Hook` (not a concern: it has no config section)."""
    return _add(_HOOKS, hook_cls, "the hook's name")


def hooks() -> List["Hook"]:
    """The task and model hooks, in registration order."""
    _load_builtin()
    return list(_HOOKS.values())


def active(config) -> List["Concern"]:
    """What runs for ``config``: the enabled task/model hooks, then the enabled concerns (registration order)."""
    return [h for h in hooks() if h.enabled(config)] + [c for c in registered() if c.enabled(config)]


def unregister(key: str) -> None:
    """Remove a concern from the registry (tests that register a throw-away concern)."""
    _REGISTRY.pop(key, None)


def registered() -> List["Concern"]:
    """All registered concerns, in registration order (built-ins first)."""
    _load_builtin()
    return list(_REGISTRY.values())


def config_of(key: str) -> Optional[type]:
    """The ``Config`` section class of the registered concern ``key`` (None: no such concern, or no ``Config``)."""
    if key not in _REGISTRY:
        _load_builtin()
    concern = _REGISTRY.get(key)
    return None if concern is None else concern.Config


def get(key: str) -> "Concern":
    _load_builtin()
    if key not in _REGISTRY:
        raise KeyError(f"Unknown concern {key!r}. Registered: {sorted(_REGISTRY)}")
    return _REGISTRY[key]


_loaded = False


def _load_builtin():
    # Importing a concern module registers it (decorator). Lazily, to keep `import tfresp` light.
    global _loaded
    if _loaded:
        return
    import importlib
    from importlib.metadata import entry_points

    for mod in BUILTIN_HOOKS + BUILTIN:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(ep.value.split(":")[0])
    _loaded = True


def plan_order(active: List["Concern"]) -> List["Concern"]:
    """Registration order, with the core-setup concerns first (they see the unwrapped core) and the (single)
    gradient-transform concern last (slot 3 wraps slots 1-2)."""
    last = [c for c in active if c.gradient_transform]
    if len(last) > 1:
        raise ConfigError([("+".join(c.config_key for c in last), "on",
                            "two concerns both replace the gradient computation; they cannot be combined")])
    first = [c for c in active if c.core_setup and not c.gradient_transform]
    return first + [c for c in active if not c.gradient_transform and not c.core_setup] + last


def audit_order(active: List["Concern"]) -> List["Concern"]:
    """Topological order of ``audit_after`` over the active concerns (ties: registration order).

    Raises ``ValueError`` on a dependency cycle.
    """
    keys = [c.config_key for c in active]
    deps = {c.config_key: [d for d in c.audit_after if d in keys and d != c.config_key] for c in active}
    done: List[str] = []
    while len(done) < len(keys):
        ready = [k for k in keys if k not in done and all(d in done for d in deps[k])]
        if not ready:
            cycle = sorted(k for k in keys if k not in done)
            raise ValueError(f"Invalid concern audit dependencies: `audit_after` forms a cycle among {cycle}. "
                             f"Received: { {k: deps[k] for k in cycle} }. Remedy: remove one of the edges")
        done.append(ready[0])
    by_key = {c.config_key: c for c in active}
    return [by_key[k] for k in done]


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
        trainer: ``fn(ctx) -> None`` that replaces ``model.fit`` and fills ``ctx.history`` (federated rounds);
            at most one concern may set it.
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
    trainer: Optional[Callable] = None
    notes: List[str] = dataclasses.field(default_factory=list)


class Concern:
    """Base class: subclasses set ``config_key`` and override what they need.

    Attributes:
        config_key: the config section that turns the concern on (and its key in the registry).
        report_key: the report section its audit fills (defaults to ``config_key``).
        audit_after: config keys of concerns whose audits must have run before this one's.
        gradient_transform: True for the concern that replaces the gradient computation (plans last).
        core_setup: True for a concern that sets up the core itself (initial weights, per-variable learning
            rates): it plans first, before any concern wraps the core (e.g. pruning wrappers clone its layers).
        State: a dataclass for values private to this concern (``ctx.own(self)``), or None.
        Config: the pydantic section class of a concern registered outside ``tfresp/config.py``: its top-level
            config key is then accepted (kept in ``config.extensions``) and validated by it.
        example: the config sections that turn the concern on in a tiny tabular (Adult) run; the conformance
            test (tests/test_conformance.py) runs every registered concern with it, alone and together.
        example_skip: why there is no ``example`` (e.g. the concern needs text data).
        example_excludes: config keys of concerns whose examples this one's refuses to run with.
    """

    config_key: str = ""
    report_key: Optional[str] = None  # defaults to config_key
    audit_after: Tuple[str, ...] = ()
    gradient_transform: bool = False
    core_setup: bool = False
    State: Optional[type] = None
    Config: Optional[type] = None
    example: Optional[dict] = None
    example_skip: Optional[str] = None
    example_excludes: Tuple[str, ...] = ()

    def enabled(self, config) -> bool:
        return self.section(config) is not None

    def section(self, config):
        extensions = getattr(config, "extensions", None) or {}
        if self.config_key in extensions:
            return extensions[self.config_key]
        return getattr(config, self.config_key, None)

    def provide(self, ctx) -> None:
        """Set the typed values of ``ctx`` that other concerns' ``validate``/``plan`` read (e.g.
        ``ctx.text_parts``); called for every enabled concern after the core is built, before any ``validate``."""

    def validate(self, ctx) -> None:
        """Raise a TfrespError if this concern cannot run with this data/model (called before fit)."""

    def plan(self, ctx) -> Contribution:
        return Contribution()

    def post_fit(self, ctx) -> None:
        """Fit or convert what the audits and the export read, after training and before any audit (e.g. group
        thresholds into ``ctx.serving``); called in audit order. Writes no report section."""

    def audit(self, ctx) -> Optional[dict]:
        """This concern's report section (None: none), computed from the trained, post-fitted run. It returns its
        own section only: a value another section needs goes through a typed field of the context."""
        return None

    def markdown(self, section: dict) -> Optional[str]:
        """Markdown body of this concern's report section (None: the generic rendering of the section)."""
        return None


class Hook(Concern):
    """A task or model hook: the stages of a concern (``provide``, ``validate``, ``plan``, ``post_fit``, ``audit``),
    switched on by the run's ``task`` or ``model.kind`` instead of a config section, plus two of its own.

    Registered with :func:`register_hook`, not in the concern registry (no config section, no conformance
    example): the evaluation of classification, the masked-LM task, the BERT checkpoint/LoRA merge and the
    fine-tuning recipe. ``config_key`` is the hook's name (``audit_after`` edges may name it).
    """

    def enabled(self, config) -> bool:
        return False

    def make_model(self, ctx) -> Optional[Any]:
        """The training ``keras.Model`` around ``ctx.core`` for this task (None: a ``ResponsibleModel``)."""
        return None

    def setup(self, ctx) -> None:
        """Finish the core after every ``validate`` and before any concern plans (e.g. the linear probe of
        LP-FT): fitting that belongs to building the model, never to ``plan``."""
