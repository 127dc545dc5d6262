"""Sparsity schedules as plain Python (the same formulas tfmot uses).

Polynomial decay (Zhu & Gupta 2017, "To prune, or not to prune"):

    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_end - t_0)) ** power,   t_0 <= t <= t_end

held at ``s_f`` after ``t_end``; masks are recomputed every ``frequency`` steps. Constant:
``s_f`` from ``t_0`` on.

Example:
    >>> sched = SparsitySchedule("polynomial", target=0.8, begin_step=0, end_step=100, frequency=10)
    >>> sched.sparsity(50), sched.update_due(50)
"""
from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class SparsitySchedule:
    """When and how much to prune.

    Attributes:
        kind: ``constant`` or ``polynomial``.
        target: final sparsity ``s_f`` in [0, 1).
        begin_step: first step at which masks are applied.
        end_step: step at which the polynomial schedule reaches ``target``.
        frequency: steps between mask updates.
        initial: ``s_i`` of the polynomial schedule.
        power: exponent of the polynomial schedule (3 in the paper).
    """

    kind: str
    target: float
    begin_step: int
    end_step: int
    frequency: int = 100
    initial: float = 0.0
    power: float = 3.0

    def sparsity(self, step: int) -> float:
        if step < self.begin_step:
            return 0.0
        if self.kind == "constant" or self.end_step <= self.begin_step:
            return float(self.target)
        span = max(self.end_step - self.begin_step, 1)
        frac = min(max((step - self.begin_step) / span, 0.0), 1.0)
        return float(self.target + (self.initial - self.target) * (1.0 - frac) ** self.power)

    def update_due(self, step: int) -> bool:
        """Masks are recomputed at ``begin_step`` and every ``frequency`` steps after it (until
        ``end_step`` for the polynomial schedule; forever for the constant one), as in tfmot."""
        if step < self.begin_step or (step - self.begin_step) % self.frequency:
            return False
        return self.kind == "constant" or step <= self.end_step


def make_schedule(cfg, total_steps: int, target: float) -> SparsitySchedule:
    """Build the schedule of a :class:`~tfresp.compression.config.CompressionConfig` for a run length."""
    total_steps = max(int(total_steps), 1)
    begin = int(math.floor(cfg.begin * total_steps))
    end = max(int(math.ceil(cfg.end * total_steps)) - 1, begin)
    freq = cfg.frequency or max(1, (end - begin) // 10)
    # Align the end on an update step so the polynomial schedule really reaches the target.
    end = begin + freq * ((end - begin) // freq)
    return SparsitySchedule(kind=cfg.schedule, target=float(target), begin_step=begin, end_step=end,
                            frequency=int(freq))
