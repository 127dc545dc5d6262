"""Carry a DP run's fitted preprocessing through step checkpoints, so ``--resume`` reuses it.

A resumed DP run must not fit its preprocessing again: fresh noise would give another vocabulary (another
input width than the checkpoint's model) and would spend the preprocessing ε a second time. The
:class:`PreprocessingState` callback stores the spec and the budget entries registered by the preprocessing in
the checkpoint's ``state.json`` (the private working directory; they are DP outputs anyway), and
:func:`restore` rebuilds both before data preparation.
"""
from __future__ import annotations

import json
from typing import Optional

import numpy as np
import tf_keras as keras

from tfresp.privacy.budget import event_from_params


class PreprocessingState(keras.callbacks.Callback):
    """Stateful callback (``get_state``/``set_state``) holding the DP preprocessing of the run."""

    def __init__(self, data, budget):
        super().__init__()
        pre = data.preprocessor
        spec = pre.to_json()
        if spec.get("type") == "text":
            spec = {**spec, "vocab": list(pre.vocab)}
        counts = data.extra.get("class_counts")
        covered = {item for s in budget.spends for item in s.covers}
        state = {"spec": spec, "summary": data.extra.get("summary"),
                 "class_counts": None if counts is None else [float(c) for c in counts],
                 "delta": budget.delta,
                 "spends": [{"source": s.source, "mechanism": s.mechanism, "params": s.params, "covers": s.covers}
                            for s in budget.spends],
                 "coverage": [vars(c) for c in budget.coverage if not (c.status == "dp" and c.item in covered)]}
        # kept as JSON text: Keras' attribute tracking would wrap a dict (not JSON serializable in a checkpoint)
        self._state = json.dumps(state, default=_plain)

    def get_state(self) -> dict:
        return json.loads(self._state)

    def set_state(self, state: dict) -> None:  # restored before data preparation (see restore)
        self._state = json.dumps(state, default=_plain)


def _plain(obj):
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "ListWrapper":
        return list(obj)
    if isinstance(obj, dict) or type(obj).__name__ == "_DictWrapper":
        return dict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def restore(resume_point, budget):
    """``(preprocessor, extra)`` from a resumed checkpoint, re-registering its spends on ``budget``;
    ``None`` when the checkpoint holds no DP preprocessing."""
    state: Optional[dict] = ((resume_point.state or {}).get("callbacks") or {}).get("PreprocessingState")
    if not state:
        return None
    budget.delta = float(state["delta"])
    for s in state["spends"]:
        event = event_from_params(s["mechanism"], s["params"])
        budget.spend(s["source"], event, mechanism=s["mechanism"], params=s["params"], covers=s["covers"])
    budget.restore_coverage(state["coverage"])
    spec = state["spec"]
    if spec.get("type") == "text":
        from tfresp.data.text import TextPreprocessor

        pre = TextPreprocessor(spec["vocab"], spec["column"], spec["max_length"], spec["lowercase"],
                               spec.get("trained"))
    else:
        from tfresp.data.preprocess import TabularPreprocessor

        pre = TabularPreprocessor(spec["columns"])
    extra = {}
    if state.get("summary"):
        extra["summary"] = state["summary"]
    if state.get("class_counts") is not None:
        extra["class_counts"] = np.asarray(state["class_counts"], np.float64)
    return pre, extra
