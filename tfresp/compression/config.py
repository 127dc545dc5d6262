"""Config of the compression concern."""
from typing import List, Literal, Optional

from pydantic import Field

from tfresp._configbase import Section


class CompressionConfig(Section):
    """Pruning, quantization and distillation."""

    prune: Optional[float] = Field(None, ge=0, lt=1)
    schedule: Literal["constant", "polynomial"] = "polynomial"
    structured: Optional[Literal["2:4"]] = None
    include: Optional[List[str]] = None
    exclude: Optional[List[str]] = None
    quantize: Optional[Literal["qat", "int8", "dynamic", "float16"]] = None
    distill: Optional[dict] = None
