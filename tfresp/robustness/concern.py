"""The robustness concern: adversarial / noise training composed into TfrespModel, and a strong audit.

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

Report keys follow DESIGN.md: ``robustness["pgd@0.1"]["accuracy"]``.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.concerns import Concern, Contribution, register
from tfresp.errors import ConfigError, DataError, IncompatibleModelError
from tfresp.robustness import attacks, sensitivity
from tfresp.robustness.state import RobustnessState
from tfresp.robustness.training import AttackSpace, madry_transform, noise_transform, trades_term

VANISH_THRESHOLD = 0.05


class RobustnessTimer(keras.callbacks.Callback):
    """Records the process CPU seconds of ``fit`` in ``timings["fit_cpu_seconds"]``.

    CPU time is far less distorted than wall time on a shared machine, so training-cost ratios
    (robust vs standard runs) are compared on it.
    """

    def __init__(self, timings: dict):
        super().__init__()
        self.timings = timings
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.process_time()

    def on_train_end(self, logs=None):
        if self._start is not None:
            self.timings["fit_cpu_seconds"] = time.process_time() - self._start


def eps_key(attack: str, epsilon: float) -> str:
    """``("pgd", 0.1) -> "pgd@0.1"`` (the report key of DESIGN.md)."""
    return f"{attack}@{float(epsilon):g}"


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
        x = np.asarray(data.train.x, np.float32)
        mask = np.asarray(data.preprocessor.numeric_mask(), np.float32)
        if cfg.attack_categorical:
            mask = np.ones_like(mask)
        units = ("standard deviations of each numeric feature (train-standardized encoding); "
                 + ("one-hot columns also attacked" if cfg.attack_categorical
                    else "one-hot categorical columns frozen"))
        # Declared/DP clip ranges when the preprocessing has them (always under DP: train min/max would
        # publish private extremes through the attack results); otherwise the train min/max.
        bounds = data.preprocessor.encoded_bounds()
        lo, hi = bounds if bounds is not None else (x.min(axis=0), x.max(axis=0))
        return AttackSpace(mask[None, :], lo[None, :], hi[None, :], units)
    return AttackSpace(None, None, None, "input-embedding space (L2 over each sequence)")


def default_large_epsilon(space: AttackSpace, norm: str, x_shape) -> float:
    """An ε that covers the whole valid range: every valid input is reachable, accuracy must vanish."""
    if space.clip_min is None or space.clip_max is None:
        return 10.0
    width = np.broadcast_to(np.asarray(space.clip_max, np.float64) - np.asarray(space.clip_min, np.float64),
                            (1,) + tuple(x_shape))
    if space.mask is not None:
        width = width * np.broadcast_to(np.asarray(space.mask, np.float64), width.shape)
    if norm == "linf":
        return float(np.max(width))
    return float(np.sqrt(np.sum(width ** 2)))


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
        timer = [RobustnessTimer(ctx.timings)]
        if cfg.train == "none":
            return Contribution(callbacks=timer, notes=["robustness: evaluation only (no robust training)"])
        space = attack_space(ctx.data, cfg)
        ctx.own(self).space = space
        total = ctx.steps_per_epoch * ctx.config.train.epochs
        warm = f", ε warm-up over {cfg.epsilon_warmup:.0%} of training" if cfg.epsilon_warmup else ""
        if cfg.train == "madry":
            note = (f"robustness: Madry adversarial training, {cfg.attack.upper()}"
                    f"{'-' + str(cfg.steps) if cfg.attack == 'pgd' else ''} {cfg.norm} ε={cfg.epsilon:g}, "
                    f"mix={cfg.mix:g}{warm} (per example, inside DP clipping when privacy is on)")
            return Contribution(input_transform=madry_transform(cfg, space, total), callbacks=timer,
                                notes=[note])
        if cfg.train == "trades":
            note = (f"robustness: TRADES β={cfg.trades_beta:g}, PGD-{cfg.steps} on KL, {cfg.norm} "
                    f"ε={cfg.epsilon:g}{warm} (per-example term)")
            return Contribution(per_example_losses=[trades_term(cfg, space, total)], callbacks=timer,
                                notes=[note])
        note = f"robustness: Gaussian noise injection σ={cfg.noise_std:g}, mix={cfg.mix:g}"
        return Contribution(input_transform=noise_transform(cfg, space), callbacks=timer, notes=[note])

    # -- audit -------------------------------------------------------------------------------------
    def audit(self, ctx) -> Optional[dict]:
        return robustness_audit(ctx, ctx.config.robustness)


def _take(x, n):
    if isinstance(x, dict):
        return {k: v[:n] for k, v in x.items()}
    return x[:n]


def _accuracy(model_fn, x, y, batch_size=512) -> float:
    correct = 0
    for s in range(0, len(y), batch_size):
        logits = model_fn(tf.convert_to_tensor(x[s:s + batch_size]))
        correct += int(np.sum(np.argmax(logits.numpy(), axis=-1) == y[s:s + batch_size]))
    return correct / max(len(y), 1)


def _run_attack(fn, x, y, batch_size=512):
    out = [fn(tf.convert_to_tensor(x[s:s + batch_size]), tf.convert_to_tensor(y[s:s + batch_size])).numpy()
           for s in range(0, len(y), batch_size)]
    return np.concatenate(out)


def evaluate_attacks(model_fn, x, y, epsilons, cfg, space: AttackSpace, seed: int = 0,
                     which=("pgd", "fgsm", "noise")) -> dict:
    """Accuracy under PGD-``eval_steps``×``restarts``, FGSM and random noise for each ε.

    Returns a dict keyed ``"<attack>@<ε>"`` with ``accuracy``, ``attack_success_rate`` (among
    clean-correct examples), ``epsilon`` and the max/mean perturbation norm actually used.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    clean_pred = np.argmax(model_fn(tf.convert_to_tensor(x)).numpy(), axis=-1)
    clean_ok = clean_pred == y
    kw = space.kwargs()
    out = {}
    for eps in epsilons:
        eps = float(eps)
        fns = {
            "pgd": tf.function(lambda a, b, e=eps: attacks.pgd(
                model_fn, a, b, e, norm=cfg.norm, steps=cfg.eval_steps, restarts=cfg.restarts,
                random_start=True, seed=seed, **kw)),
            "fgsm": tf.function(lambda a, b, e=eps: attacks.fgsm(model_fn, a, b, e, norm=cfg.norm, **kw)),
            "noise": tf.function(lambda a, b, e=eps: attacks.random_noise(
                model_fn, a, b, e, norm=cfg.norm, samples=cfg.noise_samples, seed=seed, **kw)),
        }
        for name, fn in fns.items():
            if name not in which:
                continue
            t0 = time.perf_counter()
            x_adv = _run_attack(fn, x, y)
            pred = np.argmax(model_fn(tf.convert_to_tensor(x_adv)).numpy(), axis=-1)
            ok = pred == y
            d = (x_adv - x).reshape(len(x), -1)
            norms = np.abs(d).max(axis=1) if cfg.norm == "linf" else np.linalg.norm(d, axis=1)
            out[eps_key(name, eps)] = {
                "attack": name, "epsilon": eps, "norm": cfg.norm, "accuracy": float(np.mean(ok)),
                "attack_success_rate": float(np.mean(~ok[clean_ok])) if clean_ok.any() else None,
                "max_perturbation": float(norms.max()) if len(norms) else 0.0,
                "mean_perturbation": float(norms.mean()) if len(norms) else 0.0,
                "seconds": time.perf_counter() - t0,
                **({"steps": cfg.eval_steps, "restarts": cfg.restarts} if name == "pgd" else {}),
                **({"samples": cfg.noise_samples} if name == "noise" else {}),
            }
    return out


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
    """The robustness report section of a trained run (see the module docstring)."""
    data = ctx.data
    space = ctx.own(Robustness).space or attack_space(data, cfg)
    if ctx.budget is not None and data.kind == "tabular":
        from tfresp.privacy.budget import Coverage

        ctx.budget.coverage.append(Coverage("robustness.valid_range", "dp", "the DP/declared clip ranges of the "
                                            "preprocessing (post-processing), not the train min/max"))
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
    epsilons = sorted({float(e) for e in cfg.eval_epsilons} | ({float(cfg.epsilon)} if cfg.train in
                                                                 ("madry", "trades") else set()))
    section = {
        "train": cfg.train, "norm": cfg.norm, "epsilon_units": space.units,
        "space": "input embeddings" if data.kind == "text" else "model inputs",
        "training_attack": None if cfg.train in ("none", "noise") else {
            "attack": "pgd" if cfg.train == "trades" else cfg.attack, "epsilon": cfg.epsilon,
            "steps": cfg.steps if (cfg.train == "trades" or cfg.attack == "pgd") else 1,
            "restarts": 1, "objective": "kl" if cfg.train == "trades" else "cross_entropy"},
        "evaluation_attack": {"attack": "pgd", "steps": cfg.eval_steps, "restarts": cfg.restarts,
                              "random_start": True, "step_size": "2.5·ε/steps (Madry et al. 2018)",
                              "also": ["fgsm", f"random noise ({cfg.noise_samples} samples)"]},
        "examples": int(n), "split": "test", "epsilons": epsilons,
        "attackable_dims": (int(np.sum(np.broadcast_to(space.mask, (1,) + x.shape[1:]))) if space.mask is not None
                            else int(np.prod(x.shape[1:]))),
        "clean_accuracy": _accuracy(model_fn, x, y),
    }
    t0 = time.perf_counter()
    section.update(evaluate_attacks(model_fn, x, y, epsilons, cfg, space, seed=ctx.config.seed))
    # -- gradient-masking sanity checks ----------------------------------------------------------
    warnings = []
    large = cfg.large_epsilon or default_large_epsilon(space, cfg.norm, x.shape[1:])
    big = evaluate_attacks(model_fn, x, y, [large], cfg, space, seed=ctx.config.seed + 1,
                           which=("pgd",))[eps_key("pgd", large)]
    vanishes = big["accuracy"] <= VANISH_THRESHOLD
    tol = 2.0 / max(n, 1)
    noise_ok = all(section[eps_key("pgd", e)]["accuracy"] <= section[eps_key("noise", e)]["accuracy"] + tol
                   for e in epsilons)
    fgsm_ok = all(section[eps_key("pgd", e)]["accuracy"] <= section[eps_key("fgsm", e)]["accuracy"] + tol
                  for e in epsilons)
    if not vanishes:
        warnings.append(f"possible gradient masking: PGD accuracy at a large ε={large:g} is {big['accuracy']:.3f} "
                        f"(> {VANISH_THRESHOLD}); robust accuracies above may be overestimated"
                        + (" (or the frozen categorical columns alone decide some predictions)"
                           if data.kind == "tabular" and not cfg.attack_categorical else ""))
    if not noise_ok:
        warnings.append("possible gradient masking: black-box random noise beats white-box PGD at some ε")
    if not fgsm_ok:
        warnings.append("PGD is weaker than FGSM at some ε: the attack did not converge; raise eval_steps")
    section["sanity"] = {"large_epsilon": large, "accuracy_at_large_epsilon": big["accuracy"],
                         "vanishes_at_large_epsilon": bool(vanishes), "threshold": VANISH_THRESHOLD,
                         "white_box_beats_noise": bool(noise_ok), "pgd_at_least_fgsm": bool(fgsm_ok),
                         "passed": bool(vanishes and noise_ok and fgsm_ok)}
    section["warnings"] = warnings
    section["attack_seconds"] = time.perf_counter() - t0
    # -- fragility figures ------------------------------------------------------------------------
    if cfg.sensitivity and data.kind != "text":
        m = min(cfg.sensitivity_examples, n)
        section["sensitivity"] = {
            "parameter_sensitivity": sensitivity.parameter_sensitivity(ctx.core, x[:m]),
            "input_gradient_norm": sensitivity.input_gradient_norm(ctx.core, x[:m], space.mask),
            "examples": int(m),
            "definition": "D(θ) = mean_i (Σ_j ∂M(x_i)/∂θ_j)², M = predicted-class logit; "
                          "input_gradient_norm = mean_i ‖∂M(x_i)/∂x_i‖₂ over attackable dims"}
    cost = training_cost(ctx)
    if cost is not None:
        section["training_time"] = cost
    plot = _plot(section, epsilons, ctx.run_dir / "plots" / "robustness.png")
    section["plots"] = ["plots/robustness.png"] if plot else []
    return section
