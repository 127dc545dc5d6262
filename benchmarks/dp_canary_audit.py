"""Canary audit lower bounds on the Adult quickstart at ε = 3: a correct run and two deliberately broken ones.

Runs ``configs/quickstart.yaml`` (DP-SGD at target ε = 3, 5 epochs; fairness/compression/export left out to save
time, they do not touch DP-SGD) with ``privacy.canaries: 200`` and the audits' default settings, three times:

* ``correct``: the mechanism as shipped;
* ``noise_off``: the noise multiplier handed to the gradient transform replaced by 0 (a broken implementation:
  ``privacy:`` itself refuses σ = 0);
* ``clip_1000``: per-example clipping at C = 1000 while the noise stays calibrated to C = 1 (σ·C unchanged), i.e.
  clipping switched off in practice. (A *configured* ``l2_norm_clip: 1000`` scales the noise with it and is
  private: no sound audit can flag it.)

For each it records the claimed ε and the lower bounds of the input-space canaries (``privacy.audit.canary``)
and the white-box gradient canaries (``privacy.audit.gradient_canary``), and writes
``benchmarks/results/dp_canary_audit.json``.

Usage:
    .venv/bin/python benchmarks/dp_canary_audit.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, write_result  # noqa: E402

import yaml  # noqa: E402

import tfresp  # noqa: E402
from tfresp.privacy import clipping  # noqa: E402

REAL = clipping.make_gradient_fn
BREAKS = {
    "correct": None,
    "noise_off": lambda c, s: (c, 0.0),
    "clip_1000": lambda c, s: (1000.0 * c, s / 1000.0),
}


def run(name: str, out: Path) -> dict:
    broken = BREAKS[name]

    def rigged(mode, l2_norm_clip, noise_multiplier, **kw):
        clip, sigma = broken(l2_norm_clip, noise_multiplier)
        return REAL(mode, clip, sigma, **kw)

    clipping.make_gradient_fn = REAL if broken is None else rigged
    try:
        cfg = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
        for key in ("fairness", "compression", "export", "gates"):
            cfg.pop(key, None)
        cfg["privacy"]["canaries"] = 200
        cfg["privacy"]["audit"] = False
        res = tfresp.fit(cfg, out=out / name, quiet=True)
    finally:
        clipping.make_gradient_fn = REAL
    sec = res.report["privacy"]
    row = {"claimed_epsilon": sec["epsilon"], "accuracy": res.metrics.get("accuracy"),
           "input_canary": {k: sec["audit"]["canary"][k] for k in ("canaries", "guesses", "correct",
                                                                   "epsilon_lower_bound", "exceeds_claim")},
           "gradient_canary": {k: sec["audit"]["gradient_canary"][k] for k in ("canaries", "guesses", "correct",
                                                                             "epsilon_lower_bound", "exceeds_claim")}}
    print(name, row, flush=True)
    return row


def main():
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: run(name, Path(tmp)) for name in BREAKS}
    write_result("dp_canary_audit", {"config": "configs/quickstart.yaml (privacy only) + privacy.canaries: 200",
                                     "runs": rows})


if __name__ == "__main__":
    main()
