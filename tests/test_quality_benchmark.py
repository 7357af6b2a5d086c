"""CI smoke test of the quality benchmark's quick preset (smallest settings).

Checks that the script runs end to end, writes its table with every candidate row and
its verdict section, works on another reasoning-gym task and data seed, and reuses a
finished seed on a re-run (from the cache, or from the committed seed records on a machine
without it); the numbers themselves are not asserted (see docs/quality.md).
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


def _run(out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--smallest", "--threads", "1",
         "--out", str(out), "--cache", str(cache), "--records", str(out / "seeds"), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


CASES = [
    pytest.param(("--seeds", "0"), "quick-smoke", "chain_sum", id="default-task"),
    pytest.param(("--seeds", "3", "--task", "basic_arithmetic", "--data-seed", "2"),
                 "quick-smoke-basic_arithmetic-data2", "basic_arithmetic", id="other-task"),
]


@pytest.mark.parametrize(("args", "stem", "task"), CASES)
def test_quick_preset_smallest_writes_table(tmp_path: Path, args, stem, task) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    _run(out, cache, *args)
    md = (out / f"quality-{stem}.md").read_text(encoding="utf-8")
    payload = json.loads((out / f"quality-{stem}.json").read_text(encoding="utf-8"))
    for name in payload["candidates"]:
        assert f"| {name} |" in md, f"row {name} missing from the table"
        assert name in payload["table"]
    assert "arm-stream-checkpoints" in payload["candidates"]
    assert payload["preset"]["task2"] == task
    header = next(line for line in md.splitlines() if line.startswith("| candidate |"))
    assert f"| {task} loss |" in header and f"| {task} acc |" in header
    assert "## Where ARM stands" in md and payload["verdicts"]["arm-single"]["sft-100%"]
    diag = payload["seeds"][0]["diagnostics"]["first_step"]
    assert any(k.startswith("noise floor") for k in diag["angles"])
    assert {"unrotated", "rotated"} <= set(diag["cosines"]["c10->c20 (latest step)"])
    if task == "chain_sum":
        # A re-run of the same code and preset reuses the finished seed, not recomputes it.
        again = _run(out, cache, *args)
        assert "reusing the finished result" in again.stdout
        assert json.loads((out / f"quality-{stem}.json").read_text())["reused_seeds"] == [0]
        # Another machine (an empty cache) reuses the committed seed record instead.
        records = sorted((out / "seeds").glob("result-quick-*-seed0.json"))
        assert len(records) == 1
        elsewhere = _run(out, tmp_path / "empty-cache", *args)
        assert f"reusing the finished result {records[0]}" in elsewhere.stdout
        assert json.loads(records[0].read_text())["results"] == payload["seeds"][0]["results"]


def test_evaluator_keeps_temporary_example_lists_apart() -> None:
    """The two halves of the validation split are slices built per call; the batch cache
    must not hand one half's batches to the other when a freed list's id is reused."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from quality_lib.data import Example
    from quality_lib.train import Evaluator

    from mergekit_arm.demo import train_tokenizer

    examples = [Example("t", f"Question: {i} plus {i}?\nAnswer:", f" {2 * i} done", str(2 * i))
                for i in range(8)]
    tokenizer = train_tokenizer([e.text() for e in examples] * 4, vocab_size=128)
    evaluator = Evaluator(None, tokenizer, max_length=32, batch_size=4, bf16=False)
    for _ in range(20):  # each slice is freed right after its call, as in Run.val_part
        even = [b.input_ids.tolist() for b in evaluator._batches(examples[0::2])]
        odd = [b.input_ids.tolist() for b in evaluator._batches(examples[1::2])]
        assert even != odd
    assert len(evaluator._cache) == 2
