"""``--watch DIR``: find complete checkpoints in a training run's output folder.

A folder matching the pattern (``checkpoint-*`` as written by the Hugging Face
Trainer) is read only when it is *complete* by a signal a pause cannot fake:

1. its structure is whole: ``config.json``; ``model.safetensors`` (or
   ``pytorch_model.bin``), or an index whose ``weight_map`` files all exist; every
   ``.safetensors`` header readable with its tensors inside the file;
2. no process (visible in ``/proc``) holds one of its weight files open for writing;
3. and one of:

   a. the Trainer's completion marker: ``Trainer._save_checkpoint`` writes
      ``trainer_state.json`` after the weights, optimizer, scheduler and RNG state
      (transformers 4.x-5.x), so the marker parsing as JSON means the checkpoint is done;
   b. a checksum file (``SHA256SUMS``, ``checksums.sha256`` or ``<weights>.sha256``,
      ``sha256sum`` format) lists every weight file and every hash matches;
   c. only when no checkpoint of the watched folder carries the Trainer marker (a run
      that writes markers never has a folder read without one): the SHA-256 of the
      weight files' bytes is the same in two reads ``settle_seconds`` apart;

4. and in every case nothing in the folder (names, sizes, modification times) changed
   for ``settle_seconds``.

Case 3c is the only one a writer could fool, by leaving a pre-sized file untouched and
closed for longer than ``settle_seconds``: write the Trainer marker or a checksum file
last to rule that out. Checkpoints are taken in the order of the number in their name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

from mergekit_arm.model_files import TRAINER_STATE, read_weight_index

logger = logging.getLogger(__name__)

CHECKSUM_FILES = ("SHA256SUMS", "checksums.sha256")
Snapshot = tuple[tuple[str, int, int], ...]


def checkpoint_number(path: str | Path) -> int | None:
    """The last integer in the folder's name (``checkpoint-500`` -> 500), or None."""
    found = re.findall(r"\d+", Path(path).name)
    return int(found[-1]) if found else None


def weight_files(folder: Path) -> list[Path] | None:
    """The weight files the folder's index (or single weight file) names; None if unknown
    yet (no weight file, or an index still being written)."""
    _, names = read_weight_index(folder)
    return [folder / name for name in names] if names else None


def _safetensors_readable(path: Path) -> bool:
    """Whether the header parses and the data it describes fits in the file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception:
        return False
    return True


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder`` holds a config and every weight file it needs (see module doc)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return False
    files = weight_files(folder)
    if not files:
        return False
    for file in files:
        if not file.is_file() or file.stat().st_size == 0:
            return False
        if file.suffix == ".safetensors" and not _safetensors_readable(file):
            return False
    return True


def snapshot(folder: Path) -> Snapshot:
    """(relative path, size, mtime_ns) of every file under ``folder``, sorted."""
    entries = []
    for path in folder.rglob("*"):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        if path.is_file():
            entries.append((str(path.relative_to(folder)), info.st_size, info.st_mtime_ns))
    return tuple(sorted(entries))


def has_trainer_marker(folder: Path) -> bool:
    """Whether the Trainer's ``trainer_state.json`` (written last) is there and parses."""
    try:
        return isinstance(json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 23):
            digest.update(block)
    return digest.hexdigest()


def content_digest(files: list[Path]) -> str:
    """SHA-256 over the weight files' names and bytes."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{file_sha256(file)}\0".encode())
    return digest.hexdigest()


def checksums_match(folder: Path, files: list[Path]) -> bool | None:
    """None without a checksum file; else whether it lists every weight file with its hash."""
    listed: dict[str, str] = {}
    sources = [folder / name for name in CHECKSUM_FILES]
    sources += [file.with_name(file.name + ".sha256") for file in files]
    found = False
    for source in sources:
        try:
            text = source.read_text(encoding="utf-8")
        except OSError:
            continue
        found = True
        for line in text.splitlines():
            parts = line.strip().split(maxsplit=1)
            if len(parts) == 2:
                name = parts[1].lstrip("*").strip()
                listed[Path(name).name] = parts[0].lower()
            elif len(parts) == 1 and source.name.endswith(".sha256") and source.name[:-7]:
                listed[source.name[:-7]] = parts[0].lower()
    if not found:
        return None
    return all(listed.get(file.name) == file_sha256(file) for file in files)


def open_for_writing(files: list[Path]) -> list[Path]:
    """The files some visible process holds open for writing (Linux ``/proc``; else [])."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    wanted = {os.path.realpath(file): file for file in files}
    busy: list[Path] = []
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target not in wanted:
                continue
            try:
                info = (fd_dir.parent / "fdinfo" / fd.name).read_text()
                flags = int(next(line for line in info.splitlines()
                                 if line.startswith("flags:")).split()[1], 8)
            except (OSError, StopIteration, ValueError, IndexError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                busy.append(wanted[target])
    return busy


@dataclass
class _Observation:
    snapshot: Snapshot
    since: float
    digest: str | None = None


@dataclass
class CheckpointWatcher:
    """Polls ``directory`` for complete, settled checkpoint folders."""

    directory: Path
    pattern: str = "checkpoint-*"
    settle_seconds: float = 10.0
    poll_seconds: float = 2.0
    idle_timeout: float = 1800.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _seen: dict[Path, _Observation] = field(default_factory=dict)
    _trainer_run: bool = False

    def candidates(self, after: int | None) -> list[Path]:
        """Matching folders numbered above ``after``, in number order."""
        found = []
        for path in self.directory.glob(self.pattern):
            number = checkpoint_number(path)
            if path.is_dir() and number is not None and (after is None or number > after):
                found.append((number, path))
        return [path for _, path in sorted(found)]

    def writes_markers(self) -> bool:
        """Whether some checkpoint of the watched folder has the Trainer marker (sticky)."""
        if not self._trainer_run:
            self._trainer_run = any(has_trainer_marker(path) for path in
                                    self.directory.glob(self.pattern) if path.is_dir())
        return self._trainer_run

    def ready(self, folder: Path) -> bool:
        """Complete by the rules of the module doc (tracked across calls)."""
        files = weight_files(folder) if is_complete(folder) else None
        if not files or open_for_writing(files):
            self._seen.pop(folder, None)
            return False
        now = self.clock()
        current = snapshot(folder)
        seen = self._seen.get(folder)
        if seen is None or seen.snapshot != current:
            seen = self._seen[folder] = _Observation(current, now)
            if self.settle_seconds > 0:
                if not self.writes_markers() and not has_trainer_marker(folder):
                    seen.digest = content_digest(files)  # the first of two reads
                return False
        elif now - seen.since < self.settle_seconds:
            return False
        if has_trainer_marker(folder):
            return True
        matched = checksums_match(folder, files)
        if matched is not None:
            return matched
        if self.writes_markers():
            return False  # a Trainer run: this folder's marker is not written yet
        digest = content_digest(files)  # the second read (settle_seconds after the first)
        if self.settle_seconds == 0:
            return content_digest(files) == digest and snapshot(folder) == current
        if seen.digest != digest or snapshot(folder) != current:
            self._seen[folder] = _Observation(snapshot(folder), now, digest)
            return False
        return True

    def next_checkpoint(self, after: int | None) -> Path | None:
        """Wait for the lowest-numbered ready checkpoint above ``after``.

        Returns None when none became ready within ``idle_timeout`` seconds.
        """
        started = self.clock()
        waiting_logged: set[Path] = set()
        while True:
            pending = []
            for folder in self.candidates(after):
                if self.ready(folder):
                    for skipped in pending:
                        logger.warning("skipping %s: still incomplete while the later %s is "
                                       "complete", skipped, folder.name)
                    return folder
                pending.append(folder)
                if folder not in waiting_logged:
                    logger.info("waiting for %s to be complete and settled", folder)
                    waiting_logged.add(folder)
            if self.clock() - started >= self.idle_timeout:
                return None
            self.sleep(self.poll_seconds)


__all__ = [
    "CheckpointWatcher",
    "checkpoint_number",
    "checksums_match",
    "content_digest",
    "has_trainer_marker",
    "is_complete",
    "open_for_writing",
    "snapshot",
    "weight_files",
]
