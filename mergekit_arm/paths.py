"""Outputs never touch inputs: the one check every command makes before it writes.

Every command names its outputs (``arm-calibrate``'s statistics file, ``arm-stream``'s and
``arm-choose``'s OUT folder) and its inputs (model folders, data files, a tokenizer, the
training run a stream watches). :func:`check_outputs_apart` compares them resolved
(``~`` expanded, symlinks followed) before anything is written and refuses, naming both:

* an output that is an input, or lies inside an input folder (writing there would replace
  or change the input, and what its fingerprints read);
* an input that lies inside an output folder (the command replaces what it writes there);
* an input that is one of an output's temporary entries (``.NAME.arm-*`` beside it, see
  :mod:`mergekit_arm._io`), which a later write removes.

A watched training run (kind ``run``) may hold outputs (the ``ARMCallback``'s default OUT
is ``OUTPUT_DIR/arm-stream``), except inside its ``checkpoint-*`` folders.

:func:`output_write_errors` turns an ``OSError`` of writing OUT (a read-only file system,
no permission, a full disk) into :class:`~mergekit_arm._io.OutputWriteError`.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, ParamSpec, TypeVar

from mergekit_arm._io import OutputWriteError, parse_temporary_name
from mergekit_arm.errors import ArmError

P = ParamSpec("P")
R = TypeVar("R")

#: Names of the checkpoint folders inside a watched training run.
RUN_CHECKPOINTS = "checkpoint-*"
#: errno values that mean "this path cannot be written".
WRITE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


class OutputOverlapError(ArmError, ValueError):
    """An output path is, or lies inside, an input (or an input lies inside an output)."""


@dataclass(frozen=True)
class PathRole:
    """A path a command reads or writes, and how its messages name it.

    ``kind``: ``input`` (a model folder, data file or tokenizer), ``run`` (a watched
    training output folder), ``file`` or ``folder`` (an output).
    """

    label: str
    path: str | os.PathLike
    kind: Literal["input", "run", "file", "folder"] = "input"

    @property
    def resolved(self) -> Path:
        return Path(self.path).expanduser().resolve()

    def named(self) -> str:
        shown = str(self.path)
        real = str(self.resolved)
        return f"{self.label} {shown}" + ("" if shown == real else f" (= {real})")


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies below it (both resolved)."""
    return path == folder or path.is_relative_to(folder)


def _overlap(output: PathRole, source: PathRole) -> str | None:
    """Why writing ``output`` would touch ``source`` (None when it would not)."""
    out, src = output.resolved, source.resolved
    if out == src:
        return (f"{output.named()} is {source.named()} itself: writing it would replace that "
                "input. Choose an output path outside every input")
    if source.kind == "run":
        below = out.relative_to(src).parts if out.is_relative_to(src) else ()
        if below and fnmatch.fnmatch(below[0], RUN_CHECKPOINTS):
            return (f"{output.named()} lies inside the checkpoint folder {src / below[0]} of "
                    f"{source.named()}: writing there would change a checkpoint the stream "
                    f"reads. Choose an output path outside {src / below[0]}")
    elif _inside(out, src):
        return (f"{output.named()} lies inside {source.named()}: writing there would change "
                "that input (and what its fingerprints read). Choose an output path outside "
                f"it, e.g. beside it in {src.parent}")
    if output.kind == "folder" and _inside(src, out):
        return (f"{source.named()} lies inside {output.named()}, which this command writes "
                f"and replaces: move that input out of {out}, or choose another output path")
    parsed = parse_temporary_name(src)
    if parsed is not None and src.parent == out.parent and parsed[0] == out.name:
        return (f"{source.named()} is a temporary entry of {output.named()}, which its next "
                "write removes: move or rename that input")
    return None


def check_outputs_apart(outputs: Iterable[PathRole], inputs: Iterable[PathRole]) -> None:
    """Raise :class:`OutputOverlapError` if an output and an input overlap (see module doc);
    every pair is compared, whether the paths exist yet or not."""
    sources = list(inputs)
    for output in outputs:
        for source in sources:
            reason = _overlap(output, source)
            if reason is not None:
                raise OutputOverlapError(f"{reason}. Nothing was written.")


def input_roles(pairs: Iterable[tuple[str, str | os.PathLike | None]],
                kind: Literal["input", "run"] = "input") -> list[PathRole]:
    """The roles of ``(label, path)`` pairs, leaving out missing (None) paths."""
    return [PathRole(label, path, kind) for label, path in pairs if path is not None]


def reference_roles(label: str, value: object) -> list[PathRole]:
    """The local folders of a ``base+adapter`` model reference (``path[@rev]+path[@rev]``,
    :mod:`mergekit_arm.model_refs`): a resolved config keeps only the folded folder, but
    both parts are read. Empty for anything else."""
    if not isinstance(value, str) or "+" not in value or Path(value).expanduser().exists():
        return []
    roles = []
    for part, name in zip(value.split("+"), ("base", "adapter"), strict=False):
        path = part.partition("@")[0]
        if path and Path(path).expanduser().exists():
            roles.append(PathRole(f"{label} ({name})", path))
    return roles


def _within(path: str | os.PathLike, folder: Path) -> bool:
    """``path`` is ``folder``, lies inside it, or is one of its parents (a ``mkdir -p``)."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return _inside(resolved, folder) or _inside(folder, resolved)


@contextlib.contextmanager
def output_write_errors(out: str | os.PathLike, after: str, what: str = "OUT") -> Iterator[None]:
    """Turn an ``OSError`` of writing under ``out`` (read-only file system, no permission,
    full disk) into an :class:`OutputWriteError` naming ``out`` and the fix; ``after``
    says what is left there.

    Only errors whose errno means "cannot write" and whose file is ``out``, inside it or
    one of its parents are turned (one without a file name only for a read-only or full
    file system); a failure to read an input keeps its own error.
    """
    folder = Path(out).expanduser().resolve()
    try:
        yield
    except OSError as error:
        if isinstance(error, ArmError) or error.errno not in WRITE_ERRNOS:
            raise
        names = [name for name in (error.filename, error.filename2) if name is not None]
        if names and not any(_within(name, folder) for name in names):
            raise
        if not names and error.errno not in (errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            raise
        hint = ("the disk is full: free space or choose an output folder on another disk"
                if error.errno in (errno.ENOSPC, errno.EDQUOT) else
                "the file system is read-only: choose an output folder you can write to"
                if error.errno == errno.EROFS else
                "you may not write there: choose an output folder you can write to")
        where = names[0] if names else folder
        raise OutputWriteError(
            f"cannot write {what} {folder}: {os.strerror(error.errno)} ({where}); {hint}. "
            f"{after}"
        ) from error


def writes_output(after: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function whose second argument (or ``out=``) is its output folder: its
    write errors there become :class:`OutputWriteError` (:func:`output_write_errors`)."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            out = kwargs["out"] if "out" in kwargs else args[1]
            with output_write_errors(out, after):  # type: ignore[arg-type]
                return function(*args, **kwargs)

        return wrapper

    return decorate


__all__ = ["OutputOverlapError", "PathRole", "check_outputs_apart", "input_roles",
           "output_write_errors", "reference_roles", "writes_output"]
