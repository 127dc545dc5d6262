"""Which class is "positive" in a binary task (``data.positive_class``).

The positive class is the one whose selection the evaluation and fairness audits count (recall,
selection rate, TPR). It is index 1 of the run's classes. Chosen, in order:

1. ``data.positive_class`` when given (it must be one of the training labels);
2. conventional labels, compared case-insensitively: ``0/1``, ``no/yes``, ``false/true``, ``n/y``,
   ``negative/positive`` (the second is positive);
3. otherwise the second class in sorted order, **flagged as ambiguous**: the report states it in its
   first lines and adds a warning. This is a warning, not an error, so that existing configs keep
   running; set ``data.positive_class`` to silence it.
"""
from __future__ import annotations

from typing import List, Optional

from tfresp.errors import DataError

CONVENTIONAL = (("0", "1"), ("no", "yes"), ("false", "true"), ("n", "y"), ("negative", "positive"),
                ("0.0", "1.0"))


def _conventional(classes: List[str]) -> Optional[str]:
    low = [c.strip().lower() for c in classes]
    for neg, pos in CONVENTIONAL:
        if sorted(low) == sorted([neg, pos]):
            return classes[low.index(pos)]
    return None


def order_classes(classes: List[str], positive_class: Optional[str]) -> List[str]:
    """``classes`` with the positive class last (binary tasks); other tasks unchanged.

    Raises:
        DataError: ``positive_class`` is not one of ``classes``.
    """
    classes = [str(c) for c in classes]
    if positive_class is not None and str(positive_class) not in classes:
        raise DataError(f"`data.positive_class`: not a label of the training split. Received: "
                        f"{positive_class!r} (labels: {classes[:10]}). Remedy: use one of the labels as written "
                        "in the data.")
    if len(classes) != 2:
        return classes
    pos = str(positive_class) if positive_class is not None else _conventional(classes) or classes[1]
    return [c for c in classes if c != pos] + [pos]


def describe(classes: List[str], positive_class: Optional[str]) -> dict:
    """``{positive_class, chosen_by, ambiguous}`` of a binary run (None for other tasks)."""
    classes = [str(c) for c in classes]
    if len(classes) != 2:
        return None
    if positive_class is not None:
        return {"positive_class": classes[1], "chosen_by": "data.positive_class", "ambiguous": False}
    conv = _conventional(classes)
    if conv is not None:
        return {"positive_class": classes[1], "chosen_by": f"conventional labels {classes}", "ambiguous": False}
    return {"positive_class": classes[1], "chosen_by": f"second of the sorted labels {classes} (ambiguous: set "
            "data.positive_class)", "ambiguous": True}
