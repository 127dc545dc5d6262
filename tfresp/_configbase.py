"""Base class of every config section: strict, no unknown keys, assignment validated."""
from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section. Fields only: validation is declarative (pydantic constraints)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
