"""Model references as MergeKit takes them, resolved to local folders: the one resolver.

A model may be named wherever a model folder is (``arm-calibrate MODEL``, ``--check``,
the stream's ``origin``/``start``/``checkpoints``, ``arm-choose``'s ``model`` candidates,
``origin`` and ``checkpoints``, ``ARMCallback``'s ``origin``) by a MergeKit model
reference, parsed by MergeKit itself (:class:`mergekit.common.ModelReference`):

* ``path/to/folder``: a local folder, used as it is (the fast path: nothing is imported);
* ``org/name`` or ``org/name@revision``: a Hugging Face Hub repository, downloaded by
  ``huggingface_hub.snapshot_download`` into the user's Hub cache (``HF_HOME``) with the
  files MergeKit fetches (``*.json``, ``tokenizer.model``, safetensors, else ``.bin``;
  plus ``*.txt`` tokenizer files, and ``*.py`` with ``trust_remote_code``). With
  ``HF_HUB_OFFLINE=1`` it is found in that cache, the network untouched. The resolved
  commit hash is the snapshot folder's name;
* ``base+adapter`` (each part local or on the Hub, each with its ``@revision``): a PEFT
  LoRA adapter folded into its base by MergeKit's ``ModelReference.merged()``
  (``merge_and_unload``), written once per content into
  ``HF_HOME/mergekit-arm/merged-adapters/<key>`` (written beside it, then renamed: a
  killed merge leaves no folder that looks complete). The key hashes both folders'
  files (names, sizes, modification times), so a retrained adapter is merged again.

A path that does not exist and cannot be a repository id (``./x``, ``/x``, ``~/x``,
``a/b/c``) keeps the plain "does not exist" error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mergekit_arm.errors import ModelLoadError
from mergekit_arm.model_files import has_tokenizer, tokenizer_files

#: Files of a Hub model MergeKit downloads (``ModelReference.local_path``), and ours.
HUB_PATTERNS = ("tokenizer.model", "*.json", "*.txt")
#: Files of a Hub PEFT adapter.
ADAPTER_PATTERNS = ("*.json", "*.safetensors", "*.bin")
#: The adapter file PEFT writes (``adapter_config.json`` beside the weights).
ADAPTER_CONFIG = "adapter_config.json"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference and the local folder holding the model it names.

    ``revision``/``adapter_revision``: the Hub commit hashes (None for local folders).
    """

    reference: str
    folder: Path
    revision: str | None = None
    adapter: str | None = None
    adapter_revision: str | None = None

    @property
    def is_local(self) -> bool:
        """A plain local folder (no Hub download, no adapter merge)."""
        return self.revision is None and self.adapter is None

    def metadata(self) -> dict[str, str]:
        """What a statistics file records about where its model came from."""
        if self.is_local:
            return {}
        data = {"model_reference": self.reference, "model_folder": str(self.folder)}
        if self.revision is not None:
            data["model_revision"] = self.revision
        if self.adapter is not None:
            data["adapter"] = self.adapter
        if self.adapter_revision is not None:
            data["adapter_revision"] = self.adapter_revision
        return data


def looks_like_repo_id(text: str) -> bool:
    """``org/name`` or ``name`` (Hub naming rules), not a path spelled as one (``./x``,
    ``/x``, ``~/x``, ``a/b/c``, ``..``)."""
    return bool(_REPO_ID.match(text)) and ".." not in text and "--" not in text \
        and not text.endswith(".git")


def is_reference(text: str) -> bool:
    """Whether ``text`` is resolved here rather than used as a local path: it does not
    exist locally and is a Hub id (``@revision`` allowed) or a ``base+adapter`` pair."""
    if Path(text).expanduser().exists():
        return False
    head, at, _ = text.partition("@")
    if "+" in text or (at and Path(head).expanduser().exists()):  # path@rev: refused later
        return True
    return looks_like_repo_id(head)


def absolute_reference(text: str) -> str:
    """``text`` with every part that is an existing local path made absolute (a path that
    neither exists nor is a reference too, as :meth:`Path.resolve` would); Hub ids and
    revisions kept as written."""
    if not is_reference(text):
        return str(Path(text).expanduser().resolve())
    parts = []
    for part in text.split("+"):
        path, at, revision = part.partition("@")
        local = Path(path).expanduser()
        parts.append(str(local.resolve()) + at + revision if path and local.exists() else part)
    return "+".join(parts)


def _parse(text: str):
    """MergeKit's parse of ``text`` (``path[@rev][+lora[@rev]]``)."""
    from mergekit.common import ModelReference

    try:
        return ModelReference.parse(text)
    except Exception as error:  # MergeKit raises RuntimeError / pydantic errors
        raise ModelLoadError(
            f"cannot read the model reference {text!r}: {error}. Write a local folder, a "
            "Hub id `org/name[@revision]`, or `BASE+ADAPTER` (one `+`, one `@` per part)"
        ) from None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_failure(what: str, repo: str, revision: str | None, error: Exception) -> ModelLoadError:
    name = repo + (f"@{revision}" if revision else "")
    from huggingface_hub import constants

    if _offline():
        hint = (f"HF_HUB_OFFLINE is set and it is not in the Hugging Face cache "
                f"{constants.HF_HUB_CACHE}: run once online (or `hf download {repo}"
                f"{' --revision ' + revision if revision else ''}`), or pass a local folder")
    else:
        hint = ("check the name and revision, your network and, for a private or gated "
                "repository, your token (`hf auth login`); or pass a local folder")
    return ModelLoadError(
        f"{what} {name} is not a local path, and as a Hugging Face Hub repository it could "
        f"not be resolved ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}): "
        f"{hint}")


def _weight_pattern(repo: str, revision: str | None) -> tuple[str, ...]:
    """MergeKit's choice: safetensors when the repository has any, else ``.bin`` (offline:
    both, as the cache holds only what was downloaded)."""
    if _offline():
        return ("*.safetensors", "*.bin")
    from huggingface_hub import list_repo_files

    files = list_repo_files(repo, repo_type="model", revision=revision)
    return ("*.safetensors",) if any(f.lower().endswith(".safetensors") for f in files) \
        else ("*.bin",)


@lru_cache(maxsize=64)
def hub_snapshot(repo: str, revision: str | None, adapter: bool = False,
                 trust_remote_code: bool = False) -> tuple[Path, str]:
    """``(folder, commit hash)`` of a Hub repository at ``revision`` (default branch when
    None), downloaded into (or found in) the user's Hugging Face cache."""
    from huggingface_hub import snapshot_download

    what = "adapter" if adapter else "model"
    try:
        patterns = ADAPTER_PATTERNS if adapter else \
            HUB_PATTERNS + _weight_pattern(repo, revision)
        if trust_remote_code and not adapter:
            patterns += ("*.py",)
        folder = Path(snapshot_download(repo, revision=revision, allow_patterns=list(patterns)))
    except Exception as error:  # noqa: BLE001 - every Hub failure gets one message
        raise _hub_failure(what, repo, revision, error) from error
    commit = folder.name if folder.parent.name == "snapshots" else (revision or "")
    return folder, commit


def _part(path: str, revision: str | None, what: str, adapter: bool,
          trust_remote_code: bool) -> tuple[Path, str | None]:
    """One part of a reference: a local folder, or the Hub snapshot (with its commit)."""
    local = Path(path).expanduser()
    if local.exists():
        if revision:
            raise ModelLoadError(
                f"{what} {path}@{revision}: {path} is a local path, which has no revisions; "
                "leave out @" + revision)
        return local.resolve(), None
    if not looks_like_repo_id(path):
        raise ModelLoadError(f"{what} path {local} does not exist")
    return hub_snapshot(path, revision, adapter, trust_remote_code)


def check_adapter_folder(folder: Path, shown: str) -> None:
    """Raise unless ``folder`` holds a PEFT adapter (``adapter_config.json``)."""
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ModelLoadError(
            f"adapter {shown} ({folder}) is not a PEFT adapter folder (no {ADAPTER_CONFIG}); "
            "write BASE+ADAPTER with the folder PEFT's save_pretrained (or the Trainer) wrote")


def adapter_hint(folder: Path) -> str | None:
    """The ``BASE+ADAPTER`` fix for a folder that holds an adapter and no model."""
    if (folder / "config.json").is_file() or not (folder / ADAPTER_CONFIG).is_file():
        return None
    try:
        base = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get(
            "base_model_name_or_path") or "BASE"
    except (OSError, ValueError):
        base = "BASE"
    return (f"{folder} holds a PEFT adapter, not a model: name it with its base, "
            f"`{base}+{folder}` (MergeKit's syntax), and it is folded into the base")


def copy_tokenizer(source: Path, target: Path) -> None:
    """Copy the tokenizer files of ``source`` (:func:`~mergekit_arm.model_files.tokenizer_files`)
    into ``target`` (the adapter's own, when it has them, else the base's): MergeKit's merge
    of an adapter saves the weights only."""
    for file in tokenizer_files(source):
        if not (target / file.name).exists():
            shutil.copyfile(file, target / file.name)


def _files_key(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.iterdir() if p.is_file())


def merge_cache_root() -> Path:
    """Where folded adapters are kept: ``HF_HOME/mergekit-arm/merged-adapters``."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "mergekit-arm" / "merged-adapters"


def merge_key(base: Path, adapter: Path) -> str:
    """The content key of ``base+adapter`` (both folders' file names, sizes, mtimes)."""
    from mergekit_arm import __version__

    data = json.dumps([str(base), _files_key(base), str(adapter), _files_key(adapter),
                       __version__])
    return hashlib.sha256(data.encode()).hexdigest()[:24]


def fold_adapter(base: Path, adapter: Path, shown: str, cache: Path | None = None,
                 trust_remote_code: bool = False, name: str | None = None) -> Path:
    """The folder of ``base`` with the LoRA ``adapter`` folded in (PEFT's
    ``merge_and_unload`` through MergeKit's ``ModelReference.merged``, on the CPU): reused
    when ``cache`` (default :func:`merge_cache_root`) already holds this content's merge.
    ``name``: the folder's name in ``cache`` instead of the content key (always merged
    anew, replacing a folder of that name)."""
    from mergekit.common import ModelPath, ModelReference

    from mergekit_arm.quiet import quiet_transformers

    check_adapter_folder(adapter, shown)
    root = Path(cache) if cache is not None else merge_cache_root()
    final = root / (name or merge_key(base, adapter))
    if name is None and (final / "config.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.arm-", dir=root))
    try:
        reference = ModelReference(model=ModelPath(path=str(base)),
                                   lora=ModelPath(path=str(adapter)))
        with quiet_transformers(), _no_dtype_warning():
            merged = Path(reference.merged(cache_dir=str(work),
                                           trust_remote_code=trust_remote_code).model.path)
        copy_tokenizer(adapter if has_tokenizer(adapter) else base, merged)
        if name is not None and final.exists():
            shutil.rmtree(final)
        try:
            os.replace(merged, final)
        except OSError:
            if not (final / "config.json").is_file():  # not a concurrent twin: a real error
                raise
    except ModelLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - PEFT / transformers errors vary
        raise ModelLoadError(
            f"cannot fold the adapter of {shown} into its base {base}: {type(error).__name__}: "
            f"{error}. Check that the adapter was trained on this base (same architecture "
            "and shapes)") from error
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


class _no_dtype_warning:
    """Silence transformers' ``torch_dtype is deprecated`` (MergeKit's ``merged()`` passes it)."""

    def __enter__(self) -> None:
        from transformers.utils import logging as hf_logging

        self.level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()

    def __exit__(self, *exc: object) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self.level)


def resolve_model(text: str | os.PathLike, what: str = "model", *,
                  trust_remote_code: bool = False, cache: Path | None = None) -> ResolvedModel:
    """The local folder of the model reference ``text`` (see the module doc); ``what``
    names it in messages. An existing local path is returned as it is (not checked here)."""
    raw = os.fspath(text)
    if not is_reference(raw):  # absolute: Path("./x") would print (and re-read) as "x"
        return ResolvedModel(raw, Path(raw).expanduser().absolute())
    reference = _parse(raw)
    folder, revision = _part(reference.model.path, reference.model.revision, what, False,
                             trust_remote_code)
    if reference.lora is None:
        hint = adapter_hint(folder)
        if hint is not None:
            raise ModelLoadError(f"{what} {raw}: {hint}")
        return ResolvedModel(raw, folder, revision)
    adapter, adapter_revision = _part(reference.lora.path, reference.lora.revision,
                                      f"{what} {raw}: adapter", True, trust_remote_code)
    merged = fold_adapter(folder, adapter, raw, cache, trust_remote_code)
    return ResolvedModel(raw, merged, revision, str(reference.lora), adapter_revision)


def local_model_path(text: str, what: str = "model", *, trust_remote_code: bool = False) -> str:
    """The absolute local path a config keeps for the model ``text``: a reference's
    resolved folder (:func:`resolve_model`), else ``text`` made absolute (a missing path
    stays for the config's own "does not exist" check)."""
    if not is_reference(text):
        return str(Path(text).expanduser().resolve())
    return str(model_folder(text, what, trust_remote_code=trust_remote_code))


def model_folder(text: str | os.PathLike, what: str = "model", *,
                 trust_remote_code: bool = False) -> Path:
    """:func:`resolve_model`'s folder."""
    return resolve_model(text, what, trust_remote_code=trust_remote_code).folder


__all__ = ["ResolvedModel", "absolute_reference", "adapter_hint", "check_adapter_folder",
           "fold_adapter", "hub_snapshot", "is_reference", "local_model_path", "looks_like_repo_id",
           "merge_cache_root", "model_folder", "resolve_model"]
