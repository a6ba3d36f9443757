"""Dead-letter Lambda: the wiring lives in the shared layer (fanout.entrypoints.dead_letter)."""

from fanout.entrypoints.dead_letter import handler

__all__ = ["handler"]
