"""The run's encoding of rows (eager, what training and the report's numbers use) equals the serving graph's
(a tf.function, as inside the SavedModel) bit for bit: TensorFlow's graph optimizer rewrites a division by a constant
into a multiplication by its reciprocal, which once made them differ by an ulp (and verify's scores by ~1e-7)."""
import numpy as np
import tensorflow as tf

from tests.conftest import tiny_adult
from tfresp.config import load_config
from tfresp.data.dataset import prepare
from tfresp.export.saved_model import raw_inputs


def test_eager_encoding_equals_the_graph_encoding_bit_for_bit():
    data = prepare(load_config(tiny_adult(data={"max_rows": 3000})))
    pp = data.preprocessor
    frame = data.test.frame
    raw = {k: tf.constant(v) for k, v in raw_inputs(pp, frame, extra=[]).items()}
    run_encoding = np.asarray(data.test.x[np.arange(len(frame))])
    graph = tf.function(pp.transform)(raw).numpy()
    assert np.array_equal(pp.transform(raw).numpy(), run_encoding)
    assert np.array_equal(graph, run_encoding), int((graph != run_encoding).sum())

    # the check can fail: the same numbers standardized with "/ std" differ between eager and graph
    block = tf.stack([tf.cast(raw[n], tf.float32) for n in pp._numeric], axis=1)

    def divided(x):
        return (x - pp._mean) / pp._std

    assert not np.array_equal(divided(block).numpy(), tf.function(divided)(block).numpy())
