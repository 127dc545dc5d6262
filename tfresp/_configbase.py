"""Base class of every config section: strict, no unknown keys, assignment validated."""
from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section. Fields only: validation is declarative (pydantic constraints)."""

    # allow_inf_nan=False: NaN/inf in any float field is "Input should be a finite number" (not a
    # misleading range error, and never silently accepted by an unbounded field).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)
