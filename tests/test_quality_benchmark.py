"""CI smoke test of the quality benchmark's quick preset (smallest settings).

Checks only that the script runs end to end and writes its table with every
candidate row; the numbers themselves are not asserted (see docs/quality.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "quality.py"

pytest.importorskip("reasoning_gym", reason="the quality benchmark needs the [bench] extra")


def test_quick_preset_smallest_writes_table(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--smallest", "--seeds", "0", "--threads", "1",
         "--out", str(out), "--cache", str(cache)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    md = (out / "quality-quick-smoke.md").read_text(encoding="utf-8")
    payload = json.loads((out / "quality-quick-smoke.json").read_text(encoding="utf-8"))
    for name in payload["candidates"]:
        assert f"| {name} |" in md, f"row {name} missing from the table"
        assert name in payload["table"]
    assert "arm-stream" in payload["candidates"] and "sft-100%" in payload["candidates"]
