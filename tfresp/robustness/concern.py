"""The robustness concern: adversarial / noise training composed into ResponsibleModel, and a strong audit.

Plan (before ``fit``; DP plans last, so it clips the adversarial loss):
    madry  -> ``input_transform`` (PGD or FGSM examples, ``mix`` fraction of each batch);
    trades -> per-example ``β·KL(f(x) ‖ f(x_adv))`` term;
    noise  -> ``input_transform`` adding Gaussian noise.

Audit (after ``fit``, on up to ``eval_examples`` test examples):
    clean accuracy; for every ε of the sweep (plus the training ε) the accuracy under PGD with
    ``eval_steps`` steps × ``restarts`` random restarts (stronger than any training attack), FGSM and
    black-box random noise; gradient-masking checks (accuracy must vanish at a large ε; white-box
    must beat random noise; PGD must beat FGSM); parameter sensitivity D(θ) and input-gradient
    norm; the training-time cost of the robustness objective vs a clean step.

Report keys: ``robustness["pgd@0.1"]["accuracy"]`` (:func:`~tfresp.robustness.audit.eps_key`).
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import tensorflow as tf

from tfresp.concerns import Concern, Contribution, register
from tfresp.errors import ConfigError, DataError, IncompatibleModelError
from tfresp.robustness.audit import attack_section, default_large_epsilon, eps_key  # noqa: F401 (tests import them here)
from tfresp.robustness.state import RobustnessState
from tfresp.robustness.training import AttackSpace, madry_transform, noise_transform, trades_term

def attack_space(data, cfg) -> AttackSpace:
    """The attackable coordinates and valid range of a DataBundle's encoded inputs.

    Images: all pixels, range [0, 1]. Tabular: numeric (standardized) columns only unless
    ``attack_categorical``; the valid range is the declared/DP clip range of each encoded dimension when the
    preprocessing has one (always under DP), else the train min/max.
    """
    if data.kind == "image":
        lo, hi = getattr(data.preprocessor, "valid_range", (0.0, 1.0))
        return AttackSpace(None, float(lo), float(hi), "pixel intensity (inputs scaled to [0, 1])")
    if data.kind == "tabular":
        mask = np.asarray(data.preprocessor.numeric_mask(), np.float32)
        if cfg.attack_categorical:
            mask = np.ones_like(mask)
        units = ("standard deviations of each numeric feature (train-standardized encoding); "
                 + ("one-hot columns also attacked" if cfg.attack_categorical
                    else "one-hot categorical columns frozen"))
        # Declared/DP clip ranges when the preprocessing has them (always under DP: train min/max would
        # publish private extremes through the attack results); otherwise the train min/max.
        bounds = data.preprocessor.encoded_bounds()
        if bounds is not None:
            lo, hi = bounds
        else:  # the dense rows only here (compact training rows are expanded once, not under DP)
            x = np.asarray(data.train.x, np.float32)
            lo, hi = x.min(axis=0), x.max(axis=0)
        return AttackSpace(mask[None, :], lo[None, :], hi[None, :], units)
    return AttackSpace(None, None, None, "input-embedding space (L2 over each sequence)")


@register
class Robustness(Concern):
    """Adversarial / noise training and PGD-based robustness evaluation (Madry et al. 2018)."""

    config_key = "robustness"
    State = RobustnessState
    example = {"robustness": {"train": "noise", "eval_epsilons": [0.1], "eval_examples": 64, "eval_steps": 5,
                              "restarts": 1, "noise_samples": 2, "sensitivity_examples": 16}}

    # -- validation ------------------------------------------------------------------------------
    def validate(self, ctx) -> None:
        cfg = ctx.config.robustness
        problems = []
        if cfg.train in ("madry", "trades") and cfg.epsilon <= 0:
            problems.append(("robustness.epsilon", cfg.epsilon, "must be > 0 for adversarial training"))
        if cfg.train in ("madry", "trades") and cfg.attack == "pgd" and cfg.eval_steps <= cfg.steps:
            problems.append(("robustness.eval_steps", cfg.eval_steps,
                             f"evaluation must use a stronger attack than training: more than robustness.steps="
                             f"{cfg.steps} PGD steps"))
        if cfg.train == "noise" and cfg.noise_std <= 0:
            problems.append(("robustness.noise_std", cfg.noise_std, "must be > 0 for noise training"))
        if not cfg.eval_epsilons or any(e <= 0 for e in cfg.eval_epsilons):
            problems.append(("robustness.eval_epsilons", cfg.eval_epsilons, "a non-empty list of radii > 0"))
        if ctx.config.task != "classification":
            problems.append(("robustness", "on", f"robustness needs task 'classification', not {ctx.config.task!r}"))
        if problems:
            raise ConfigError(problems)
        kind = ctx.data.kind
        if kind == "tabular":
            if not cfg.attack_categorical and float(np.sum(ctx.data.preprocessor.numeric_mask())) == 0:
                raise DataError("Invalid value for `robustness`: the data has no numeric (continuous) features "
                                "to perturb; set robustness.attack_categorical: true to attack one-hot columns")
        elif kind == "text":
            if cfg.train != "none":
                raise ConfigError([("robustness.train", cfg.train, "adversarial training on text is not supported "
                                    "(tokens are discrete); use 'none' and evaluate in embedding space")])
            if ctx.text_parts is None or ctx.text_parts.embedding_split is None:
                raise IncompatibleModelError(
                    "robustness on text needs the model split into embed_fn/head_fn (ctx.text_parts.embedding_split); "
                    f"model {getattr(ctx.core, 'name', '?')!r} does not provide it. Remedy: turn robustness off for "
                    "this model or use tfresp.robustness.attacks.embedding_pgd directly")
        elif kind != "image":
            raise DataError(f"Invalid value for `robustness`: unsupported data kind {kind!r}")

    # -- plan --------------------------------------------------------------------------------------
    def plan(self, ctx) -> Contribution:
        cfg = ctx.config.robustness
        if cfg.train == "none":
            return Contribution(notes=["robustness: evaluation only (no robust training)"])
        space = attack_space(ctx.data, cfg)
        ctx.own(self).space = space
        total = ctx.steps_per_epoch * ctx.config.train.epochs
        warm = f", ε warm-up over {cfg.epsilon_warmup:.0%} of training" if cfg.epsilon_warmup else ""
        if cfg.train == "madry":
            note = (f"robustness: Madry adversarial training, {cfg.attack.upper()}"
                    f"{'-' + str(cfg.steps) if cfg.attack == 'pgd' else ''} {cfg.norm} ε={cfg.epsilon:g}, "
                    f"mix={cfg.mix:g}{warm} (per example, inside DP clipping when privacy is on)")
            return Contribution(input_transform=madry_transform(cfg, space, total), notes=[note])
        if cfg.train == "trades":
            note = (f"robustness: TRADES β={cfg.trades_beta:g}, PGD-{cfg.steps} on KL, {cfg.norm} "
                    f"ε={cfg.epsilon:g}{warm} (per-example term)")
            return Contribution(per_example_losses=[trades_term(cfg, space, total)], notes=[note])
        note = f"robustness: Gaussian noise injection σ={cfg.noise_std:g}, mix={cfg.mix:g}"
        return Contribution(input_transform=noise_transform(cfg, space), notes=[note])

    # -- audit -------------------------------------------------------------------------------------
    def audit(self, ctx) -> Optional[dict]:
        return robustness_audit(ctx, ctx.config.robustness)


def _take(x, n):
    if isinstance(x, dict):
        return {k: v[:n] for k, v in x.items()}
    return x[:n]


def _time_step(fn, reps=3) -> float:
    fn()  # trace / warm up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def training_cost(ctx) -> Optional[dict]:
    """Cost of one robust training step vs one clean step on the same batch (same model, no update)."""
    model, cfg = ctx.model, ctx.config
    if model is None or (model.input_transform is None and not model.per_example_losses):
        return None
    bs = min(cfg.train.batch_size, len(ctx.data.train))
    x = tf.convert_to_tensor(_take(ctx.data.train.x, bs))
    y = tf.convert_to_tensor(ctx.data.train.y[:bs])
    extras = {k: tf.convert_to_tensor(v[:bs]) for k, v in ctx.train_extras.items()}  # e.g. fairness group ids
    extras["sample_weight"] = tf.ones([bs], tf.float32)
    variables = model.core.trainable_variables

    @tf.function
    def clean():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.base_per_example_loss(y, model.core(x, training=True)))
        return tape.gradient(loss, variables)

    @tf.function
    def robust():
        with tf.GradientTape() as tape:
            loss, _ = model.total_loss(x, y, extras, training=True)
        return tape.gradient(loss, variables)

    t_clean, t_robust = _time_step(clean), _time_step(robust)
    ratio = t_robust / max(t_clean, 1e-9)
    epochs = max(len(next(iter(ctx.history.values()), [])), 1)
    fit_s = ctx.timings.get("fit_seconds")
    section = {"step_seconds_clean": t_clean, "step_seconds_robust": t_robust, "step_time_ratio": ratio,
               "batch_size": bs, "method": "timed gradient of the composed loss vs clean cross-entropy on one batch"}
    if ctx.timings.get("fit_cpu_seconds"):
        section["fit_cpu_seconds"] = ctx.timings["fit_cpu_seconds"]
    if fit_s:
        section.update({"fit_seconds": fit_s, "epoch_seconds": fit_s / epochs,
                        "clean_epoch_seconds_estimate": fit_s / epochs / ratio,
                        "extra_seconds_estimate": fit_s - fit_s / ratio})
    return section


def _plot(section, epsilons, path) -> Optional[str]:
    try:
        from tfresp.report.plots import plt
    except Exception:  # plotting is optional evidence; the numbers are in the report
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = [0.0] + list(epsilons)
    for name, style in (("pgd", "o-"), ("fgsm", "s--"), ("noise", "^:")):
        ys = [section["clean_accuracy"]] + [section[eps_key(name, e)]["accuracy"] for e in epsilons]
        ax.plot(xs, ys, style, label=name.upper() if name != "noise" else "random noise")
    ax.set_xlabel(f"ε ({section['norm']})")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("Accuracy under attack")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def robustness_audit(ctx, cfg) -> dict:
    """The robustness report section of a trained run (see the module docstring); the attacks and checks are
    :func:`tfresp.robustness.audit.attack_section`, shared with :func:`tfresp.audits.robustness`."""
    data = ctx.data
    space = ctx.own(Robustness).space or attack_space(data, cfg)
    if ctx.budget is not None and data.kind == "tabular":
        ctx.budget.declare_derived("robustness.valid_range", "the DP/declared clip ranges of the "
                                           "preprocessing (post-processing), not the train min/max")
    n = min(cfg.eval_examples, len(data.test))
    if data.kind == "text":
        embed_fn, head_fn, keep = ctx.text_parts.embedding_split(ctx.core)
        space = AttackSpace(keep, None, None, space.units)  # the split says which embedding coordinates move
        x_raw = _take(data.test.x, n)
        x = embed_fn(x_raw).numpy()
        model_fn = head_fn
    else:
        x = np.asarray(data.test.x[:n], np.float32)
        core = ctx.core

        def model_fn(inp):
            return core(inp, training=False)
    y = np.asarray(data.test.y[:n], np.int64)
    section = attack_section(model_fn, x, y, cfg, space, seed=ctx.config.seed,
                             core=ctx.core if data.kind != "text" else None,
                             space_name="input embeddings" if data.kind == "text" else "model inputs")
    cost = training_cost(ctx)
    if cost is not None:
        section["training_time"] = cost
    plot = _plot(section, section["epsilons"], ctx.run_dir / "plots" / "robustness.png")
    section["plots"] = ["plots/robustness.png"] if plot else []
    return section
