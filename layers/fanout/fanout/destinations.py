"""The destinations journey-fanout can enrol contacts into, and what each one's target looks like."""

from __future__ import annotations

from enum import StrEnum


class Destination(StrEnum):
    """A provider call journey-fanout knows how to make; the value is the `inbox/<destination>/` segment."""

    MATEO = "mateo"
    MATEO_MESSAGE = "mateo-message"
    SYMPLIFY = "symplify"
    WORKSHOP = "workshop"
    ALTCRAFT = "altcraft"

    @property
    def env_suffix(self) -> str:
        """`mateo-message` -> `MATEO_MESSAGE`, as used in environment variable names."""
        return self.value.replace("-", "_").upper()

    @property
    def logical_name(self) -> str:
        """`mateo-message` -> `MateoMessage`, the prefix of this destination's resources in template.yaml."""
        return "".join(part.capitalize() for part in self.value.split("-"))
