"""The base of every settings section: a study config section and the settings its code reads are one type."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Frozen (settings never change under a running step) and strict (an unknown key is an error naming the
    allowed keys, never a silently ignored typo)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
