"""``run_stream``: the Python API behind ``arm-stream`` (config, OUT folder, lock, log).

The work is split by job: :mod:`~mergekit_arm.stream.inputs` (loading and checking input
models), :mod:`~mergekit_arm.stream.measure` (statistics, held-out batches),
:mod:`~mergekit_arm.stream.step` (one in-memory step), :mod:`~mergekit_arm.stream.loop`
(the steps and the kept step), :mod:`~mergekit_arm.stream.runner` (files, resume, watch),
:mod:`~mergekit_arm.stream.report` (trajectory, plot, card, replay YAML).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

import torch
from filelock import FileLock, Timeout
from typing_extensions import Unpack

from mergekit_arm.errors import ArmConfigError, ArmError
from mergekit_arm.heldout import quiet_transformers
from mergekit_arm.paths import PathRole, check_outputs_apart, output_write_errors
from mergekit_arm.stream.config import (
    StreamConfig,
    parse_config,
    read_config_file,
    with_added_defaults,
)
from mergekit_arm.stream.inputs import check_paths, input_paths, reference_inputs
from mergekit_arm.stream.result import StreamResult
from mergekit_arm.stream.runner import StreamRunner
from mergekit_arm.stream.state import OutLayout, open_state, remove_partial_writes, save_state

logger = logging.getLogger("mergekit_arm.stream")

LOG_FILE = "arm-stream.log"
AFTER_WRITE_ERROR = ("Steps completed before stay in OUT; run the same command again once OUT "
                     "can be written to resume after them")


def config_data(config: StreamConfig | str | os.PathLike | Mapping) -> tuple[str, Any]:
    """``(source, data)``: the unvalidated mapping of a config object, mapping or YAML path,
    and how to name it in errors."""
    if isinstance(config, StreamConfig):
        return "<StreamConfig>", config.model_dump(exclude_unset=True)
    if isinstance(config, Mapping):
        return "<dict>", copy.deepcopy(dict(config))
    return str(config), read_config_file(config)


def _as_config(
    config: StreamConfig | str | os.PathLike | Mapping, watch: str | os.PathLike | None
) -> StreamConfig:
    """Validate ``config`` (with ``--watch DIR`` applied) and make its paths absolute."""
    source, data = config_data(config)
    if watch is not None and isinstance(data, dict):
        data["mode"] = "watch"
        section = data.get("watch")
        data["watch"] = {**(section if isinstance(section, dict) else {}), "dir": str(watch)}
        source += " (with --watch)"
    parsed = parse_config(data, source)
    if parsed.mode == "watch" and parsed.watch.dir is None:
        raise ArmConfigError("mode watch needs the folder to watch: pass --watch DIR or set `watch.dir`")
    return parsed.resolved()


@contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    """Also write the stream's log records to ``path`` (appending) while running."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


@contextmanager
def open_stream(
    config: StreamConfig | str | os.PathLike | Mapping,
    out: str | os.PathLike,
    *,
    restart: bool = False,
    watch: str | os.PathLike | None = None,
    progress: bool = True,
) -> Iterator[StreamRunner]:
    """The runner of the stream ``config`` in ``out`` (resumed when ``out`` holds one), with
    ``out`` locked and the log appended to ``out/arm-stream.log`` until the block ends.

    A saved stream of a different config is refused unless ``restart``. The caller runs
    it (:meth:`StreamRunner.run`, or ``open``/``advance``/``finish``) and owns the RNG.
    """
    from mergekit_arm import register

    register()
    resolved = _as_config(config, watch)
    check_paths(resolved)
    check_outputs_apart([PathRole("OUT", out, "folder")],
                        input_paths(resolved) + reference_inputs(config_data(config)[1]))
    with output_write_errors(out, AFTER_WRITE_ERROR), \
            _locked_stream(resolved, OutLayout(out), restart, progress) as runner:
        yield runner


@contextmanager
def _locked_stream(resolved: StreamConfig, layout: OutLayout, restart: bool,
                   progress: bool) -> Iterator[StreamRunner]:
    """:func:`open_stream` once the config and paths are checked: OUT locked and logged."""
    if layout.root.exists() and not layout.root.is_dir():
        raise ArmError(f"OUT {layout.root} exists and is not a folder")
    if layout.root.is_dir() and not layout.internal.exists() and any(layout.root.iterdir()):
        raise ArmError(
            f"OUT {layout.root} already exists and is not an arm-stream output folder; choose a "
            "new or empty folder"
        )
    layout.internal.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(layout.lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ArmError(f"another arm-stream is already writing to {layout.root}") from None
    try:
        with _log_to_file(layout.root / LOG_FILE):
            remove_partial_writes(layout)
            state, resumed = open_state(
                layout, resolved.model_dump(mode="json"), restart,
                normalize=with_added_defaults)
            if not resumed:
                save_state(layout, state)
            logger.info("%s stream in %s (%d step(s) done)",
                        "resuming" if resumed else "starting", layout.root, state.step)
            yield StreamRunner(resolved, layout, state, resumed, progress)
    finally:
        lock.release()


class OpenOptions(TypedDict, total=False):
    """The keyword options of :func:`open_stream`, forwarded by :func:`run_stream`."""

    restart: bool
    watch: str | os.PathLike | None
    progress: bool


def run_stream(
    config: StreamConfig | str | os.PathLike | Mapping, out: str | os.PathLike,
    **options: Unpack[OpenOptions],
) -> StreamResult:
    """Run (or resume) a Streaming Merging run described by ``config`` into ``out``.

    ``config`` is a :class:`StreamConfig`, a mapping, or the path of a YAML file.
    Re-running with the same config continues after the last completed step; a
    different config is refused unless ``restart``. ``watch`` follows a training
    output folder (mode ``watch``). Returns the final model folder and the records.
    """
    with open_stream(config, out, **options) as runner, \
            quiet_transformers(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(runner.config.seed)
        return runner.run()


__all__ = ["LOG_FILE", "StreamResult", "config_data", "open_stream", "run_stream"]
