"""The privacy concern: DP-SGD with calibrated noise, Poisson sampling, a privacy ledger and an audit.

The gradient transform (planned last): fairness/robustness per-example terms are attached before DP replaces
the gradient computation, so every one of them is inside per-example clipping.
"""
from __future__ import annotations

import logging

from tfresp.concerns import Concern, Contribution, register
from tfresp.errors import BudgetExhaustedError, IncompatibleModelError
from tfresp.privacy import accounting, canary, clipping, releases
from tfresp.privacy.dpsgd import DPSGD
from tfresp.privacy.ledger import PrivacyLedger
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

        problems = list(canary.problems(ctx))
        problems += releases.fit_problems(ctx)  # int8 calibration / distillation data on private rows
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
        static = cfg.static_shapes
        if static == "auto":  # XLA compiles one program per batch shape: fixed-size batches when it is asked for
            static = ctx.config.train.jit_compile is True and cfg.sampling == "poisson"
        # The noise, the Poisson draws / shuffle order and the canary draws must be unpredictable to an attacker:
        # seeds come from the budget (``secrets``) and live only in the DP state (checkpointed, never reported).
        # σ is calibrated so that the *composition* (PLD/RDP) of the spends registered so far (preprocessing,
        # concerns planned before privacy) with the planned DP-SGD steps stays within target_epsilon.
        secret_state = {"canary_seed": budget.secret_seed()} if cfg.canaries else {}
        dp = DPSGD(num_examples=n, batch_size=ctx.config.train.batch_size, epochs=ctx.config.train.epochs,
                   l2_norm_clip=cfg.l2_norm_clip, noise_multiplier=cfg.noise_multiplier,
                   target_epsilon=cfg.target_epsilon, accountant=cfg.accountant, sampling=cfg.sampling,
                   clipping_mode=cfg.clipping, budget=budget, static_shapes=bool(static),
                   secrets_state=secret_state, synthetic_rows=cfg.canaries,
                   gradient_canaries=canary.GRADIENT_CANARIES if cfg.canaries else 0)
        # the builder owns the ResponsibleModel: admit it and take the chosen clipping, without wrapping it
        dp.attach(ctx.model)
        gradient_fn, ctx.model.gradient_fn = ctx.model.gradient_fn, None  # the builder applies the contribution
        ledger = dp.ledger
        expected = dp.sample_rate * n if cfg.sampling == "poisson" else None
        ctx.set_own(self, PrivacyState(noise_multiplier=dp.noise_multiplier, noise_source=dp.noise_source,
                                       sampling_rate=dp.sample_rate, delta=dp.delta,
                                       steps_per_epoch=dp.steps_per_epoch, planned_steps=dp.planned_steps,
                                       clipping_mode=dp.clipping, clipping_reason=dp.clipping_reason,
                                       expected_batch_size=expected, ledger=ledger, dp=dp))
        contrib = Contribution(
            gradient_fn=gradient_fn, callbacks=[ledger],
            notes=[f"DP-SGD: σ={dp.noise_multiplier:.4g} ({dp.noise_source}), q={dp.sample_rate:.4g}, "
                   f"{dp.clipping} clipping at C={cfg.l2_norm_clip:g}"
                   + (f", static batches of {dp.batch_max} rows" if dp.batch_max else "")])

        def train_dataset(c):
            x, y, extras = c.data.train.x, c.data.train.y, c.train_extras
            if cfg.canaries:
                x, y, extras = canary.with_canaries(x, y, extras, canary.make(c, ledger.secrets_state["canary_seed"]))
            # a resumed run continues the interrupted run's stream (the checkpointed DP state says which)
            return dp.dataset(x, y, side=extras, resume=c.resume_point is not None,
                              synthetic_rows=len(y) - n)

        contrib.train_dataset = train_dataset
        log.info("privacy: noise_multiplier=%.4g (%s), q=%.4g, steps=%d, clipping=%s", dp.noise_multiplier,
                 dp.noise_source, dp.sample_rate, dp.planned_steps, dp.clipping)
        return contrib

    def audit(self, ctx):
        cfg = ctx.config.privacy
        st = vars(ctx.own(self))  # the typed PrivacyState its plan set, read by field name below
        budget = run_budget(ctx)
        ledger: PrivacyLedger = st["ledger"]
        dp: DPSGD = st["dp"]
        ledger.sync()  # the steps the training step counted (the DP counter is the source of truth)
        steps = ledger.accountant.steps
        budget.withdraw("privacy.dp_sgd")  # idempotent when audited again
        budget.spend("privacy.dp_sgd", accounting.sgd_event(st["noise_multiplier"], st["sampling_rate"], steps,
                                                            cfg.sampling, st["steps_per_epoch"]),
                     mechanism="dp_sgd", params=dp.spend_params(steps),
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
            "batch_max": dp.batch_max,
            "truncation": dp.truncation,
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
            sec["audit"]["gradient_canary"] = dp.canaries.audit(sec["epsilon"], budget.delta)
        sec["plots"] = plots
        return sec
