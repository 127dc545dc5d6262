"""``PrivacyLedger``: the Keras callback that keeps the privacy books of a DP-SGD run."""
from __future__ import annotations

import math
from typing import Optional

import dp_accounting
import tf_keras as keras

from tfresp.errors import BudgetExhaustedError, TfrespError
from tfresp.privacy import accounting
from tfresp.privacy.accounting import PrivacyAccountant


class PrivacyError(TfrespError):
    """The run cannot keep its privacy guarantee as configured."""


class PrivacyLedger(keras.callbacks.Callback):
    """Records every DP-SGD step in a :class:`PrivacyAccountant`, logs ``dp/epsilon`` each epoch, and stops
    training before a step would exceed the budget.

    Args:
        accountant: where steps are recorded (may hold steps of an earlier, resumed run).
        noise_multiplier: σ of every step.
        sample_rate: Poisson rate ``q`` of every step.
        delta: δ at which ε is reported.
        target_epsilon: hard budget; ``None`` for no stop.
        noise_seed: optional int64 ``tf.Variable`` holding the secret noise seed (checkpointed, never reported).
        budget: the run's :class:`~tfresp.privacy.budget.PrivacyBudget`; its other spends (noisy counts, DP
            statistics) are composed with the DP-SGD steps, so the stop and ``dp/epsilon`` use the run's total ε.
        sampling: ``poisson`` or ``shuffle`` (no-amplification accounting, see ``accounting.sgd_event``).
        steps_per_epoch: steps per epoch (``shuffle`` counts each started epoch as one Gaussian release).
        dp: the :class:`~tfresp.privacy.dpsgd.DPSGD` mechanism: steps are read from its counter (ε is right
            without this callback) and its budget cap acts inside the step; this callback adds the epoch curve,
            ``dp/epsilon`` and ``stop_training``.

    Example:
        >>> ledger = PrivacyLedger(PrivacyAccountant("pld"), noise_multiplier=1.1, sample_rate=0.01,
        ...                        delta=1e-5, target_epsilon=3.0)
        >>> model.fit(ds, epochs=5, callbacks=[ledger])   # history["dp/epsilon"] per epoch
    """

    def __init__(self, accountant: PrivacyAccountant, noise_multiplier: float, sample_rate: float, delta: float,
                 target_epsilon: Optional[float] = None, noise_seed=None, budget=None, sampling: str = "poisson",
                 steps_per_epoch: int = 1, secrets_state=None, dp=None):
        super().__init__()
        #: the :class:`~tfresp.privacy.dpsgd.DPSGD` mechanism whose step counter this ledger books (its training
        #: step advances the counter, so the books hold even when this callback is not passed to fit)
        self.dp = dp
        self.budget = budget
        self.sampling = sampling
        self.steps_per_epoch = int(steps_per_epoch)
        #: other secret values (e.g. the canary inclusion seed) kept with the noise seed in checkpoints only
        self.secrets_state = secrets_state if secrets_state is not None else {}
        #: optional int64 tf.Variable: the SECRET seed of the DP noise, checkpointed so a resumed run continues
        #: the same noise stream. Never written to the report (knowing it lets anyone subtract the noise).
        self.noise_seed = noise_seed
        self.accountant = accountant
        self.noise_multiplier = float(noise_multiplier)
        self.sample_rate = float(sample_rate)
        self.delta = float(delta)
        self.target_epsilon = target_epsilon
        self.curve = []
        self.stopped_early = False
        self.step_cap = None
        self._resumed_steps = 0  # steps restored by set_state: a resumed fit runs that many fewer

    # -- state (for checkpoints) -------------------------------------------------------------
    def sync(self) -> None:
        """Book the steps the DP mechanism's counter has taken since the last booking."""
        if self.dp is not None:
            new = self.dp.steps - self.accountant.steps
            if new > 0:
                self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                                     num_steps=new)

    def get_state(self) -> dict:
        self.sync()
        state = {"accountant": self.accountant.state_dict(), "curve": [dict(c) for c in self.curve],
                 "stopped_early": self.stopped_early}
        if self.dp is not None:
            state.update(self.dp.get_state())
        if self.noise_seed is not None:
            state["noise_seed"] = int(self.noise_seed.numpy())
            # whoever holds the seed can regenerate and subtract the noise: checkpointing keeps it in the
            # private working directory (needed for --resume) and strips it from the finished run directory
            state["secret_keys"] = ["noise_seed"]
        for key, value in self.secrets_state.items():
            state[key] = value
            state.setdefault("secret_keys", []).append(key)
        return state

    def public_state(self) -> dict:
        """:meth:`get_state` without the secret noise seed (what the report may show) and without the DP
        dataset's bookkeeping (draw tags and stream numbers are per process: a resumed run numbers them anew)."""
        state = self.get_state()
        hidden = set(state.get("secret_keys", [])) | {"secret_keys", "dp_last_tag", "dp_datasets_issued",
                                                          "dp_gradient_canary_scores"}
        return {k: v for k, v in state.items() if k not in hidden}

    def set_state(self, state: dict) -> None:
        self.accountant.load_state_dict(state["accountant"])
        self.curve = [dict(c) for c in state.get("curve", [])]
        self.stopped_early = bool(state.get("stopped_early", False))
        self._resumed_steps = int(self.accountant.steps)
        if self.dp is not None:
            self.dp.set_state({"dp_step": self.accountant.steps, **state})
        if self.noise_seed is not None and "noise_seed" in state:
            self.noise_seed.assign(int(state["noise_seed"]))
        for key in list(self.secrets_state):
            if key in state:
                self.secrets_state[key] = state[key]

    # -- budget ------------------------------------------------------------------------------
    def epsilon_after(self, extra_steps: int) -> float:
        """The run's composed ε(δ) if ``extra_steps`` more steps were taken with this ledger's (σ, q)."""
        self.sync()
        history = [list(h) for h in self.accountant.history]
        if extra_steps > 0:
            history.append([self.noise_multiplier, self.sample_rate, int(extra_steps)])
        history = [h for h in history if h[2] > 0]
        if any(h[0] <= 0 for h in history):
            return math.inf
        if self.sampling == "shuffle" and history:  # one Gaussian per started epoch over all steps, at the worst σ
            sgd = [accounting.sgd_event(min(h[0] for h in history), 1.0, sum(int(h[2]) for h in history),
                                        "shuffle", self.steps_per_epoch)]
        else:
            sgd = [accounting.sgd_event(s, q, int(k)) for s, q, k in history]
        if self.budget is not None:
            return self.budget.epsilon(extra=dp_accounting.ComposedDpEvent(sgd), delta=self.delta) if sgd \
                else self.budget.epsilon(delta=self.delta)
        if not sgd:
            return 0.0
        acc = accounting.make_dp_accountant(self.accountant.mechanism)
        acc.compose(dp_accounting.ComposedDpEvent(sgd))
        return float(acc.get_epsilon(self.delta))

    def steps_left(self, planned: int) -> int:
        """How many of ``planned`` further steps fit in the budget (binary search on the accountant)."""
        if self.target_epsilon is None or self.epsilon_after(planned) <= self.target_epsilon:
            return planned
        lo, hi = 0, planned  # eps(lo) <= target < eps(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.epsilon_after(mid) <= self.target_epsilon:
                lo = mid
            else:
                hi = mid
        return lo

    @property
    def epsilon(self) -> float:
        """The run's ε(δ) so far: the recorded DP-SGD steps composed with the budget's other spends."""
        return self.epsilon_after(0)

    # -- hooks -------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._check_workers_agree()
        if self.dp is not None:
            self.dp.check_model(self.model)
            self.dp.replayed.assign(0)
            self.sync()
            self.stopped_early = False
            self._start_steps = self.dp.steps
            if self.dp.steps >= int(self.dp.max_steps.numpy()):
                raise BudgetExhaustedError(
                    f"The privacy budget is exhausted: target_epsilon={self.target_epsilon} at delta={self.delta:g} "
                    f"is already reached after {self.accountant.steps} steps (ε={self.epsilon:.4g}); "
                    "remedy: raise privacy.target_epsilon or start a new run")
            return
        self.stopped_early = False
        self._epoch_steps = 0
        self._fit_steps = 0
        epochs = (self.params or {}).get("epochs") or 1
        steps = (self.params or {}).get("steps")
        planned = int(epochs * steps) - self._resumed_steps if steps else None
        self.step_cap = self.steps_left(planned) if planned is not None else None
        if self.step_cap == 0:
            raise BudgetExhaustedError(
                f"The privacy budget is exhausted: target_epsilon={self.target_epsilon} at delta={self.delta:g} "
                f"is already reached after {self.accountant.steps} steps (ε={self.epsilon:.4g}); "
                "remedy: raise privacy.target_epsilon or start a new run")

    def _check_workers_agree(self) -> None:
        """Multi-worker: refuse to train unless every worker holds the same secret seeds (noise, sampling,
        canaries). Workers drawing their own would shard different samples, so a global batch would not be
        the one Poisson sample / permutation slice the accounting assumes (see :func:`shared_secret`)."""
        from tfresp.distribute import same_on_all_workers

        strategy = getattr(self.model, "distribute_strategy", None)
        values = ([int(self.noise_seed.numpy())] if self.noise_seed is not None else []) + [
            int(v) for v in self.secrets_state.values() if isinstance(v, int)]
        if strategy is not None and not same_on_all_workers(strategy, values):
            raise PrivacyError(
                "`distribute`: the workers of this multi-worker run hold different secret DP seeds, so their "
                "batches are not one sample and the privacy accounting would not hold. Received: distribute="
                "multi_worker with per-worker seeds. Remedy: build the run's PrivacyBudget before training and "
                "call budget.share_secret(tfresp.distribute.shared_secret(strategy)) on every worker (tfresp.fit "
                "does), or train DP on one worker")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        if self.dp is not None:
            self.sync()
            if int(self.dp.replayed.numpy()):
                raise PrivacyError(
                    "`x`: a batch of the DP dataset arrived a second time (a cached, stored or re-ordered copy of "
                    "the DP batches); DP-SGD accounting composes each draw once, so a replay would be an unbooked "
                    "release. It was not applied. Received: a replayed draw tag. Remedy: pass "
                    "private.dataset(x, y) to fit directly, without .cache() or a stored list of batches")
            if self.dp.steps >= int(self.dp.max_steps.numpy()):
                self.model.stop_training = True
                self.stopped_early = self.dp.steps - self._start_steps < self._planned()
            return
        done = int(batch) + 1  # with steps_per_execution > 1, `batch` is the last step of the execution
        if self._epoch_steps == 0:  # first call this epoch (possibly mid-epoch after a resume)
            spe = getattr(self.model, "_steps_per_execution", None)
            spe = int(spe.numpy()) if hasattr(spe, "numpy") else 1
            new = min(done, max(spe, 1))
        else:
            new = done - self._epoch_steps
        if new > 0:
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                                 num_steps=new)
            self._epoch_steps = done
            self._fit_steps += new
        if self.step_cap is not None and self._fit_steps >= self.step_cap and self.step_cap < self._planned():
            self.model.stop_training = True
            self.stopped_early = True

    def _planned(self) -> float:
        epochs = (self.params or {}).get("epochs") or 1
        steps = (self.params or {}).get("steps")
        return epochs * steps - self._resumed_steps if steps else math.inf

    def on_epoch_end(self, epoch, logs=None):
        eps = self.epsilon
        self.curve.append({"epoch": int(epoch) + 1, "steps": self.accountant.steps, "epsilon": eps})
        if logs is not None:
            logs["dp/epsilon"] = eps
