"""The builds of ``arm-choose`` under ``OUT/candidates/<name>/``: reused, refused, rebuilt.

A build is reused when its recipe (:func:`~mergekit_arm.choose.build.candidate_spec`) and
the weights it read are unchanged. The weights are fingerprinted with the stream's own
mechanism (:func:`mergekit_arm.stream.state.weights_fingerprint`, compared by
:func:`~mergekit_arm.stream.state.changed_inputs`): a ``mergekit`` build records the
fingerprint of every local model it merged (``OUT/.arm-choose/inputs.json``); a
``stream`` build records its own in its resume state. When a checkpoint was rewritten at
the same path (training went on), the build is made again (``rebuilt: inputs changed``)
or, with ``refuse_changed_inputs``, refused. A changed recipe is refused unless
``--restart``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mergekit_arm._io import write_text_atomic
from mergekit_arm.choose.build import (
    build_mergekit,
    build_stream,
    candidate_model,
    candidate_spec,
    mergekit_configuration,
    spec_key,
)
from mergekit_arm.choose.config import CandidateEntry, ChooseConfig
from mergekit_arm.errors import ArmError
from mergekit_arm.stream.state import OutLayout, changed_inputs, read_state, weights_fingerprint

logger = logging.getLogger("mergekit_arm.choose")

NOT_RECORDED = "inputs not recorded"


@dataclass(frozen=True)
class Built:
    """A candidate's model folder and how it came to be: ``as is`` (a ``model``
    candidate), ``built``, ``reused``, ``resumed`` (a stream) or ``rebuilt: ...``."""

    folder: Path
    seconds: float
    status: str

    @property
    def reused(self) -> bool:
        return self.status == "reused"


def mergekit_inputs(entry: CandidateEntry) -> dict[str, str]:
    """path -> weights fingerprint of every local model a ``mergekit`` candidate reads."""
    fingerprints = {}
    for reference in mergekit_configuration(entry).referenced_models():
        path = Path(reference.model.path)
        if path.is_dir():
            fingerprint = weights_fingerprint(path)
            if fingerprint is not None:
                fingerprints[str(path)] = fingerprint
    return fingerprints


def _listed(paths: list[str]) -> str:
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


class Builds:
    """``OUT/candidates/<name>/`` and what each build was made from."""

    def __init__(self, root: Path, internal: Path, restart: bool,
                 refuse_changed_inputs: bool = False) -> None:
        self.root = root
        self.specs_file = internal / "specs.json"
        self.inputs_file = internal / "inputs.json"
        self.restart = restart
        self.refuse_changed_inputs = refuse_changed_inputs
        self.specs: dict[str, str] = {}
        self.inputs: dict[str, dict[str, str]] = {}
        if not restart:
            for attribute, file in (("specs", self.specs_file), ("inputs", self.inputs_file)):
                if file.is_file():
                    setattr(self, attribute, json.loads(file.read_text(encoding="utf-8")))

    def folder(self, name: str) -> Path:
        return self.root / "candidates" / name

    def check(self, entry: CandidateEntry, key: str) -> bool:
        """Whether a build of this spec exists; refuses a build of another spec."""
        folder = self.folder(entry.name)
        old = self.specs.get(entry.name)
        if self.restart and folder.exists():
            shutil.rmtree(folder)
            return False
        if old is not None and old != key and folder.exists():
            raise ArmError(
                f"candidate `{entry.name}` changed since its build in {folder} was made; run "
                "again with --restart to rebuild (or give the changed recipe a new name)"
            )
        if entry.kind == "mergekit":
            return (folder / "model").is_dir()
        return entry.kind == "stream" and OutLayout(folder).state_file.is_file()

    def record(self, entry: CandidateEntry, key: str) -> None:
        self.specs[entry.name] = key
        write_text_atomic(self.specs_file, json.dumps(self.specs, indent=2, sort_keys=True))

    def _record_inputs(self, name: str, inputs: dict[str, str]) -> None:
        self.inputs[name] = inputs
        write_text_atomic(self.inputs_file, json.dumps(self.inputs, indent=2, sort_keys=True))

    def _changed(self, entry: CandidateEntry) -> str | None:
        """Why the existing build of ``entry`` read other weights than the current ones
        (None: the same)."""
        new: list[str] = []
        if entry.kind == "mergekit":
            recorded = self.inputs.get(entry.name)
            if recorded is None:
                return NOT_RECORDED
            # a model path of the recipe now resolving elsewhere (a checkpoint replaced by
            # a symlink to other weights) is a new input, though every recorded one is intact
            new = [path for path in mergekit_inputs(entry) if path not in recorded]
        else:
            state = read_state(OutLayout(self.folder(entry.name)))
            recorded = state.fingerprints if state is not None else {}
        changed = changed_inputs(recorded) + new
        return f"inputs changed ({_listed(changed)})" if changed else None

    def _refuse(self, entry: CandidateEntry, why: str) -> None:
        raise ArmError(
            f"candidate `{entry.name}`: its build in {self.folder(entry.name)} read other "
            f"weights than those there now ({why}: a checkpoint rewritten at the same path?); "
            "scoring it would judge a merge of the old weights. Run without "
            "--refuse-changed-inputs to rebuild it, restore the original checkpoints, or "
            "pass --restart"
        )

    def build(self, entry: CandidateEntry, config: ChooseConfig, progress: bool) -> Built:
        """The candidate's model folder: reused, built, resumed or rebuilt."""
        key = spec_key(candidate_spec(entry))
        existing = self.check(entry, key)
        self.record(entry, key)
        started = time.perf_counter()
        if entry.kind == "model":
            return Built(candidate_model(entry), time.perf_counter() - started, "as is")
        why = self._changed(entry) if existing else None
        if why is not None and self.refuse_changed_inputs:
            self._refuse(entry, why)
        folder = self.folder(entry.name)
        if why is not None:
            logger.info("candidate %s: rebuilding, %s", entry.name, why)
        if entry.kind == "mergekit":
            status = "reused" if existing and why is None else "built"
            if status == "built":
                inputs = mergekit_inputs(entry)  # before the merge reads them
                shutil.rmtree(folder / "model", ignore_errors=True)
                logger.info("candidate %s: mergekit merge into %s", entry.name, folder / "model")
                build_mergekit(entry, folder, config)
                self._record_inputs(entry.name, inputs)
            model = folder / "model"
        else:
            state = read_state(OutLayout(folder)) if existing and why is None else None
            status = "built" if state is None else (
                "resumed" if state.status == "running" else "reused")
            logger.info("candidate %s: arm-stream in %s", entry.name, folder)
            model = build_stream(entry, folder, restart=self.restart or why is not None,
                                 progress=progress)
        if why is not None:
            status = f"rebuilt: {why}"
        return Built(model, time.perf_counter() - started, status)


__all__ = ["Built", "Builds", "mergekit_inputs"]
