"""Run one tfresp fit in a fresh process with N logical CPUs (MirroredStrategy) or as one worker of a
local MultiWorkerMirroredStrategy cluster (TF_CONFIG set by the caller). Prints the report as JSON.

Usage: python _run.py CONFIG_JSON OUT [LOGICAL_CPUS]
"""
import json
import sys

import tfresp  # noqa: F401

from tfresp.distribute import logical_cpus

cfg, out = json.loads(sys.argv[1]), sys.argv[2]
if len(sys.argv) > 3 and int(sys.argv[3]) > 1:
    logical_cpus(int(sys.argv[3]))
result = tfresp.fit(cfg, out=out, quiet=True)
weights = [w.tolist() for w in result.model.get_weights()]
print("@@REPORT@@" + json.dumps({"training": result.report["training"], "evaluation": result.report["evaluation"],
                                 "privacy": result.report.get("privacy"), "weights": weights}))
