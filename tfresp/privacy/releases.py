"""What a DP run releases besides the model: every number in the run directory is covered, public, or named.

Called by :func:`tfresp.report.writer.build_report` on the report being assembled. Under DP (example-level
``privacy:`` or client-level ``federated.dp``):

* **Data fingerprints.** A plain sha256 of the training file lets whoever knows all other rows test candidate
  values of the last one against it (a dictionary attack: seconds for a number). The report therefore holds
  keyed fingerprints ``hmac-sha256:<hex>`` = HMAC-SHA256(key, sha256(file)); the 32-byte random key is written to
  ``RUN/private/data_key.json`` (directory 0700, file 0600), which only the owner's commands read (``tfresp
  audit`` / ``export`` / ``explain`` check that the data is the run's, :mod:`tfresp.run_data`). ``private/`` is not
  part of what is shared: without the key the fingerprint reveals nothing about the rows, and by revealing the key
  later the owner can prove which file was used (a commitment). A separate test file (``data.split.test: PATH``)
  is not covered by DP in any case and keeps its plain sha256.
* **Training-split summary.** ``data.splits.train.label_balance`` is the normalized DP label counts of the
  preprocessing histogram (post-processing, no extra cost) or withheld; ``group_sizes`` of the training split
  (sensitive values and exact counts of training rows) are withheld. The split records what was withheld.
* **Coverage.** The privacy section's budget and statement are recomputed after the last artifact was written
  (the monitor reference and the fingerprints are registered late), so the coverage list names them.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Optional

KEY_FILE = "private/data_key.json"
PREFIX = "hmac-sha256:"
KEYED_NOTE = ("keyed fingerprint HMAC-SHA256(key, sha256(file)); the key is in the owner-only file "
              f"{KEY_FILE}, which is not part of the release (do not share private/)")


def keyed(key_hex: str, sha256_hex: str) -> str:
    """The keyed fingerprint of a file whose plain sha256 is ``sha256_hex``."""
    return PREFIX + hmac.new(bytes.fromhex(key_hex), sha256_hex.encode("ascii"), hashlib.sha256).hexdigest()


def is_dp_run(config) -> bool:
    fed = getattr(config, "federated", None)
    return getattr(config, "privacy", None) is not None or (fed is not None and getattr(fed, "dp", None) is not None)


def write_key(run_dir: Path) -> str:
    """A fresh random key in ``RUN/private/data_key.json`` (owner-only); returns it as hex."""
    from tfresp.io import atomic_write

    key = secrets.token_hex(32)
    d = Path(run_dir) / "private"
    d.mkdir(mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    atomic_write(d / "data_key.json", json.dumps({"generator": "tfresp", "purpose": "data fingerprint key",
                                                    "key": key}), mode=0o600)
    return key


def read_key(run_dir: Path) -> Optional[str]:
    path = Path(run_dir) / KEY_FILE
    if not path.is_file() or path.is_symlink():
        return None
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["key"])
    except (ValueError, KeyError, TypeError, OSError):
        return None


def protect(ctx, report: dict) -> None:
    """Apply the DP release rules to ``report`` (in place) and refresh the privacy section's coverage."""
    if not is_dp_run(ctx.config):
        return
    budget = getattr(ctx, "budget", None)
    data = report.get("data") or {}
    source = data.get("source")
    if isinstance(source, dict) and source.get("files"):
        source = data["source"] = dict(source)  # a copy: the bundle's info keeps the plain digests
        key = write_key(ctx.run_dir)
        source["files"] = {name: keyed(key, digest) for name, digest in source["files"].items()}
        source["fingerprint"] = KEYED_NOTE
        if budget is not None:
            budget.declare_public("data.source.files", KEYED_NOTE + "; reveals nothing about the rows without the key")
    train = (data.get("splits") or {}).get("train")
    if isinstance(train, dict):
        _train_split(ctx, train, budget)
    if budget is not None:
        refresh_privacy_section(ctx, budget)


def _train_split(ctx, train: dict, budget) -> None:
    withheld = []
    counts = (getattr(ctx.data, "extra", None) or {}).get("class_counts")
    if train.get("label_balance") is not None:
        if counts is not None and budget is not None:
            import numpy as np

            c = np.clip(np.asarray(counts, np.float64), 0.0, None)
            total = float(c.sum())
            train["label_balance"] = {str(k): float(v / total) if total > 0 else 0.0
                                      for k, v in zip(ctx.data.classes, c)}
            train["label_balance_source"] = ("DP: normalized noisy label counts of preprocessing.histogram "
                                              "(post-processing)")
            budget.declare_derived("data.splits.train.label_balance",
                                   "post-processing of preprocessing.histogram (noisy label counts)")
        else:
            train.pop("label_balance")
            withheld.append("label_balance")
    if train.get("group_sizes"):
        train.pop("group_sizes")
        withheld.append("group_sizes")
    if withheld:
        train["withheld_under_dp"] = withheld


def refresh_privacy_section(ctx, budget) -> None:
    """Recompute ``privacy.budget`` and ``privacy.statement`` from the budget (coverage added after the privacy
    concern wrote its section: the monitor reference, the fingerprints, the training-split summary)."""
    sec = (getattr(ctx, "report", None) or {}).get("privacy")
    if not isinstance(sec, dict) or "budget" not in sec or "statement" not in sec:
        return
    from tfresp.privacy.statement import statement

    sec["budget"] = budget.section()
    sec["statement"] = statement(sec)


def fit_problems(ctx) -> list:
    """Before training a DP run: releases of private rows the config asks for outside the budget.

    int8 calibrated on training rows (``compression.calibration: train``) or on a file that is the training data,
    and ``compression.distill.data`` that is the training data (same sha256 as a source file). Returns
    ``(field, value, reason)`` problems."""
    from tfresp.export.tflite import file_sha256, private_int8_problems

    config = ctx.config
    if config.privacy is None:
        return []
    comp = config.compression
    variants = list(config.export.tflite or [])
    if comp is not None and comp.quantize in ("int8", "qat"):
        variants.append("int8")
    digests = set(((getattr(ctx.data, "info", None) or {}).get("files") or {}).values())
    problems = private_int8_problems(config, variants, digests)
    distill = getattr(comp, "distill", None) if comp is not None else None
    path = getattr(distill, "data", "train") if distill is not None else "train"
    if path != "train" and digests and Path(path).is_file() and file_sha256(path) in digests:
        problems.append(("compression.distill.data", path, "this file is the training data (same sha256 as the "
                         "run's source), not public data: the student would be fitted on private rows outside the "
                         "budget. Remedy: point distill.data at public rows"))
    return problems
