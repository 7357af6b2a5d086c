"""The Streaming Merging loop: calibrate the current model, take one ARM step, repeat.

Step ``k`` (1-based):

1. statistics of the current model on the calibration texts (one calibration pass);
   statistics of ``from`` and the targets come from a cache keyed by content;
2. principal angles between the ``from`` and current subspaces (diagnostic);
3. one ARM merge per candidate rate through MergeKit's in-memory API
   (``merge_state_dicts(..., "arm", base="current")``), scored by held-out loss;
4. the kept result is loaded into the current model (kept in memory); its float32
   weights and ``state.json`` are written atomically, so a killed run resumes here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F  # noqa: N812
from filelock import FileLock, Timeout
from safetensors import safe_open
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from mergekit_arm.calibrate import (
    CalibrationOptions,
    calibrate,
    calibration_fingerprint,
    iter_batches,
    model_fingerprint,
    tokenize_texts,
)
from mergekit_arm.data import load_calibration_texts
from mergekit_arm.errors import (
    ArmConfigError,
    ArmError,
    ModelLoadError,
    NonFiniteError,
    StatisticsError,
)
from mergekit_arm.models import DTYPES, load_causal_lm, load_tokenizer, resolve_device
from mergekit_arm.rotation import principal_angles, select_subspace
from mergekit_arm.statistics import clear_cache, load_statistics
from mergekit_arm.stream.config import StreamConfig, parse_config, read_config_file
from mergekit_arm.stream.report import model_card, plot_trajectory, step_yaml, write_trajectory
from mergekit_arm.stream.schedule import scheduled_rate, step_candidates
from mergekit_arm.stream.state import (
    OutLayout,
    StreamState,
    open_state,
    remove_partial_writes,
    save_state,
)
from mergekit_arm.stream.watch import CheckpointWatcher, checkpoint_number, weight_files

logger = logging.getLogger("mergekit_arm.stream")

CURRENT, FROM = "current", "from"
LOG_FILE = "arm-stream.log"


@dataclass(frozen=True)
class StreamResult:
    """Outcome of a stream: the final model folder and one record per step."""

    out: Path
    model: Path
    records: list[dict[str, Any]]
    status: Literal["finished", "stopped"]
    stop_reason: str | None = None
    start_loss: float | None = None

    @property
    def steps(self) -> int:
        """Number of steps kept (a stopped stream's failed step is not counted)."""
        return sum(1 for r in self.records if r.get("accepted"))

    @property
    def final_loss(self) -> float | None:
        """Held-out loss of the final model (None without validation)."""
        kept = [r for r in self.records if r.get("accepted")]
        return kept[-1].get("val_loss") if kept else self.start_loss


@dataclass
class InputModel:
    """An input model held once in memory (float32) with its statistics file (only models
    that serve as a step's ``from`` need one; fixed-set targets have none)."""

    path: Path
    label: str
    module: torch.nn.Module
    statistics: Path | None


@dataclass
class _Timings:
    """Seconds spent per phase of one step."""

    seconds: dict[str, float] = field(
        default_factory=lambda: {"calibration": 0.0, "merge": 0.0, "evaluation": 0.0}
    )

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


# -- helpers ------------------------------------------------------------------------------


def check_paths(config: StreamConfig) -> None:
    """Raise an error naming the config key of every path that does not exist."""
    models = [("origin", config.origin), ("start", config.start)]
    models += [(f"checkpoints[{i}].model", c.model) for i, c in enumerate(config.checkpoints)]
    for key, value in models:
        if value is None:
            continue
        path = Path(value)
        if not path.exists():
            raise ArmConfigError(f"`{key}`: model path {path} does not exist")
        if not (path / "config.json").is_file():
            raise ArmConfigError(
                f"`{key}`: {path} is not a Hugging Face model folder (no config.json)"
            )
    others = [("tokenizer", config.tokenizer), ("calibration.data", config.calibration.data)]
    if config.validation is not None:
        others.append(("validation.data", config.validation.data))
    if config.mode == "watch":
        others.append(("watch.dir (--watch)", config.watch.dir))
    for key, value in others:
        if value is not None and not Path(value).exists():
            raise ArmConfigError(f"`{key}`: {value} does not exist")


def saved_dtype(folder: Path) -> torch.dtype:
    """The dtype a model folder's config.json declares (float32 if none)."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return torch.float32
    name = data.get("dtype") or data.get("torch_dtype") or "float32"
    return DTYPES.get(str(name).replace("torch.", ""), torch.float32)


def save_model_folder(
    module: torch.nn.Module,
    tokenizer: Any,
    folder: Path,
    dtype: torch.dtype = torch.float32,
    extra_files: dict[str, str | bytes] | None = None,
) -> None:
    """Write a loadable Hugging Face folder (weights in ``dtype``, tokenizer) atomically."""
    from mergekit_arm._io import atomic_directory

    with atomic_directory(folder, overwrite=True) as tmp:
        state = None
        if dtype != torch.float32:
            state = {name: t.to(dtype) for name, t in module.state_dict().items()}
        module.save_pretrained(tmp, state_dict=state)
        # save_pretrained records the module's (float32) dtype; declare the written one
        config_file = tmp / "config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["dtype"] = str(dtype).replace("torch.", "")
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tokenizer.save_pretrained(tmp)
        for name, content in (extra_files or {}).items():
            target = tmp / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")


def file_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a model folder's safetensors headers (no tensor is read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in weight_files(folder) or []:
        if file.suffix != ".safetensors" or not file.is_file():
            continue
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


@torch.inference_mode()
def heldout_loss(
    module: torch.nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    parameters: dict[str, torch.Tensor] | None = None,
) -> float:
    """Mean next-token loss (nats per predicted token, padding excluded).

    With ``parameters`` the module runs with those tensors in place of its own
    (``torch.func.functional_call``), so a candidate is scored without loading it.
    """
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    for ids, mask in batches:
        kwargs = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
        if parameters is None:
            output = module(**kwargs)
        else:
            output = torch.func.functional_call(
                module, parameters, args=(), kwargs=kwargs, tie_weights=False, strict=False
            )
        logits = output.logits[:, :-1, :].float()
        labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
            reduction="sum",
        )
        total += loss.double().cpu()
        count += int((labels != -100).sum())
    if count == 0:
        raise ArmConfigError("the validation set yields no tokens to predict")
    return float(total / count)


def angle_summary(
    from_statistics: Path, current_statistics: Path, rank: int, energy: float | None
) -> tuple[float | None, float | None]:
    """Mean and max principal angle (degrees) over every linear input, at ``rank``/``energy``."""
    before, after = load_statistics(from_statistics), load_statistics(current_statistics)
    angles = []
    for name in sorted(after.weight_names):
        if name in after.aliases or name not in before:
            continue
        a, b = before[name], after[name]
        s_from = select_subspace(a.basis, a.eigenvalues, a.trace, rank, energy)
        s_cur = select_subspace(b.basis, b.eigenvalues, b.trace, rank, energy)
        angles.append(principal_angles(s_from, s_cur))
    if not angles:
        return None, None
    degrees = torch.rad2deg(torch.cat(angles).double())
    return float(degrees.mean()), float(degrees.max())


# -- the loop ---------------------------------------------------------------------------


class StreamRunner:
    """Runs (or resumes) one stream described by a resolved config in ``layout``."""

    def __init__(
        self,
        config: StreamConfig,
        layout: OutLayout,
        state: StreamState,
        resumed: bool,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.layout = layout
        self.state = state
        self.resumed = resumed
        self.progress = progress
        self.device = resolve_device(config.device)
        self.origin: InputModel | None = None
        self.fixed_targets: list[tuple[InputModel, float]] = []
        self.previous: InputModel | None = None  # checkpoints/watch: c_{t-1}
        self.current: torch.nn.Module | None = None
        self.watcher: CheckpointWatcher | None = None

    # -- setup --------------------------------------------------------------------------
    def _prepare(self) -> None:
        cfg = self.config
        tokenizer_path = cfg.tokenizer or cfg.origin
        try:
            self.tokenizer = load_tokenizer(tokenizer_path, cfg.trust_remote_code)
        except ModelLoadError as error:
            raise ModelLoadError(f"{error} (or set `tokenizer:` in the stream config)") from None
        cal = cfg.calibration
        self.calibration_texts = load_calibration_texts(cal.data, cal.samples, cal.text_mode)
        tokens = tokenize_texts(self.tokenizer, self.calibration_texts, cal.max_length)
        if not tokens:
            raise ArmConfigError("`calibration.data` yields no tokens with this tokenizer")
        self.calibration_fp = calibration_fingerprint(tokens)
        self.calibration_options = CalibrationOptions(
            data=cal.data, samples=cal.samples, max_length=cal.max_length,
            batch_size=cal.batch_size, rank=cal.rank, device=str(self.device), dtype="float32",
            text_mode=cal.text_mode, trust_remote_code=cfg.trust_remote_code, mode=cal.mode,
        )
        self.validation_batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if cfg.validation is not None:
            self.validation_batches = self._validation_batches()

        origin_path = Path(cfg.origin)
        logger.info("loading origin %s", origin_path)
        origin_module = self._load_module(origin_path, "origin")
        self.origin_type = getattr(origin_module.config, "model_type", None)
        self.origin_shapes = {n: tuple(t.shape) for n, t in origin_module.state_dict().items()}
        # Every input is checked against the origin before anything is calibrated.
        fixed: list[tuple[Path, str, torch.nn.Module, float]] = []
        if cfg.mode == "checkpoints":
            for index, entry in enumerate(cfg.checkpoints[: cfg.total_steps()]):
                self._check_header(Path(entry.model), f"checkpoints[{index}]")
        elif cfg.mode == "fixed":
            for index, entry in enumerate(cfg.checkpoints):
                label = f"checkpoints[{index}]"
                logger.info("loading %s %s", label, entry.model)
                module = self._load_module(Path(entry.model), label)
                self._check_architecture(module, Path(entry.model), label)
                fixed.append((Path(entry.model), label, module, entry.weight))
        origin_stats = self._input_statistics(origin_module, origin_path, "origin")
        self.origin = InputModel(origin_path, "origin", origin_module, origin_stats)
        for path, label, module, weight in fixed:
            # Targets only contribute W_to to the displacement: the kernel reads the
            # statistics of `from` and of the current model, so none are computed here.
            self.fixed_targets.append((InputModel(path, label, module, None), weight))
        if cfg.mode == "watch":
            w = cfg.watch
            assert w.dir is not None
            self.watcher = CheckpointWatcher(
                Path(w.dir), w.pattern, w.settle_seconds, w.poll_seconds, w.idle_timeout
            )
        if cfg.mode != "fixed" and self.state.consumed:
            last = Path(self.state.consumed[-1])
            if not last.exists():
                raise ArmError(
                    f"cannot resume: checkpoint {last}, the `from` model of the next step, is gone "
                    "(deleted by the trainer's save_total_limit?). Re-run with --restart"
                )
            self.previous = self._load_input(last, f"checkpoint {last.name}")

    def _validation_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        val = self.config.validation
        assert val is not None
        texts = load_calibration_texts(val.data, None, val.text_mode)[val.offset:]
        texts = texts[: val.samples]
        source = val.data or "the shipped corpus"
        if not texts:
            raise ArmConfigError(
                f"`validation`: {source} has no texts after `validation.offset` ({val.offset})"
            )
        tokens = tokenize_texts(self.tokenizer, texts, self.config.validation_max_length())
        if sum(max(len(ids) - 1, 0) for ids in tokens) == 0:
            raise ArmConfigError(
                f"`validation.data`: {source} yields no tokens to predict with this tokenizer "
                "(every text is shorter than 2 tokens); use longer held-out texts"
            )
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return [
            (ids.to(self.device), mask.to(self.device))
            for ids, mask in iter_batches(tokens, val.batch_size, pad)
        ]

    def _load_module(self, path: Path, label: str) -> torch.nn.Module:
        try:
            return load_causal_lm(path, torch.float32, str(self.device), self.config.trust_remote_code)
        except ModelLoadError as error:
            raise ModelLoadError(f"{label}: {error}") from None

    def _check_architecture(self, module: torch.nn.Module, path: Path, label: str) -> None:
        origin = self.config.origin
        model_type = getattr(module.config, "model_type", None)
        if model_type != self.origin_type:
            raise ArmConfigError(
                f"{label} {path} is a {model_type!r} model but the origin {origin} is "
                f"{self.origin_type!r}: every checkpoint must have the origin's architecture"
            )
        shapes = {name: tuple(t.shape) for name, t in module.state_dict().items()}
        missing = sorted(set(self.origin_shapes) - set(shapes))
        extra = sorted(set(shapes) - set(self.origin_shapes))
        if missing or extra:
            name, where = (missing[0], "has no tensor") if missing else (extra[0], "has a tensor")
            side = "that the origin has" if missing else "that the origin lacks"
            raise ArmConfigError(
                f"{label} {path} {where} {name} {side} ({len(missing)} missing, {len(extra)} "
                f"extra): it is not a checkpoint of the origin {origin}'s architecture"
            )
        for name, shape in self.origin_shapes.items():
            if shapes[name] != shape:
                raise ArmConfigError(
                    f"{label} {path}: tensor {name} has shape {shapes[name]} but {shape} in the "
                    f"origin {origin}; checkpoints must have the origin's shapes"
                )

    def _check_header(self, path: Path, label: str) -> None:
        """Fail fast: compare a checkpoint's config and weight-file shapes with the origin's."""
        try:
            model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError) as error:
            raise ArmConfigError(f"{label} {path}: unreadable config.json ({error})") from None
        if model_type != self.origin_type:
            raise ArmConfigError(
                f"{label} {path} is a {model_type!r} model but the origin {self.config.origin} is "
                f"{self.origin_type!r}: every checkpoint must have the origin's architecture"
            )
        shapes = file_shapes(path)
        for name, shape in file_shapes(Path(self.config.origin)).items():
            if name in shapes and shapes[name] != shape:
                raise ArmConfigError(
                    f"{label} {path}: tensor {name} has shape {shapes[name]} but {shape} in the "
                    f"origin {self.config.origin}; checkpoints must have the origin's shapes"
                )

    def _load_input(self, path: Path, label: str) -> InputModel:
        """Load an input model, check it against the origin, get its (cached) statistics."""
        logger.info("loading %s %s", label, path)
        module = self._load_module(path, label)
        self._check_architecture(module, path, label)
        return InputModel(path, label, module, self._input_statistics(module, path, label))

    def _statistics(self, module: torch.nn.Module, path: Path, label: str) -> Path:
        """``path``, (re)computed unless it already holds this model's statistics."""
        fingerprint = model_fingerprint(module)
        if path.is_file():
            try:
                existing = load_statistics(path)
                if (
                    existing.model_fingerprint == fingerprint
                    and existing.calibration_fingerprint == self.calibration_fp
                    and existing.metadata.get("rank") == str(self.config.calibration.rank)
                ):
                    logger.debug("reusing statistics %s", path)
                    return path
            except StatisticsError:
                pass
        logger.info("calibrating %s", label)
        calibrate(
            module, path, self.calibration_options, tokenizer=self.tokenizer,
            texts=self.calibration_texts, model_label=label, progress=self.progress,
        )
        clear_cache()
        return path

    def _input_statistics(self, module: torch.nn.Module, path: Path, label: str) -> Path:
        cal = self.config.calibration
        key = hashlib.sha256(
            f"{model_fingerprint(module)}|{self.calibration_fp}|rank={cal.rank}|"
            f"batch={cal.batch_size}|mode={cal.mode}|float32".encode()
        ).hexdigest()[:32]
        return self._statistics(module, self.layout.cache_dir / f"{key}.safetensors", str(path))

    def _load_current(self) -> None:
        start = Path(self.config.start_path())
        loaded = [self.origin] + [m for m, _ in self.fixed_targets] + [self.previous]
        same = next((m for m in loaded if m is not None and m.path == start), None)
        if same is not None:  # already loaded and checked: copy instead of reading it again
            module = copy.deepcopy(same.module)
        else:
            module = self._load_module(start, "start")
            self._check_architecture(module, start, "start")
        if self.state.step > 0:
            assert self.state.weights is not None
            weights = self.layout.internal / self.state.weights
            if not weights.is_file():
                raise ArmError(
                    f"cannot resume: {weights} (the weights after step {self.state.step}) is "
                    "missing. Re-run with --restart"
                )
            load_model(module, str(weights), strict=True, device=str(self.device))
            logger.info("resumed after step %d from %s", self.state.step, weights)
        self.current = module

    # -- one step -----------------------------------------------------------------------
    def _inputs(self, step: int) -> tuple[InputModel, list[tuple[InputModel, float]]] | None:
        """``from`` and the weighted targets of ``step``; None when the watch went idle."""
        cfg = self.config
        if cfg.mode == "fixed":
            assert self.origin is not None
            return self.origin, self.fixed_targets
        if cfg.mode == "checkpoints":
            entry = cfg.checkpoints[step - 1]
            path, weight = Path(entry.model), entry.weight
            label = f"checkpoints[{step - 1}]"
        else:
            assert self.watcher is not None
            after = checkpoint_number(self.state.consumed[-1]) if self.state.consumed else None
            logger.info("watching %s for a checkpoint after %s", self.watcher.directory, after)
            found = self.watcher.next_checkpoint(after)
            if found is None:
                return None
            path, weight, label = found, 1.0, f"checkpoint {found.name}"
        source = self.previous or self.origin
        assert source is not None
        target = self._load_input(path, label)
        return source, [(target, weight)]

    def _advance_inputs(self, targets: list[tuple[InputModel, float]]) -> None:
        """Checkpoints/watch: the step's target becomes the next step's ``from``."""
        if self.config.mode != "fixed":
            self.previous = targets[0][0]
            self._release_origin()

    def _release_origin(self) -> None:
        """Checkpoints/watch: after step 1 the origin is no input any more; free it."""
        if self.config.mode != "fixed" and self.previous is not None:
            self.origin = None

    def _arm_parameters(self) -> dict[str, Any]:
        return self.config.arm.merge_parameters()

    def _merge(
        self,
        source: InputModel,
        targets: Sequence[tuple[InputModel, float]],
        current_statistics: Path,
        learning_rate: float,
    ) -> dict[str, torch.Tensor]:
        """One ARM step through MergeKit's in-memory API; the current model is not changed."""
        from mergekit.merge_methods import merge_state_dicts

        assert self.current is not None
        models = {CURRENT: self.current.state_dict(), FROM: source.module.state_dict()}
        weights = {CURRENT: 1.0, FROM: 1.0}
        activations = {CURRENT: str(current_statistics), FROM: str(source.statistics)}
        for index, (target, weight) in enumerate(targets):
            key = f"to-{index}"
            models[key] = target.module.state_dict()
            weights[key] = float(weight)
            activations[key] = str(current_statistics)
        parameters = {
            "learning_rate": float(learning_rate),
            "origin": {key: key == FROM for key in models},
            "weight": weights,
            "activations": activations,
            "verify_statistics": True,
            **self._arm_parameters(),
        }
        with torch.no_grad():
            return merge_state_dicts(
                models, "arm", base=CURRENT, parameters=parameters, dtype=torch.float32
            )

    def _step_base(self, step: int, source: InputModel, targets: Sequence[tuple[InputModel, float]]) -> Path:
        """The folder the step's YAML uses as base_model (distinct from its other inputs)."""
        start = Path(self.config.start_path())
        inputs = {source.path} | {t.path for t, _ in targets}
        if step == 1 and start not in inputs:
            return start
        return self.layout.step_model(step - 1)

    def _saves(self, step: int) -> bool:
        every = self.config.save_every
        return every is not None and step % every == 0

    def _run_step(
        self, step: int, source: InputModel, targets: list[tuple[InputModel, float]]
    ) -> dict[str, Any]:
        cfg = self.config
        total = cfg.total_steps()
        assert self.current is not None
        started = time.perf_counter()
        timer = _Timings()
        base = self._step_base(step, source, targets)
        if step == 1 and base == self.layout.step_model(0) and cfg.save_every is not None:
            save_model_folder(self.current, self.tokenizer, base)

        with timer.phase("calibration"):
            stats = self._statistics(
                self.current, self.layout.step_statistics(step),
                f"{self.layout.root} (input of step {step})",
            )
        angle_mean, angle_max = angle_summary(source.statistics, stats, cfg.arm.rank, cfg.arm.energy)
        scheduled = scheduled_rate(cfg.schedule, step, total)
        tries: list[dict[str, Any]] = []
        best: tuple[float | None, float, dict[str, torch.Tensor]] | None = None
        for multiplier, rate in step_candidates(cfg.schedule, step, total):
            attempt: dict[str, Any] = {"multiplier": multiplier, "learning_rate": rate,
                                       "val_loss": None}
            try:
                with timer.phase("merge"):
                    merged = self._merge(source, targets, stats, rate)
            except NonFiniteError as error:
                attempt["error"] = str(error)
                tries.append(attempt)
                logger.warning("step %d: learning rate %.4g gives non-finite weights", step, rate)
                continue
            loss = None
            if self.validation_batches is not None:
                with timer.phase("evaluation"):
                    loss = heldout_loss(self.current, self.validation_batches, merged)
                if not math.isfinite(loss):
                    attempt["error"] = f"held-out loss is {loss}"
                    tries.append(attempt)
                    logger.warning("step %d: learning rate %.4g gives held-out loss %s",
                                   step, rate, loss)
                    del merged
                    continue
                attempt["val_loss"] = loss
            tries.append(attempt)
            if best is None or (loss is not None and best[0] is not None and loss < best[0]):
                best = (loss, rate, merged)
            else:
                del merged

        previous_loss = self._last_loss()
        record: dict[str, Any] = {
            "step": step,
            "accepted": best is not None,
            "learning_rate": best[1] if best is not None else None,
            "scheduled_learning_rate": scheduled,
            "val_loss": best[0] if best is not None else None,
            "val_loss_before": previous_loss,
            "line_search": tries if cfg.schedule.kind == "line_search" else None,
            "angle_mean_deg": angle_mean,
            "angle_max_deg": angle_max,
            "from": str(source.path),
            "to": [{"model": str(t.path), "weight": w} for t, w in targets],
            "statistics": {"current": self.layout.relative(stats),
                           "from": self.layout.relative(source.statistics)},
        }
        if best is None:
            reason = "; ".join(
                f"learning rate {t['learning_rate']:.4g}: {t.get('error', 'non-finite')}"
                for t in tries
            )
            record["error"] = f"step {step} produced no finite result ({reason})"
        else:
            loss, rate, merged = best
            self.current.load_state_dict(merged, strict=True)
            del merged, best
            saved = self._saves(step)
            if saved:
                save_model_folder(self.current, self.tokenizer, self.layout.step_model(step))
            replayable = base.is_dir()
            yaml_path = self.layout.step_yaml(step)
            from mergekit_arm._io import write_text_atomic

            write_text_atomic(yaml_path, step_yaml(
                step=step, learning_rate=rate, base_model=base, base_statistics=stats,
                origin=source.path, origin_statistics=source.statistics,
                targets=[(t.path, w) for t, w in targets], arm_parameters=self._arm_parameters(),
                replayable=replayable, output=self.layout.step_model(step) if saved else None,
                yaml_path=yaml_path,
            ))
            record["yaml"] = self.layout.relative(yaml_path)
            record["yaml_replayable"] = replayable
            record["saved_model"] = self.layout.relative(self.layout.step_model(step)) if saved else None
        seconds = dict(timer.seconds)
        seconds["other"] = time.perf_counter() - started - sum(seconds.values())
        seconds["total"] = time.perf_counter() - started
        record["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
        return record

    def _last_loss(self) -> float | None:
        kept = [r for r in self.state.records if r.get("accepted")]
        return kept[-1].get("val_loss") if kept else self.state.start_loss

    def _commit(self, step: int, record: dict[str, Any], consumed: Path | None) -> None:
        """Persist a completed step: weights, then state (both atomic), then reports."""
        assert self.current is not None
        from mergekit_arm._io import atomic_file

        state = self.state
        if record["accepted"]:
            weights = self.layout.weights_file(step)
            with atomic_file(weights) as tmp:
                save_model(self.current, str(tmp))
            old = state.weights
            state.step = step
            state.weights = weights.name
            if consumed is not None:
                state.consumed.append(str(consumed))
        else:
            old = None
            state.status = "stopped"
            state.stop_reason = (
                f"{record['error']}. Stopped; the final model is the last good step "
                f"({state.step})."
            )
        state.records.append(record)
        state.set_rng(torch.get_rng_state())
        save_state(self.layout, state)
        if old is not None and old != state.weights:
            (self.layout.internal / old).unlink(missing_ok=True)
        self._write_reports()

    def _write_reports(self) -> None:
        write_trajectory(self.layout.trajectory_jsonl, self.state.records)
        if self.state.records:
            plot_trajectory(self.layout.trajectory_png, self.state.records,
                            title=f"arm-stream {self.layout.root.name}")

    # -- run ----------------------------------------------------------------------------
    def result(self) -> StreamResult:
        """The result described by the saved state."""
        status = "stopped" if self.state.status == "stopped" else "finished"
        return StreamResult(
            out=self.layout.root, model=self.layout.model_dir, records=list(self.state.records),
            status=status, stop_reason=self.state.stop_reason, start_loss=self.state.start_loss,
        )

    def run(self) -> StreamResult:
        """Run the remaining steps and write the final model."""
        state = self.state
        if state.status in ("finished", "stopped") and (self.layout.model_dir / "config.json").is_file():
            logger.info("the stream in %s is already %s", self.layout.root, state.status)
            return self.result()
        self._prepare()
        self._load_current()
        self._release_origin()
        assert self.current is not None
        rng = state.get_rng()
        if rng is not None:
            torch.set_rng_state(rng)
        if self.resumed:
            self._write_reports()
        if self.validation_batches is not None and state.start_loss is None:
            state.start_loss = heldout_loss(self.current, self.validation_batches)
            if not math.isfinite(state.start_loss):
                raise ArmError(f"the start model's held-out loss is {state.start_loss}")
            logger.info("held-out loss of the start model: %.4f", state.start_loss)

        total = self.config.total_steps()
        bar = tqdm(total=total, initial=state.step, desc="arm-stream", unit="step",
                   disable=not self.progress)
        try:
            while state.status == "running" and (total is None or state.step < total):
                step = state.step + 1
                inputs = self._inputs(step)
                if inputs is None:
                    logger.info("no new complete checkpoint for %.0f s: stopping the watch",
                                self.config.watch.idle_timeout)
                    state.stop_reason = (
                        f"no new complete checkpoint appeared for {self.config.watch.idle_timeout:g} s"
                    )
                    break
                source, targets = inputs
                record = self._run_step(step, source, targets)
                consumed = targets[0][0].path if self.config.mode != "fixed" else None
                self._commit(step, record, consumed)
                if not record["accepted"]:
                    logger.error("%s", state.stop_reason)
                    break
                self._advance_inputs(targets)
                logger.info(
                    "step %d: learning rate %.4g, held-out loss %s, mean angle %s deg",
                    step, record["learning_rate"],
                    "-" if record["val_loss"] is None else f"{record['val_loss']:.4f}",
                    "-" if record["angle_mean_deg"] is None else f"{record['angle_mean_deg']:.2f}",
                )
                bar.update(1)
                postfix = {"eta": f"{record['learning_rate']:.3g}"}
                if record["val_loss"] is not None:
                    postfix["loss"] = f"{record['val_loss']:.4f}"
                bar.set_postfix(postfix)
                del inputs, source, targets  # hold at most from, to and the current model
        finally:
            bar.close()
        if state.step == 0 and state.status == "running" and self.config.mode == "watch":
            raise ArmError(
                f"no complete checkpoint appeared in {self.config.watch.dir} within "
                f"{self.config.watch.idle_timeout:g} s; nothing was merged (run again to keep waiting)"
            )
        self._finish()
        return self.result()

    def _finish(self) -> None:
        """Write the final model (atomically) and mark the stream complete."""
        assert self.current is not None
        state = self.state
        status = "stopped" if state.status == "stopped" else "finished"
        dtype = DTYPES[self.config.out_dtype] if self.config.out_dtype else saved_dtype(
            Path(self.config.origin))
        extras: dict[str, str | bytes] = {
            "README.md": model_card(self.config, state.records, status, state.stop_reason,
                                    state.start_loss),
        }
        for path in (self.layout.trajectory_jsonl, self.layout.trajectory_png):
            if path.is_file():
                extras[path.name] = path.read_bytes()
        save_model_folder(self.current, self.tokenizer, self.layout.model_dir, dtype, extras)
        state.status = status
        save_state(self.layout, state)
        if state.weights is not None:
            (self.layout.internal / state.weights).unlink(missing_ok=True)
        logger.info("final model written to %s (%s after %d step(s))",
                    self.layout.model_dir, status, state.step)


# -- public entry point -------------------------------------------------------------------


def _as_config(
    config: StreamConfig | str | os.PathLike | dict, watch: str | os.PathLike | None
) -> StreamConfig:
    """Validate ``config`` (with ``--watch DIR`` applied) and make its paths absolute."""
    if isinstance(config, StreamConfig):
        source, data = "<StreamConfig>", config.model_dump(exclude_unset=True)
    elif isinstance(config, dict):
        source, data = "<dict>", copy.deepcopy(config)
    else:
        source, data = str(config), read_config_file(config)
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
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-file loading/saving bars (the stream shows its own)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


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


def run_stream(
    config: StreamConfig | str | os.PathLike | dict,
    out: str | os.PathLike,
    *,
    restart: bool = False,
    watch: str | os.PathLike | None = None,
    progress: bool = True,
) -> StreamResult:
    """Run (or resume) a Streaming Merging run described by ``config`` into ``out``.

    ``config`` is a :class:`StreamConfig`, a mapping, or the path of a YAML file.
    Re-running with the same config continues after the last completed step; a
    different config is refused unless ``restart``. ``watch`` follows a training
    output folder (mode ``watch``). Returns the final model folder and the records.
    """
    from mergekit_arm import register

    register()
    resolved = _as_config(config, watch)
    check_paths(resolved)
    layout = OutLayout(out)
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
        with _log_to_file(layout.root / LOG_FILE), _quiet_transformers():
            remove_partial_writes(layout)
            state, resumed = open_state(layout, resolved.model_dump(mode="json"), restart)
            if not resumed:
                save_state(layout, state)
            logger.info("%s stream in %s (%d step(s) done)",
                        "resuming" if resumed else "starting", layout.root, state.step)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(resolved.seed)
                runner = StreamRunner(resolved, layout, state, resumed, progress)
                return runner.run()
    finally:
        lock.release()


__all__ = ["InputModel", "StreamResult", "StreamRunner", "angle_summary", "check_paths",
           "heldout_loss", "run_stream", "save_model_folder"]
