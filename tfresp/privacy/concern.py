"""The privacy concern: DP-SGD with calibrated noise, Poisson sampling, a privacy ledger and an audit.

The gradient transform (planned last): fairness/robustness per-example terms are attached before DP replaces
the gradient computation, so every one of them is inside per-example clipping.
"""
from __future__ import annotations

import logging

import tensorflow as tf

from tfresp.concerns import Concern, Contribution, register
from tfresp.data.dataset import make_dataset
from tfresp.errors import BudgetExhaustedError, IncompatibleModelError
from tfresp.privacy import accounting, canary, clipping
from tfresp.privacy.ledger import PrivacyLedger
from tfresp.privacy.sampling import poisson_dataset, steps_per_epoch
from tfresp.privacy.state import PrivacyState
from tfresp.privacy.statement import statement

log = logging.getLogger("tfresp")


def run_budget(ctx):
    """The run's :class:`PrivacyBudget` (made here when a caller built the context without one), δ resolved."""
    if getattr(ctx, "budget", None) is None:
        from tfresp.builder import make_budget

        ctx.budget = make_budget(ctx.config)
    ctx.budget.resolve_delta(len(ctx.data.train))
    return ctx.budget


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
    """DP-SGD (Abadi et al. 2016) with dp_accounting calibration, a membership-inference audit and canaries."""

    config_key = "privacy"
    State = PrivacyState
    example = {"privacy": {"noise_multiplier": 1.0, "audit": False}}
    gradient_transform = True  # plans last: DP-SGD clips every loss term the other concerns added
    # ε composes every spend: audits that spend or declare coverage on the run's budget come first
    audit_after = ("evaluation", "fairness", "robustness", "compression", "explain")

    def validate(self, ctx) -> None:
        from tfresp.errors import ConfigError

        problems = []
        if ctx.config.train.steps_per_execution != 1:
            problems.append(("train.steps_per_execution", ctx.config.train.steps_per_execution,
                             "must be 1 under privacy: the ledger's hard budget stop acts between steps"))
        problems += canary.problems(ctx)
        if problems:
            raise ConfigError(problems)
        clipping.check_model(ctx.core)
        if len(ctx.data.train) < 2:
            raise BudgetExhaustedError("DP-SGD needs at least two training rows")
        run_budget(ctx)  # δ first: every later spend (reweighing counts, ...) is composed at this δ

    def plan(self, ctx) -> Contribution:
        cfg = ctx.config.privacy
        budget = run_budget(ctx)
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
        delta = budget.accounting_delta  # the run's δ less the δ terms of earlier spends (histogram thresholds)
        # σ is calibrated so that the *composition* (PLD/RDP) of the spends registered so far (concerns and
        # preprocessing before privacy, order < 90) with the planned DP-SGD steps stays within target_epsilon.
        kw = dict(sampling=cfg.sampling, steps_per_epoch=spe, base_events=[sp.event for sp in budget.spends])
        others = [sp.source for sp in budget.spends]
        if cfg.noise_multiplier is None:
            sigma = accounting.calibrate_noise(cfg.target_epsilon, delta, q, planned, cfg.accountant, **kw)
            how = f"calibrated so that the run's composed ε <= {cfg.target_epsilon:g}" + (
                f" (DP-SGD composed with {others})" if others else "")
        else:
            sigma = float(cfg.noise_multiplier)
            how = "given"
            if cfg.target_epsilon is not None:
                cap = accounting.max_steps_within(cfg.target_epsilon, sigma, q, delta, cfg.accountant, planned, **kw)
                if cap == 0:
                    raise BudgetExhaustedError(
                        f"Invalid value for argument `privacy.noise_multiplier`. Received: noise_multiplier={sigma}. "
                        f"Even one step exceeds target_epsilon={cfg.target_epsilon} at delta={delta:g} with "
                        f"q={q:.4g}" + (f" composed with {others}" if others else "")
                        + "; raise the noise multiplier or the budget")
        mode, reason = clipping.select_clipping(ctx.model, cfg.clipping)
        expected = q * n if cfg.sampling == "poisson" else None
        # The noise, the Poisson draws / shuffle order and the canary draws must be unpredictable to an attacker:
        # a seed derived from the public config seed would let anyone regenerate (and subtract) the noise and
        # know each batch's members. Seeds come from the budget (``secrets``) and live only in the ledger.
        noise_seed = tf.Variable(budget.secret_seed(), dtype=tf.int64, trainable=False, name="dp_noise_seed")
        secret_state = {"canary_seed": budget.secret_seed()} if cfg.canaries else {}
        ledger = PrivacyLedger(accounting.PrivacyAccountant(cfg.accountant), sigma, q, delta, cfg.target_epsilon,
                               noise_seed=noise_seed, budget=budget, sampling=cfg.sampling, steps_per_epoch=spe,
                               secrets_state=secret_state)
        ctx.set_own(self, PrivacyState(noise_multiplier=sigma, noise_source=how, sampling_rate=q, delta=delta,
                                       steps_per_epoch=spe, planned_steps=planned, clipping_mode=mode,
                                       clipping_reason=reason, expected_batch_size=expected, ledger=ledger))
        contrib = Contribution(
            gradient_fn=clipping.make_gradient_fn(mode, cfg.l2_norm_clip, sigma, expected, seed=noise_seed),
            callbacks=[ledger],
            notes=[f"DP-SGD: σ={sigma:.4g} ({how}), q={q:.4g}, {mode} clipping at C={cfg.l2_norm_clip:g}"])

        def train_dataset(c):
            x, y, extras = c.data.train.x, c.data.train.y, c.train_extras
            if cfg.canaries:
                x, y, extras = canary.with_canaries(x, y, extras, canary.make(c, ledger.secrets_state["canary_seed"]))
            seed = int(noise_seed.numpy())  # read after a resume restored the ledger's state
            if cfg.sampling == "poisson":
                return poisson_dataset(x, y, extras, q, spe, seed=seed ^ 0x5EED)
            return make_dataset(x, y, extras, batch, shuffle=True, seed=(seed ^ 0x5A0F) % (2 ** 31))

        contrib.train_dataset = train_dataset
        log.info("privacy: noise_multiplier=%.4g (%s), q=%.4g, steps=%d, clipping=%s", sigma, how, q, planned, mode)
        return contrib

    def audit(self, ctx):
        cfg = ctx.config.privacy
        st = vars(ctx.own(self))  # the typed PrivacyState its plan set, read by field name below
        budget = run_budget(ctx)
        ledger: PrivacyLedger = st["ledger"]
        steps = ledger.accountant.steps
        budget.withdraw("privacy.dp_sgd")  # idempotent when audited again
        budget.spend("privacy.dp_sgd", accounting.sgd_event(st["noise_multiplier"], st["sampling_rate"], steps,
                                                            cfg.sampling, st["steps_per_epoch"]),
                     mechanism="dp_sgd", params={
                         "noise_multiplier": st["noise_multiplier"], "sampling_rate": st["sampling_rate"],
                         "steps": steps, "sampling": cfg.sampling, "steps_per_epoch": st["steps_per_epoch"],
                         "l2_norm_clip": cfg.l2_norm_clip},
                     covers=["model weights (and everything computed from them: predictions, exports, audits "
                             "on the test split)"])
        budget.declare_not_covered("training history (per-epoch loss/metrics on the training rows)",
                                   "logged by Keras from the private batches; no noise")
        if not any(c.item.startswith("preprocessing") for c in budget.coverage):
            # data preparation registered nothing: what it fitted on the training split is named, not hidden
            budget.declare_not_covered("preprocessing fitted on the training split",
                                       "feature scaling, category vocabularies, text vocabulary, class weights; "
                                       "exact statistics of the training rows")
        if cfg.audit and ctx.config.task == "classification":
            budget.declare_not_covered("privacy.audit membership-inference statistics",
                                       "aggregate attack scores computed from training rows' losses; no noise")
        n = len(ctx.data.train)
        sec = {
            # the run's whole guarantee: every registered release composed with dp_accounting
            "epsilon": budget.epsilon(),
            "delta": budget.delta,
            "delta_times_n": budget.delta * n,
            "n_train": n,
            "dp_sgd_epsilon": accounting.compute_epsilon(st["noise_multiplier"], st["sampling_rate"], steps,
                                                         budget.accounting_delta, cfg.accountant, sampling=cfg.sampling,
                                                         steps_per_epoch=st["steps_per_epoch"]),
            "budget": budget.section(),
            "noise_multiplier": st["noise_multiplier"],
            "noise_multiplier_source": st["noise_source"],
            "steps": steps,
            "steps_per_epoch": st["steps_per_epoch"],
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
            sec["accounting_note"] = ("shuffled fixed-size batches (secret order): ε is the no-amplification bound, "
                                      "one Gaussian release of every row per started epoch")
        sec["statement"] = statement(sec)
        plots = []
        if ledger.curve:
            epsilon_plot(ledger.curve, cfg.target_epsilon, ctx.run_dir / "plots" / "privacy_epsilon.png")
            plots.append("plots/privacy_epsilon.png")
        if cfg.audit and ctx.config.task == "classification":
            from tfresp.privacy.mia import audit_context

            sec["audit"] = audit_context(ctx, delta=budget.delta, epsilon=sec["epsilon"],
                                         plot_path=ctx.run_dir / "plots" / "privacy_mia_roc.png")
            if sec["audit"].get("plot"):
                plots.append(sec["audit"]["plot"])
        if cfg.canaries:
            sec.setdefault("audit", {})["canary"] = canary.audit(ctx, ledger.secrets_state["canary_seed"],
                                                                 claimed_epsilon=sec["epsilon"])
        sec["plots"] = plots
        return sec
