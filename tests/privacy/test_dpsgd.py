"""The one DP-SGD mechanism (tfresp.privacy.dpsgd.DPSGD) closes the doors of a plain model.fit (issue 23)."""
import math

import dp_accounting
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfresp
from tfresp.privacy import accounting
from tfresp.privacy.private import make_private

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=96, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int64")


def _core(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])


def _weights(model):
    return [v.numpy().copy() for v in model.core.trainable_variables]


def test_fit_on_arrays_or_a_foreign_dataset_is_refused():
    """model.fit(x, y) (or the user's own tf.data) would be booked as Poisson sampling it is not: refused."""
    x, y = _data()
    private = make_private(_core(), num_examples=len(y), batch_size=16, epochs=1, noise_multiplier=1.0)
    private.model.compile("sgd", CE)
    before = _weights(private.model)
    with pytest.raises(tfresp.DataError, match="not drawn by its DP dataset"):
        private.model.fit(x, y, batch_size=16, epochs=1, callbacks=[private.ledger], verbose=0)
    foreign = tf.data.Dataset.from_tensor_slices((x, y, {"sample_weight": np.ones(len(y), "float32")})).batch(16)
    with pytest.raises(tfresp.DataError, match="not drawn by its DP dataset"):
        private.model.fit(foreign, epochs=1, callbacks=[private.ledger], verbose=0)
    assert private.ledger.epsilon == 0.0 and private.steps == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(private.model)))
    # the refusal leaves the model usable with the DP dataset
    private.model.fit(private.dataset(x, y), epochs=1, verbose=0)
    assert private.steps == private.steps_per_epoch


def test_a_recompile_between_fits_does_not_replay_the_noise():
    """Two fits from the same weights with a new optimizer in between: the noise must differ (own counter)."""
    x, y = _data(n=32)
    private = make_private(_core(), num_examples=len(y), batch_size=len(y), epochs=1, noise_multiplier=1.0)
    start = _weights(private.model)
    deltas = []
    for _ in range(2):  # q = 1: both steps see the same batch, so only the noise can differ
        for v, w in zip(private.model.core.trainable_variables, start):
            v.assign(w)
        private.model.compile(keras.optimizers.SGD(1.0), CE)  # a new optimizer: iterations back to 0
        private.model.fit(private.dataset(x, y), epochs=1, callbacks=[private.ledger], verbose=0)
        deltas.append([a - b for a, b in zip(_weights(private.model), start)])
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*deltas))
    assert diff > 1e-3, "the second fit drew the same noise as the first"
    assert private.steps == 2 and private.ledger.accountant.steps == 2


def _batches(ds):
    return [tuple(sorted(np.round(b[0].numpy()[:, 0], 5).tolist())) for b in ds]


def test_a_second_dataset_call_draws_fresh_batches():
    x, y = _data(n=200)
    private = make_private(_core(), num_examples=len(y), batch_size=20, epochs=1, noise_multiplier=1.0)
    first, second = _batches(private.dataset(x, y)), _batches(private.dataset(x, y))
    assert sum(a == b for a, b in zip(first, second)) == 0, "dataset() replayed the same Poisson batches"
    ds = private.dataset(x, y)
    assert sum(a == b for a, b in zip(_batches(ds), _batches(ds))) == 0  # every epoch re-draws


def test_a_replayed_dataset_is_refused_and_not_applied():
    x, y = _data()
    private = make_private(_core(), num_examples=len(y), batch_size=16, epochs=2, noise_multiplier=1.0)
    private.model.compile(keras.optimizers.SGD(0.1), CE)
    cached = private.dataset(x, y).cache()
    with pytest.raises(tfresp.TfrespError, match="arrived a second time"):
        private.model.fit(cached, epochs=2, verbose=0)
    assert private.steps == private.steps_per_epoch  # the first (fresh) epoch only
    assert int(private.model.optimizer.iterations.numpy()) == private.steps_per_epoch


class OwnStep(tfresp.ResponsibleModel):
    def train_step(self, data):  # skips the DP gradient entirely
        x, y, _ = self.unpack(data)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(CE(y, self.core(x, training=True)))
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.core.trainable_variables),
                                           self.core.trainable_variables))
        return {"loss": loss}


class PlainOwnStep(keras.Sequential):
    def train_step(self, data):
        return super().train_step(data)


class OwnGradient(tfresp.ResponsibleModel):
    def gradient_step(self, x, y, extras):  # bypasses gradient_fn
        with tf.GradientTape() as tape:
            loss, logits = self.total_loss(x, y, extras)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.core.trainable_variables),
                                           self.core.trainable_variables))
        return loss, logits


def test_a_model_with_its_own_train_step_is_refused():
    with pytest.raises(tfresp.IncompatibleModelError, match="OwnStep defines its own train_step"):
        make_private(OwnStep(_core()), num_examples=96, batch_size=16, epochs=1, noise_multiplier=1.0)
    plain = PlainOwnStep([keras.Input((5,)), keras.layers.Dense(2)])
    with pytest.raises(tfresp.IncompatibleModelError, match="PlainOwnStep defines its own train_step"):
        make_private(plain, num_examples=96, batch_size=16, epochs=1, noise_multiplier=1.0)
    x, y = _data()
    private = make_private(OwnGradient(_core()), num_examples=len(y), batch_size=16, epochs=1, noise_multiplier=1.0)
    private.model.compile("sgd", CE)
    with pytest.raises(tfresp.IncompatibleModelError, match="never called the DP gradient"):
        private.model.fit(private.dataset(x, y), epochs=1, verbose=0)


def test_the_step_books_itself_without_the_ledger_callback():
    x, y = _data()
    private = make_private(_core(), num_examples=len(y), batch_size=16, epochs=2, noise_multiplier=1.0, delta=1e-3)
    private.model.compile("adam", CE)
    keras.Model.fit(private.model, private.dataset(x, y), epochs=2, verbose=0)  # Keras' own fit, no callback
    eps = private.ledger.epsilon
    steps = 2 * private.steps_per_epoch
    assert private.ledger.accountant.steps == steps
    oracle = dp_accounting.pld.PLDAccountant()
    oracle.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        16 / len(y), dp_accounting.GaussianDpEvent(1.0)), steps))
    assert eps > 0 and eps == pytest.approx(oracle.get_epsilon(1e-3), rel=0.02)


def test_budget_stop_is_exact_with_steps_per_execution():
    x, y = _data(n=200)
    sigma, q, delta, target = 0.8, 20 / 200, 1e-3, 2.0
    cap = accounting.max_steps_within(target, sigma, q, delta, "pld")
    assert 2 < cap < 30
    private = make_private(_core(), num_examples=len(y), batch_size=20, epochs=5, noise_multiplier=sigma,
                           target_epsilon=target, delta=delta)
    private.model.compile(keras.optimizers.SGD(0.1), CE, steps_per_execution=8)
    hist = private.model.fit(private.dataset(x, y), epochs=5, callbacks=[private.ledger], verbose=0).history
    assert private.ledger.epsilon <= target and private.ledger.stopped_early
    assert private.ledger.accountant.steps == cap, (private.ledger.accountant.steps, cap)
    assert int(private.model.optimizer.iterations.numpy()) == cap  # no update past the cap
    assert len(hist["loss"]) < 5
    with pytest.raises(tfresp.BudgetExhaustedError):
        private.model.fit(private.dataset(x, y), epochs=1, verbose=0)


def test_class_weight_with_the_dp_dataset():
    x, y = _data()
    private = make_private(_core(), num_examples=len(y), batch_size=16, epochs=1, noise_multiplier=1.0)
    private.model.compile("sgd", CE)
    private.model.fit(private.dataset(x, y), epochs=1, class_weight={0: 1.0, 1: 3.0}, verbose=0)
    assert private.steps == private.steps_per_epoch
    from tfresp.models.base import _class_weight_fn

    side = {"sample_weight": tf.constant([0.5, 1.0, 2.0])}
    _, _, out = _class_weight_fn({0: 1.0, 1: 3.0})(tf.zeros([3, 5]), tf.constant([0, 1, 1]), side)
    np.testing.assert_allclose(out["sample_weight"].numpy(), [0.5, 3.0, 6.0])


def test_zero_noise_is_refused_everywhere():
    from pydantic import ValidationError

    from tfresp.federated.config import FederatedDPConfig
    from tfresp.privacy.config import PrivacyConfig

    with pytest.raises(tfresp.ConfigError, match="noise_multiplier.*not differentially private"):
        make_private(_core(), num_examples=96, batch_size=16, epochs=1, noise_multiplier=0.0)
    with pytest.raises(ValidationError, match="noise_multiplier"):
        PrivacyConfig(noise_multiplier=0)
    with pytest.raises(ValidationError, match="noise_multiplier"):
        FederatedDPConfig(noise_multiplier=0)


# -- static shapes -------------------------------------------------------------------------------------
def test_truncation_bound_against_a_direct_binomial_sum():
    from tfresp.privacy.dpsgd import choose_batch_max, truncation_tail

    n, q, steps, eps, reserve = 300, 0.05, 100, 2.0, 1e-7
    b = choose_batch_max(n, q, steps, eps, reserve)

    def tail(k):  # P[Binomial(n + 1, q) > k] by the definition
        return sum(math.comb(n + 1, i) * q ** i * (1 - q) ** (n + 1 - i) for i in range(k + 1, n + 2))

    assert (1 + math.exp(eps)) * steps * tail(b) <= reserve < (1 + math.exp(eps)) * steps * tail(b - 1)
    assert truncation_tail(n, q, b) == pytest.approx(tail(b), rel=1e-6)


def test_static_batches_are_padded_with_rows_that_add_nothing():
    from tfresp.privacy import clipping

    x, y = _data(n=200)
    private = make_private(_core(), num_examples=len(y), batch_size=20, epochs=1, noise_multiplier=1.0,
                           static_shapes=True, clipping_mode="vectorized")
    assert private.batch_max > 20 and private.delta == pytest.approx(private.run_delta * 0.99)
    batches = list(private.dataset(x, y))
    assert {int(b[1].shape[0]) for b in batches} == {private.batch_max}
    xb, yb, side = batches[0]
    mask = side["dp_mask"].numpy()
    real = mask > 0
    assert 0 < real.sum() < len(mask)
    noiseless = clipping.make_gradient_fn("vectorized", 1.0, 0.0, expected_batch_size=20.0)
    model = private.model
    side = {k: v for k, v in side.items() if k != "dp_draw"}
    _, padded, _ = noiseless(model, xb, yb, {**side, "sample_weight": side["sample_weight"] * side["dp_mask"]})
    _, plain, _ = noiseless(model, tf.boolean_mask(xb, real), tf.boolean_mask(yb, real), {})
    for a, b in zip(padded, plain):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_compiled_metrics_do_not_count_the_padding_rows(jit):
    """Keras' plain `metrics=["accuracy"]` ignore sample weights: the padding copies of row 0 (weight 0) must
    still not count. Row 0 has label 0, every other row 1, and the frozen model says 1: accuracy over real rows
    is ~1; counting the padding it would be about B / batch_max."""
    x, _ = _data(n=400)
    y = np.ones(400, np.int64)
    y[0] = 0
    core = _core()
    core.layers[-1].bias.assign([0.0, 50.0])
    private = make_private(core, num_examples=len(y), batch_size=20, epochs=1, noise_multiplier=1.0,
                           static_shapes=True)
    private.model.compile(keras.optimizers.SGD(0.0), CE, metrics=["accuracy"], jit_compile=jit)
    hist = private.model.fit(private.dataset(x, y), epochs=1, verbose=0).history
    assert private.batch_max > 25
    assert hist["accuracy"][-1] > 0.97, hist


def test_dp_step_compiles_once_with_jit():
    x, y = _data(n=400)
    private = make_private(_core(), num_examples=len(y), batch_size=20, epochs=2, noise_multiplier=1.0,
                           static_shapes=True)
    private.model.compile("adam", CE, jit_compile=True)
    private.model.fit(private.dataset(x, y), epochs=2, verbose=0)
    assert private.steps == 2 * private.steps_per_epoch
    assert private.model.train_function.experimental_get_tracing_count() == 1


def test_spend_params_rederive_with_the_truncation_delta():
    """report --check composes the DP-SGD spend at δ minus its truncation term: same ε as the ledger."""
    from tfresp.privacy.budget import event_from_params

    x, y = _data(n=400)
    private = make_private(_core(), num_examples=len(y), batch_size=20, epochs=1, noise_multiplier=1.0,
                           static_shapes=True, delta=1e-4)
    private.model.compile("sgd", CE)
    private.model.fit(private.dataset(x, y), epochs=1, verbose=0)
    params = private.spend_params()
    assert params["delta"] == pytest.approx(1e-6) and params["batch_max"] == private.batch_max
    acc = accounting.make_dp_accountant("pld")
    acc.compose(event_from_params("dp_sgd", params))
    assert acc.get_epsilon(1e-4 - params["delta"]) == pytest.approx(private.ledger.epsilon, rel=1e-9)


# -- the canary audit catches a broken mechanism -------------------------------------------------------
def _audited_run(monkeypatch, broken=None):
    """A DP-SGD run at ε = 3 with the default gradient canaries; ``broken`` rewires the mechanism on purpose."""
    from tfresp.privacy import canary, clipping

    if broken is not None:
        real = clipping.make_gradient_fn

        def rigged(mode, l2_norm_clip, noise_multiplier, **kw):
            clip, sigma = broken(l2_norm_clip, noise_multiplier)
            return real(mode, clip, sigma, **kw)

        monkeypatch.setattr(clipping, "make_gradient_fn", rigged)
    x, y = _data(n=1000)
    from tfresp.privacy.dpsgd import DPSGD

    dp = DPSGD(num_examples=len(y), batch_size=50, epochs=3, target_epsilon=3.0, delta=1e-5,
               gradient_canaries=canary.GRADIENT_CANARIES)
    model = dp.attach(_core())
    model.compile(keras.optimizers.SGD(0.05), CE)
    model.fit(dp.dataset(x, y), epochs=3, verbose=0)
    assert dp.steps == 3 * dp.steps_per_epoch
    return dp.canaries.audit(dp.epsilon, 1e-5), dp.epsilon


def test_gradient_canaries_pass_a_correct_run(monkeypatch):
    audit, eps = _audited_run(monkeypatch)
    assert eps <= 3.0 and audit["epsilon_lower_bound"] <= eps and not audit["exceeds_claim"]


@pytest.mark.parametrize("broken", [lambda c, s: (c, 0.0),              # the noise forgotten
                                    lambda c, s: (1000 * c, s / 1000)],  # clipping at 1000, noise for C
                         ids=["noise_off", "clip_1000"])
def test_gradient_canaries_catch_a_broken_mechanism(monkeypatch, broken):
    audit, eps = _audited_run(monkeypatch, broken)
    assert audit["exceeds_claim"] and audit["epsilon_lower_bound"] > eps, audit


@pytest.mark.slow  # a whole tfresp.fit with XLA compilation: ~1-3 min on 2 shared cores
def test_config_jit_compile_uses_static_shapes_and_report_check_rederives(tmp_path):
    """`train.jit_compile: true` under `privacy:` trains on fixed-size batches, compiles the step once, and
    `report --check` re-derives ε with the truncation δ recorded in the DP-SGD spend."""
    from tests.conftest import tiny_adult
    from tfresp.privacy import verify

    res = tfresp.fit(tiny_adult(privacy={"target_epsilon": 3.0, "audit": False}, train={"jit_compile": True}),
                     out=tmp_path / "run", quiet=True)
    sec = res.report["privacy"]
    dp = res.context.own("privacy").dp
    assert sec["batch_max"] == dp.batch_max > 128 and sec["truncation"]["delta"] > 0
    spend = next(s for s in sec["budget"]["spends"] if s["source"] == "privacy.dp_sgd")
    assert spend["params"]["delta"] == sec["truncation"]["delta"] and spend["params"]["batch_max"] == dp.batch_max
    assert verify.problems(res.report) == []
    assert res.context.model.train_function.experimental_get_tracing_count() == 1
    assert sec["epsilon"] <= 3.0
