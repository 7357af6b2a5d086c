"""The memory benchmark (benchmarks/bench_memory.py) at its tiny sizes, so that it cannot
rot: both sizes are written, calibrated and merged through the real CLIs, and each size's
peak memory is recorded as soon as that size is done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_sizes_record_peaks(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/bench_memory.py"), "--quick",
         "--reference", "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((tmp_path / "out" / "bench-memory-quick.json").read_text())
    assert payload["complete"] and payload["sizes_requested"] == [0.01, 0.02]
    assert [row["size_gb"] for row in payload["rows"]] == [0.01, 0.02]
    for row in payload["rows"]:
        assert row["layers"] >= 1 and row["weights_bytes"] > 0
        for stage in ("calibrate", "merge", "merge_task_arithmetic"):
            assert row[stage]["peak_rss_mib"] > row[stage]["peak_anon_mib"] > 0, (stage, row)
    assert "wrote" in proc.stdout and "(1 of 2 sizes)" in proc.stdout
    # nothing but the results file is left in the output folder (no temporaries)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bench-memory-quick.json"]
