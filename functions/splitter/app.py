"""Splitter Lambda: the wiring lives in the shared layer (fanout.entrypoints.splitter)."""

from fanout.entrypoints.splitter import handler

__all__ = ["handler"]
