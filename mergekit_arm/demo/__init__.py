"""Tiny local models for the quick start and the tests; nothing is ever downloaded.

Not part of the merging core: ``tokenizer`` (a byte-level BPE trained offline),
``tiny_models`` (random tiny Llama / Qwen3 folders), ``training`` (a ``transformers.Trainer``
fine-tune), ``evaluate`` (held-out loss of a saved model via :mod:`mergekit_arm.evaluation`),
``quickstart`` (the models of ``arm-demo-models``) and ``report``
(``python -m mergekit_arm.demo.report ROOT``).
"""

from __future__ import annotations

from mergekit_arm.demo.corpus import (
    DOMAINS,
    default_demo_records,
    default_demo_texts,
    demo_heldout_texts,
)
from mergekit_arm.demo.evaluate import saved_model_loss
from mergekit_arm.demo.quickstart import make_demo
from mergekit_arm.demo.tiny_models import (
    ARCHITECTURES,
    is_complete_model_dir,
    make_tiny_model,
    tiny_config,
)
from mergekit_arm.demo.tokenizer import train_tokenizer
from mergekit_arm.demo.training import fine_tune

__all__ = [
    "ARCHITECTURES",
    "DOMAINS",
    "default_demo_records",
    "default_demo_texts",
    "demo_heldout_texts",
    "fine_tune",
    "is_complete_model_dir",
    "make_demo",
    "make_tiny_model",
    "saved_model_loss",
    "tiny_config",
    "train_tokenizer",
]
