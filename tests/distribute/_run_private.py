"""One worker of a local MultiWorkerMirroredStrategy cluster (TF_CONFIG set by the caller): make_private on a
tiny model and print the secret seeds this worker holds (test-only output). Usage: python _run_private.py"""
import json

import tensorflow as tf
import tf_keras as keras

from tfresp.privacy.private import make_private

strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    core = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    private = make_private(core, num_examples=100, batch_size=10, epochs=1, noise_multiplier=1.0)
from tfresp.privacy.dpsgd import _derive  # noqa: E402

# the Poisson draws of the first dataset() call are keyed on this value (derived from the secret root seed)
print("@@REPORT@@" + json.dumps({"sampling_seed": _derive(int(private.noise_seed.numpy()), 0x5EED, 0),
                                 "noise_seed": int(private.ledger.noise_seed.numpy())}))
