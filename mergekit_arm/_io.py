"""Atomic file and folder writes with clear messages on failure (e.g. a full disk).

Every write goes to a temporary entry beside its target, named
``.<target>.arm-<pid>-<token>.<kind>`` (``kind``: ``tmp`` for a file, ``partial`` for a
folder, ``old`` for a folder being replaced), and is renamed onto the target only when
complete. A file is staged *inside* a private temporary folder so that libraries which
write through their own temporary file (safetensors writes ``.tmpXXXXXX`` and renames)
leave nothing of theirs beside the target either.

A process killed mid-write leaves its temporary entry behind. The next atomic write to
the same target removes the entries of that target whose process is gone
(:func:`remove_stale_temporaries`): only names of this pattern, only of a dead pid.

Any failure of the write (an ``OSError`` or a ``SafetensorError``, which is not an
``OSError``; a full disk included) becomes an :class:`OutputWriteError` naming the
target and the fix, after the temporary entry is removed. Finished outputs get the mode
a plain ``open()``/``mkdir()`` gives under the current umask, whatever the writing library
used (``mkstemp`` and safetensors create ``0600`` files).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from mergekit_arm.errors import ArmError

TEMP_KINDS = ("tmp", "partial", "old")
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.arm-(?P<pid>\d+)-[0-9a-f]+\.(?P<kind>tmp|partial|old)$")
_OS_ERROR_CODE = re.compile(r"os error (\d+)")


class OutputWriteError(ArmError, OSError):
    """An output could not be written (disk full, permissions, missing folder)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_name(target: Path, kind: str) -> Path:
    """A fresh temporary path beside ``target`` owned by this process (see module doc)."""
    assert kind in TEMP_KINDS
    return target.with_name(f".{target.name}.arm-{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def parse_temporary_name(path: Path) -> tuple[str, int, str] | None:
    """``(target name, pid, kind)`` of one of our temporary entries, else None."""
    found = _TEMP_NAME.match(path.name)
    if found is None:
        return None
    return found["target"], int(found["pid"]), found["kind"]


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (``os.kill(pid, 0)``; always True on Windows)."""
    if pid == os.getpid() or os.name == "nt":
        return True  # Windows: os.kill(pid, 0) would terminate the process; keep the entry
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True  # cannot tell: keep the entry
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Delete our temporary entries in ``folder`` (of ``target`` only, if given) whose
    writing process is gone; return what was removed.

    A replaced folder (``old``) whose target is missing (a kill between the two renames of
    :func:`atomic_directory`) is renamed back onto its target instead.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    pattern = f".{target}.arm-*" if target is not None else ".*.arm-*"
    for path in folder.glob(pattern):
        parsed = parse_temporary_name(path)
        if parsed is None or (target is not None and parsed[0] != target):
            continue
        if process_alive(parsed[1]):
            continue
        original = folder / parsed[0]
        if parsed[2] == "old" and not original.exists():
            os.replace(path, original)  # killed between the two renames: put the old one back
            continue
        _remove(path)
        removed.append(path)
    return removed


def write_error_code(error: BaseException | None) -> int | None:
    """The errno of a write failure: ``OSError.errno``, or ``os error N`` in a
    ``SafetensorError`` message, of ``error`` or of an exception it was raised from
    (a library may wrap it); 0 when unknown; None when it is not a write failure."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError):
            return error.errno if error.errno is not None else 0
        if type(error).__name__ == "SafetensorError":
            found = _OS_ERROR_CODE.search(str(error))
            return int(found[1]) if found else 0
        error = error.__cause__ or error.__context__
    return None


def _explain(path: Path, error: BaseException, code: int) -> OutputWriteError:
    hint = "check the path and permissions"
    if code in (errno.ENOSPC, errno.EDQUOT):
        hint = "the disk is full: free space or write to another disk"
    elif code == errno.EROFS:
        hint = "the file system is read-only: choose an output path you can write to"
    elif code in (errno.EACCES, errno.EPERM):
        hint = "no permission to write there: choose another output path"
    reason = (os.strerror(code) if code else None) or getattr(error, "strerror", None) or str(error)
    return OutputWriteError(f"could not write {path}: {reason}; {hint}. "
                            "Nothing was left at that path.")


def apply_umask_modes(folder: Path) -> None:
    """Give everything under ``folder`` the mode ``open()``/``mkdir()`` would under the umask.

    Libraries that write through a private temporary file (safetensors: ``0600``) leave
    owner-only files otherwise. Executable files keep their execute bits. A hard-linked
    file (``st_nlink > 1``) is shared with another folder, maybe an input: left as it is.
    """
    mask = _umask()
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink() or (path.is_file() and path.stat().st_nlink > 1):
            continue
        if path.is_dir():
            os.chmod(path, 0o777 & ~mask)
        elif path.is_file():
            executable = path.stat().st_mode & 0o111
            os.chmod(path, (0o777 if executable else 0o666) & ~mask)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _discard_and_explain(partial: Path, final: Path, error: BaseException) -> None:
    """After a failed write of ``final``: remove ``partial`` (the staged file or folder) and
    raise the write error as an explained one when it is an OS write error; else return,
    for the caller to re-raise ``error`` as it is."""
    shutil.rmtree(partial, ignore_errors=True)
    code = write_error_code(error)
    if code is not None and isinstance(error, Exception) and not isinstance(error, ArmError):
        raise _explain(final, error, code) from error


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (with ``path``'s name, in a private temporary folder next to
    it); move it onto ``path`` only on success."""
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final.parent, final.name)
        stage = temporary_name(final, "tmp")
        stage.mkdir(mode=0o700)
    except OSError as error:
        raise _explain(final, error, write_error_code(error) or 0) from error
    tmp = stage / final.name
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(errno.ENOENT, "nothing was written", str(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # after the write: a library may have replaced it
        _fsync(tmp)
        os.replace(tmp, final)
    except BaseException as error:
        _discard_and_explain(stage, final, error)
        raise
    shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; rename it to ``path`` only on success.

    With ``overwrite`` an existing folder is replaced (after the new one is complete).
    """
    final = Path(path)
    if final.exists() and not overwrite:
        raise OutputWriteError(f"{final} already exists; remove it or choose another path")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final.parent, final.name)
        tmp = temporary_name(final, "partial")
        tmp.mkdir(mode=0o777 & ~_umask())
    except OSError as error:
        raise _explain(final, error, write_error_code(error) or 0) from error
    try:
        yield tmp
        apply_umask_modes(tmp)
        if final.exists():
            old = temporary_name(final, "old")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as error:
        _discard_and_explain(tmp, final, error)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


__all__ = [
    "OutputWriteError",
    "apply_umask_modes",
    "atomic_directory",
    "atomic_file",
    "parse_temporary_name",
    "process_alive",
    "remove_stale_temporaries",
    "temporary_name",
    "write_error_code",
    "write_text_atomic",
]
