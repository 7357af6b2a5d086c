"""Texts of the demo: the package's default calibration corpus, split by domain."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mergekit_arm.calibration import default_calibration_path

DOMAINS = ("english", "math", "code")
# The last math texts are never trained on: the quick start reports loss on them.
DEMO_HELDOUT = 32


def default_demo_records() -> list[dict[str, Any]]:
    """Records (``{"text": ..., "domain": ...}``) of the package's default calibration file."""
    path = Path(default_calibration_path())
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}:{number}: expected a JSON object with a 'text' string")
            records.append(record)
    if not records:
        raise ValueError(f"{path} holds no texts")
    return records


def default_demo_texts(domains: str | Iterable[str] | None = None) -> list[str]:
    """Texts of the default calibration corpus, optionally only the given domain(s)."""
    records = default_demo_records()
    if domains is None:
        return [r["text"] for r in records]
    wanted = {domains} if isinstance(domains, str) else set(domains)
    texts = [r["text"] for r in records if r.get("domain") in wanted]
    if not texts:
        raise ValueError(f"the default corpus has no texts in domain(s) {sorted(wanted)}")
    return texts


def demo_sft_texts() -> list[str]:
    """Math texts the demo fine-tunes on (all but the last ``DEMO_HELDOUT``)."""
    return default_demo_texts("math")[:-DEMO_HELDOUT]


def demo_heldout_texts() -> list[str]:
    """Math texts that the demo's fine-tune never sees."""
    return default_demo_texts("math")[-DEMO_HELDOUT:]


__all__ = ["DEMO_HELDOUT", "DOMAINS", "default_demo_records", "default_demo_texts",
           "demo_heldout_texts", "demo_sft_texts"]
