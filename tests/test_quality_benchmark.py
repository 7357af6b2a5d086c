"""CI smoke test of the quality benchmark's quick preset (smallest settings).

Checks that the script runs end to end, writes its table with every candidate row and
its verdict section, works on another reasoning-gym task and data seed, and reuses a
finished seed on a re-run (from the cache, or from the committed seed records on a machine
without it, or the records of an earlier code with ``--records-of``); the numbers themselves are not asserted (see docs/quality.md).
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
    assert "## Chosen on validation" in md
    # the heap is trimmed by default and each computed seed records its peak memory
    assert payload["heap_trim_s"] == 5.0
    assert 0 < payload["seeds"][0]["peak_rss_gib"] < 64 and "peak resident memory" in md
    picked = payload["validation_picks"]["picked"][0]
    assert picked["val-pick (baselines)"] in payload["baselines"]
    assert picked["val-pick (all early)"] in payload["candidates"]
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
        # --records-of aggregates the records of another code fingerprint and computes nothing
        current = payload["code_fingerprint"]
        older = records[0].with_name(records[0].name.replace(current, "0123456789ab"))
        records[0].rename(older)
        _run(out, tmp_path / "empty-2", *args, "--records-of", "0123456789ab")
        aggregated = json.loads((out / f"quality-{stem}.json").read_text())
        assert aggregated["code_fingerprint"] == "0123456789ab"
        assert aggregated["reported_by_code"] == current
        assert aggregated["seeds"][0]["results"] == payload["seeds"][0]["results"]
        before = (out / f"quality-{stem}.md").read_text()
        missing = subprocess.run(
            [sys.executable, str(SCRIPT), "--quick", "--smallest", "--threads", "1", "--out",
             str(out), "--cache", str(tmp_path / "empty-3"), "--records", str(out / "seeds"),
             "--seeds", "0,1", "--records-of", "0123456789ab"],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert missing.returncode != 0 and "no finished result for seed(s) 1" in missing.stderr
        assert (out / f"quality-{stem}.md").read_text() == before


def test_evaluator_keeps_temporary_example_lists_apart() -> None:
    """The two halves of the validation split are slices built per call; the batch cache
    must not hand one half's batches to the other when a freed list's id is reused."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from quality_lib.data import Example
    from quality_lib.train import Evaluator

    from mergekit_arm.demo import train_tokenizer

    examples = [Example("t", f"Question: {i} plus {i}?\nAnswer:", f" {2 * i} done", str(2 * i))
                for i in range(8)]
    tokenizer = train_tokenizer([e.text() for e in examples] * 4, vocab_size=128)
    # the model only places the batches (on its device); it never runs here
    evaluator = Evaluator(torch.nn.Linear(1, 1), tokenizer, max_length=32, batch_size=4,
                          bf16=False)
    for _ in range(20):  # each slice is freed right after its call, as in Run.val_part
        even = [b.input_ids.tolist() for b in evaluator._batches(examples[0::2])]
        odd = [b.input_ids.tolist() for b in evaluator._batches(examples[1::2])]
        assert even != odd
    assert len(evaluator._cache) == 2


def _seed(seed: int, rows: dict[str, tuple[float, float]]) -> dict:
    return {"seed": seed, "results": {name: {"val": val, "loss_gsm_ood": test}
                                      for name, (val, test) in rows.items()}}


def test_validation_pick_reads_validation_only() -> None:
    """The kept candidate is the lowest ``val`` loss of the pool, whatever its test loss;
    converged SFT and the ablations are never in the pool; the test values reported are
    the picked candidate's own."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from quality_lib.report_stats import VAL_PICK_ALL, VAL_PICK_BASELINES, pick_summary

    rows = {"sft-10%": (1.0, 1.5), "avg-early": (0.9, 1.2), "stream-x": (0.8, 1.3),
            "sft-100%": (0.1, 0.1), "ablation-y": (0.2, 0.2), "model-stock": (0.95, 1.1)}
    seeds = [_seed(0, rows), _seed(1, rows | {"stream-x": (0.99, 1.0)})]
    summary = pick_summary(seeds, tuple(rows), ("sft-10%", "avg-early", "model-stock"))
    assert summary["picked"] == [{VAL_PICK_BASELINES: "avg-early", VAL_PICK_ALL: "stream-x"},
                                 {VAL_PICK_BASELINES: "avg-early", VAL_PICK_ALL: "avg-early"}]
    ood = summary["table"][VAL_PICK_ALL]["loss_gsm_ood"]
    assert ood["mean"] == pytest.approx((1.3 + 1.2) / 2)
    # against the oracle best baseline (model-stock, 1.1 on test) the pick loses in both seeds
    vs_best = summary["vs"][f"{VAL_PICK_ALL} vs best baseline"]["loss_gsm_ood"]
    assert vs_best["verdict"] == "loses" and vs_best["mean"] == pytest.approx(0.15)


def test_device_option_refuses_a_missing_gpu(tmp_path: Path) -> None:
    """``--device cuda`` where torch sees no GPU stops before any work, naming the fix."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--smallest", "--device", "cuda",
         "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "'cuda' is not available here" in result.stderr
    assert not (tmp_path / "out").exists()


def test_second_task_train_split_never_shares_items_with_held_out_splits() -> None:
    """Run seeds 10, 20 and 30 used to put the second task's train split on the seeds of its
    validation, test and calibration splits (train *was* validation). Every run seed up to
    1000, at every preset's sizes, now keeps the four seed ranges apart; seeds 0-9 keep
    their old train seeds (their committed records stay valid); the guard names a pair
    that does meet."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from quality_lib import data
    from quality_lib.pipeline import FULL, GPU, QUICK

    base = data._SEEDS["task2_train"]
    assert [data.task2_train_seed(base, s) for s in range(10)] == \
        [base + 1_000_000 * s for s in range(10)]
    for preset in (QUICK, FULL, GPU):
        n_t2 = preset.n_test_task2 or preset.n_test
        for data_seed in (0, 3):
            seeds = {k: v + data._DATA_SEED_STRIDE * data_seed for k, v in data._SEEDS.items()}
            for run_seed in range(1001):
                data.check_disjoint_seed_ranges({
                    "train": (data.task2_train_seed(seeds["task2_train"], run_seed),
                              preset.n_train_task2),
                    "validation": (seeds["task2_val"], 4 * preset.n_val + 50),
                    "test": (seeds["task2_test"], 4 * n_t2 + 50),
                    "calibration": (seeds["calibration"],
                                    2 * ((preset.calibration_pool + 1) // 2) + 50)})
    with pytest.raises(SystemExit, match="train and validation splits"):
        data.check_disjoint_seed_ranges({"train": (100, 50), "validation": (120, 10)})
