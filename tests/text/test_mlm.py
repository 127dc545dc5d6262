"""Masked-LM: 15% / 80-10-10 masking statistics and the loss against a numpy reference."""
import numpy as np
import tensorflow as tf

from tfresp.models import bert
from tfresp.tasks.mlm import MlmModel, mask_tokens

SPECIAL = [0, 1, 2, 3, 4]
MASK = 4
V = 1000


def fake_batch(rows=400, length=64, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, V, size=(rows, length)).astype(np.int32)
    lengths = rng.integers(8, length + 1, size=rows)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    ids[:, 0] = 2
    ids[np.arange(rows), lengths - 1] = 3
    ids[mask == 0] = 0
    return ids, mask


def test_masking_rates_and_specials():
    ids, mask = fake_batch()
    masked, sel = mask_tokens(tf.constant(ids), tf.constant(mask), tf.constant([1, 2], tf.int64), MASK, V, SPECIAL)
    masked, sel = masked.numpy(), sel.numpy().astype(bool)
    candidates = (mask == 1) & ~np.isin(ids, SPECIAL)
    assert not np.any(sel & ~candidates)  # never [CLS]/[SEP]/padding
    assert np.array_equal(masked[~sel], ids[~sel])  # unselected tokens untouched
    n = candidates.sum()
    rate = sel.sum() / n
    assert abs(rate - 0.15) < 4 * np.sqrt(0.15 * 0.85 / n)
    k = sel.sum()
    to_mask = np.mean(masked[sel] == MASK)
    kept = np.mean(masked[sel] == ids[sel])
    assert abs(to_mask - 0.8) < 4 * np.sqrt(0.16 / k)
    assert abs(kept - 0.1) < 4 * np.sqrt(0.09 / k) + 1.0 / V  # random replacements rarely hit the same id
    rnd = masked[sel & (masked != MASK) & (masked != ids)]
    assert rnd.min() >= 5 and rnd.max() < V


def test_masking_is_a_function_of_the_seed():
    ids, mask = fake_batch(rows=16)
    a = mask_tokens(tf.constant(ids), tf.constant(mask), tf.constant([0, 5], tf.int64), MASK, V, SPECIAL)[0]
    b = mask_tokens(tf.constant(ids), tf.constant(mask), tf.constant([0, 5], tf.int64), MASK, V, SPECIAL)[0]
    c = mask_tokens(tf.constant(ids), tf.constant(mask), tf.constant([0, 6], tf.int64), MASK, V, SPECIAL)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_per_example_loss_matches_numpy_reference():
    cfg = bert.BertConfig(vocab_size=V, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                          max_position=64, dropout=0.0, attention_dropout=0.0)
    core = bert.build_mlm(cfg)
    model = MlmModel(core, MASK, V, SPECIAL, seed=3)
    model.compile(optimizer="sgd")
    ids, mask = fake_batch(rows=6, length=24, seed=1)
    x = {"input_ids": tf.constant(ids), "attention_mask": tf.constant(mask)}
    w = np.array([1, 2, 1, 0.5, 1, 1], np.float32)
    loss, _ = model.per_example_loss(x, tf.zeros(6, tf.int64), {"sample_weight": tf.constant(w)}, training=True)
    # reference: recompute the same mask, then a Python loop of softmax cross-entropy at selected positions
    seed = tf.constant([3, int(model.optimizer.iterations.numpy())], tf.int64)
    masked, sel = mask_tokens(x["input_ids"], x["attention_mask"], seed, MASK, V, SPECIAL)
    logits = core({"input_ids": masked, "attention_mask": x["attention_mask"]}).numpy().astype(np.float64)
    sel = sel.numpy()
    ref = []
    for i in range(6):
        terms = []
        for j in range(24):
            if sel[i, j]:
                z = logits[i, j] - logits[i, j].max()
                terms.append(-(z[ids[i, j]] - np.log(np.exp(z).sum())))
        ref.append(w[i] * (np.mean(terms) if terms else 0.0))
    np.testing.assert_allclose(loss.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_training_reduces_the_loss_on_a_repeated_batch():
    cfg = bert.BertConfig(vocab_size=60, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                          max_position=32, dropout=0.0, attention_dropout=0.0)
    model = MlmModel(bert.build_mlm(cfg), MASK, 60, SPECIAL, seed=0)
    model.compile(optimizer="adam")
    pattern = np.tile(np.arange(5, 15, dtype=np.int32), 3)[:16]
    ids = np.tile(pattern, (64, 1))
    ids[:, 0], ids[:, -1] = 2, 3
    ds = tf.data.Dataset.from_tensor_slices(({"input_ids": ids, "attention_mask": np.ones_like(ids)},
                                             np.zeros(64, np.int64))).batch(32)
    before = model.evaluate(ds, verbose=0, return_dict=True)["loss"]
    model.fit(ds, epochs=15, verbose=0)
    after = model.evaluate(ds, verbose=0, return_dict=True)
    assert after["loss"] < 0.75 * before and after["masked_accuracy"] > 0.5, (before, after)
