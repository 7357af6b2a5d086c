"""Where a stream keeps its files, and its resume state (written atomically after each step).

Layout of ``OUT`` (see ``docs/streaming.md``)::

    OUT/model/                 the final model (written once, atomically, at the end)
    OUT/trajectory.jsonl       one JSON line per step (rewritten atomically after each step)
    OUT/trajectory.png         held-out loss and mean principal angle against step
    OUT/steps/step-K.yml       mergekit YAML that replays step K with plain mergekit-yaml
    OUT/steps/step-K/          the model after step K (only every `save_every` steps)
    OUT/.arm-stream/state.json resume state: config, hash, completed steps, records, RNG
    OUT/.arm-stream/current-K.safetensors   float32 weights after the last completed step K
    OUT/.arm-stream/stats/step-K.safetensors statistics of step K's input (current) model
    OUT/.arm-stream/stats/cache/<key>.safetensors statistics of origin and checkpoints,
                               keyed by (model fingerprint, calibration fingerprint, rank)
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from mergekit_arm import __version__
from mergekit_arm._io import remove_stale_temporaries, write_text_atomic
from mergekit_arm._yaml import short_repr
from mergekit_arm.errors import ArmConfigError, ArmError
from mergekit_arm.stream.watch import weight_files

logger = logging.getLogger("mergekit_arm.stream")

STATE_FORMAT_VERSION = 1
INTERNAL = ".arm-stream"
SAMPLES_PER_FILE = 64  # blocks of SAMPLE_BYTES read evenly across each weight file
SAMPLE_BYTES = 1 << 16


class OutLayout:
    """Paths of everything a stream writes under ``OUT``."""

    def __init__(self, out: str | Path) -> None:
        self.root = Path(out).expanduser().resolve()
        self.internal = self.root / INTERNAL
        self.state_file = self.internal / "state.json"
        self.lock_file = self.internal / "lock"
        self.stats_dir = self.internal / "stats"
        self.cache_dir = self.stats_dir / "cache"
        self.steps_dir = self.root / "steps"
        self.model_dir = self.root / "model"
        self.trajectory_jsonl = self.root / "trajectory.jsonl"
        self.trajectory_png = self.root / "trajectory.png"

    def weights_file(self, step: int) -> Path:
        """Float32 weights of the current model after ``step`` completed steps."""
        return self.internal / f"current-{step}.safetensors"

    def step_statistics(self, step: int) -> Path:
        """Statistics of the model step ``step`` starts from."""
        return self.stats_dir / f"step-{step}.safetensors"

    def step_yaml(self, step: int) -> Path:
        """The mergekit YAML that replays step ``step``."""
        return self.steps_dir / f"step-{step}.yml"

    def step_model(self, step: int) -> Path:
        """The model after ``step`` steps (``step-0``: the start model in float32)."""
        return self.steps_dir / f"step-{step}"

    def relative(self, path: Path) -> str:
        """``path`` relative to ``OUT`` (for records), or absolute when outside it."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


class StreamState(BaseModel):
    """What a resumed run needs: the config it belongs to and the completed steps."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = STATE_FORMAT_VERSION
    created_by: str = f"mergekit-arm {__version__}"
    config: dict[str, Any]
    config_hash: str
    step: int = 0
    status: Literal["running", "finished", "stopped"] = "running"
    stop_reason: str | None = None
    weights: str | None = Field(None, description="file (in .arm-stream) of the current weights")
    consumed: list[str] = Field(default_factory=list, description="checkpoints merged, in order")
    fingerprints: dict[str, str] = Field(
        default_factory=dict, description="input model path -> weights_fingerprint when first used")
    start_loss: float | None = None
    records: list[dict[str, Any]] = Field(default_factory=list)
    rng: str | None = Field(None, description="torch CPU RNG state after the last step, base64")

    def set_rng(self, state: torch.Tensor) -> None:
        """Remember the torch RNG state."""
        self.rng = base64.b64encode(state.numpy().tobytes()).decode("ascii")

    def get_rng(self) -> torch.Tensor | None:
        """The remembered torch RNG state, if any."""
        if self.rng is None:
            return None
        raw = bytearray(base64.b64decode(self.rng))
        return torch.frombuffer(raw, dtype=torch.uint8).clone()


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a (resolved) config."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, as ``key: old -> new`` lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else str(key)
            lines += config_diff(old.get(key), new.get(key), path)
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        lines = []
        for index, (a, b) in enumerate(zip(old, new)):
            lines += config_diff(a, b, f"{prefix}[{index}]")
        return lines
    return [] if old == new else [
        f"{prefix or '(config)'}: {short_repr(old)} -> {short_repr(new)}"]


def weights_fingerprint(folder: str | Path) -> str | None:
    """Cheap content fingerprint of a model folder's weight files (None if it has none).

    SHA-256 over, per weight file: its name, its size, its safetensors header (the first
    ``8 + n`` bytes) and ``SAMPLES_PER_FILE`` blocks of ``SAMPLE_BYTES`` read evenly from
    start to end. Weights re-written at the same path (another training run, a copy of
    another checkpoint) change it; a ``touch`` or a byte-identical copy do not.
    """
    files = weight_files(Path(folder))
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        if not file.is_file():
            return None
        size = file.stat().st_size
        digest.update(f"{file.name}\0{size}\0".encode())
        with open(file, "rb") as handle:
            head = handle.read(8)
            digest.update(head)
            if file.suffix == ".safetensors" and len(head) == 8:
                digest.update(handle.read(min(int.from_bytes(head, "little"), size)))
            step = max(size - SAMPLE_BYTES, 0) / max(SAMPLES_PER_FILE - 1, 1)
            for index in range(SAMPLES_PER_FILE):
                handle.seek(int(index * step))
                digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def input_paths(state: StreamState) -> list[str]:
    """The model paths a resumed run relies on: origin, start, a fixed set, consumed ones."""
    config = state.config
    paths = [config.get("origin"), config.get("start")]
    if config.get("mode") == "fixed":
        paths += [entry.get("model") for entry in config.get("checkpoints") or []]
    paths += state.consumed
    return [str(path) for path in dict.fromkeys(paths) if path]


def record_fingerprints(state: StreamState) -> None:
    """Remember the fingerprint of every input path not fingerprinted yet."""
    for path in input_paths(state):
        if path not in state.fingerprints:
            fingerprint = weights_fingerprint(path)
            if fingerprint is not None:
                state.fingerprints[path] = fingerprint


def changed_inputs(fingerprints: dict[str, str]) -> list[str]:
    """The paths of ``fingerprints`` (path -> :func:`weights_fingerprint` when used) whose
    weights changed since; paths that are gone or hold no weights now are not listed."""
    changed = []
    for path, recorded in fingerprints.items():
        if not Path(path).exists():
            continue
        current = weights_fingerprint(path)
        if current is not None and current != recorded:
            changed.append(path)
    return changed


def check_fingerprints(state: StreamState) -> None:
    """Refuse to resume when an input's weights changed since the run used them.

    Paths that are gone are left to the caller (a Trainer's ``save_total_limit`` deletes
    old checkpoints; only the next step's ``from`` model must still exist).
    """
    changed = changed_inputs(state.fingerprints)
    if changed:
        raise ArmError(
            f"cannot resume: the weights of {changed[0]} changed since this stream used them "
            f"({state.step} step(s) done); resuming would mix old and new weights in one "
            "trajectory. Restore the original checkpoint, or re-run with --restart to start "
            "over from the current files"
        )


def save_state(layout: OutLayout, state: StreamState) -> None:
    """Fingerprint new inputs (see :func:`record_fingerprints`), then write ``state.json``
    atomically."""
    record_fingerprints(state)
    write_text_atomic(layout.state_file, state.model_dump_json(indent=1))


def read_state(layout: OutLayout) -> StreamState | None:
    """The saved state, or None when this OUT has none."""
    if not layout.state_file.is_file():
        return None
    try:
        return StreamState.model_validate_json(layout.state_file.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ArmError(
            f"{layout.state_file} is unreadable ({str(error).splitlines()[0]}); it was not "
            "written by this mergekit-arm version. Re-run with --restart to start over"
        ) from None


def clear_outputs(layout: OutLayout) -> None:
    """Remove a previous run's outputs (the statistics cache is kept: it is keyed by content)."""
    for path in (layout.model_dir, layout.steps_dir):
        shutil.rmtree(path, ignore_errors=True)
    for path in (layout.trajectory_jsonl, layout.trajectory_png, layout.state_file):
        path.unlink(missing_ok=True)
    if layout.internal.is_dir():
        for path in layout.internal.glob("current-*.safetensors"):
            path.unlink(missing_ok=True)
    if layout.stats_dir.is_dir():
        for path in layout.stats_dir.glob("step-*.safetensors"):
            path.unlink(missing_ok=True)


def remove_partial_writes(layout: OutLayout) -> list[Path]:
    """Delete leftovers of atomic writes cut short by a kill (see ``mergekit_arm._io``)."""
    folders = (layout.root, layout.steps_dir, layout.internal, layout.stats_dir, layout.cache_dir)
    removed: list[Path] = []
    for folder in folders:
        removed += remove_stale_temporaries(folder)
    return removed


def open_state(layout: OutLayout, config: dict[str, Any], restart: bool,
               normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
               ) -> tuple[StreamState, bool]:
    """The state to continue from, and whether it is a resumed one.

    A saved state of a different config is refused (naming the changed keys) unless
    ``restart``, which clears the previous run's outputs. ``normalize`` completes a saved
    config with the keys added since it was written, at their defaults
    (:func:`~mergekit_arm.stream.config.with_added_defaults`): a stream saved by an earlier
    version resumes when that equals ``config``; the state then records ``config``.
    """
    digest = config_hash(config)
    fresh = StreamState(config=config, config_hash=digest)
    if restart:
        clear_outputs(layout)
        return fresh, False
    saved = read_state(layout)
    if saved is None:
        return fresh, False
    if saved.format_version != STATE_FORMAT_VERSION:
        raise ArmError(
            f"{layout.state_file} has state format {saved.format_version}, this version writes "
            f"{STATE_FORMAT_VERSION}; re-run with --restart to start over"
        )
    if saved.config_hash != digest and _reads_back_as(saved.config, digest, normalize):
        logger.info("%s was written by an earlier mergekit-arm version; keys added since "
                    "take their defaults: %s", layout.state_file,
                    "; ".join(config_diff(saved.config, config)) or "none")
        saved.config, saved.config_hash = config, digest
        write_text_atomic(layout.state_file, saved.model_dump_json(indent=1))
    if saved.config_hash != digest:
        changes = config_diff(saved.config, config)
        listed = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise ArmConfigError(
            f"{layout.root} holds a stream with {saved.step} completed step(s) run with a "
            f"different config (changed: {listed or 'unknown'}). Re-run with the original config "
            "to resume, pass --restart to discard it and start over, or choose another OUT"
        )
    if saved.status == "running":
        check_fingerprints(saved)
    return saved, True


def _reads_back_as(saved: dict[str, Any], digest: str,
                   normalize: Callable[[dict[str, Any]], dict[str, Any]] | None) -> bool:
    """Whether the saved config, re-read by ``normalize``, hashes to ``digest``."""
    if normalize is None:
        return False
    try:
        return config_hash(normalize(saved)) == digest
    except (ValueError, TypeError, ArmError):  # not readable by this version: a real change
        return False


__all__ = [
    "OutLayout",
    "StreamState",
    "changed_inputs",
    "check_fingerprints",
    "clear_outputs",
    "config_diff",
    "config_hash",
    "open_state",
    "input_paths",
    "read_state",
    "record_fingerprints",
    "remove_partial_writes",
    "save_state",
    "weights_fingerprint",
]
