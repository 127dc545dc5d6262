"""The mask-based PruningScheduler on subclassed models (where tfmot wrappers cannot go)."""
import numpy as np
import pytest
import tf_keras as keras

from tfresp.compression.masks import check_nm
from tfresp.compression.pruning_scheduler import PruningScheduler, kernel_sparsity
from tfresp.compression.schedule import SparsitySchedule


class TwoLayer(keras.Model):
    """A subclassed model: tfmot's prune_low_magnitude refuses it."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(32, activation="relu", name="hidden")
        self.out = keras.layers.Dense(2, name="head")

    def call(self, x, training=False):
        return self.out(self.hidden(x))


def _data(n=512, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def _fit(model, cb, epochs=3):
    x, y = _data()
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[cb])


def test_tfmot_refuses_subclassed_model():
    from tfresp.compression import _tfmot

    m = TwoLayer()
    m(np.zeros((1, 16), np.float32))
    assert not _tfmot.is_graph_model(m)
    import tensorflow_model_optimization as tfmot

    with pytest.raises(ValueError):
        tfmot.sparsity.keras.prune_low_magnitude(m)


def test_polynomial_pruning_reaches_and_keeps_target_on_subclassed_model():
    keras.utils.set_random_seed(0)
    model = TwoLayer()
    steps = 3 * 16
    sched = SparsitySchedule("polynomial", target=0.75, begin_step=0, end_step=32, frequency=4)
    cb = PruningScheduler(sched, exclude=["head"])
    hist = _fit(model, cb)
    sp = kernel_sparsity(model)["per_layer"]
    hidden = [k for k in sp if "hidden" in k][0]
    head = [k for k in sp if "head" in k][0]
    assert sp[hidden] == pytest.approx(0.75, abs=1.0 / (16 * 32))
    assert sp[head] == 0.0  # excluded
    assert int(model.optimizer.iterations.numpy()) == steps
    # the logged sparsity follows the schedule upwards and ends at the target share of the pruned kernels
    logged = hist.history["prune/sparsity"]
    assert logged == sorted(logged) and logged[-1] > 0.5
    # the model still learned the (easy) task
    x, y = _data(seed=1)
    acc = np.mean(np.argmax(model.predict(x, verbose=0), 1) == y)
    assert acc > 0.8


def test_two_four_pattern_on_every_group_of_subclassed_model():
    keras.utils.set_random_seed(1)
    model = TwoLayer()
    cb = PruningScheduler(SparsitySchedule("constant", 0.5, 0, 0, frequency=8), structured=(2, 4))
    _fit(model, cb, epochs=2)
    for v in cb.kernels:
        w = v.numpy()
        assert check_nm(w, 2, 4), v.name
        groups = np.moveaxis(w, -2, -1).reshape(w.shape[-1], -1, 4)
        assert np.all(np.count_nonzero(groups, axis=-1) <= 2)
    # the head has 32 inputs: pruned too; the hidden layer has 16 inputs: pruned
    assert len(cb.kernels) == 2


@pytest.mark.slow
def test_mask_scheduler_on_transformers_bert():
    """A transformers TF BERT (subclassed, nested layers) pruned through its kernels only."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=2)
    keras.utils.set_random_seed(0)
    bert = transformers.TFBertForSequenceClassification(cfg)
    ids = np.random.default_rng(0).integers(1, 64, size=(64, 8)).astype(np.int32)
    y = (ids[:, 0] % 2).astype(np.int64)
    bert(ids)
    emb_before = [v.numpy().copy() for v in bert.weights if "embeddings" in v.name]
    cb = PruningScheduler(SparsitySchedule("constant", 0.6, 0, 0, frequency=2), exclude=["classifier"])
    bert.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    bert.fit(ids, y, batch_size=16, epochs=1, verbose=0, callbacks=[cb])
    names = [v.name for v in cb.kernels]
    assert any("query" in n for n in names) and any("intermediate" in n for n in names)
    assert not any("classifier" in n for n in names)
    for v in cb.kernels:
        assert np.mean(v.numpy() == 0) == pytest.approx(0.6, abs=0.01), v.name
    # embeddings are not kernels: untouched by the masks (only by the optimizer)
    for v, before in zip([v for v in bert.weights if "embeddings" in v.name], emb_before):
        assert np.mean(v.numpy() == 0) < 0.01


def test_target_honoured_when_training_stops_before_the_schedule_ends():
    keras.utils.set_random_seed(2)
    model = TwoLayer()
    # 1 epoch = 16 steps, but the schedule expects to end at step 100
    cb = PruningScheduler(SparsitySchedule("polynomial", 0.9, 0, 100, frequency=10), exclude=["head"])
    _fit(model, cb, epochs=1)
    assert cb.completed_early
    hidden = [v for v in cb.kernels if "hidden" in v.name][0]
    assert np.mean(hidden.numpy() == 0) == pytest.approx(0.9, abs=1.0 / (16 * 32))
