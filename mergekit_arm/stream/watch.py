"""``--watch DIR``: find complete checkpoints in a training run's output folder.

A folder matching the pattern (``checkpoint-*`` as written by the Hugging Face
Trainer) is *complete* when

* it has ``config.json``;
* it has ``model.safetensors`` (or ``pytorch_model.bin``), or an index
  (``model.safetensors.index.json``) that parses and all the files its ``weight_map``
  lists exist;
* every ``.safetensors`` weight file has a readable header whose tensors fit in the
  file (a file still being copied fails this);
* nothing in the folder (names, sizes, modification times) changed for
  ``settle_seconds``.

Only then is it read. Checkpoints are taken in the order of the number in their name.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

logger = logging.getLogger(__name__)

INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
Snapshot = tuple[tuple[str, int, int], ...]


def checkpoint_number(path: str | Path) -> int | None:
    """The last integer in the folder's name (``checkpoint-500`` -> 500), or None."""
    found = re.findall(r"\d+", Path(path).name)
    return int(found[-1]) if found else None


def weight_files(folder: Path) -> list[Path] | None:
    """The weight files the folder's index (or single weight file) names; None if unknown yet."""
    for index_name in INDEX_FILES:
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError, TypeError):
                return None  # index still being written
            return [folder / name for name in sorted(set(weight_map.values()))]
    for single in SINGLE_FILES:
        if (folder / single).is_file():
            return [folder / single]
    return None


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
    _seen: dict[Path, tuple[Snapshot, float]] = field(default_factory=dict)

    def candidates(self, after: int | None) -> list[Path]:
        """Matching folders numbered above ``after``, in number order."""
        found = []
        for path in self.directory.glob(self.pattern):
            number = checkpoint_number(path)
            if path.is_dir() and number is not None and (after is None or number > after):
                found.append((number, path))
        return [path for _, path in sorted(found)]

    def ready(self, folder: Path) -> bool:
        """Complete and unchanged for ``settle_seconds`` (tracked across calls)."""
        if not is_complete(folder):
            self._seen.pop(folder, None)
            return False
        now = self.clock()
        current = snapshot(folder)
        previous = self._seen.get(folder)
        if previous is None or previous[0] != current:
            self._seen[folder] = (current, now)
            return self.settle_seconds == 0 and is_complete(folder)
        return now - previous[1] >= self.settle_seconds

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


__all__ = ["CheckpointWatcher", "checkpoint_number", "is_complete", "snapshot", "weight_files"]
