"""The base of every config section, in a module of its own so that each area's config (``data.config``,
``training.config``, ...) imports it without importing :mod:`preflab.config`, which assembles them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)
