"""Sender Lambda of every destination: DESTINATION in template.yaml picks the provider (fanout.entrypoints.sender)."""

from fanout.entrypoints.sender import handler

__all__ = ["handler"]
