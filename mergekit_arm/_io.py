"""Atomic file and folder writes with clear messages on failure (e.g. a full disk)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mergekit_arm.errors import ArmError


class OutputWriteError(ArmError, OSError):
    """An output could not be written (disk full, permissions, missing folder)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _explain(path: Path, error: OSError) -> OutputWriteError:
    hint = "check the path and permissions"
    if error.errno == errno.ENOSPC:
        hint = "the disk is full: free space or write to another disk"
    elif error.errno in (errno.EACCES, errno.EPERM):
        hint = "no permission to write there: choose another output path"
    return OutputWriteError(f"could not write {path}: {error.strerror or error}; {hint}. "
                            "Nothing was left at that path.")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise _explain(final, error) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; rename it to ``path`` only on success.

    With ``overwrite`` an existing folder is replaced (after the new one is complete).
    """
    final = Path(path)
    if final.exists() and not overwrite:
        raise OutputWriteError(f"{final} already exists; remove it or choose another path")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _explain(final, error) from error
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
