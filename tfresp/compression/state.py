"""The compression concern's private run state (``ctx.own("compression")``), set by its plan, read by its audit."""
from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Tuple


@dataclasses.dataclass
class CompressionState:
    """Attributes:
        method: ``tfmot`` | ``mask`` | None (no pruning); schedule: the pruning schedule; structured: ``(2, 4)``
        or None; target: the target sparsity; qat: QAT's quantized/unsupported layers (None without QAT);
        pruned_layers / skipped_layers: tfmot's wrapped and skipped layers; scheduler: the mask-based
        PruningScheduler callback; stripped: the tfmot wrappers were stripped in the post-fit stage.
    """

    method: Optional[str] = None
    schedule: Any = None
    structured: Optional[Tuple[int, int]] = None
    target: float = 0.0
    qat: Optional[dict] = None
    pruned_layers: List[str] = dataclasses.field(default_factory=list)
    skipped_layers: List[dict] = dataclasses.field(default_factory=list)
    scheduler: Any = None
    stripped: bool = False
