"""Building one ``arm-choose`` candidate: the model folder a recipe produces.

A ``mergekit`` candidate is merged into ``OUT/candidates/<name>/model`` through an atomic
folder (present only when complete); a ``stream`` candidate runs ``arm-stream`` in
``OUT/candidates/<name>/`` (which resumes on its own); a ``model`` candidate is its folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from mergekit_arm._io import atomic_directory
from mergekit_arm._yaml import load_yaml_file
from mergekit_arm.checks import require_valid_output
from mergekit_arm.choose.config import CandidateEntry, ChooseConfig
from mergekit_arm.choose.references import absolute_model_paths
from mergekit_arm.errors import (
    ArmConfigError,
    ArmError,
    ModelLoadError,
    OutputCheckError,
    find_arm_error,
)
from mergekit_arm.merge_methods.arm_parameters import MergeParameterError, check_merge_parameters
from mergekit_arm.models import check_model_folder
from mergekit_arm.stream.config import load_config, parse_config
from mergekit_arm.stream.recipe_config import texts_overlap

logger = logging.getLogger("mergekit_arm.choose")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _folder_stamp(folder: Path) -> list[list[Any]]:
    """Name, size and mtime of a model folder's weight and config files."""
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns]
            for f in sorted(folder.iterdir()) if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES)]


def candidate_spec(entry: CandidateEntry) -> dict[str, Any]:
    """What a build depends on (paths resolved): the entry, plus the content of its config
    file (``mergekit``/``stream``) or the stamp of its folder (``model``). A build of
    another spec is stale."""
    spec: dict[str, Any] = entry.model_dump(mode="json", exclude_none=True)
    if entry.model is not None and Path(entry.model).is_dir():
        spec["stamp"] = _folder_stamp(Path(entry.model))
    for key in ("stream", "mergekit"):
        value = getattr(entry, key)
        if isinstance(value, str) and Path(value).is_file():
            spec["sha256"] = _file_digest(Path(value))
    return spec


def spec_key(spec: dict[str, Any]) -> str:
    """A short hash of a spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def mergekit_configuration(entry: CandidateEntry):
    """The candidate's validated ``MergeConfiguration`` (an error names the candidate)."""
    from mergekit.config import MergeConfiguration
    from pydantic import ValidationError

    source = entry.mergekit
    if isinstance(source, str):
        data = load_yaml_file(source, f"candidate `{entry.name}`: mergekit config")
    else:
        data = source
    try:
        config = MergeConfiguration.model_validate(absolute_model_paths(data))
        check_merge_parameters(config)
        return config
    except MergeParameterError as error:
        raise ArmConfigError(f"candidate `{entry.name}`: {error}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"`{'.'.join(str(p) for p in item['loc'])}`: {item['msg']}" for item in error.errors()
        )
    except (RuntimeError, TypeError, ValueError) as error:  # mergekit's own validators
        problems = str(error)
    if len(problems) > 800:  # never a whole (possibly huge) input in a message
        problems = problems[:797] + "..."
    raise ArmConfigError(
        f"candidate `{entry.name}`: invalid mergekit config ({problems}); it must be what "
        "`mergekit-yaml` accepts"
    ) from None


def _forget_loaded_models() -> None:
    """Drop mergekit's process-wide tensor loaders (they keep files open, and would serve
    old tensors if a folder were rewritten at the same path)."""
    from mergekit.io.tasks import LoaderCache

    cache = LoaderCache()
    cache.flush_all()
    cache.loaders.clear()


#: Per-build folder where MergeKit folds a candidate's ``base+adapter`` models (its
#: cache is keyed by path, so a fresh one per build never serves a stale merge).
LORA_CACHE = ".lora-merge-cache"


def build_mergekit(entry: CandidateEntry, folder: Path, config: ChooseConfig) -> Path:
    """Run the candidate's mergekit config into ``folder/model`` (atomically) and check it."""
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    from mergekit_arm import register

    register()
    merge_config = mergekit_configuration(entry)
    target = folder / "model"
    lora_cache = folder / LORA_CACHE  # MergeKit folds `base+adapter` references here, anew
    options = MergeOptions(copy_tokenizer=True, lazy_unpickle=True, quiet=True,
                           trust_remote_code=config.trust_remote_code,
                           lora_merge_cache=str(lora_cache))
    try:
        with atomic_directory(target) as partial:
            run_merge(merge_config, str(partial), options=options)
    except ArmError:
        raise
    except Exception as error:  # mergekit's own errors are plain exceptions
        cause = find_arm_error(error)
        if cause is not None:
            raise cause from error
        raise ArmError(f"candidate `{entry.name}`: the mergekit merge failed: "
                       f"{type(error).__name__}: {error}") from error
    finally:
        _forget_loaded_models()
        shutil.rmtree(lora_cache, ignore_errors=True)
    # a merge of models without a tokenizer is complete when the config names one to score with
    try:
        require_valid_output(target, tokenizer=config.tokenizer is None)
    except OutputCheckError as error:
        shutil.rmtree(target, ignore_errors=True)  # no complete-looking folder of a bad merge
        hint = ("\n(NaN/Inf in a merge come from an input holding them, which `arm-verify "
                "INPUT` shows, or from the recipe: weights summing to 0 under `normalize: "
                "true`, the default of `linear`, or huge weights; fix the recipe or the input "
                "and run again)") if " NaN and " in str(error) else ""
        raise OutputCheckError(
            f"candidate `{entry.name}`: its merge was removed, {error}{hint}") from None
    return target


def build_stream(entry: CandidateEntry, folder: Path, *, restart: bool, progress: bool) -> Path:
    """Run (or resume) the candidate's ``arm-stream`` config in ``folder``; its kept model."""
    from mergekit_arm.stream import run_stream

    result = run_stream(entry.stream, folder, restart=restart, progress=progress)
    return result.model


def tuned_on(entry: CandidateEntry, config: ChooseConfig) -> list[str]:
    """The sections of a stream candidate (``validation``, ``selection``) that read texts of
    the choice's ``validation``: its own searches saw them, so its score is optimistic."""
    if entry.stream is None:
        return []
    stream = (parse_config(entry.stream, f"candidate `{entry.name}`")
              if isinstance(entry.stream, dict) else load_config(entry.stream)).resolved()
    return [name for name in ("validation", "selection")
            if getattr(stream, name) is not None
            and texts_overlap(getattr(stream, name), config.validation)]


def candidate_model(entry: CandidateEntry) -> Path:
    """A ``model`` candidate's folder, checked: a Hugging Face folder whose weight files are
    all there and readable (not a checkpoint still being written)."""
    from mergekit_arm.stream.watch import is_complete

    folder = check_model_folder(entry.model)
    if not is_complete(folder):
        raise ModelLoadError(
            f"candidate `{entry.name}`: {folder} is incomplete (a weight file is missing, empty "
            "or unreadable: a checkpoint still being written?); wait until it is saved, or "
            "remove it from the candidates"
        )
    return folder


__all__ = ["build_mergekit", "build_stream", "candidate_model", "candidate_spec",
           "mergekit_configuration", "spec_key", "tuned_on"]
