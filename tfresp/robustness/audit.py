"""The robustness audit as a function of (model, inputs, labels): the attack sweep and its sanity checks.

:func:`attack_section` is the one implementation behind the robustness concern's report section and
:func:`tfresp.audits.robustness` (any Keras model): clean accuracy; for every ε the accuracy under PGD
(``eval_steps`` steps × ``restarts`` random restarts), FGSM and black-box random noise; gradient-masking checks
(accuracy must vanish at a large ε; white-box must beat random noise; PGD must beat FGSM); parameter sensitivity
D(θ) and the input-gradient norm.
"""
from __future__ import annotations

import time
import numpy as np
import tensorflow as tf

from tfresp.robustness import attacks, sensitivity
from tfresp.robustness.training import AttackSpace

VANISH_THRESHOLD = 0.05


def eps_key(attack: str, epsilon: float) -> str:
    """``("pgd", 0.1) -> "pgd@0.1"``: the key of one attack in the report's ``robustness`` section."""
    return f"{attack}@{float(epsilon):g}"


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


def attack_section(model_fn, x, y, cfg, space: AttackSpace, *, seed: int = 0, core=None,
                   space_name: str = "model inputs") -> dict:
    """The robustness section of a model on ``x``/``y`` (see the module docstring).

    Args:
        model_fn: inputs -> logits (a Keras model called with ``training=False``, or an embedding head).
        x, y: continuous inputs ``[n, ...]`` and integer labels ``[n]``.
        cfg: a :class:`~tfresp.robustness.config.RobustnessConfig` (radii, attack strength, sensitivity).
        space: where the attacks may move the inputs (mask, valid range, units of ε).
        seed: seed of the random starts and noise draws.
        core: the Keras model behind ``model_fn`` for the sensitivity figures (None: not computed).
        space_name: what is attacked, for the report ("model inputs" or "input embeddings").
    """
    n = len(y)
    y = np.asarray(y, np.int64)
    epsilons = sorted({float(e) for e in cfg.eval_epsilons} | ({float(cfg.epsilon)} if cfg.train in
                                                                 ("madry", "trades") else set()))
    section = {
        "train": cfg.train, "norm": cfg.norm, "epsilon_units": space.units,
        "space": space_name,
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
    section.update(evaluate_attacks(model_fn, x, y, epsilons, cfg, space, seed=seed))
    # -- gradient-masking sanity checks ----------------------------------------------------------
    warnings = []
    large = cfg.large_epsilon or default_large_epsilon(space, cfg.norm, x.shape[1:])
    big = evaluate_attacks(model_fn, x, y, [large], cfg, space, seed=seed + 1,
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
                           if space.mask is not None and not np.all(np.asarray(space.mask)) else ""))
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
    if cfg.sensitivity and core is not None:
        m = min(cfg.sensitivity_examples, n)
        section["sensitivity"] = {
            "parameter_sensitivity": sensitivity.parameter_sensitivity(core, x[:m]),
            "input_gradient_norm": sensitivity.input_gradient_norm(core, x[:m], space.mask),
            "examples": int(m),
            "definition": "D(θ) = mean_i (Σ_j ∂M(x_i)/∂θ_j)², M = predicted-class logit; "
                          "input_gradient_norm = mean_i ‖∂M(x_i)/∂x_i‖₂ over attackable dims"}
    return section
