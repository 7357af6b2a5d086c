"""Exceptions. Every message names the thing that is wrong and what to do."""

from __future__ import annotations

import re


class ArmError(Exception):
    """Base class of all mergekit-arm errors."""


class ArmConfigError(ArmError, ValueError):
    """A merge or stream parameter is missing, unknown or out of range."""


class StatisticsError(ArmError):
    """An activation statistics file is missing, unreadable, invalid or mismatched."""


class CalibrationError(ArmError):
    """Calibration data or a model could not be used for calibration."""


class ModelLoadError(ArmError):
    """A path is not a loadable causal language model."""


class NonFiniteError(ArmError, ValueError):
    """An input or output tensor holds NaN or Inf."""


class OutputCheckError(ArmError):
    """A finished output folder fails verification (a file is truncated, unreadable or missing)."""


# -- uncaught errors in `mergekit-yaml` ------------------------------------------------------
TRACEBACK_ENV = "MERGEKIT_ARM_TRACEBACK"


def find_arm_error(error: BaseException | None) -> ArmError | None:
    """The first :class:`ArmError` in ``error``'s chain (itself, ``__cause__``, ``__context__``)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ArmError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


_MISSING_RATE = re.compile(r"Missing required parameter learning_rate for (\S+)")


def mergekit_error_message(error: BaseException | None) -> str | None:
    """What to do about a MergeKit error that only our method causes, else None: MergeKit's
    ``Missing required parameter learning_rate for T`` (no MergeKit method has a
    ``learning_rate``; a config without any is refused earlier, by the method's check)."""
    match = _MISSING_RATE.match(str(error)) if isinstance(error, (RuntimeError, TypeError)) else None
    if match is None:
        return None
    return (f"merge_method arm needs `learning_rate` for tensor {match.group(1)}, and no "
            "setting covers it (a `filter:` may leave it out): add a value without a filter, "
            "e.g. `parameters: {learning_rate: 0.5}` at the top level of the config")


def bad_parameter_message(error: BaseException | None, traceback) -> str | None:
    """What to do about MergeKit's pydantic error for a parameter of ``merge_method: arm``
    whose value has the wrong type (``learning_rate: abc``): MergeKit's message names
    neither the parameter nor the tensor; its ``resolve_parameter`` frame does. Else None."""
    if type(error).__name__ != "ValidationError" or traceback is None:
        return None
    name = tensor = method = None
    while traceback is not None:
        frame = traceback.tb_frame
        if frame.f_code.co_name == "run_merge":
            method = getattr(frame.f_locals.get("merge_config"), "merge_method", None)
        elif frame.f_code.co_name == "resolve_parameter" and "tensor_name" in frame.f_locals:
            name = getattr(frame.f_locals.get("parameter"), "name", None)
            tensor = frame.f_locals.get("tensor_name")
        traceback = traceback.tb_next
    if method != "arm" or name is None:
        return None
    try:
        problem = error.errors()[0]  # type: ignore[union-attr]
        detail = f"{problem.get('msg', 'invalid')} (got {str(problem.get('input'))[:80]!r})"
    except Exception:  # noqa: BLE001
        detail = str(error).splitlines()[-1].strip()
    return (f"merge_method arm: parameter `{name}` (tensor {tensor}): {detail}; write a value "
            "of its type, e.g. `learning_rate: 0.5`, `rank: 64`, `normalize: true`")


def arm_excepthook(kind, value, traceback) -> None:
    """``sys.excepthook`` that states an uncaught mergekit-arm error on one first line.

    So does MergeKit's missing-``learning_rate`` error (:func:`mergekit_error_message`).
    The full traceback follows only with ``MERGEKIT_ARM_TRACEBACK=1``; other exceptions
    go to the previous hook unchanged. The exit status stays 1 (set by the interpreter).
    """
    import os
    import sys

    previous = getattr(arm_excepthook, "previous", sys.__excepthook__)
    arm = find_arm_error(value)
    known = None if arm is not None else (mergekit_error_message(value)
                                          or bad_parameter_message(value, traceback))
    if arm is None and known is None:
        previous(kind, value, traceback)
        return
    message = known or str(arm).strip() or type(arm).__name__
    sys.stderr.write(f"mergekit-arm: {message}\n")
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        previous(kind, value, traceback)
    else:
        name = type(arm if arm is not None else value).__name__
        sys.stderr.write(f"({name}; set {TRACEBACK_ENV}=1 for the traceback)\n")
    sys.stderr.flush()


def install_excepthook() -> None:
    """Wrap ``sys.excepthook`` once with :func:`arm_excepthook` (called by the start-up hook)."""
    import sys

    if sys.excepthook is arm_excepthook:
        return
    arm_excepthook.previous = sys.excepthook  # type: ignore[attr-defined]
    sys.excepthook = arm_excepthook
