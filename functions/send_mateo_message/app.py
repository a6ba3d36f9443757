"""Sender Lambda for mateo-message: DESTINATION in template.yaml picks the provider (fanout.entrypoints.sender)."""

from fanout.entrypoints.sender import handler

__all__ = ["handler"]
