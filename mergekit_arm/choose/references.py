"""Local paths in ``arm-choose``'s candidates: made absolute for MergeKit, listed as inputs.

MergeKit reads a model reference (``path``, ``path@revision``, ``path+lora``) from the
current folder, but its model card asks the Hugging Face Hub about any reference with at
most one slash that does not start with ``/`` or ``~`` (``sft-run/checkpoint-20``): offline
that kills a merge after every tensor is written. Every reference that names an existing
local path is therefore made absolute before MergeKit sees it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mergekit_arm.choose.config import CandidateEntry, ChooseConfig
from mergekit_arm.errors import ArmError
from mergekit_arm.model_refs import absolute_reference
from mergekit_arm.paths import PathRole, input_roles, reference_roles

#: Keys of a MergeKit config whose string values are model references (or model paths).
REFERENCE_KEYS = ("model", "base_model", "tokenizer_source", "source", "lora", "path")
#: Keys of ``arm`` parameters whose string values are statistics files (read, so inputs).
FILE_KEYS = ("activations",)
#: Tokenizer sources that are keywords, not paths.
KEYWORDS = ("union", "base")


def _walk(node: Any, where: str, found: list[tuple[str, str]]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if key in REFERENCE_KEYS and isinstance(value, str) and value \
                    and value not in KEYWORDS:
                out[key] = absolute_reference(value)
                found += [(here, part.partition("@")[0]) for part in out[key].split("+")
                          if part.startswith("/")]
            elif key in FILE_KEYS and isinstance(value, str):
                local = Path(value).expanduser()
                out[key] = str(local.resolve()) if value and local.exists() else value
                found += [(here, out[key])] if out[key].startswith("/") else []
            else:
                out[key] = _walk(value, here, found)
        return out
    if isinstance(node, list):
        return [_walk(item, f"{where}[{i}]", found) for i, item in enumerate(node)]
    return node


def absolute_model_paths(data: Any) -> Any:
    """The MergeKit config (a parsed mapping) with every model reference (and ``arm``
    ``activations`` file) that names an existing local path made absolute."""
    return _walk(data, "", [])


def local_references(data: Any) -> list[tuple[str, str]]:
    """``(key path, absolute path)`` of every local model path (and ``arm`` statistics
    file) a MergeKit config reads."""
    found: list[tuple[str, str]] = []
    _walk(data, "", found)
    return found


def _mergekit_data(entry: CandidateEntry) -> Any:
    from mergekit_arm._yaml import load_yaml_file

    if isinstance(entry.mergekit, str):
        return load_yaml_file(entry.mergekit, f"candidate `{entry.name}`: mergekit config")
    return entry.mergekit


def _candidate_inputs(entry: CandidateEntry) -> Iterator[PathRole]:
    label = f"candidate `{entry.name}`"
    if entry.model is not None:
        yield PathRole(f"{label} (`model`)", entry.model)
    try:  # a config that cannot be read is reported by its build, with its own message
        if entry.mergekit is not None:
            for key, path in local_references(_mergekit_data(entry)):
                yield PathRole(f"{label} (mergekit `{key}`)", path)
        if entry.stream is not None:
            from mergekit_arm.stream.config import load_config, parse_config
            from mergekit_arm.stream.inputs import input_paths

            stream = (parse_config(entry.stream, label) if isinstance(entry.stream, dict)
                      else load_config(entry.stream)).resolved()
            yield from input_paths(stream, prefix=f"{label}'s stream ")
    except ArmError:
        return


def _raw_references(given: Any) -> list[PathRole]:
    """The base and adapter folders of ``base+adapter`` models in the config as given
    (``origin``, ``checkpoints``, ``model`` candidates): resolved, only the folded
    folder is left."""
    from mergekit_arm._yaml import load_yaml_file

    try:
        data = (given.model_dump() if isinstance(given, ChooseConfig) else dict(given)
                if isinstance(given, Mapping) else load_yaml_file(given, "arm-choose config"))
    except ArmError:
        return []
    if not isinstance(data, dict):
        return []
    pairs = [("`origin`", data.get("origin"))]
    pairs += [(f"`checkpoints[{i}]`", c) for i, c in enumerate(data.get("checkpoints") or [])]
    pairs += [(f"candidate `{c.get('name')}` (`model`)", c.get("model"))
              for c in data.get("candidates") or [] if isinstance(c, dict)]
    return [role for label, value in pairs for role in reference_roles(label, value)]


def choose_inputs(config: ChooseConfig, given: Any = None) -> list[PathRole]:
    """Every path an ``arm-choose`` run reads: each candidate's models, texts and
    tokenizer (those of its MergeKit or stream config too), the held-out texts, the
    scoring tokenizer, ``origin`` and ``checkpoints``; with ``given`` (the config as
    passed: a path, mapping or config object) the parts of ``base+adapter`` models too."""
    roles = input_roles([("`validation.data`", config.validation.data),
                         ("`tuning.data`", config.tuning.data if config.tuning else None),
                         ("`tokenizer`", config.tokenizer), ("`origin`", config.origin)])
    roles += input_roles((f"`checkpoints[{i}]`", path)
                         for i, path in enumerate(config.checkpoints))
    roles += input_roles((f"`guards.{name}.data`", guard.data)
                         for name, guard in config.guards.items())
    for entry in config.candidates:
        roles += list(_candidate_inputs(entry))
    return roles + (_raw_references(given) if given is not None else [])


__all__ = ["absolute_model_paths", "choose_inputs", "local_references"]
