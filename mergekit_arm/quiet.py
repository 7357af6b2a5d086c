"""Quiet transformers: the commands show their own progress, not its per-file bars; and
MergeKit's use of transformers' deprecated ``torch_dtype`` is not reported to the user."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from mergekit_arm._stack import find_on_stack

#: transformers' deprecation that MergeKit 0.1.5 triggers on every merge with ``dtype`` or
#: ``out_dtype`` (``merge._model_out_config`` sets ``config.torch_dtype``) and when it folds
#: a LoRA adapter (``from_pretrained(torch_dtype=...)``).
TORCH_DTYPE_DEPRECATED = "`torch_dtype` is deprecated"
_LOGGERS = ("transformers.configuration_utils", "transformers.modeling_utils")
_MERGEKIT_DIR = f"{os.sep}mergekit{os.sep}"


def _called_from_mergekit() -> bool:
    """Whether MergeKit's own code (not the user's, not ours) is on the calling stack."""
    return bool(find_on_stack(lambda frame: _MERGEKIT_DIR in frame.f_code.co_filename or None))


class MergeKitDtypeFilter(logging.Filter):
    """Drops :data:`TORCH_DTYPE_DEPRECATED` when MergeKit's code triggered it: the user
    wrote ``dtype:`` as MergeKit documents it and cannot act on the message. The same
    warning from anyone else's code passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (TORCH_DTYPE_DEPRECATED in str(record.msg) and _called_from_mergekit())


def silence_mergekit_dtype_deprecation() -> None:
    """Install :class:`MergeKitDtypeFilter` on the transformers loggers that emit the
    warning (idempotent; imports nothing)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MergeKitDtypeFilter) for f in logger.filters):
            logger.addFilter(MergeKitDtypeFilter())


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-file loading/saving bars (the commands show their own)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


__all__ = ["MergeKitDtypeFilter", "TORCH_DTYPE_DEPRECATED", "quiet_transformers",
           "silence_mergekit_dtype_deprecation"]
