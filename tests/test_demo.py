"""Tests of the tiny local models (mergekit_arm.demo), its Trainer fine-tune, the
arm-demo-models CLI and the report."""

from __future__ import annotations

import json
import math
import random
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import assert_state_dicts_close, load_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer

from mergekit_arm import demo
from mergekit_arm.demo.corpus import demo_sft_texts

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_tokenizer_round_trips(demo_tokenizer):
    for text in ["Hello, world! 12 + 30 = 42.", "def f(x):\n    return x * 2\n", "naïve café ✓"]:
        ids = demo_tokenizer(text)["input_ids"]
        assert ids and max(ids) < len(demo_tokenizer) <= 512
        assert demo_tokenizer.decode(ids) == text
    assert demo_tokenizer.eos_token == "<|endoftext|>"
    assert demo_tokenizer.pad_token_id is not None
    assert demo_tokenizer.padding_side == "right"


def test_tokenizer_saves_and_reloads(demo_tokenizer, tmp_path):
    demo_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "Question: 7 * 6? Answer: 42"
    assert loaded(text)["input_ids"] == demo_tokenizer(text)["input_ids"]
    assert loaded.pad_token == demo_tokenizer.pad_token


def _check_model(path, arch):
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == arch
    names = set(load_state_dict(path))
    for i in range(2):
        for proj in PROJECTIONS:
            assert f"model.layers.{i}.self_attn.{proj}.weight" in names
        for proj in ["gate_proj", "up_proj", "down_proj"]:
            assert f"model.layers.{i}.mlp.{proj}.weight" in names
        if arch == "qwen3":
            assert f"model.layers.{i}.self_attn.q_norm.weight" in names
            assert f"model.layers.{i}.self_attn.k_norm.weight" in names
    assert "model.layers.2.self_attn.q_proj.weight" not in names
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"} <= names
    state = load_state_dict(path)
    assert state["model.layers.0.self_attn.q_proj.weight"].shape == (64, 64)
    assert state["model.layers.0.self_attn.k_proj.weight"].shape == (32, 64)
    assert state["model.layers.0.mlp.up_proj.weight"].shape == (128, 64)
    assert state["lm_head.weight"].dtype == torch.float32
    assert not torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["2 + 2 = 4"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[-1] == model.config.vocab_size
    assert torch.isfinite(logits).all()


def test_tiny_llama_loads(tiny_llama):
    _check_model(tiny_llama, "llama")


def test_tiny_qwen3_loads(tiny_qwen3):
    _check_model(tiny_qwen3, "qwen3")


def test_make_tiny_model_is_seeded(tmp_path, demo_tokenizer):
    state = torch.random.get_rng_state()
    a = demo.make_tiny_model(tmp_path / "a", tokenizer=demo_tokenizer, seed=3)
    b = demo.make_tiny_model(tmp_path / "b", tokenizer=demo_tokenizer, seed=3)
    c = demo.make_tiny_model(tmp_path / "c", tokenizer=demo_tokenizer, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG was disturbed"
    assert_state_dicts_close(load_state_dict(a), load_state_dict(b), rtol=0, atol=0)
    sa, sc = load_state_dict(a), load_state_dict(c)
    assert not torch.equal(sa["lm_head.weight"], sc["lm_head.weight"])


def test_make_tiny_model_dtype(tmp_path, demo_tokenizer):
    path = demo.make_tiny_model(tmp_path / "bf16", "qwen3", demo_tokenizer, dtype=torch.bfloat16)
    state = load_state_dict(path)
    assert all(t.dtype == torch.bfloat16 for t in state.values())


def test_tiny_config():
    cfg = demo.tiny_config("qwen3", hidden_size=128)
    assert cfg.head_dim == 32 and cfg.num_attention_heads == 4 and cfg.num_key_value_heads == 2
    assert cfg.tie_word_embeddings is False
    assert demo.tiny_config("llama", num_layers=3).num_hidden_layers == 3


def test_sft_fixture_checkpoints(tiny_llama, tiny_llama_sft, tiny_qwen3_sft):
    assert sorted(tiny_llama_sft) == [5, 10] and sorted(tiny_qwen3_sft) == [5, 10]
    for path in [*tiny_llama_sft.values(), *tiny_qwen3_sft.values()]:
        assert demo.is_complete_model_dir(path)
    base = load_state_dict(tiny_llama)
    step5, step10 = (load_state_dict(tiny_llama_sft[k]) for k in (5, 10))
    assert set(base) == set(step5) == set(step10)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base[name], step5[name])
    assert not torch.equal(step5[name], step10[name])


def test_fine_tune_is_a_quiet_deterministic_trainer_run(tiny_llama, math_texts, tmp_path, capfd):
    texts = math_texts[:16]
    before = demo.saved_model_loss(tiny_llama, texts)
    states = torch.random.get_rng_state(), random.getstate(), np.random.get_state()
    threads = torch.get_num_threads()
    capfd.readouterr()
    run1 = demo.fine_tune(tiny_llama, tmp_path / "run1", texts, steps=12, save_steps=6,
                          num_threads=1)
    printed = capfd.readouterr()
    run2 = demo.fine_tune(tiny_llama, tmp_path / "run2", texts, steps=12, seed=0, num_threads=1)
    run3 = demo.fine_tune(tiny_llama, tmp_path / "run3", texts, steps=12, seed=1, num_threads=1)
    assert printed.out == "" and printed.err == "", printed
    assert torch.equal(torch.random.get_rng_state(), states[0]), "torch RNG was disturbed"
    assert random.getstate() == states[1], "python RNG was disturbed"
    assert np.array_equal(np.random.get_state()[1], states[2][1]), "numpy RNG was disturbed"
    assert torch.get_num_threads() == threads, "thread count was not restored"
    assert run1 == {6: tmp_path / "run1" / "checkpoint-6", 12: tmp_path / "run1" / "checkpoint-12"}
    assert run2 == {12: tmp_path / "run2"}
    after6, after12 = demo.saved_model_loss(run1[6], texts), demo.saved_model_loss(run1[12], texts)
    assert after12 < after6 < before, (before, after6, after12)
    assert_state_dicts_close(load_state_dict(run1[12]), load_state_dict(run2[12]), rtol=0, atol=0)
    different = load_state_dict(run3[12])["lm_head.weight"]
    assert not torch.equal(load_state_dict(run1[12])["lm_head.weight"], different)
    AutoModelForCausalLM.from_pretrained(run1[12])
    AutoTokenizer.from_pretrained(run1[12])


def test_fine_tune_checkpoints_are_the_trainers_with_warmup_and_cosine(tiny_llama, math_texts,
                                                                        tmp_path):
    """Real ``checkpoint-k`` folders whose scheduler followed transformers' linear warmup
    (a tenth of the steps) then cosine decay: lr_k = lr * (1 + cos(pi (k - w) / (T - w))) / 2."""
    lr, total = 3e-3, 20
    run = demo.fine_tune(tiny_llama, tmp_path / "run", math_texts[:16], steps=total,
                         save_steps=5, learning_rate=lr, num_threads=1)
    assert sorted(run) == [5, 10, 15, 20]
    warmup = total // 10
    for k, path in run.items():
        state = json.loads((path / "trainer_state.json").read_text())
        assert state["global_step"] == k and state["max_steps"] == total
        assert (path / "optimizer.pt").is_file() and demo.is_complete_model_dir(path)
        scheduler = torch.load(path / "scheduler.pt", weights_only=True)
        expected = lr * 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup)))
        assert scheduler["_last_lr"][0] == pytest.approx(expected, rel=1e-6, abs=1e-12), k


def test_fine_tune_rejects_bad_arguments(tiny_llama, tmp_path):
    with pytest.raises(ValueError, match="steps must be at least 1"):
        demo.fine_tune(tiny_llama, tmp_path, ["a text"], steps=0)
    with pytest.raises(ValueError, match="save_steps must be in 1..4"):
        demo.fine_tune(tiny_llama, tmp_path, ["a text"], steps=4, save_steps=5)
    with pytest.raises(ValueError, match="at least one text"):
        demo.fine_tune(tiny_llama, tmp_path, [], steps=4)


def test_saved_model_loss_is_the_packages_heldout_loss(tiny_llama, math_texts):
    """Same number as :func:`mergekit_arm.evaluation.heldout_loss` on hand-made batches
    (texts plus eos, right padding never scored), and independent of the batch size."""
    from mergekit_arm.evaluation import heldout_loss, loss_batches

    texts = math_texts[:5]
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    ids = [tokenizer(t + tokenizer.eos_token)["input_ids"][:64] for t in texts]
    want = heldout_loss(model, loss_batches(ids, 2, tokenizer.pad_token_id))
    assert demo.saved_model_loss(tiny_llama, texts, max_length=64, batch_size=4) == pytest.approx(
        want, rel=1e-6)
    assert demo.saved_model_loss(tiny_llama, texts, batch_size=1) == pytest.approx(want, rel=1e-6)


def test_assert_state_dicts_close_names_tensor():
    a = {"x": torch.zeros(2), "y": torch.zeros(3)}
    b = {"x": torch.zeros(2), "y": torch.tensor([0.0, 1.0, 0.0])}
    try:
        assert_state_dicts_close(a, b, rtol=0, atol=1e-3)
    except AssertionError as error:
        assert "y" in str(error) and "x:" not in str(error)
    else:  # pragma: no cover
        raise AssertionError("expected a mismatch")


def test_make_demo_is_idempotent(tmp_path, demo_records):
    paths = demo.make_demo(tmp_path, sft_steps=24)
    assert sorted(paths) == ["base", "sft-step-10", "sft-step-20", "sft-step-24"]
    assert paths["base"] == tmp_path / "models" / "base"
    for path in paths.values():
        assert demo.is_complete_model_dir(path)
    assert not [p for p in tmp_path.rglob(".*")], "a temporary folder was left behind"
    # The SFT run is a Trainer output folder; the published models are its checkpoints.
    run = tmp_path / "sft-run"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint-10", "checkpoint-20", "checkpoint-24"]
    for k in (10, 20, 24):
        assert_state_dicts_close(load_state_dict(paths[f"sft-step-{k}"]),
                                 load_state_dict(run / f"checkpoint-{k}"), rtol=0, atol=0)
        assert not (paths[f"sft-step-{k}"] / "optimizer.pt").exists()
    mtimes = {k: (p / "model.safetensors").stat().st_mtime_ns for k, p in paths.items()}
    again = demo.make_demo(tmp_path, sft_steps=24)
    assert again == paths
    assert {k: (p / "model.safetensors").stat().st_mtime_ns for k, p in again.items()} == mtimes
    # A damaged checkpoint is rebuilt, bit for bit; the complete base is reused.
    before = load_state_dict(paths["sft-step-20"])
    (paths["sft-step-20"] / "model.safetensors").unlink()
    demo.make_demo(tmp_path, sft_steps=24)
    assert (paths["base"] / "model.safetensors").stat().st_mtime_ns == mtimes["base"]
    assert demo.is_complete_model_dir(paths["sft-step-20"])
    assert_state_dicts_close(load_state_dict(paths["sft-step-20"]), before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="llama"):
        demo.make_demo(tmp_path, arch="qwen3", sft_steps=24)
    heldout = demo.demo_heldout_texts()
    assert not set(heldout) & set(demo_sft_texts())
    losses = {k: demo.saved_model_loss(p, heldout) for k, p in paths.items()}
    assert losses["sft-step-24"] < losses["base"]

    # The report prints the same held-out losses (a copy of sft-step-24 plays the merge).
    from mergekit_arm.demo.report import main as report

    missing = CliRunner().invoke(report, [str(tmp_path)])
    assert missing.exit_code == 2 and "not a finished model folder" in missing.output
    shutil.copytree(paths["sft-step-24"], tmp_path / "merged")
    result = CliRunner().invoke(report, [str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"held-out loss on {len(heldout)} math texts" in result.output
    for name, loss in losses.items():
        assert f"{name:<24} {loss:.4f}" in result.output
    assert f"{'merged (ARM)':<24} {losses['sft-step-24']:.4f}" in result.output


def test_cli_passes_options(tmp_path, monkeypatch):
    from mergekit_arm.scripts.demo import main

    calls = []

    def fake_make_demo(root, **kwargs):
        calls.append((root, kwargs))
        return {"base": tmp_path / "models" / "base"}

    monkeypatch.setattr(demo, "make_demo", fake_make_demo)
    args = [str(tmp_path), "--arch", "qwen3", "--sft-steps", "12", "--seed", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert calls == [(str(tmp_path), {"arch": "qwen3", "sft_steps": 12, "seed": 3,
                                      "num_threads": 1})]
    assert f"base: {(tmp_path / 'models' / 'base').resolve()}" in result.output
    bad = CliRunner().invoke(main, [str(tmp_path), "--arch", "gpt2"])
    assert bad.exit_code != 0 and not calls[1:]


def test_core_modules_do_not_import_the_demo():
    """The demo is not part of the merging core: importing every other module of the
    package (CLIs included, bar ``arm-demo-models``) never loads ``mergekit_arm.demo``."""
    import subprocess
    import sys

    code = (
        "import sys, importlib, pathlib, mergekit_arm\n"
        "root = pathlib.Path(mergekit_arm.__file__).parent\n"
        "names = ['.'.join(('mergekit_arm',) + p.relative_to(root).with_suffix('').parts)\n"
        "         .removesuffix('.__init__') for p in sorted(root.rglob('*.py'))]\n"
        "names = [n for n in names if not n.startswith(('mergekit_arm.demo',\n"
        "                                               'mergekit_arm.scripts.demo'))]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names), sorted(m for m in sys.modules if m.startswith('mergekit_arm.demo')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, loaded = proc.stdout.split(" ", 1)
    assert int(count) > 10 and loaded.strip() == "[]", proc.stdout
