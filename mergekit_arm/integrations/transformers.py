"""``ARMCallback``: Streaming Merging inside a Hugging Face ``Trainer`` run (TRL's too).

The callback is ``arm-stream CONFIG OUT --watch OUTPUT_DIR`` run by the trainer itself:
the same engine (:class:`~mergekit_arm.stream.runner.StreamRunner` in mode ``watch``),
but each checkpoint is handed over when the Trainer has saved it instead of being polled
for. Step ``t`` goes ``c_{t-1} -> c_t`` (the origin -> ``c_1`` first):
``W <- W + eta_t * ARM(c_t - c_{t-1})``, with the config's schedule, keep-best and
calibration.

* ``on_train_begin``: validate the config, refuse a model that is not ``origin`` (a few
  tensors compared, before the first step), open (or resume) the stream in ``out``
  (default ``OUTPUT_DIR/arm-stream``); a resumed Trainer first merges the complete
  checkpoints up to its resume point that the stream has not consumed yet;
* ``on_save``: merge ``OUTPUT_DIR/checkpoint-{global_step}`` if it passes the watch
  module's completion check (config, whole weight files, the Trainer's
  ``trainer_state.json``, written last); a checkpoint the stream already consumed is
  skipped;
* ``on_train_end``: write the kept model ``out/model`` (model card, tokenizer).

``stop_training=True`` also ends training once the stream's ``patience`` has run out
(:mod:`~mergekit_arm.integrations.early_stop`): no later checkpoint could change the kept
model, so the steps left are saved compute.

Training is not disturbed: the stream reads the saved files only (never ``model``),
runs on the CPU unless the config sets ``device:``, and the torch (CPU and CUDA), NumPy
and ``random`` RNG states are restored around every call. Only the main process
(``state.is_world_process_zero``) streams; the other ranks return at once.

The config and its origin check are :mod:`~mergekit_arm.integrations.callback_config`;
the open stream between saves is :mod:`~mergekit_arm.integrations.callback_session`.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mergekit_arm.errors import ArmError
from mergekit_arm.integrations.callback_config import (
    ORIGIN_PROBES,
    callback_config,
    check_starts_at_origin,
)
from mergekit_arm.integrations.callback_session import (  # noqa: F401 (console_shows: re-exported)
    OPEN_STREAMS,
    StreamSession,
    announce,
    console_shows,
    logger,
    training_rng_preserved,
)
from mergekit_arm.integrations.early_stop import (
    agree_across_ranks,
    check_stop_config,
    patience_exhausted,
    record_stop,
    saved_compute,
)
from mergekit_arm.models import safetensors_shapes
from mergekit_arm.stream.config import StreamConfig
from mergekit_arm.stream.driver import config_data
from mergekit_arm.stream.result import StreamResult
from mergekit_arm.stream.runner import StreamRunner
from mergekit_arm.stream.watch import (
    CheckpointWatcher,
    checkpoint_number,
    has_trainer_marker,
    is_complete,
)

DEFAULT_OUT = "arm-stream"  # under the Trainer's output_dir
ADAPTER_FOLDS = "adapters"  # under OUT/.arm-stream: a PEFT run's checkpoints, folded


def is_adapter_checkpoint(folder: Path) -> bool:
    """A PEFT run's checkpoint: ``adapter_config.json`` and no ``config.json``."""
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def adapter_complete(folder: Path) -> bool:
    """Whether an adapter checkpoint's weights are all there (non-empty, readable header)."""
    files = [f for f in folder.glob("adapter_model.*") if f.suffix in (".safetensors", ".bin")]
    if not files:
        return False
    for file in files:
        if file.stat().st_size == 0:
            return False
        if file.suffix == ".safetensors":
            try:
                safetensors_shapes(file)
            except Exception:  # noqa: BLE001 - a half-written file
                return False
    return True


class ARMCallback(TrainerCallback):
    """Merge every checkpoint the Trainer saves as the next step of an ARM stream.

    ``config``: the ``arm-stream`` config (a :class:`StreamConfig`, a mapping or a YAML
    path) in mode ``watch`` (the default here; ``checkpoints`` and ``watch.dir`` are
    taken from the Trainer). ``out``: the stream's folder (default
    ``<output_dir>/arm-stream``), laid out as ``arm-stream``'s OUT. ``restart``: discard
    a previous stream in ``out``. ``progress``: show the stream's progress bars.
    A PEFT (LoRA) run's checkpoints hold the adapter only: at each save the adapter is
    folded into a CPU copy of ``origin`` (``OUT/.arm-stream/adapters/checkpoint-N``, the
    last one kept) and that full model is the stream's checkpoint.
    After training, :attr:`result` is the :class:`StreamResult`,
    :attr:`step_seconds` maps each merged checkpoint's number to its wall time and
    :attr:`fold_seconds` (PEFT runs) to the part of it spent folding the adapter.
    ``stop_training``: stop the Trainer once the stream's ``patience`` has run out (the
    config must set it; :mod:`~mergekit_arm.integrations.early_stop`); then
    :attr:`training_stop` holds the steps trained, the steps asked and the fraction saved,
    also written as ``training_stop`` on the last record of ``trajectory.jsonl``.
    """

    def __init__(
        self,
        config: StreamConfig | str | os.PathLike | Mapping[str, Any],
        out: str | os.PathLike | None = None,
        *,
        restart: bool = False,
        progress: bool = False,
        stop_training: bool = False,
    ) -> None:
        self.source, self.data = config_data(config)
        if not isinstance(self.data, dict) or "origin" in self.data:
            callback_config(self.data, self.source, None)  # fail at construction
        if stop_training:
            check_stop_config(self.data, self.source)
        self.stop_training = stop_training
        self.stopping = False  # patience ran out: the Trainer was told to stop
        self.training_stop: dict[str, Any] | None = None
        self.out = None if out is None else Path(out)
        self.restart = restart
        self.progress = progress
        self.session: StreamSession | None = None
        self.result: StreamResult | None = None
        self.step_seconds: dict[int, float] = {}
        self.fold_seconds: dict[int, float] = {}

    # -- Trainer events -------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """Open (or resume) the stream; merge checkpoints it missed up to the resume point.
        With ``stop_training``, a stream whose patience already ran out stops the Trainer
        (after the one step it runs before it first looks)."""
        self.stopping = False
        if state.is_world_process_zero:
            self._begin(args, state, model)
        self._stop_if_done(args, control)

    def _begin(self, args, state, model) -> None:
        if self.session is not None:
            logger.warning("the previous train() of this ARMCallback ended without "
                           "on_train_end (an error?); resuming its stream")
            self._close()
        if getattr(model, "peft_config", None) and hasattr(model, "get_base_model"):
            model = model.get_base_model()  # a PEFT run: its adapter is folded at each save
        output_dir = Path(args.output_dir).expanduser().resolve()
        config = callback_config(self.data, self.source, output_dir, model)
        if state.global_step == 0 and model is not None:  # resumed: the model moved on
            check_starts_at_origin(model, Path(config.origin), self.source)
        out = (self.out if self.out is not None else output_dir / DEFAULT_OUT).expanduser()
        out = out.resolve()
        stale = OPEN_STREAMS.get(out)
        if stale is not None:  # left open by a train() of this process that raised
            logger.warning("closing the stream in %s left open by an earlier training run", out)
            stale.close()
        if args.save_strategy == "no":
            logger.warning("save_strategy is 'no': the Trainer saves no checkpoint, so the "
                           "ARM stream merges nothing")
        output_dir.mkdir(parents=True, exist_ok=True)
        session = StreamSession(config, out, self.restart, self.progress)
        self.restart = False  # a later train() (resume) continues this stream
        try:
            consumed = session.runner.state.consumed
            if consumed and state.global_step == 0:
                raise ArmError(
                    f"{out} holds a stream that already merged {Path(consumed[-1]).name} of an "
                    "earlier training run, and this run starts from step 0: pass restart=True "
                    "to start a new stream there, choose another `out`, or resume the Trainer "
                    "from its checkpoint (resume_from_checkpoint)")
            with session.turn() as runner:
                if runner.is_final():
                    logger.warning(
                        "the ARM stream in %s is already %s: nothing more is merged (pass "
                        "restart=True or another out to stream again)", out, runner.state.status)
                    self.result = runner.result()
                    self.stopping = self.stop_training and patience_exhausted(runner)
                    session.close()
                    return
                runner.open()
            self.session = session
            self._catch_up(output_dir, state.global_step)
        except BaseException:
            session.close()
            self.session = None
            raise

    def on_save(self, args, state, control, **kwargs):
        """Merge the checkpoint the Trainer has just written (``stop_training``: then stop
        the Trainer if the stream's patience ran out)."""
        if state.is_world_process_zero and self.session is not None:
            output_dir = Path(args.output_dir).expanduser().resolve()
            self._merge(output_dir / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        self._stop_if_done(args, control)

    def on_train_end(self, args, state, control, **kwargs):
        """Write the kept model (``out/model``) and close the stream."""
        if not state.is_world_process_zero:
            return
        if self.session is None:
            if self.stopping:  # the stream had ended before this train(): nothing to write
                self.training_stop = saved_compute(state.global_step, state.max_steps)
                logger.info("ARMCallback stopped training at step %d: the stream in its out "
                            "folder had already run out of patience", state.global_step)
            return
        try:
            runner = self.session.runner
            if runner.state.step == 0 and runner.state.status == "running":
                logger.warning("the ARM stream in %s merged no checkpoint, so it has no final "
                               "model (did the Trainer save any?)", self.session.out)
                return
            if self.stopping:
                self.training_stop = record_stop(runner, state.global_step, state.max_steps)
            with self.session.turn():
                runner.finish()
            self.result = runner.result()
        finally:
            self._close()

    # -- helpers --------------------------------------------------------------------------
    def _stop_if_done(self, args, control) -> None:
        """``stop_training``: set ``control.should_training_stop`` once rank 0's stream has
        exhausted its patience (every rank agrees, see :func:`agree_across_ranks`)."""
        if not self.stop_training:
            return
        done = self.stopping or (self.session is not None
                                 and patience_exhausted(self.session.runner))
        if agree_across_ranks(done, getattr(args, "device", "cpu")):
            self.stopping = True
            control.should_training_stop = True

    def _close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def _fold(self, checkpoint: Path) -> Path:
        """``origin+checkpoint`` as a full model: the adapter folded into a CPU copy of the
        origin (:func:`~mergekit_arm.model_refs.fold_adapter`), written to
        ``OUT/.arm-stream/adapters/checkpoint-N`` (the stream's checkpoint)."""
        from mergekit_arm.model_refs import fold_adapter

        assert self.session is not None
        runner = self.session.runner
        return fold_adapter(Path(runner.config.origin), checkpoint, f"origin+{checkpoint}",
                            cache=runner.layout.internal / ADAPTER_FOLDS,
                            trust_remote_code=runner.config.trust_remote_code,
                            name=checkpoint.name)

    @staticmethod
    def _prune_folds(runner: StreamRunner) -> None:
        """Remove folded checkpoints the stream no longer reads (all but the last consumed,
        the ``from`` of the next step)."""
        consumed = runner.state.consumed
        keep = Path(consumed[-1]).name if consumed else None
        folds = runner.layout.internal / ADAPTER_FOLDS
        for folder in folds.iterdir() if folds.is_dir() else []:
            if folder.name != keep and not folder.name.startswith("."):
                shutil.rmtree(folder, ignore_errors=True)

    def _catch_up(self, output_dir: Path, global_step: int) -> None:
        """Merge complete checkpoints after the last consumed one, up to ``global_step``
        (a resumed Trainer: the ones saved before the stream could take them)."""
        assert self.session is not None
        consumed = self.session.runner.state.consumed
        after = checkpoint_number(consumed[-1]) if consumed else None
        listing = CheckpointWatcher(output_dir, f"{PREFIX_CHECKPOINT_DIR}-*")
        for folder in listing.candidates(after):
            number = checkpoint_number(folder)
            if number is None or number > global_step:
                break  # beyond the resume point: training writes it again
            self._merge(folder)

    def _merge(self, folder: Path) -> None:
        """One stream step to ``folder``, unless consumed, incomplete or the stream is done."""
        assert self.session is not None
        runner = self.session.runner
        if not runner.wants_more():
            logger.info("the ARM stream is complete after %d step(s); %s is not merged",
                        runner.state.step, folder.name)
            return
        number = checkpoint_number(folder)
        consumed = runner.state.consumed
        last = checkpoint_number(consumed[-1]) if consumed else None
        if number is None or (last is not None and number <= last):
            logger.info("skipping %s: the stream already merged up to %s", folder.name,
                        Path(consumed[-1]).name if consumed else "-")
            return
        adapter = is_adapter_checkpoint(folder)
        if not ((adapter_complete(folder) if adapter else is_complete(folder))
                and has_trainer_marker(folder)):
            logger.warning("skipping %s: not a complete checkpoint (config.json, whole weight "
                           "files and trainer_state.json); the stream does not read it", folder)
            return
        started = time.perf_counter()
        try:
            if adapter:  # a PEFT run: the full model is the base with this adapter folded
                with training_rng_preserved():  # PEFT initialises LoRA layers before loading
                    folder = self._fold(folder)
                self.fold_seconds[number] = time.perf_counter() - started
            with self.session.turn():
                runner.advance([folder])
                if adapter:
                    self._prune_folds(runner)
        except BaseException:
            self._close()
            raise
        seconds = time.perf_counter() - started
        self.step_seconds[number] = seconds
        record = runner.state.records[-1]
        loss = record.get("val_loss")
        announce("ARM stream step %d (%s) took %.2f s: learning rate %s, held-out loss %s",
                 record["step"], record["leg"], seconds, record.get("learning_rate"),
                 "-" if loss is None else f"{loss:.4f}")


__all__ = ["ADAPTER_FOLDS", "ARMCallback", "DEFAULT_OUT", "ORIGIN_PROBES", "StreamSession",
           "adapter_complete", "callback_config", "check_starts_at_origin",
           "is_adapter_checkpoint", "training_rng_preserved"]
