"""The prepared GPU run (benchmarks/device/run.sh), rehearsed on the CPU at tiny sizes so
that it cannot rot: every part must finish, each within its own timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["payload-check", "cuda-tests", "calib-bfloat16", "calib-float32", "merge", "stream",
         "quality"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_rehearsal_runs_every_part(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    records = ROOT / "benchmarks/results/seeds"
    before = set(records.iterdir()) if records.is_dir() else set()
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/device/run.sh"), "--rehearse"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=2100)  # > run.sh budget
    out = tmp_path / "out"
    summary = (out / "summary.txt").read_text(encoding="utf-8")
    assert proc.returncode == 0, f"{summary}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for name in PARTS:
        line = next((x for x in summary.splitlines() if x.split() and x.split()[0] == name), "")
        assert line.split()[1:2] == ["ok"], f"part {name}: {line!r}\n{summary}"
    assert "all parts ok" in summary
    after = set(records.iterdir()) if records.is_dir() else set()
    assert after == before, f"the run wrote seed records into the repository: {after - before}"
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
    # what each part must leave behind: its log, and the stream's trajectory of 2 steps
    assert {f"./{p}.log" for p in PARTS} <= names, names
    trajectory = (out / "all-logs.txt").read_text(encoding="utf-8")
    assert '"step": 2' in trajectory and "quality-gpu-smoke" in trajectory
