"""Checks of inputs and finished outputs: finite weights, and complete, readable folders.

:func:`check_finite_state` refuses a model (or state dict) holding NaN/Inf, naming the
checkpoint and the tensor. :func:`verify_output` re-reads a finished model folder (what
``mergekit-yaml`` or ``arm-stream`` wrote) the way a loader would and lists every file
that is truncated, unreadable, missing or left over; ``arm-verify OUT_DIR`` is its CLI.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mergekit_arm.errors import NonFiniteError, OutputCheckError
from mergekit_arm.model_files import (
    INDEX_FILES,
    MERGE_CARD,
    SINGLE_FILES,
    TRAINER_STATE,
    FolderKind,
    folder_kind,
    has_tokenizer,
    is_known_non_weight,
    is_tokenizer_file,
    is_training_file,
    merge_sources,
    tokenizer_files,
)
from mergekit_arm.statistics import FORMAT as STATISTICS_FORMAT

_CHUNK = 1 << 24  # elements per isfinite() pass: bounded temporary memory
_TEMPORARY = re.compile(r"^\.(.+\.arm-\d+-[0-9a-f]+\.(tmp|partial|old)|tmp[A-Za-z0-9]{6})$")


def nonfinite_counts(tensor: torch.Tensor) -> tuple[int, int]:
    """``(NaN count, Inf count)`` of a tensor (0, 0 for integer tensors)."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return 0, 0
    flat = tensor.reshape(-1)
    nan = inf = 0
    for start in range(0, flat.numel(), _CHUNK):
        part = flat[start:start + _CHUNK]
        if bool(torch.isfinite(part).all()):
            continue
        nan += int(torch.isnan(part).sum())
        inf += int(torch.isinf(part).sum())
    return nan, inf


def _named_tensors(source: Mapping[str, torch.Tensor] | torch.nn.Module
                   ) -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(source, torch.nn.Module):
        return source.state_dict().items()
    return source.items()


def check_finite_state(source: Mapping[str, torch.Tensor] | torch.nn.Module,
                       label: str | os.PathLike) -> None:
    """Raise :class:`NonFiniteError` naming ``label`` (a checkpoint path) and the first
    tensor that holds NaN or Inf; integer tensors are skipped."""
    for name, tensor in _named_tensors(source):
        nan, inf = nonfinite_counts(tensor.detach())
        if nan or inf:
            raise NonFiniteError(
                f"{label}: tensor {name} holds {nan} NaN and {inf} Inf value(s) of "
                f"{tensor.numel()}; this checkpoint is corrupt or training diverged. Use an "
                "earlier checkpoint or remove this one from the inputs"
            )


# -- finished output folders ------------------------------------------------------------
@dataclass
class VerifyReport:
    """What :func:`verify_output` checked, and the problems found (``path: reason``)."""

    folder: Path
    kind: FolderKind = "model"
    files: list[str] = field(default_factory=list)
    tensors: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad(self, path: Path | str, reason: str) -> None:
        self.problems.append(f"{path}: {reason}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _load_json(path: Path, report: VerifyReport) -> object | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        report.bad(path, f"not valid JSON ({_first_line(error)}); the file is truncated or "
                         "corrupt (a full disk?): free space and re-run the merge into an "
                         "empty folder")
        return None


def _weight_map(folder: Path, report: VerifyReport) -> dict[str, str] | None:
    """tensor name -> file name from the index or the single weight file; None if unusable."""
    for index_name in INDEX_FILES:
        index = folder / index_name
        if index.exists():
            report.files.append(index_name)
            content = _load_json(index, report)
            if content is None:
                return None
            weight_map = content.get("weight_map") if isinstance(content, dict) else None
            if not isinstance(weight_map, dict) or not weight_map:
                report.bad(index, "has no `weight_map`; re-run the merge into an empty folder")
                return None
            return {str(k): str(v) for k, v in weight_map.items()}
    for single in SINGLE_FILES:
        if (folder / single).is_file():
            return {}  # every tensor of the one file
    if report.kind == "adapter":
        report.bad(folder, "holds a PEFT adapter (adapter_config.json, adapter_model.*), not "
                           "a full model; merge it into its base model first (peft's "
                           "merge_and_unload(), then save_pretrained) and use that folder")
    else:
        report.bad(folder, "holds no weights (model.safetensors, pytorch_model.bin or an "
                           "index); the save or merge did not finish: re-run it")
    return None


def _check_weight_file(path: Path, expected: set[str] | None, finite: bool,
                       report: VerifyReport) -> None:
    """Every tensor of ``path`` is readable (and finite); its names match the index."""
    report.files.append(path.name)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                if (handle.metadata() or {}).get("format") == STATISTICS_FORMAT:
                    report.bad(path, "holds ARM activation statistics (written by arm-calibrate), "
                                     "not model weights: the weights were overwritten. Restore "
                                     "the model from its source and write statistics to a "
                                     "file outside the model folder")
                    return
                names = set(handle.keys())
                tensors = ((name, handle.get_tensor(name)) for name in sorted(names))
                _check_tensors(path, tensors, finite, report)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            names = set(state)
            _check_tensors(path, sorted(state.items()), finite, report)
    except NonFiniteError as error:
        report.bad(path, str(error).split(": ", 1)[1])
        return
    except Exception as error:  # noqa: BLE001 (any failure to read is the finding)
        report.bad(path, f"unreadable ({_first_line(error)}); the file is truncated or corrupt "
                         "(a full disk?): free space and re-run the merge into an empty folder")
        return
    if expected is not None:
        missing = sorted(expected - names)
        if missing:
            report.bad(path, f"lacks {len(missing)} tensor(s) the index assigns to it "
                             f"(first: {missing[0]}); re-run the merge into an empty folder")


def _check_tensors(path: Path, tensors: Iterable[tuple[str, torch.Tensor]], finite: bool,
                   report: VerifyReport) -> None:
    for name, tensor in tensors:
        report.tensors += 1
        if finite:
            check_finite_state({name: tensor}, path)


def _check_training_state(folder: Path, report: VerifyReport) -> None:
    """A Trainer checkpoint's state: ``trainer_state.json`` is there (written last) and
    every ``torch.save`` file is a whole archive (its directory, at the end, is read)."""
    if not (folder / TRAINER_STATE).is_file():
        report.bad(folder / TRAINER_STATE, "is missing: the Trainer writes it last, so this "
                   "checkpoint was cut short while saving; resume from an earlier checkpoint "
                   "or use its weights only if they verify")
    for path in sorted(folder.iterdir()):
        if not is_training_file(path.name) or path.suffix not in (".pt", ".pth", ".bin"):
            continue
        report.files.append(path.name)
        try:
            with zipfile.ZipFile(path) as archive:
                archive.infolist()
        except (OSError, zipfile.BadZipFile) as error:
            report.bad(path, f"unreadable ({_first_line(error)}); this training state is "
                             "truncated: resume training from an earlier checkpoint (the "
                             "weights can still be merged if they verify)")


def _merge_fix(folder: Path) -> str:
    sources = merge_sources(folder)
    source = f" from {sources[0]}" if sources else ""
    return (f"re-run the merge into an empty folder, or copy the tokenizer files{source} "
            "into it")


def _check_completeness(folder: Path, report: VerifyReport, tokenizer: bool,
                        card: bool) -> None:
    """What each kind of folder must hold besides weights and config (module doc)."""
    if report.kind == "trainer":
        _check_training_state(folder, report)
        return
    if report.kind == "merge":
        present = [name for name in MERGE_CARD if (folder / name).is_file()]
        if card and len(present) < len(MERGE_CARD):
            missing = " and ".join(name for name in MERGE_CARD if name not in present)
            report.bad(folder, f"is a MergeKit merge without its model card ({missing}): the "
                               "merge stopped after its weights (MergeKit writes the weights, "
                               "config.json, the card, then the tokenizer); re-run the merge "
                               "into an empty folder (pass --no-card if it ran with "
                               "--no-write-model-card)")
        if tokenizer and not has_tokenizer(folder):
            report.bad(folder, "is a MergeKit merge without a tokenizer: the merge stopped "
                               "after its weights (MergeKit writes the tokenizer last); "
                               f"{_merge_fix(folder)}")
        return
    if tokenizer and not has_tokenizer(folder):
        report.bad(folder, "has weights and config.json but no tokenizer, as a merge that "
                           "stopped after its weights leaves it (MergeKit writes the "
                           "tokenizer last); re-run the merge into an empty folder, or save "
                           "the tokenizer next to the weights (tokenizer.save_pretrained); "
                           "pass --no-tokenizer if this model is kept without one on purpose")


def _check_tokenizer(folder: Path, report: VerifyReport) -> None:
    present = [path.name for path in tokenizer_files(folder)]
    if not present:
        return
    broken = len(report.problems)
    for name in present:
        report.files.append(name)
        if name.endswith(".json"):
            _load_json(folder / name, report)
    if len(report.problems) > broken:
        return
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(folder))
    except Exception as error:  # noqa: BLE001
        report.bad(folder, f"the tokenizer does not load ({_first_line(error)}): its files "
                           f"({', '.join(present)}) are incomplete or corrupt, as a merge or "
                           "save stopped midway leaves them; re-run the merge into an empty "
                           "folder, or save the tokenizer again (tokenizer.save_pretrained)")


def verify_output(folder: str | os.PathLike, finite: bool = True, tokenizer: bool = True,
                  card: bool = True) -> VerifyReport:
    """Re-read a finished model folder; the report lists every bad file (none: ``ok``).

    Checks: ``config.json`` and every other top-level ``*.json`` parse; the index (if
    any) parses and every file it names exists and holds the tensors assigned to it;
    every tensor of every weight file is readable (and finite, unless ``finite=False``);
    no weight file outside the index (training state and adapter files are not weight
    files) and no temporary file of an interrupted write remains; the tokenizer files
    parse and ``AutoTokenizer`` loads them. By the folder's kind
    (:func:`~mergekit_arm.model_files.folder_kind`): a merge has its card (unless
    ``card=False``) and a tokenizer, a saved model has a tokenizer (unless
    ``tokenizer=False``), a Trainer checkpoint has a readable training state.
    """
    folder = Path(folder).expanduser()
    report = VerifyReport(folder)
    if not folder.is_dir():
        report.bad(folder, "is not a folder")
        return report
    report.kind = folder_kind(folder)
    config = folder / "config.json"
    if not config.is_file() and report.kind != "adapter":  # an adapter has adapter_config.json
        report.bad(config, "is missing: the merge did not finish; re-run it")
    for path in sorted(folder.glob("*.json")):
        if not is_tokenizer_file(path.name) and path.name not in INDEX_FILES:
            report.files.append(path.name)
            _load_json(path, report)
    for path in sorted(folder.iterdir()):
        if _TEMPORARY.match(path.name):
            report.bad(path, "is a temporary file of an interrupted write; delete it and "
                             "re-run the merge into an empty folder")
    weight_map = _weight_map(folder, report)
    if weight_map is not None:
        by_file: dict[str, set[str] | None] = {}
        for tensor, file in weight_map.items():
            by_file.setdefault(file, set()).add(tensor)  # type: ignore[union-attr]
        if not by_file:
            single = next(name for name in SINGLE_FILES if (folder / name).is_file())
            by_file[single] = None
        for name, expected in sorted(by_file.items(), key=lambda item: item[0]):
            path = folder / name
            if not path.is_file():
                report.bad(path, "is named by the index but missing; re-run the merge")
                continue
            _check_weight_file(path, expected, finite, report)
        used = set(by_file)
        for path in sorted(folder.iterdir()):
            if path.suffix in (".safetensors", ".bin") and path.name not in used \
                    and not is_known_non_weight(path.name):
                report.bad(path, "is a weight file this model's index does not use (a partial "
                                 "shard of an earlier run?); delete it or merge into an empty "
                                 "folder")
        _check_completeness(folder, report, tokenizer, card)
    _check_tokenizer(folder, report)
    return report


def require_valid_output(folder: str | os.PathLike, finite: bool = True,
                         tokenizer: bool = True, card: bool = True) -> VerifyReport:
    """:func:`verify_output`, raising :class:`OutputCheckError` listing the problems."""
    report = verify_output(folder, finite, tokenizer, card)
    if not report.ok:
        raise OutputCheckError(f"{report.folder} is not a complete model:\n  "
                               + "\n  ".join(report.problems))
    return report


__all__ = ["VerifyReport", "check_finite_state", "nonfinite_counts", "require_valid_output",
           "verify_output"]
