"""Run the real CLI and send this process a signal right after training step N (test helper).

Usage: ``python _signal_at.py KILL|TERM N fit CONFIG --out DIR ...``; N counts the steps of this
process (a resumed run counts from its resume point); N = 0 sends nothing. With
``TFRESP_TEST_DP_SECRET`` set, the DP concern's secret seed (``secrets.randbits``) is that value, so an
uninterrupted reference run can share the killed run's noise and Poisson draws. SIGKILL is a real SIGKILL: no handler and no
cleanup, exactly like a lost node. The helper callback runs before tfresp's checkpoint saver.
"""
import os
import secrets
import signal
import sys

import tfresp  # noqa: F401  (environment switches first)
import tf_keras as keras

from tfresp import cli
from tfresp.run import builder

SIG = getattr(signal, "SIG" + sys.argv[1])
AT = int(sys.argv[2])


class _SignalAt(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.step = 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step == AT:
            os.kill(os.getpid(), SIG)


if os.environ.get("TFRESP_TEST_DP_SECRET"):
    _fixed = int(os.environ["TFRESP_TEST_DP_SECRET"])
    secrets.randbits = lambda k: _fixed % (1 << k)
_orig = builder._standard_callbacks
builder._standard_callbacks = lambda ctx: _orig(ctx) + [_SignalAt()]
sys.exit(cli.main(sys.argv[3:]))
