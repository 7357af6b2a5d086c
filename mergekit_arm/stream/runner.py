"""``arm-stream``'s files around the in-memory loop: statistics, commits, resume (the models
each step reads: :mod:`~mergekit_arm.stream.step_inputs`).

Step ``k`` (1-based): statistics of the current model (one calibration pass; those of
``from`` and the targets come from a content-keyed cache), then
:func:`~mergekit_arm.stream.loop.run_steps` merges and scores the candidates; the chosen
one is loaded into the current model, its float32 weights and ``state.json`` are written
atomically (so a killed run resumes here), and the reports are rewritten. With
``select: best`` the best step's weights file is kept next to the current one until the
end, when the final model is written from it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from mergekit_arm._io import atomic_file
from mergekit_arm.errors import ArmError
from mergekit_arm.evaluation import heldout_loss
from mergekit_arm.models import DTYPES, load_model_config, load_tokenizer, resolve_device
from mergekit_arm.stream.config import StreamConfig
from mergekit_arm.stream.folders import save_model_folder
from mergekit_arm.stream.inputs import ModelLoader, saved_dtype
from mergekit_arm.stream.loop import StreamTrace, kept_step, mark_kept, patience_left, run_steps
from mergekit_arm.stream.measure import StatisticsStore, validation_batches
from mergekit_arm.stream.report import model_card, plot_trajectory, write_trajectory
from mergekit_arm.stream.result import StreamResult
from mergekit_arm.stream.state import OutLayout, StreamState, save_state
from mergekit_arm.stream.step import Leg, StepResult
from mergekit_arm.stream.step_files import StepFiles, write_step_files
from mergekit_arm.stream.step_inputs import StepInputs

logger = logging.getLogger("mergekit_arm.stream")


class StreamRunner:
    """Runs (or resumes) one stream described by a resolved config in ``layout``."""

    def __init__(self, config: StreamConfig, layout: OutLayout, state: StreamState,
                 resumed: bool, progress: bool = True) -> None:
        self.config = config
        self.layout = layout
        self.state = state
        self.resumed = resumed
        self.progress = progress
        self.device = resolve_device(config.device)
        self.parameters = config.arm.merge_parameters()
        self.current: torch.nn.Module | None = None
        self.inputs: StepInputs  # set by open()

    # -- setup --------------------------------------------------------------------------
    def _prepare(self) -> None:
        cfg = self.config
        self.tokenizer = load_tokenizer(
            cfg.tokenizer or cfg.origin, cfg.trust_remote_code,
            fix="set `tokenizer:` in the stream config to a folder holding the tokenizer",
        )
        self.store = StatisticsStore(cfg, self.tokenizer, self.device, self.layout.cache_dir,
                                     self.progress)
        positions = load_model_config(Path(cfg.origin), cfg.trust_remote_code)
        self.validation = validation_batches(cfg, self.tokenizer, self.device, model_config=positions)
        self.selection = validation_batches(cfg, self.tokenizer, self.device, "selection", positions)
        self.inputs = StepInputs(cfg, self.state, self.store,
                                 ModelLoader(Path(cfg.origin), self.device, cfg.trust_remote_code))
        self.inputs.prepare()

    def _load_current(self) -> None:
        module = self.inputs.start_module()
        if self.state.step > 0:
            assert self.state.weights is not None
            self._load_weights(module, self.state.weights, self.state.step)
            logger.info("resumed after step %d from %s", self.state.step, self.state.weights)
        self.current = module

    def _load_weights(self, module: torch.nn.Module, name: str, step: int) -> None:
        weights = self.layout.internal / name
        if not weights.is_file():
            raise ArmError(f"cannot resume: {weights} (the weights after step {step}) is "
                           "missing. Re-run with --restart")
        load_model(module, str(weights), strict=True, device=str(self.device))

    # -- callbacks of the loop ----------------------------------------------------------
    def _statistics(self, step: int, current: Any) -> Path | None:
        assert self.current is not None
        if self.config.toward_legs() and self.config.arm.off_subspace == 1.0:
            return None  # R = I: a toward step needs no subspace (docs/streaming.md)
        what = (f"the start model {self.config.start_path()}" if step == 1
                else f"the result of step {step - 1}")
        return self.store.compute(self.current, self.layout.step_statistics(step),
                                  f"the current model (input of step {step}: {what})")

    def _score(self, weights: dict[str, torch.Tensor]) -> float:
        assert self.current is not None and self.validation is not None
        return heldout_loss(self.current, self.validation, weights)

    def _select_score(self, weights: dict[str, torch.Tensor]) -> float:
        assert self.current is not None and self.selection is not None
        return heldout_loss(self.current, self.selection, weights)

    def _write_step(self, step: int, leg: Leg, result: StepResult, record: dict) -> None:
        """Load the chosen weights; write the step's model folder and replay YAML."""
        assert self.current is not None and self.inputs.of_step is not None
        write_step_files(StepFiles(self.config, self.layout, self.current, self.tokenizer,
                                   self.parameters), step, self.inputs.of_step, leg, result,
                         record)


    def _commit(self, step: int, record: dict[str, Any], weights: Any) -> Any:
        """Persist a completed step: weights, then state (both atomic), then reports."""
        assert self.current is not None
        state = self.state
        if record["accepted"]:
            with atomic_file(self.layout.weights_file(step)) as tmp:
                save_model(self.current, str(tmp))
            state.step = step
            state.weights = self.layout.weights_file(step).name
            if self.config.mode != "fixed":
                assert self.inputs.of_step is not None
                state.consumed.append(str(self.inputs.of_step[1][0][0].path))
        else:
            state.status = "stopped"
            state.stop_reason = (f"{record['error']}. Stopped; the final model is the "
                                 f"{self._kept_text()}.")
        state.records.append(record)
        state.set_rng(torch.get_rng_state())
        save_state(self.layout, state)
        self._remove_unkept_weights()
        self._write_reports()
        if record["accepted"]:
            self._log_step(record)
            self.inputs.committed()
        self.inputs.of_step = None
        return self.current.state_dict()

    def _log_step(self, record: dict[str, Any]) -> None:
        logger.info(
            "step %d: learning rate %.4g, held-out loss %s, mean angle %s deg",
            record["step"], record["learning_rate"],
            "-" if record["val_loss"] is None else f"{record['val_loss']:.4f}",
            "-" if record["angle_mean_deg"] is None else f"{record['angle_mean_deg']:.2f}",
        )
        self.bar.update(1)
        postfix = {"eta": f"{record['learning_rate']:.3g}"}
        if record["val_loss"] is not None:
            postfix["loss"] = f"{record['val_loss']:.4f}"
        self.bar.set_postfix(postfix)

    def kept_step(self) -> int:
        """The step the final model is (``select``: best or last)."""
        return kept_step(self.config.select_rule(), self.state.start_loss, self.state.records)

    def _kept_text(self) -> str:
        kept = self.kept_step()
        if self.config.select_rule() == "last":
            good = " good" if self.state.status == "stopped" else ""
            why = "no validation set" if self.config.validation is None else "select: last"
            return f"last{good} step ({kept}; {why})"
        return f"step with the lowest held-out loss (step {kept}" + (
            ", the start model)" if kept == 0 else ")")

    def _remove_unkept_weights(self) -> None:
        """Delete every weights file but the current one and the kept step's."""
        keep = {self.state.weights, self.layout.weights_file(self.kept_step()).name}
        for path in self.layout.internal.glob("current-*.safetensors"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def _write_reports(self) -> None:
        records = mark_kept(self.state.records, self.kept_step())
        write_trajectory(self.layout.trajectory_jsonl, records)
        if records:
            plot_trajectory(self.layout.trajectory_png, records, self.state.start_loss,
                            title=f"arm-stream {self.layout.root.name}")

    # -- run ----------------------------------------------------------------------------
    def result(self) -> StreamResult:
        """The result described by the saved state."""
        status = "stopped" if self.state.status == "stopped" else "finished"
        kept = self.kept_step()
        return StreamResult(
            out=self.layout.root, model=self.layout.model_dir,
            records=mark_kept(self.state.records, kept), status=status,
            stop_reason=self.state.stop_reason, start_loss=self.state.start_loss, kept_step=kept,
        )

    def is_final(self) -> bool:
        """Whether the stream already ended and wrote its final model (no more work)."""
        return (self.state.status in ("finished", "stopped")
                and (self.layout.model_dir / "config.json").is_file())

    def wants_more(self) -> bool:
        """Whether a next step would run: not stopped, steps left, patience left."""
        total = self.config.total_steps()
        return (self.state.status == "running" and (total is None or self.state.step < total)
                and patience_left(self.config.patience, self.state.start_loss,
                                  self.state.records))

    def open(self) -> None:
        """Load the inputs and the current model (after the last completed step) and
        measure the start model's held-out loss; the stream's torch RNG is restored."""
        state = self.state
        self._prepare()
        self._load_current()
        self.inputs.release_origin()
        assert self.current is not None
        rng = state.get_rng()
        if rng is not None:
            torch.set_rng_state(rng)
        if self.resumed:
            self._write_reports()
        if self.validation is not None and state.start_loss is None:
            state.start_loss = heldout_loss(self.current, self.validation)
            if not math.isfinite(state.start_loss):
                raise ArmError(f"the start model's held-out loss is {state.start_loss}")
            logger.info("held-out loss of the start model: %.4f", state.start_loss)

    def advance(self, arrivals: Iterable[Path] | None = None) -> StreamTrace:
        """Run steps (after :meth:`open`) until the legs end, a step fails, the last step
        is done or patience runs out.

        ``arrivals``: watch mode only, checkpoints handed over from outside (each one
        complete, e.g. by a Trainer callback) that replace the watcher's polling; the
        steps end when they do.
        """
        state, cfg = self.state, self.config
        assert self.current is not None
        if arrivals is not None and cfg.mode != "watch":
            raise ArmError(f"checkpoints handed over from outside need mode watch, not {cfg.mode}")
        self.inputs.arrivals = None if arrivals is None else iter(arrivals)
        self.inputs.went_idle = False
        total = cfg.total_steps()
        self.bar = tqdm(total=total, initial=state.step, desc="arm-stream", unit="step",
                        disable=not self.progress)
        try:
            trace = run_steps(
                self.current.state_dict(), self.inputs.legs(), schedule=cfg.schedule, total=total,
                parameters=self.parameters, statistics=self._statistics,
                score=(self._select_score if self.selection is not None else
                       self._score if self.validation is not None else None),
                report=self._score if self.selection is not None else None,
                blocks=cfg.blocks,
                start_loss=state.start_loss, select=cfg.select_rule(), patience=cfg.patience,
                history=state.records, describe=self._write_step, commit=self._commit,
                written_dtype=self._written_dtype(),
            )
        finally:
            self.bar.close()
            self.inputs.arrivals = None
        if trace.failed:
            logger.error("%s", state.stop_reason)
        elif trace.stop_reason is not None:  # patience (exclusive with the legs running out)
            logger.info("%s", trace.stop_reason)
            state.stop_reason = trace.stop_reason
        return trace

    def run(self) -> StreamResult:
        """Run the remaining steps and write the final model."""
        state, cfg = self.state, self.config
        if self.is_final():
            logger.info("the stream in %s is already %s", self.layout.root, state.status)
            return self.result()
        self.open()
        trace = self.advance()
        if self.inputs.went_idle and not trace.failed:
            logger.info("no new complete checkpoint for %.0f s: stopping the watch",
                        cfg.watch.idle_timeout)
            state.stop_reason = (
                f"no new complete checkpoint appeared for {cfg.watch.idle_timeout:g} s")
        if state.step == 0 and state.status == "running" and cfg.mode == "watch":
            raise ArmError(
                f"no complete checkpoint appeared in {cfg.watch.dir} within "
                f"{cfg.watch.idle_timeout:g} s; nothing was merged (run again to keep waiting)"
            )
        self.finish()
        return self.result()

    def _load_kept(self) -> int:
        """Load the kept step's weights into the current model; returns the kept step."""
        assert self.current is not None
        kept = self.kept_step()
        if kept == self.state.step:
            return kept
        if kept == 0:
            self.current = self.inputs.start_module()
        else:
            self._load_weights(self.current, self.layout.weights_file(kept).name, kept)
        return kept

    def _written_dtype(self) -> torch.dtype:
        """The dtype of the final model: ``out_dtype``, else the origin's saved dtype."""
        if self.config.out_dtype:
            return DTYPES[self.config.out_dtype]
        return saved_dtype(Path(self.config.origin))

    def finish(self) -> None:
        """Write the final model (the kept step, atomically) and mark the stream complete."""
        state = self.state
        status = "stopped" if state.status == "stopped" else "finished"
        kept = self._load_kept()
        assert self.current is not None
        dtype = self._written_dtype()
        card = model_card(self.config, mark_kept(state.records, kept), status,
                          state.stop_reason, state.start_loss, kept)
        extras: dict[str, str | bytes] = {"README.md": card}
        for path in (self.layout.trajectory_jsonl, self.layout.trajectory_png):
            if path.is_file():  # copies; OUT/trajectory.* are the record
                extras[path.name] = path.read_bytes()
        save_model_folder(self.current, self.tokenizer, self.layout.model_dir, dtype, extras)
        state.status = status
        save_state(self.layout, state)
        for path in self.layout.internal.glob("current-*.safetensors"):
            path.unlink(missing_ok=True)
        logger.info("final model written to %s (%s after %d step(s); kept the %s)",
                    self.layout.model_dir, status, state.step, self._kept_text())


__all__ = ["StreamRunner"]
