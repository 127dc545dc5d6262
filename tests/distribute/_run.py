"""Run one tfresp fit in a fresh process with N logical CPUs (MirroredStrategy) or as one worker of a
local MultiWorkerMirroredStrategy cluster (TF_CONFIG set by the caller). Prints the report as JSON.

Usage: python _run.py CONFIG_JSON OUT [LOGICAL_CPUS]
"""
import json
import sys

import tfresp  # noqa: F401

from tfresp.distribute import logical_cpus

from tfresp import builder

cfg, out = json.loads(sys.argv[1]), sys.argv[2]
_initial = {}
_orig_train = builder.train


def _train(ctx):  # record the initial weights (to measure the update, e.g. the DP noise)
    _initial["w"] = [w.tolist() for w in ctx.core.get_weights()]
    return _orig_train(ctx)


builder.train = _train
if len(sys.argv) > 3 and int(sys.argv[3]) > 1:
    logical_cpus(int(sys.argv[3]))
result = tfresp.fit(cfg, out=out, quiet=True)
weights = [w.tolist() for w in result.model.get_weights()]
print("@@REPORT@@" + json.dumps({"training": result.report["training"], "evaluation": result.report["evaluation"],
                                 "privacy": result.report.get("privacy"), "weights": weights,
                                 "initial_weights": _initial["w"]}))
