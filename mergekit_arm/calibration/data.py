"""Calibration data: texts (the shipped corpus or local files, read by ``datasets``),
tokens and batches.

Accepted ``--data``:

* ``.txt``: one sample per paragraph (blank-line separated, the default) or per line;
* ``.jsonl`` / ``.json``: a ``text`` field, or a prompt/response pair (``prompt`` +
  ``response``, ``question`` + ``answer``, ``instruction`` + ``output``) joined by a newline,
  decided row by row (rows of both forms may be mixed); a value that is not a string, half
  a pair, or a row with neither form is refused naming the row;
* ``.parquet``: the same columns;
* a folder: a dataset saved with ``Dataset.save_to_disk`` (split ``train`` if a
  ``DatasetDict``), or a folder of the files above.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mergekit_arm._yaml import short_repr
from mergekit_arm.calibration.options import TextMode
from mergekit_arm.errors import CalibrationError

PAIR_FIELDS = (("prompt", "response"), ("question", "answer"), ("instruction", "output"))


@dataclass(frozen=True)
class TextRole:
    """What a text file is for, as error messages name it: ``name`` ("calibration data",
    "validation data") and ``option``, the flag or config key that points at the file."""

    name: str = "calibration data"
    option: str = "--data"


CALIBRATION = TextRole()
_BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def default_calibration_path() -> Path:
    """Path of the shipped corpus (inside the installed wheel, or the repo's ``calibration/``)."""
    here = Path(__file__).resolve().parent.parent  # the mergekit_arm package
    for candidate in (
        here / "_calibration" / "default.jsonl",
        here.parent / "calibration" / "default.jsonl",
    ):
        if candidate.is_file():
            return candidate
    raise CalibrationError(
        "the default calibration corpus is missing from this installation "
        f"(looked in {here / '_calibration'} and {here.parent / 'calibration'}); "
        "reinstall mergekit-arm or pass --data"
    )


#: What a file of each kind must hold (for the messages about empty or unusable files).
_EXPECTED = {
    "text": "text, one sample per paragraph (blank-line separated) or per line",
    "json": 'one object per line with a "text" field, e.g. {"text": "..."}, or a '
            "prompt/response pair",
    "parquet": "a `text` column or a prompt/response pair of columns",
}


def _row_text(row: int, values: dict[str, Any], source: str, role: TextRole) -> str | None:
    """The text of one row (1-based ``row``): its ``text``, else its first complete pair
    joined by a newline; None for a row whose every field is null (a blank row). A value
    that is not a string, half a pair or a row with none of the fields is refused."""

    def string(field: str) -> str:
        value = values[field]
        if not isinstance(value, str):
            raise CalibrationError(
                f"{role.name} {source}: row {row} has a `{field}` of type "
                f"{type(value).__name__} ({short_repr(value, 60)}), not a string; write it "
                "as a quoted string or remove the row")
        return value

    if values.get("text") is not None:
        return string("text")
    for prompt, response in PAIR_FIELDS:
        present = [f for f in (prompt, response) if values.get(f) is not None]
        if len(present) == 2:
            return f"{string(prompt)}\n{string(response)}"
        if present:
            missing = response if present[0] == prompt else prompt
            raise CalibrationError(
                f"{role.name} {source}: row {row} has `{present[0]}` but no `{missing}`; "
                f"give both, or the whole text as `text`")
    others = sorted(k for k, v in values.items() if v is not None)
    if others:
        raise CalibrationError(
            f"{role.name} {source}: row {row} has no `text` and no prompt/response pair "
            f"(its fields: {', '.join(others)}); every row needs `text` or one of the pairs "
            f"{[f'{a}+{b}' for a, b in PAIR_FIELDS]}")
    return None


def _rows_to_texts(dataset, source: str, role: TextRole) -> tuple[list[str], str]:
    """The texts of a dataset's rows, and which field(s) they came from.

    Row by row (a file may mix the forms): a row's ``text`` if it has one, else its
    prompt/response pair (the first of :data:`PAIR_FIELDS` it holds) joined by a newline.
    Rows whose fields are all null are blank; anything else unusable is refused naming the row.
    """
    columns = list(dataset.column_names)
    forms = ["`text` field"] if "text" in columns else []
    forms += [f"`{a}`+`{b}` pair" for a, b in PAIR_FIELDS if {a, b} <= set(columns)]
    if not forms:
        raise CalibrationError(
            f"{role.name} {source} has no usable text field: its columns are {sorted(columns)}, "
            f"expected a `text` field or one of the pairs {[f'{a}+{b}' for a, b in PAIR_FIELDS]}; "
            "rename the field holding the text to `text`"
        )
    data = {column: dataset[column] for column in columns}
    texts = []
    for index in range(len(dataset)):
        text = _row_text(index + 1, {c: data[c][index] for c in columns}, source, role)
        if text is not None:
            texts.append(text)
    return texts, " or ".join(forms)


def _has_text(path: Path, chunk: int = 1 << 16) -> bool:
    """Whether the file holds any byte other than whitespace (reads up to the first one)."""
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            if block.strip():
                return True
    return False


def _refuse_empty_files(files: list[Path], builder: str, role: TextRole) -> None:
    """A clear error for files with no content (``datasets`` fails on them obscurely)."""
    if builder == "parquet":
        return
    empty = [f for f in files if not _has_text(f)]
    if empty and len(empty) == len(files):
        what = str(empty[0]) if len(files) == 1 else f"every file ({len(files)}, e.g. {empty[0]})"
        raise CalibrationError(
            f"{role.name} {what} is empty (no text at all); it needs {_EXPECTED[builder]}. "
            f"Put the text in it, or leave out {role.option} to use the shipped corpus"
        )


def _load_dataset(path: Path, text_mode: TextMode, role: TextRole):
    import datasets

    datasets.disable_progress_bars()
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                split = "train" if "train" in loaded else next(iter(loaded))
                loaded = loaded[split]
            return loaded
        files = sorted(p for p in path.rglob("*") if p.suffix in _BUILDERS)
        if not files:
            raise CalibrationError(
                f"{role.name} folder {path} holds no saved dataset and no .txt/.jsonl/.json/"
                f".parquet files; point {role.option} at one"
            )
        kinds = {_BUILDERS[p.suffix] for p in files}
        if len(kinds) > 1:
            raise CalibrationError(
                f"{role.name} folder {path} mixes file kinds {sorted(kinds)}; use one"
            )
        builder = kinds.pop()
        _refuse_empty_files(files, builder, role)
        data_files = [str(p) for p in files if _has_text(p) or builder == "parquet"]
    else:
        builder = _BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise CalibrationError(
                f"{role.name} {path}: unsupported file type {path.suffix!r}; use .txt, "
                ".jsonl, .json, .parquet or a saved dataset folder"
            )
        _refuse_empty_files([path], builder, role)
        data_files = [str(path)]
    kwargs = {"sample_by": text_mode} if builder == "text" else {}
    try:
        return datasets.load_dataset(builder, data_files=data_files, split="train", **kwargs)
    except Exception as error:
        if "corresponds to no data" in str(error):  # datasets' message for zero rows
            raise CalibrationError(
                f"{role.name} {path} is empty (no rows); it needs {_EXPECTED[builder]}"
            ) from None
        raise CalibrationError(
            f"cannot read {role.name} {path}: {error or type(error).__name__}; check that it "
            f"holds {_EXPECTED[builder]}"
        ) from error


def load_calibration_texts(
    data: str | os.PathLike | None = None,
    samples: int | None = None,
    text_mode: TextMode = "paragraph",
    role: TextRole = CALIBRATION,
) -> list[str]:
    """The first ``samples`` non-empty texts of ``data`` (``None``: the shipped corpus).

    Errors name the file as ``role`` says (``role.name`` and the ``role.option`` to fix).
    """
    path = default_calibration_path() if data is None else Path(data).expanduser()
    if not path.exists():
        raise CalibrationError(f"{role.name} {path} does not exist; check {role.option}")
    if samples is not None and samples < 1:
        raise CalibrationError(f"the number of samples must be >= 1, got {samples}")
    texts, field = _rows_to_texts(_load_dataset(path, text_mode, role), str(path), role)
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise CalibrationError(
            f"{role.name} {path} is empty: its {field} is blank or null in every row; put "
            "the text in it"
        )
    return texts if samples is None else texts[:samples]


def tokenize_texts(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_length``; texts with no token dropped."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)
    return [list(ids) for ids in encoded["input_ids"] if len(ids) > 0]


def calibration_fingerprint(token_lists: Sequence[Sequence[int]]) -> str:
    """SHA-256 of the exact token sequences (two files agree iff they saw the same tokens)."""
    digest = hashlib.sha256()
    for ids in token_lists:
        digest.update(len(ids).to_bytes(4, "little"))
        digest.update(torch.tensor(ids, dtype=torch.int64).numpy().tobytes())
    return digest.hexdigest()


def iter_batches(
    token_lists: Sequence[Sequence[int]], batch_size: int, pad_id: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Right-padded ``(input_ids, attention_mask)`` batches in the given order."""
    for start in range(0, len(token_lists), batch_size):
        chunk = token_lists[start : start + batch_size]
        width = max(len(ids) for ids in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        yield ids, mask


@dataclass(frozen=True)
class TokenBatches:
    """The token lists of one calibration pass, right-padded with ``pad_id`` into batches
    of ``batch_size`` (:func:`iter_batches`); shared by both passes."""

    token_lists: Sequence[Sequence[int]]
    pad_id: int
    batch_size: int = 8

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter_batches(self.token_lists, self.batch_size, self.pad_id)

    def __len__(self) -> int:
        return len(self.token_lists)


__all__ = [
    "CALIBRATION",
    "PAIR_FIELDS",
    "TextRole",
    "TokenBatches",
    "calibration_fingerprint",
    "default_calibration_path",
    "iter_batches",
    "load_calibration_texts",
    "tokenize_texts",
]
