"""The open stream of :class:`~mergekit_arm.integrations.transformers.ARMCallback` between
the Trainer's saves (:class:`StreamSession`: runner, lock, log and the stream's own torch
RNG), the training RNG states kept aside around each of its turns
(:func:`training_rng_preserved`), and the line per merged save (:func:`announce`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mergekit_arm.heldout import quiet_transformers
from mergekit_arm.stream.config import StreamConfig
from mergekit_arm.stream.driver import open_stream
from mergekit_arm.stream.runner import StreamRunner

logger = logging.getLogger("mergekit_arm.stream.callback")

OPEN_STREAMS: dict[Path, StreamSession] = {}  # this process's open streams, by OUT


def console_shows(log: logging.Logger, level: int = logging.INFO) -> bool:
    """Whether a record of ``level`` on ``log`` reaches a console handler the user set up
    (a stream handler other than a file's, on ``log`` or an ancestor it propagates to)."""
    if not log.isEnabledFor(level):
        return False
    current: logging.Logger | None = log
    while current is not None:
        for handler in current.handlers:
            if (isinstance(handler, logging.StreamHandler)
                    and not isinstance(handler, logging.FileHandler) and handler.level <= level):
                return True
        current = current.parent if current.propagate else None
    return False


def announce(message: str, *args: Any) -> None:
    """One line per save: logged at INFO (``OUT/arm-stream.log``, the user's logging), and
    printed above the Trainer's progress bar when no console handler would show it, as the
    Trainer prints its own logs. Called on the main process only."""
    logger.info(message, *args)
    if not console_shows(logger):
        from tqdm.auto import tqdm

        tqdm.write(message % args)


@contextmanager
def training_rng_preserved() -> Iterator[None]:
    """Restore the torch CPU and CUDA, NumPy and ``random`` RNG states on exit."""
    python_state, numpy_state, cpu_state = random.getstate(), np.random.get_state(), \
        torch.get_rng_state()
    cuda_state = (torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                  and torch.cuda.is_initialized() else None)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)


class StreamSession:
    """One open stream (runner, lock, log) and the stream's own torch RNG between turns."""

    def __init__(self, config: StreamConfig, out: Path, restart: bool, progress: bool) -> None:
        self.out = out
        self.stack = ExitStack()
        self.runner: StreamRunner = self.stack.enter_context(
            open_stream(config, out, restart=restart, progress=progress))
        self.rng: torch.Tensor | None = None  # None: seeded from the config on the first turn
        OPEN_STREAMS[out] = self

    @contextmanager
    def turn(self) -> Iterator[StreamRunner]:
        """The stream's turn: training's RNG states put aside, the stream's in place."""
        with training_rng_preserved(), quiet_transformers():
            if self.rng is None:
                torch.manual_seed(self.runner.config.seed)  # as run_stream
            else:
                torch.set_rng_state(self.rng)
            try:
                yield self.runner
            finally:
                self.rng = torch.get_rng_state()

    def close(self) -> None:
        """Release the lock and the log file."""
        if OPEN_STREAMS.get(self.out) is self:
            del OPEN_STREAMS[self.out]
        self.stack.close()


__all__ = ["OPEN_STREAMS", "StreamSession", "announce", "console_shows",
           "training_rng_preserved"]
