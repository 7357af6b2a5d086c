"""The CUDA paths end to end (``pytest -m cuda``; skipped without a GPU): calibration on
the GPU in both modes and a MergeKit ``--cuda`` merge give the all-CPU pipeline's model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import assert_state_dicts_close, load_state_dict

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _calibrate(model: Path, out: Path, data: Path, device: str, mode: str) -> Path:
    subprocess.run([sys.executable, "-c", "from mergekit_arm.scripts.calibrate import main; main()",
                    str(model), str(out), "--data", str(data), "--samples", "16",
                    "--max-length", "64", "--rank", "16", "--device", device, "--dtype",
                    "float32", "--mode", mode, "-q"], check=True)
    return out


def _merge(tmp: Path, base: Path, origin: Path, stats: Path, origin_stats: Path,
           cuda: bool) -> dict[str, torch.Tensor]:
    config = {"merge_method": "arm", "base_model": str(base),
              "models": [{"model": str(origin), "parameters": {"origin": True,
                                                                "activations": str(origin_stats)}}],
              "parameters": {"learning_rate": 0.5, "activations": str(stats), "rank": 8},
              "dtype": "float32", "out_dtype": "float32"}
    path = tmp / f"merge-{cuda}.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = tmp / f"merged-{cuda}"
    subprocess.run([sys.executable, "-c", "from mergekit.scripts.run_yaml import main; main()",
                    str(path), str(out), "--quiet", "--no-copy-tokenizer",
                    *(["--cuda"] if cuda else [])], check=True)
    return load_state_dict(out)


@pytest.mark.parametrize("mode", ["all-at-once", "layer-sequential"])
def test_cuda_calibration_and_merge_match_cpu(tmp_path, tiny_llama, tiny_llama_sft,
                                              calibration_jsonl, mode):
    sft = tiny_llama_sft[10]
    merged = {}
    for device in ("cpu", "cuda"):
        stats = _calibrate(sft, tmp_path / f"sft-{device}.safetensors", calibration_jsonl,
                           device, mode)
        origin = _calibrate(tiny_llama, tmp_path / f"base-{device}.safetensors",
                            calibration_jsonl, device, mode)
        merged[device] = _merge(tmp_path, sft, tiny_llama, stats, origin, device == "cuda")
    # float32 on both; the GPU's reductions run in another order (and TF32 is off by default)
    assert_state_dicts_close(merged["cuda"], merged["cpu"], rtol=1e-3, atol=1e-4)
