"""The shipped calibration corpus is rebuilt from its data files byte for byte."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

CALIBRATION = Path(__file__).resolve().parent.parent / "calibration"
# The corpus every published statistics file was calibrated on (calibration/README.md).
CORPUS_SHA256 = "a5df082262e7a0b18602949307baf4dab84b1daa2391bf0ae1c975b739b4ece0"


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CALIBRATION / "generate.py"), "--check", *args],
                          capture_output=True, text=True, timeout=120, cwd=CALIBRATION.parent)


def test_generate_check_rebuilds_the_shipped_corpus_byte_for_byte():
    proc = _check()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"sha256 {CORPUS_SHA256}" in proc.stdout
    digest = hashlib.sha256((CALIBRATION / "default.jsonl").read_bytes()).hexdigest()
    assert digest == CORPUS_SHA256


def test_generate_check_fails_on_a_file_that_differs_by_one_byte(tmp_path):
    content = (CALIBRATION / "default.jsonl").read_bytes()
    changed = tmp_path / "default.jsonl"
    changed.write_bytes(content.replace(b"\n", b"\r\n", 1))  # same text, other bytes
    proc = _check("--output", str(changed))
    assert proc.returncode == 1
    assert "differs from a rebuild" in proc.stdout


def test_samples_are_data_not_code():
    """The generator holds templates and checks; the samples live in ``sources/``."""
    sources = sorted(p.name for p in (CALIBRATION / "sources").glob("*.jsonl"))
    assert sources == ["code.jsonl", "english.jsonl", "people.jsonl"]
    assert len((CALIBRATION / "generate.py").read_text(encoding="utf-8").splitlines()) < 400
