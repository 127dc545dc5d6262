"""Masks and schedules against slow, obviously-correct references and against tfmot."""
import numpy as np
import pytest

from tfresp.compression.masks import check_nm, magnitude_mask, name_selected, nm_mask, sparsity
from tfresp.compression.schedule import SparsitySchedule


def _nm_reference(w, n, m):
    """Python loop over every output column and every group of m input rows."""
    mask = np.zeros_like(w, dtype=np.float32)
    for col in range(w.shape[1]):
        for g in range(0, w.shape[0], m):
            mags = [abs(w[g + i, col]) for i in range(m)]
            keep = sorted(range(m), key=lambda i: (-mags[i], i))[:n]
            for i in keep:
                mask[g + i, col] = 1.0
    return mask


def test_magnitude_mask_zeroes_exactly_the_smallest():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(37, 11)).astype(np.float32)
    m = magnitude_mask(w, 0.7)
    k = int(round(0.7 * w.size))
    assert int((m == 0).sum()) == k
    # every kept magnitude >= every pruned magnitude
    assert np.abs(w[m == 1]).min() >= np.abs(w[m == 0]).max()
    assert sparsity(w * m) == pytest.approx(k / w.size)


def test_nm_mask_matches_python_loop_and_pattern():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(16, 7)).astype(np.float32)
    m = nm_mask(w, 2, 4)
    np.testing.assert_array_equal(m, _nm_reference(w, 2, 4))
    assert check_nm(w * m, 2, 4)
    assert not check_nm(w, 2, 4)
    # the checker looks at groups along the input axis: a 2:4 pattern along the output axis is rejected
    wide = rng.normal(size=(8, 8)).astype(np.float32)
    along_out = wide * nm_mask(wide.T, 2, 4).T
    assert check_nm(along_out.T, 2, 4) and not check_nm(along_out, 2, 4)


def test_nm_mask_conv_kernel_groups_input_channels():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 3, 8, 5)).astype(np.float32)
    m = nm_mask(w, 2, 4)
    for i in range(3):
        for j in range(3):
            np.testing.assert_array_equal(m[i, j], _nm_reference(w[i, j], 2, 4))


def test_nm_mask_pads_a_partial_last_group():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(10, 5)).astype(np.float32)  # groups: 4 + 4 + a partial group of 2
    m = nm_mask(w, 2, 4)
    padded = np.concatenate([w, np.zeros((2, 5), np.float32)])
    np.testing.assert_array_equal(m, _nm_reference(padded, 2, 4)[:10])
    assert check_nm(w * m, 2, 4)
    assert np.all(m[8:] == 1)  # the two real weights of the partial group both survive
    w3 = rng.normal(size=(7, 3)).astype(np.float32)  # partial group of 3 real weights keeps 2
    assert np.count_nonzero(nm_mask(w3, 2, 4)[4:], axis=0).tolist() == [2, 2, 2]


def test_name_selection_globs_and_wrapper_prefixes():
    assert name_selected("mlp/dense_0/kernel:0", None, ["logits"])
    assert not name_selected("mlp/logits/kernel:0", None, ["logits"])
    assert not name_selected("quant_logits/kernel:0", None, ["logits"])
    assert name_selected("bert/encoder/layer_._0/attention/self/query/kernel:0", ["query", "value"], None)
    assert not name_selected("bert/encoder/layer_._0/attention/self/key/kernel:0", ["query", "value"], None)


@pytest.mark.parametrize("kind", ["polynomial", "constant"])
def test_schedule_matches_tfmot(kind):
    import tensorflow as tf
    from tfresp.compression import _tfmot

    sched = SparsitySchedule(kind, target=0.8, begin_step=10, end_step=90, frequency=10)
    ref = _tfmot._tfmot_schedule(sched)
    for step in [0, 9, 10, 15, 20, 50, 73, 90, 100, 200]:
        should, value = ref(tf.constant(step, tf.int64))
        assert bool(should.numpy()) == sched.update_due(step), step
        if step >= 10:
            assert sched.sparsity(step) == pytest.approx(float(value.numpy()), abs=1e-6), step
    assert sched.sparsity(0) == 0.0
