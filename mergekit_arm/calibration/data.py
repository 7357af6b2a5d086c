"""Calibration data: texts (the shipped corpus or local files read through ``datasets``), tokens, batches.

Accepted ``--data``:

* ``.txt``: one sample per paragraph (blank-line separated, the default) or per line;
* ``.jsonl`` / ``.json``: a ``text`` field, or a prompt/response pair (``prompt`` +
  ``response``, ``question`` + ``answer``, ``instruction`` + ``output``) joined by a newline;
* ``.parquet``: the same columns;
* a folder: a dataset saved with ``Dataset.save_to_disk`` (split ``train`` if a
  ``DatasetDict``), or a folder of the files above.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from mergekit_arm.calibration.options import TextMode
from mergekit_arm.errors import CalibrationError

PAIR_FIELDS = (("prompt", "response"), ("question", "answer"), ("instruction", "output"))
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


def _rows_to_texts(dataset, source: str) -> list[str]:
    columns = set(dataset.column_names)
    if "text" in columns:
        return [str(t) for t in dataset["text"] if t is not None]
    for prompt, response in PAIR_FIELDS:
        if {prompt, response} <= columns:
            return [
                f"{p}\n{r}"
                for p, r in zip(dataset[prompt], dataset[response])
                if p is not None and r is not None
            ]
    raise CalibrationError(
        f"calibration data {source} has columns {sorted(columns)}; expected a `text` column or "
        f"one of the pairs {[f'{a}+{b}' for a, b in PAIR_FIELDS]}"
    )


def _load_dataset(path: Path, text_mode: TextMode):
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
                f"calibration folder {path} holds no saved dataset and no .txt/.jsonl/.json/"
                ".parquet files"
            )
        kinds = {_BUILDERS[p.suffix] for p in files}
        if len(kinds) > 1:
            raise CalibrationError(f"calibration folder {path} mixes file kinds {sorted(kinds)}; use one")
        builder = kinds.pop()
        data_files = [str(p) for p in files]
    else:
        builder = _BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise CalibrationError(
                f"calibration data {path}: unsupported file type {path.suffix!r}; use .txt, "
                ".jsonl, .json, .parquet or a saved dataset folder"
            )
        data_files = [str(path)]
    kwargs = {"sample_by": text_mode} if builder == "text" else {}
    try:
        return datasets.load_dataset(builder, data_files=data_files, split="train", **kwargs)
    except Exception as error:
        raise CalibrationError(f"cannot read calibration data {path}: {error}") from error


def load_calibration_texts(
    data: str | os.PathLike | None = None,
    samples: int | None = None,
    text_mode: TextMode = "paragraph",
) -> list[str]:
    """The first ``samples`` non-empty texts of ``data`` (``None``: the shipped corpus)."""
    path = default_calibration_path() if data is None else Path(data).expanduser()
    if not path.exists():
        raise CalibrationError(f"calibration data {path} does not exist; check --data")
    texts = [t for t in _rows_to_texts(_load_dataset(path, text_mode), str(path)) if t.strip()]
    if samples is not None:
        if samples < 1:
            raise CalibrationError(f"--samples must be >= 1, got {samples}")
        texts = texts[:samples]
    if not texts:
        raise CalibrationError(
            f"calibration data {path} is empty (no non-blank text); pass a file with text in it"
        )
    return texts


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


__all__ = [
    "PAIR_FIELDS",
    "calibration_fingerprint",
    "default_calibration_path",
    "iter_batches",
    "load_calibration_texts",
    "tokenize_texts",
]
