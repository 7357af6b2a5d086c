"""arm-stream's averaging recipes: toward legs (running average, EMA), ``start: average``,
per-block step sizes with a separate selection set; their replay YAMLs and resume.
Tiny models, CPU, one thread."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import assert_state_dicts_close, load_state_dict
from stream_helpers import one_thread_env, stream_config
from transformers import AutoModelForCausalLM, AutoTokenizer

from mergekit_arm.calibration import tokenize_texts
from mergekit_arm.errors import ArmConfigError
from mergekit_arm.evaluation import heldout_loss, loss_batches
from mergekit_arm.stream import load_config, parse_config, run_stream
from mergekit_arm.stream.blocks import group_filters, tensor_group

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def heldout_files(tmp_path_factory, demo_records) -> tuple[Path, list[str]]:
    """Math texts the SFT fixtures did not train on: 8 for validation, 8 for selection."""
    texts = [r["text"] for r in demo_records if r.get("domain") == "math"]
    held = texts[64:80] if len(texts) >= 80 else texts[-16:]
    path = tmp_path_factory.mktemp("recipes") / "heldout.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in held))
    return path, held


def _replay(yaml_path: Path, out: Path) -> dict[str, torch.Tensor]:
    subprocess.run(["mergekit-yaml", str(yaml_path), str(out), "--quiet"], check=True,
                   env=one_thread_env(), capture_output=True, timeout=300)
    return load_state_dict(out)


def _config(tiny_llama, tiny_llama_sft, calibration_jsonl, checkpoints, **overrides):
    items = [(tiny_llama_sft[c[0]], c[1]) if isinstance(c, tuple) else tiny_llama_sft[c]
             for c in checkpoints]
    return stream_config(tiny_llama, items, calibration_jsonl, **overrides)


def _toward_recursion(start, checkpoints, rates):
    """``W <- W + eta_t (c_t - W)`` in float32, as the kernel's plain step computes it."""
    current = dict(start)
    for ckpt, eta in zip(checkpoints, rates):
        current = {k: torch.add(v, ckpt[k] - v, alpha=eta) for k, v in current.items()}
    return current


def test_running_average_is_the_mean_of_the_checkpoints(tmp_path, tiny_llama, tiny_llama_sft,
                                                       calibration_jsonl):
    config = _config(tiny_llama, tiny_llama_sft, calibration_jsonl, [5, 10, 5], mode="toward",
                     steps=None, save_every=1)
    config["schedule"] = {"kind": "average"}  # eta_t = 1 / t
    out = tmp_path / "out"
    result = run_stream(config, out, progress=False)
    assert [r["learning_rate"] for r in result.records] == [1.0, 0.5, 1 / 3]
    assert [r["leg"] for r in result.records][0].startswith("current -> ")
    c5, c10 = load_state_dict(tiny_llama_sft[5]), load_state_dict(tiny_llama_sft[10])
    origin = load_state_dict(tiny_llama)
    final = load_state_dict(result.model)
    expected = _toward_recursion(origin, [c5, c10, c5], [1.0, 0.5, 1 / 3])
    for name, tensor in final.items():
        assert torch.equal(tensor, expected[name]), name  # exactly the kernel's recursion
    mean = {k: (2 * c5[k] + c10[k]) / 3 for k in c5}
    assert_state_dicts_close(final, mean, rtol=1e-5, atol=1e-6)  # = the running mean
    # each step replays with plain mergekit-yaml (a toward step: no origin, base = W_{t-1})
    text = (out / "steps" / "step-2.yml").read_text()
    assert "origin: true" not in text and "activations" not in text
    replay = _replay(out / "steps" / "step-2.yml", tmp_path / "replay")
    assert_state_dicts_close(replay, load_state_dict(out / "steps" / "step-2"), rtol=1e-6,
                             atol=0)


def test_ema_follows_the_formula(tmp_path, tiny_llama, tiny_llama_sft, calibration_jsonl):
    eta = 0.3
    config = _config(tiny_llama, tiny_llama_sft, calibration_jsonl, [10, 5], mode="toward",
                     steps=None, start=str(tiny_llama_sft[5]),
                     schedule={"kind": "constant", "learning_rate": eta})
    result = run_stream(config, tmp_path / "out", progress=False)
    c5, c10 = load_state_dict(tiny_llama_sft[5]), load_state_dict(tiny_llama_sft[10])
    final = load_state_dict(result.model)
    # EMA from c5 over c10, c5: (1-eta)^2 c5 + eta (1-eta) c10 + eta c5
    formula = {k: (1 - eta) ** 2 * c5[k] + eta * (1 - eta) * c10[k] + eta * c5[k] for k in c5}
    assert_state_dicts_close(final, formula, rtol=1e-5, atol=1e-6)
    expected = _toward_recursion(c5, [c10, c5], [eta, eta])
    assert all(torch.equal(final[k], expected[k]) for k in final)


def test_start_average_and_its_replays(tmp_path, tiny_llama, tiny_llama_sft, calibration_jsonl):
    config = _config(tiny_llama, tiny_llama_sft, calibration_jsonl, [(5, 1.0), (10, 3.0)],
                     start="average", steps=1, save_every=1, arm={"rotation_strength": 1.0})
    out = tmp_path / "out"
    result = run_stream(config, out, progress=False)
    c5, c10 = load_state_dict(tiny_llama_sft[5]), load_state_dict(tiny_llama_sft[10])
    start = load_state_dict(out / "steps" / "step-0")
    assert_state_dicts_close(start, {k: (c5[k] + 3 * c10[k]) / 4 for k in c5}, rtol=1e-5,
                             atol=1e-6)
    assert "merge_method: linear" in (out / "steps" / "step-0.yml").read_text()
    assert_state_dicts_close(_replay(out / "steps" / "step-0.yml", tmp_path / "r0"), start,
                             rtol=0, atol=0)
    assert "base_model: " + str(out / "steps" / "step-0") in (out / "steps" / "step-1.yml").read_text()
    assert_state_dicts_close(_replay(out / "steps" / "step-1.yml", tmp_path / "r1"),
                             load_state_dict(result.model), rtol=1e-5, atol=1e-7)
    with pytest.raises(ArmConfigError, match="start: average"):
        parse_config({**config, "mode": "checkpoints", "steps": None})
    with pytest.raises(ArmConfigError, match="schedule.learning_rate"):
        parse_config({**config, "schedule": {"kind": "constant"}})


def _blocks_config(tiny_llama, tiny_llama_sft, calibration_jsonl, heldout, **overrides):
    path, _ = heldout
    return _config(
        tiny_llama, tiny_llama_sft, calibration_jsonl, [10, 5], mode="toward", steps=None,
        start=str(tiny_llama_sft[5]), schedule={"kind": "constant", "learning_rate": 0.5},
        validation={"data": str(path), "samples": 8, "max_length": 32},
        selection={"data": str(path), "samples": 8, "offset": 8, "max_length": 32},
        blocks={"groups": "kind", "multipliers": [0.5, 1.0, 2.0]}, save_every=1,
        **overrides)


def _loss(folder: Path, texts: list[str]) -> float:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return heldout_loss(model, loss_batches(tokenize_texts(tokenizer, texts, 32), 8, pad))


def test_per_block_rates_are_searched_on_selection_and_replay(
        tmp_path, tiny_llama, tiny_llama_sft, calibration_jsonl, heldout_files):
    config = _blocks_config(tiny_llama, tiny_llama_sft, calibration_jsonl, heldout_files,
                            select="last")
    out = tmp_path / "out"
    result = run_stream(config, out, progress=False)
    first = result.records[0]
    rates = first["block_rates"]
    assert list(rates) == ["embeddings+head", "attention", "mlp", "other"]
    assert set(rates.values()) <= {0.25, 0.5, 1.0}
    assert len(first["block_search"]) == 4 * 2  # every group, every other multiplier
    tried = [t["loss"] for t in first["block_search"]]
    # a try is kept iff it lowers the loss: the result is the lowest loss seen
    assert first["selection_loss"] <= min(tried)
    if rates != dict.fromkeys(rates, 0.5):
        assert first["selection_loss"] == min(tried)
    # the losses are measured on the sets they are said to be: selection, then validation
    _, texts = heldout_files
    step1 = out / "steps" / "step-1"
    assert abs(_loss(step1, texts[8:16]) - first["selection_loss"]) < 1e-4
    assert abs(_loss(step1, texts[:8]) - first["val_loss"]) < 1e-4
    # the weights are W + eta_g (c - W) per tensor, and the YAML's filter list replays them
    c5, c10 = load_state_dict(tiny_llama_sft[5]), load_state_dict(tiny_llama_sft[10])
    filters = group_filters(list(c5), "kind")
    weights = load_state_dict(step1)
    for name, tensor in weights.items():
        eta = rates[tensor_group(name, filters)]
        assert torch.equal(tensor, torch.add(c5[name], c10[name] - c5[name], alpha=eta)), name
    text = (out / "steps" / "step-1.yml").read_text()
    assert "filter: self_attn" in text and "filter: mlp" in text
    assert_state_dicts_close(_replay(out / "steps" / "step-1.yml", tmp_path / "replay"),
                             weights, rtol=0, atol=0)


def test_selection_must_differ_from_validation(tiny_llama, tiny_llama_sft, calibration_jsonl,
                                               heldout_files):
    config = _blocks_config(tiny_llama, tiny_llama_sft, calibration_jsonl, heldout_files)
    same = {**config, "selection": {**config["selection"], "offset": 4}}
    with pytest.raises(ArmConfigError, match="read the same texts"):
        parse_config(same)
    with pytest.raises(ArmConfigError, match="needs a `selection`"):
        parse_config({k: v for k, v in config.items() if k != "selection"})
    parse_config(config)  # disjoint offsets of one file are fine
    example = load_config(Path(__file__).resolve().parents[1] / "yaml_examples" /
                          "stream-average.yml")
    assert example.mode == "toward" and example.blocks is not None
    line_search = load_config(Path(__file__).resolve().parents[1] / "yaml_examples" /
                              "stream-toward-line-search.yml")
    assert line_search.mode == "toward" and line_search.schedule.kind == "line_search"
    assert line_search.schedule.decay == "average" and line_search.validation is not None


def test_resume_of_a_per_block_toward_stream_is_bit_identical(
        tmp_path, monkeypatch, tiny_llama, tiny_llama_sft, calibration_jsonl, heldout_files):
    config = _blocks_config(tiny_llama, tiny_llama_sft, calibration_jsonl, heldout_files,
                            select="last")
    reference = run_stream(config, tmp_path / "reference", progress=False)
    from mergekit_arm.stream import step

    original, calls = step.merge_candidate, [0]

    def interrupted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 12:  # inside step 2's block search (step 1: 1 + 8 merges)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(step, "merge_candidate", interrupted)
    from mergekit_arm.stream import blocks

    monkeypatch.setattr(blocks, "merge_candidate", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_stream(config, out, progress=False)
    monkeypatch.setattr(step, "merge_candidate", original)
    monkeypatch.setattr(blocks, "merge_candidate", original)
    resumed = run_stream(config, out, progress=False)
    assert [r["block_rates"] for r in resumed.records] == [
        r["block_rates"] for r in reference.records]
    a, b = load_state_dict(resumed.model), load_state_dict(reference.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
