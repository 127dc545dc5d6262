"""Concern conformance: every registered concern (read from the registry, so a new one is picked up without an
edit here) runs alone on a tiny Adult run and all together in one run.

Checks per run: it finishes; each enabled concern's report section exists; report.json validates against the
report schema; the slot contract holds (at most one input transform and one gradient transform; under privacy
the gradient transform planned last, so every loss term and the input transform are inside per-example
clipping: each example's clipped gradient norm <= C); nothing is written outside the run directory.
Pairwise combinations are ``slow``.
"""
import itertools
import json

import numpy as np
import pytest
import tensorflow as tf

import tfresp
from tests.conftest import tiny_adult
from tfresp import concerns
from tfresp.report.schema import validate

BASE = {"train": {"epochs": 1, "batch_size": 64}, "export": {"saved_model": False}, "report": {"html": False}}


@pytest.fixture(scope="module", autouse=True)
def small_adult(tmp_path_factory):
    """500 Adult rows in a CSV (loading and checking the whole Adult source would dominate each run's time)."""
    from tfresp.data.sources import load_adult

    path = tmp_path_factory.mktemp("data") / "adult_500.csv"
    load_adult()[0]["train"].iloc[:500].to_csv(path, index=False)
    BASE["data"] = {"source": str(path), "split": {"test": 0.3, "validation": 0.0}}
    yield path
    BASE.pop("data")


def _all():
    return concerns.registered()


def _with_example():
    return [c for c in _all() if c.example is not None]


def _config(selected, name):
    cfg = tiny_adult(name=name, **BASE)
    for c in selected:
        for key, section in c.example.items():
            cfg[key] = {**cfg.get(key, {}), **section} if isinstance(section, dict) else section
    return cfg


def _compatible(selected) -> bool:
    keys = {c.config_key for c in selected}
    return not any(set(c.example_excludes) & keys for c in selected)


def _together():
    """Every concern with an example, skipping one whose example excludes an earlier one (registration order)."""
    out = []
    for c in _with_example():
        if _compatible(out + [c]):
            out.append(c)
    return out


def _own_sections_only(monkeypatch, written):
    """Wrap every hook's and registered concern's ``post_fit`` / ``audit``: the first may write no report section, the second
    none but the one it returns (a value another section needs goes through a typed context field)."""
    def wrap(c, hook):
        real = getattr(c, hook)

        def checked(ctx):
            before = {k: repr(v) for k, v in ctx.report.items()}
            out = real(ctx)
            after = {k: repr(v) for k, v in ctx.report.items()}
            written[(c.config_key, hook)] = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            return out

        monkeypatch.setattr(c, hook, checked)

    for c in concerns.hooks() + _all():
        wrap(c, "post_fit")
        wrap(c, "audit")


def _run(selected, tmp_path, monkeypatch, name):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "out"
    written = {}
    _own_sections_only(monkeypatch, written)
    res = tfresp.fit(_config(selected, name), out=str(out / name), quiet=True)
    assert ("evaluation", "audit") in written  # the hooks were wrapped and called
    assert {k: v for k, v in written.items() if v} == {}, "a post_fit or audit wrote a report section"
    # nothing outside the run directory: the output parent holds only the run, the working directory nothing
    assert sorted(p.name for p in out.iterdir()) == [name]
    assert list(cwd.iterdir()) == []
    report = json.loads((res.run_dir / "report.json").read_text())
    assert validate(report) == []
    for c in selected:
        if c.enabled(res.context.config):
            assert report.get(c.report_key or c.config_key) is not None, c.config_key
    _check_slots(res.context, monkeypatch)
    return res


def _check_slots(ctx, monkeypatch):
    contribs = ctx.contributions
    assert sum(c.input_transform is not None for c in contribs.values()) <= 1
    assert sum(c.gradient_fn is not None for c in contribs.values()) <= 1
    gradient = [k for k, c in contribs.items() if c.gradient_fn is not None]
    if not gradient:
        return
    # the gradient transform planned last: every term/transform was attached before it replaced the gradient
    assert list(contribs)[-1] == gradient[0]
    assert ctx.model.gradient_fn is contribs[gradient[0]].gradient_fn
    terms = [f for c in contribs.values() for f in c.per_example_losses]
    assert all(any(t is f for f in ctx.model.per_example_losses) for t in terms)
    if ctx.config.privacy is None:
        return
    _check_clipping(ctx, monkeypatch)


def _check_clipping(ctx, monkeypatch):
    """The gradient function the run trained with (``ctx.model.gradient_fn``), called on one example at a time
    with its DP noise source set to zero: what is left is that example's whole objective (terms and input
    transform included), clipped, over the run's denominator; its norm is at most C. The raw gradient of the
    same objective is measured too, so the check is known to bind (some example exceeds C unclipped)."""
    from tfresp.privacy.clipping import clipped_sum_vectorized

    model = ctx.model
    clip = ctx.config.privacy.l2_norm_clip
    denom = ctx.own("privacy").expected_batch_size or 1.0  # Poisson: the expected batch; else the batch (1 row)
    n = 6
    x = tf.constant(np.asarray(ctx.data.train.x[:n], np.float32))
    y = tf.constant(ctx.data.train.y[:n])
    extras = {k: tf.constant(v[:n]) for k, v in ctx.train_extras.items()}
    # weight 50: each example's objective is scaled up so that its unclipped gradient exceeds C and the clip binds
    extras["sample_weight"] = 50.0 * tf.cast(extras.get("sample_weight", tf.ones([n])), tf.float32)
    raw_norms = []
    with monkeypatch.context() as m:
        m.setattr(tf.random, "stateless_normal", lambda shape, seed, dtype=tf.float32, **k: tf.zeros(shape, dtype))
        m.setattr(tf.random, "normal", lambda shape, *a, dtype=tf.float32, **k: tf.zeros(shape, dtype))
        for i in range(n):  # one example at a time
            one = {k: v[i:i + 1] for k, v in extras.items()}
            _, grads, _ = model.gradient_fn(model, x[i:i + 1], y[i:i + 1], one)
            norm = float(tf.linalg.global_norm(grads)) * denom
            assert 0 < norm <= clip * (1 + 1e-4), (i, norm, clip)
            # the unclipped norm of the same objective (a measurement here, not the function under test)
            raw_norms.append(float(clipped_sum_vectorized(model, x[i:i + 1], y[i:i + 1], one, clip)[3][0]))
    assert max(raw_norms) > clip, raw_norms  # the bound is not vacuous for this run


def test_the_registry_holds_concerns_with_a_config_section_and_hooks_are_apart():
    from tfresp.config import RunConfig

    for c in _all():
        assert c.config_key in RunConfig.model_fields or c.Config is not None, c.config_key
    hooks = {h.config_key for h in concerns.hooks()}
    assert hooks == {"evaluation", "mlm", "bert_model", "text_recipe"}
    assert not hooks & {c.config_key for c in _all()}
    assert all(isinstance(h, concerns.Hook) for h in concerns.hooks())


def test_every_concern_declares_an_example_or_why_not():
    for c in _all():
        assert (c.example is None) != (c.example_skip is None), (
            f"concern {c.config_key!r}: set `example` (config sections for a tiny Adult run) or `example_skip`")


@pytest.mark.parametrize("key", [c.config_key for c in _with_example() if c.example])
def test_concern_alone(key, tmp_path, monkeypatch):
    _run([concerns.get(key)], tmp_path, monkeypatch, f"alone_{key}")


def test_all_concerns_together(tmp_path, monkeypatch):
    selected = _together()
    assert {"privacy", "fairness", "robustness"} <= {c.config_key for c in selected}
    res = _run(selected, tmp_path, monkeypatch, "together")
    assert res.context.model.per_example_losses and res.context.model.input_transform is not None


@pytest.mark.slow
@pytest.mark.parametrize("pair", [f"{a.config_key}+{b.config_key}" for a, b in
                                  itertools.combinations([c for c in _with_example() if c.example], 2)
                                  if _compatible([a, b])])
def test_concern_pairs(pair, tmp_path, monkeypatch):
    _run([concerns.get(k) for k in pair.split("+")], tmp_path, monkeypatch, pair.replace("+", "_"))


def test_audit_order_follows_declared_dependencies_and_refuses_cycles():
    class A(concerns.Concern):
        config_key = "a"
        audit_after = ("b",)

    class B(concerns.Concern):
        config_key = "b"

    class C(concerns.Concern):
        config_key = "c"

    B.audit_after = ("c",)
    assert [c.config_key for c in concerns.audit_order([A(), B(), C()])] == ["c", "b", "a"]
    B.audit_after = ("a",)
    with pytest.raises(ValueError, match="cycle"):
        concerns.audit_order([A(), B()])
    builtin = [c.config_key for c in concerns.audit_order(concerns.hooks() + _all())]
    assert builtin.index("evaluation") < builtin.index("privacy") and builtin.index("explain") < builtin.index(
        "privacy") and builtin.index("compression") < builtin.index("bert_model")


def test_plan_order_puts_core_setup_first_and_the_gradient_transform_last():
    class Term(concerns.Concern):
        config_key = "term"

    class Dp(concerns.Concern):
        config_key = "dp"
        gradient_transform = True

    class Setup(concerns.Concern):
        config_key = "setup"
        core_setup = True

    assert [c.config_key for c in concerns.plan_order([Dp(), Term(), Setup()])] == ["setup", "term", "dp"]
    with pytest.raises(tfresp.ConfigError, match="gradient"):
        concerns.plan_order([Dp(), Dp()])
    builtin = [c.config_key for c in concerns.plan_order(concerns.hooks() + _all())]
    assert builtin[0] == "text_recipe" and builtin[-1] == "privacy"  # the recipe sees the unwrapped core


def test_run_context_has_no_string_keyed_state():
    from tfresp.run.context import RunContext

    ctx = RunContext(config=None, data=None, run_dir=None)
    assert not hasattr(ctx, "state")
    with pytest.raises(TypeError, match="expected a PrivacyState"):
        ctx.set_own("privacy", {"ledger": None})
    assert ctx.own("fairness") is ctx.own(concerns.get("fairness"))


def test_a_new_concern_is_one_class_and_one_registration(tmp_path, monkeypatch):
    """A concern defined and registered here (no other file edited): its config section is accepted, it plans,
    audits after the concern it declares, and its section appears in report.json and report.md."""
    from pydantic import Field

    from tfresp._configbase import Section
    from tfresp.config import load_config

    class ProbeConfig(Section):
        rows: int = Field(10, ge=1)

    class Probe(concerns.Concern):
        config_key = "probe"
        Config = ProbeConfig
        example_skip = "defined by this test"
        audit_after = ("evaluation",)

        def plan(self, ctx):
            return concerns.Contribution(notes=["probe: planned"])

        def audit(self, ctx):
            n = self.section(ctx.config).rows
            return {"rows": n, "accuracy_seen": ctx.report["evaluation"]["test"]["accuracy"],
                    "mean_p1": float(ctx.predictions["test"][:n, 1].mean())}

        def markdown(self, section):
            return f"Probe read {section['rows']} rows, mean P(class 1) = {section['mean_p1']:.6f}."

    concerns.register(Probe)
    try:
        with pytest.raises(tfresp.ConfigError, match="rows"):
            load_config(tiny_adult(probe={"rows": 0}))
        monkeypatch.chdir(tmp_path)
        res = tfresp.fit(tiny_adult(probe={"rows": 7}, **BASE), out=str(tmp_path / "probe"), quiet=True)
        report = json.loads((res.run_dir / "report.json").read_text())
        sec = report["probe"]
        assert validate(report) == []
        assert sec["rows"] == 7 and sec["accuracy_seen"] == report["evaluation"]["test"]["accuracy"]
        proba = tf.nn.softmax(res.model.predict(res.context.data.test.x[:7], verbose=0)).numpy()
        assert sec["mean_p1"] == pytest.approx(float(proba[:, 1].mean()), abs=1e-6)
        assert "probe: planned" in report["training"]["notes"]
        assert f"Probe read 7 rows, mean P(class 1) = {sec['mean_p1']:.6f}." in (res.run_dir / "report.md").read_text()
        assert load_config(res.run_dir / "config.yaml").extensions["probe"].rows == 7
    finally:
        concerns.unregister("probe")


def test_entry_point_group_registers_a_concern(tmp_path, monkeypatch):
    """``tfresp.concerns`` entry points are imported when the registry loads (a package's one registration)."""
    import importlib.metadata
    import sys

    (tmp_path / "ep_probe_concern.py").write_text(
        "from tfresp.concerns import Concern, register\n\n"
        "@register\nclass EpProbe(Concern):\n    config_key = 'ep_probe'\n    example_skip = 'test'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint("ep_probe", "ep_probe_concern", concerns.ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [ep] if kw.get("group") == concerns.ENTRY_POINT_GROUP else real(**kw))
    monkeypatch.setattr(concerns, "_loaded", False)
    try:
        assert "ep_probe" in [c.config_key for c in concerns.registered()]
    finally:
        concerns.unregister("ep_probe")
        sys.modules.pop("ep_probe_concern", None)
