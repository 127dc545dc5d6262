"""Run one tfresp fit in a fresh process with N logical CPUs (MirroredStrategy) or as one worker of a
local MultiWorkerMirroredStrategy cluster (TF_CONFIG set by the caller). Prints the report as JSON.

Usage: python _run.py CONFIG_JSON OUT [LOGICAL_CPUS]
"""
import hashlib
import json
import os
import sys

import numpy as np
import tensorflow as tf

import tfresp  # noqa: F401

from tfresp.run.distribute import logical_cpus

from tfresp.run import builder

cfg, out = json.loads(sys.argv[1]), sys.argv[2]
_initial = {}
_orig_train = builder.train


def _digest(structure) -> str:
    h = hashlib.sha256()
    for t in tf.nest.flatten(structure):
        h.update(np.asarray(t).tobytes())
    return h.hexdigest()


def _train(ctx):  # record the initial weights (to measure the update, e.g. the DP noise)
    _initial["w"] = [w.tolist() for w in ctx.core.get_weights()]
    if ctx.config.privacy is not None:  # the secret DP seeds this worker holds and its first batches' rows
        ledger = ctx.own("privacy").ledger
        _initial["secrets"] = {"noise_seed": int(ledger.noise_seed.numpy()),
                               **{k: int(v) for k, v in ledger.secrets_state.items()}}
        _initial["batches"] = _digest([b for b in builder._train_dataset(ctx).take(3)])
        _initial["train_x"] = _digest(ctx.data.train.x)
    return _orig_train(ctx)


builder.train = _train
if os.environ.get("TFRESP_TEST_UNSHARED_SEEDS"):  # simulate workers that each draw their own secret seeds
    from tfresp.privacy.budget import PrivacyBudget

    PrivacyBudget.share_secret = lambda self, root: None
if len(sys.argv) > 3 and int(sys.argv[3]) > 1:
    logical_cpus(int(sys.argv[3]))
result = tfresp.fit(cfg, out=out, quiet=True)
weights = [w.tolist() for w in result.model.get_weights()]
print("@@REPORT@@" + json.dumps({"training": result.report["training"], "evaluation": result.report["evaluation"],
                                 "privacy": result.report.get("privacy"), "weights": weights,
                                 "initial_weights": _initial["w"], "secrets": _initial.get("secrets"),
                                 "batches": _initial.get("batches"), "train_x": _initial.get("train_x")}))
