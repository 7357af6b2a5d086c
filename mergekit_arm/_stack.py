"""Reading what a caller up this thread's stack holds: MergeKit 0.1.5 passes a merge method
neither the written dtype, nor each input's source tensor name, nor its planner, so the
method reads them from the MergeKit frame that is running it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

T = TypeVar("T")


def find_on_stack(match: Callable[[FrameType], T | None]) -> T | None:
    """The first non-None ``match(frame)`` over the frames that called the caller of this
    function, innermost first; None when no frame matches."""
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None
    try:
        while frame is not None:
            found = match(frame)
            if found is not None:
                return found
            frame = frame.f_back
        return None
    finally:
        del frame


__all__ = ["find_on_stack"]
