"""The inputs of a stream's steps: the origin, a fixed stream's targets or the next
checkpoint (``checkpoints`` / ``toward`` / ``watch``), each loaded, checked against the
origin and given its cached statistics when it is a ``from``; and the start model.

At most ``from``, the targets and the current model are held at once; in ``checkpoints``
and ``watch`` mode the target of step ``k`` is the ``from`` of step ``k + 1``. Toward legs
(mode ``toward``, or ``watch`` with ``watch.legs: toward``) have no ``from``: the target
is loaded without statistics and dropped after its step.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from mergekit_arm.errors import ArmError
from mergekit_arm.stream.config import StreamConfig
from mergekit_arm.stream.inputs import InputModel, ModelLoader
from mergekit_arm.stream.measure import StatisticsStore
from mergekit_arm.stream.recipes import weighted_average
from mergekit_arm.stream.state import StreamState
from mergekit_arm.stream.step import Leg
from mergekit_arm.stream.watch import CheckpointWatcher, checkpoint_number

logger = logging.getLogger("mergekit_arm.stream")


class StepInputs:
    """The models each step reads, loaded when it needs them."""

    def __init__(self, config: StreamConfig, state: StreamState, store: StatisticsStore,
                 loader: ModelLoader) -> None:
        self.config, self.state, self.store, self.loader = config, state, store, loader
        self.origin: InputModel | None = None
        self.fixed_targets: list[tuple[InputModel, float]] = []
        self.previous: InputModel | None = None  # checkpoints/watch: c_{t-1}
        self.watcher: CheckpointWatcher | None = None
        self.of_step: tuple[InputModel | None, list[tuple[InputModel, float]]] | None = None
        self.went_idle = False
        self.arrivals: Iterator[Path] | None = None  # watch mode fed from outside (advance)
        self.given: dict[Path, str] = {}  # model folder -> config key that gave its statistics

    def prepare(self) -> None:
        """Load the origin (and a fixed stream's targets), check every input against it,
        and get the statistics of `from` models; on resume, the last consumed checkpoint."""
        cfg = self.config
        for key, model, file in cfg.given_statistics():  # the user's files: checked first
            self.store.check_given(key, model, file)
        self.given = {Path(model): key for key, model, _ in reversed(cfg.given_statistics())}
        logger.info("loading origin %s", cfg.origin)
        origin_module = self.loader.load_origin()
        self.store.use_given("origin", origin_module)
        # Every input is checked against the origin before anything is calibrated.
        fixed: list[tuple[Path, str, torch.nn.Module, float]] = []
        if cfg.mode in ("checkpoints", "toward"):
            for index, entry in enumerate(cfg.checkpoints[: cfg.total_steps()]):
                self.loader.check_header(Path(entry.model), f"checkpoints[{index}]")
        elif cfg.mode == "fixed":
            for index, entry in enumerate(cfg.checkpoints):
                label = f"checkpoints[{index}]"
                logger.info("loading %s %s", label, entry.model)
                module = self.loader.load_checked(Path(entry.model), label)
                self.store.use_given(label, module)
                fixed.append((Path(entry.model), label, module, entry.weight))
        origin_stats = None if cfg.toward_legs() else self.store.cached(
            origin_module, str(cfg.origin), f"the origin {cfg.origin}")
        self.origin = InputModel(Path(cfg.origin), "origin", origin_module, origin_stats)
        # Targets only contribute W_to to the displacement: the kernel reads the statistics
        # of `from` and of the current model, so none are computed for them.
        self.fixed_targets = [(InputModel(path, label, module, None), weight)
                              for path, label, module, weight in fixed]
        if cfg.mode == "watch":
            w = cfg.watch
            assert w.dir is not None
            self.watcher = CheckpointWatcher(Path(w.dir), w.pattern, w.settle_seconds,
                                             w.poll_seconds, w.idle_timeout)
        if cfg.mode in ("checkpoints", "watch") and not cfg.toward_legs() and self.state.consumed:
            last = Path(self.state.consumed[-1])
            if not last.exists():
                raise ArmError(
                    f"cannot resume: checkpoint {last}, the `from` model of the next step, is gone "
                    "(deleted by the trainer's save_total_limit?). Re-run with --restart"
                )
            self.previous = self.load_input(last, f"checkpoint {last.name}")

    def load_input(self, path: Path, label: str, statistics: bool = True) -> InputModel:
        """Load an input model, check it against the origin, get its (cached) statistics
        (not for a toward leg's target, which is never a `from`)."""
        logger.info("loading %s %s", label, path)
        module = self.loader.load_checked(path, label)
        if path in self.given:  # a checkpoint given with `activations` (also on resume)
            self.store.use_given(self.given[path], module)
        return InputModel(path, label, module, self.store.cached(
            module, str(path), f"{label} {path}") if statistics else None)

    def start_module(self) -> torch.nn.Module:
        """A fresh copy of the start model (reusing an input already loaded)."""
        if self.config.starts_from_average():
            assert self.origin is not None
            module = copy.deepcopy(self.origin.module)
            module.load_state_dict(weighted_average(
                [(t.module.state_dict(), w) for t, w in self.fixed_targets]), strict=True)
            return module
        start = Path(self.config.start_path())
        loaded = [self.origin] + [m for m, _ in self.fixed_targets] + [self.previous]
        same = next((m for m in loaded if m is not None and m.path == start), None)
        if same is not None:  # already loaded and checked: copy instead of reading it again
            return copy.deepcopy(same.module)
        return self.loader.load_checked(start, "start")

    def legs(self) -> Iterator[Leg]:
        """Leg of each next step (loading its inputs); ends when the watch goes idle."""
        step = self.state.step
        while True:
            step += 1
            inputs = self.inputs_of(step)
            if inputs is None:
                self.went_idle = True
                return
            self.of_step = source, targets = inputs
            yield Leg(None if source is None else source.module.state_dict(),
                      None if source is None else source.statistics,
                      tuple((t.module.state_dict(), w) for t, w in targets),
                      f"{'current' if source is None else source.path.name} -> "
                      + ", ".join(t.path.name for t, _ in targets))
            del inputs, source, targets  # hold at most from, to and the current model

    def inputs_of(self, step: int) -> tuple[InputModel | None, list[tuple[InputModel, float]]] | None:
        """``from`` (None: the current model) and the weighted targets of ``step``; None
        when the watch went idle."""
        cfg = self.config
        if cfg.mode == "fixed":
            assert self.origin is not None
            return self.origin, self.fixed_targets
        if cfg.mode == "toward":
            entry = cfg.checkpoints[step - 1]
            return None, [(self.load_input(Path(entry.model), f"checkpoints[{step - 1}]",
                                            statistics=False), entry.weight)]
        if cfg.mode == "checkpoints":
            entry = cfg.checkpoints[step - 1]
            path, weight, label = Path(entry.model), entry.weight, f"checkpoints[{step - 1}]"
        else:
            assert self.watcher is not None
            if self.arrivals is not None:  # handed over from outside (already complete)
                found = next(self.arrivals, None)
            else:
                after = (checkpoint_number(self.state.consumed[-1]) if self.state.consumed
                         else None)
                logger.info("watching %s for a checkpoint after %s", self.watcher.directory,
                            after)
                found = self.watcher.next_checkpoint(after)
            if found is None:
                return None
            path, weight, label = found, 1.0, f"checkpoint {found.name}"
            if cfg.toward_legs():  # watch.legs: toward
                return None, [(self.load_input(path, label, statistics=False), weight)]
        source = self.previous or self.origin
        assert source is not None
        return source, [(self.load_input(path, label), weight)]

    def release_origin(self) -> None:
        """Checkpoints/watch: after step 1 the origin is no input any more; free it."""
        if self.config.mode != "fixed" and self.previous is not None:
            self.origin = None

    def committed(self) -> None:
        """After an accepted step: in checkpoints/watch mode its target is the next
        ``from`` (and the origin is freed); the step's inputs are dropped."""
        if self.config.mode in ("checkpoints", "watch") and not self.config.toward_legs():
            assert self.of_step is not None
            self.previous = self.of_step[1][0][0]
            self.release_origin()


__all__ = ["StepInputs"]
