"""The privacy concern: DP-SGD with calibrated noise, Poisson sampling, a privacy ledger and an audit.

Order 90 (last): fairness/robustness per-example terms are attached before DP replaces the gradient
computation, so every one of them is inside per-example clipping.
"""
from __future__ import annotations

import logging
import math
import secrets

import tensorflow as tf

from tfresp.concerns import Concern, Contribution, register
from tfresp.errors import BudgetExhaustedError, IncompatibleModelError
from tfresp.privacy import accounting, clipping
from tfresp.privacy.ledger import PrivacyLedger
from tfresp.privacy.sampling import poisson_dataset, steps_per_epoch

log = logging.getLogger("tfresp")


def resolve_delta(cfg, n: int) -> float:
    return accounting.default_delta(n) if cfg.delta == "auto" else float(cfg.delta)


def extra_spend(ctx) -> tuple:
    """(ε, δ, entries) spent on the private training data by other concerns (e.g. noisy reweighing counts).

    They compose with DP-SGD by basic composition, so the run's guarantee is (ε_sgd + Σε_i, δ_sgd + Σδ_i).
    """
    entries = list(ctx.state.get("privacy_extra_epsilon", []))
    return (sum(float(e["epsilon"]) for e in entries), sum(float(e.get("delta", 0.0)) for e in entries), entries)


def statement(sec: dict) -> str:
    """A plain-language description of the guarantee, with its limits."""
    sampling = ("each training step used a Poisson sample of the training rows (every row joined independently "
                f"with probability q = {sec['sampling_rate']:.4g})" if sec["sampling"] == "poisson" else
                "training used shuffled fixed-size batches; the ε above uses Poisson-sampling accounting with "
                f"q = {sec['sampling_rate']:.4g}, which is an approximation for shuffling (without subsampling "
                f"amplification the provable bound is ε = {sec.get('epsilon_without_amplification', float('nan')):.3g})")
    return (
        f"This model was trained with DP-SGD and satisfies ({sec['epsilon']:.3g}, {sec['delta']:.1e})-differential "
        "privacy with respect to adding or removing one training row (example-level adjacency), computed with the "
        f"{sec['accountant'].upper()} accountant over {sec['steps']} steps with noise multiplier "
        f"{sec['noise_multiplier']:.4g} and per-example gradient clipping at L2 norm {sec['l2_norm_clip']:g}; "
        f"{sampling}."
        + (f" The total also counts ε = {sec['epsilon'] - sec['dp_sgd_epsilon']:.3g} spent by other releases of the "
           "training data (" + ", ".join(p["source"] for p in sec["composition"]["parts"][1:]) + "), composed by "
           "basic composition." if sec.get("composition") and len(sec["composition"]["parts"]) > 1 else "")
        + " What it protects: the trained weights and everything computed from them (predictions, "
        "exports) reveal little about whether any single row was in the training set, even to an attacker who "
        f"knows all other rows; δ = {sec['delta']:.1e} is the small probability that this bound fails. What it does "
        "not protect: a person who contributes several rows is protected only up to group privacy (ε grows about "
        "linearly with the number of rows); population-level facts learned from the data are not hidden; "
        "preprocessing fitted on the training split (feature scaling, category vocabularies, class weights) and "
        "logged training metrics (loss, accuracy) are not privatized; the validation and test splits are not "
        "covered; hyper-parameter tuning on private data adds privacy cost not counted here.")


def epsilon_plot(curve, target, path):
    from tfresp.report import plots as _plots  # noqa: F401  (sets the Agg backend)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot([c["epoch"] for c in curve], [c["epsilon"] for c in curve], marker="o", label="ε spent")
    if target is not None:
        ax.axhline(target, color="#b8474d", linestyle="--", label=f"budget ε={target:g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ε")
    ax.set_title("Privacy budget spent")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


@register
class Privacy(Concern):
    """DP-SGD (Abadi et al. 2016) with dp_accounting calibration and a membership-inference audit."""

    config_key = "privacy"
    order = 90

    def validate(self, ctx) -> None:
        from tfresp.errors import ConfigError

        if ctx.config.train.steps_per_execution != 1:
            raise ConfigError([("train.steps_per_execution", ctx.config.train.steps_per_execution,
                                "must be 1 under privacy: the ledger's hard budget stop acts between steps")])
        clipping.check_model(ctx.core)
        if len(ctx.data.train) < 2:
            raise BudgetExhaustedError("DP-SGD needs at least two training rows")

    def plan(self, ctx) -> Contribution:
        cfg = ctx.config.privacy
        batch_terms = [name for name, c in ctx.contributions.items() if c.batch_losses]
        if batch_terms or ctx.model.batch_losses:
            raise IncompatibleModelError(
                f"Concern(s) {batch_terms or ['<model>']} add batch-level loss terms, which depend on several "
                "examples at once, so per-example clipping cannot bound one example's influence on them and DP-SGD "
                "would not be private. Remedy: use the per-example form of the term (e.g. a per-example fairness "
                "penalty) or turn privacy off")
        n = len(ctx.data.train)
        batch = ctx.config.train.batch_size
        epochs = ctx.config.train.epochs
        q = min(1.0, batch / n)
        spe = steps_per_epoch(n, batch)
        planned = epochs * spe
        delta = resolve_delta(cfg, n)
        # Concerns planned before privacy (order < 90) may already have spent budget on the training data:
        # DP-SGD gets what is left, so the composed total stays within target_epsilon.
        extra_eps, _, extra_entries = extra_spend(ctx)
        sgd_target = None if cfg.target_epsilon is None else cfg.target_epsilon - extra_eps
        if sgd_target is not None and sgd_target <= 0:
            raise BudgetExhaustedError(
                f"Invalid value for argument `privacy.target_epsilon`. Received: target_epsilon={cfg.target_epsilon}. "
                f"Other concerns already spend ε={extra_eps:g} ({[e['source'] for e in extra_entries]}); "
                "nothing is left for DP-SGD: raise the budget or lower their ε")
        if cfg.noise_multiplier is None:
            sigma = accounting.calibrate_noise(sgd_target, delta, q, planned, cfg.accountant)
            how = f"calibrated to target ε={sgd_target:g}" + (
                f" (= {cfg.target_epsilon:g} − {extra_eps:g} spent by {[e['source'] for e in extra_entries]})"
                if extra_eps else "")
        else:
            sigma = float(cfg.noise_multiplier)
            how = "given"
            if sgd_target is not None:
                cap = accounting.max_steps_within(sgd_target, sigma, q, delta, cfg.accountant, planned)
                if cap == 0:
                    raise BudgetExhaustedError(
                        f"Invalid value for argument `privacy.noise_multiplier`. Received: noise_multiplier={sigma}. "
                        f"Even one step exceeds target_epsilon={cfg.target_epsilon} at delta={delta:g} with "
                        f"q={q:.4g}; raise the noise multiplier or the budget")
        mode, reason = clipping.select_clipping(ctx.model, cfg.clipping)
        expected = q * n if cfg.sampling == "poisson" else None
        # The noise and the Poisson draws must be unpredictable to an attacker: a seed derived from the public
        # config seed would let anyone regenerate (and subtract) the noise and know each batch's members.
        secret = secrets.randbits(62)
        noise_seed = tf.Variable(secret, dtype=tf.int64, trainable=False, name="dp_noise_seed")
        ledger = PrivacyLedger(accounting.PrivacyAccountant(cfg.accountant), sigma, q, delta, sgd_target,
                               noise_seed=noise_seed)
        ctx.state["privacy"] = {"noise_multiplier": sigma, "noise_source": how, "sampling_rate": q, "delta": delta,
                                "steps_per_epoch": spe, "planned_steps": planned, "clipping_mode": mode,
                                "clipping_reason": reason, "expected_batch_size": expected, "ledger": ledger}
        contrib = Contribution(
            gradient_fn=clipping.make_gradient_fn(mode, cfg.l2_norm_clip, sigma, expected, seed=noise_seed),
            callbacks=[ledger],
            notes=[f"DP-SGD: σ={sigma:.4g} ({how}), q={q:.4g}, {mode} clipping at C={cfg.l2_norm_clip:g}"])
        if cfg.sampling == "poisson":
            contrib.train_dataset = lambda c: poisson_dataset(c.data.train.x, c.data.train.y, c.train_extras, q,
                                                              spe, seed=int(noise_seed.numpy()) ^ 0x5EED)
        log.info("privacy: noise_multiplier=%.4g (%s), q=%.4g, steps=%d, clipping=%s", sigma, how, q, planned, mode)
        return contrib

    def audit(self, ctx):
        cfg = ctx.config.privacy
        st = ctx.state["privacy"]
        ledger: PrivacyLedger = st["ledger"]
        extra_eps, extra_delta, extra_entries = extra_spend(ctx)
        sec = {
            # the run's whole guarantee (DP-SGD composed with any other release of the training data)
            "epsilon": ledger.epsilon + extra_eps,
            "delta": st["delta"] + extra_delta,
            "dp_sgd_epsilon": ledger.epsilon,
            "dp_sgd_delta": st["delta"],
            "composition": {"rule": "basic (ε and δ add up)", "parts": [
                {"source": "privacy.dp_sgd", "epsilon": ledger.epsilon, "delta": st["delta"]}, *extra_entries]},
            "noise_multiplier": st["noise_multiplier"],
            "noise_multiplier_source": st["noise_source"],
            "steps": ledger.accountant.steps,
            "planned_steps": st["planned_steps"],
            "sampling_rate": st["sampling_rate"],
            "sampling": cfg.sampling,
            "expected_batch_size": st["expected_batch_size"],
            "accountant": cfg.accountant,
            "target_epsilon": cfg.target_epsilon,
            "l2_norm_clip": cfg.l2_norm_clip,
            "clipping": {"mode": st["clipping_mode"], "reason": st["clipping_reason"]},
            "adjacency": "add/remove one example",
            "stopped_early": ledger.stopped_early,
            "epsilon_curve": ledger.curve,
            "ledger": ledger.public_state(),
        }
        if cfg.sampling == "shuffle":
            sec["accounting_note"] = ("shuffled fixed-size batches were used; ε is the Poisson-subsampling "
                                      "estimate, an approximation for shuffling. epsilon_without_amplification "
                                      "is a bound that assumes no amplification by sampling")
            epochs_done = max(1, math.ceil(sec["steps"] / max(st["steps_per_epoch"], 1)))
            sec["epsilon_without_amplification"] = accounting.compute_epsilon(
                st["noise_multiplier"], 1.0, epochs_done, st["delta"], cfg.accountant)
        sec["statement"] = statement(sec)
        plots = []
        if ledger.curve:
            epsilon_plot(ledger.curve, cfg.target_epsilon, ctx.run_dir / "plots" / "privacy_epsilon.png")
            plots.append("plots/privacy_epsilon.png")
        if cfg.audit and ctx.config.task == "classification":
            from tfresp.privacy.mia import audit_context

            sec["audit"] = audit_context(ctx, delta=st["delta"], epsilon=sec["epsilon"],
                                         plot_path=ctx.run_dir / "plots" / "privacy_mia_roc.png")
            if sec["audit"].get("plot"):
                plots.append(sec["audit"]["plot"])
        sec["plots"] = plots
        return sec
