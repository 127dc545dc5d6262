"""Config of the explanations concern."""
from typing import Literal

from pydantic import Field

from tfresp._configbase import Section


class ExplainConfig(Section):
    """LIME / integrated-gradients explanations written into the report."""

    method: Literal["lime", "ig", "both"] = "lime"
    num_samples: int = Field(1000, ge=10)
    examples: int = Field(5, ge=0)
    seed: int = 0
    top_k: int = Field(5, ge=1)
    ig_steps: int = Field(32, ge=2)
    global_sample: int = Field(200, ge=1)
