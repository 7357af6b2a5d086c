"""Model references (mergekit_arm.model_refs): Hub ids, ``@revision`` and ``base+adapter``
wherever a model folder goes, offline.

A Hugging Face cache is built in a temporary ``HF_HOME`` (``models--org--tiny/snapshots/
<sha>/...`` with ``refs/main`` and a tag ``v1``; a LoRA adapter repository beside it) and
``HF_HUB_OFFLINE`` is on; opening any socket fails the test. The LoRA adapter is built with
PEFT and the reference for ``base+adapter`` is PEFT's own ``merge_and_unload`` save.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from mergekit_arm.scripts.calibrate import main as calibrate_cli
from mergekit_arm.statistics import load_statistics

SHA_MAIN, SHA_V1, SHA_LORA = "a" * 40, "b" * 40, "c" * 40
CALIBRATION = ["--samples", "8", "--max-length", "32", "--rank", "8", "-q"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hub_repo(hub: Path, repo: str, revisions: dict[str, Path], refs: dict[str, str]) -> None:
    """The Hub cache layout of ``repo``: ``snapshots/<sha>/`` (a copy of each folder) and
    ``refs/<name>`` holding a sha."""
    storage = hub / ("models--" + repo.replace("/", "--"))
    for sha, folder in revisions.items():
        shutil.copytree(folder, storage / "snapshots" / sha)
    (storage / "refs").mkdir(parents=True)
    for name, sha in refs.items():
        (storage / "refs" / name).write_text(sha)


@pytest.fixture(scope="module")
def lora(tmp_path_factory, tiny_llama):
    """A random LoRA adapter of ``tiny_llama`` and PEFT's ``merge_and_unload`` of it."""
    import peft
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    config = peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                             target_modules=["q_proj", "v_proj", "up_proj", "down_proj"])
    wrapped = peft.get_peft_model(model, config)
    wrapped.save_pretrained(root / "adapter")
    wrapped.merge_and_unload().save_pretrained(root / "merged")
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(root / "merged")
    return SimpleNamespace(adapter=root / "adapter", merged=root / "merged")


@pytest.fixture(scope="module")
def offline_hub(tmp_path_factory, tiny_llama, lora):
    """A pre-populated Hub cache in a temporary HF_HOME, offline, no socket allowed:
    ``org/tiny`` (main = tiny_llama, tag v1 = the LoRA-merged model), ``org/tiny-lora``."""
    import huggingface_hub.constants as constants

    from mergekit_arm import model_refs

    home = tmp_path_factory.mktemp("hf_home")
    _hub_repo(home / "hub", "org/tiny", {SHA_MAIN: tiny_llama, SHA_V1: lora.merged},
              {"main": SHA_MAIN, "v1": SHA_V1})
    _hub_repo(home / "hub", "org/tiny-lora", {SHA_LORA: lora.adapter}, {"main": SHA_LORA})
    connections: list[object] = []

    def no_network(self, address, *args, **kwargs):
        connections.append(address)
        raise AssertionError(f"a test opened a network connection to {address}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HOME", str(home))
        patch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        patch.setenv("HF_HOME", str(home))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", no_network)
        model_refs.hub_snapshot.cache_clear()
        yield SimpleNamespace(home=home, connections=connections)
        model_refs.hub_snapshot.cache_clear()
    assert connections == [], f"network touched: {connections}"


def _calibrate(model: str, out: Path, data: Path, *extra: str):
    return CliRunner().invoke(calibrate_cli, [model, str(out), "--data", str(data),
                                              *CALIBRATION, *extra])


@pytest.fixture(scope="module")
def reference_stats(tmp_path_factory, tiny_llama, lora, calibration_jsonl):
    """Statistics of the local base and of PEFT's merged save, calibrated from folders."""
    out = tmp_path_factory.mktemp("reference_stats")
    stats = {}
    for name, folder in (("base", tiny_llama), ("merged", lora.merged)):
        result = _calibrate(str(folder), out / f"{name}.st", calibration_jsonl)
        assert result.exit_code == 0, result.output
        stats[name] = load_statistics(out / f"{name}.st")
    return stats


def _assert_same_statistics(a, b) -> None:
    assert a.weight_names == b.weight_names
    for name in sorted(a.weight_names):
        torch.testing.assert_close(a[name].eigenvalues, b[name].eigenvalues, rtol=0, atol=0)
        torch.testing.assert_close(a[name].basis, b[name].basis, rtol=0, atol=0)


CASES = [  # (reference, which model it is, expected metadata)
    ("{base}", "base", {}),
    ("org/tiny", "base", {"model_revision": SHA_MAIN}),
    ("org/tiny@v1", "merged", {"model_revision": SHA_V1}),
    (f"org/tiny@{SHA_V1}", "merged", {"model_revision": SHA_V1}),
    ("{base}+{adapter}", "merged", {"adapter": "{adapter}"}),
    ("org/tiny+org/tiny-lora", "merged",
     {"model_revision": SHA_MAIN, "adapter": "org/tiny-lora", "adapter_revision": SHA_LORA}),
    ("org/tiny@main+{adapter}", "merged", {"model_revision": SHA_MAIN}),
]


@pytest.mark.parametrize(("reference", "expected", "metadata"), CASES)
def test_calibrate_references(reference, expected, metadata, offline_hub, tiny_llama, lora,
                              reference_stats, calibration_jsonl, tmp_path):
    """arm-calibrate REF: the statistics equal those of the model REF names (base+adapter:
    PEFT's merge_and_unload, bit for bit), the metadata record the resolved revision, and
    --check accepts the file for REF."""
    paths = {"base": str(tiny_llama), "adapter": str(lora.adapter)}
    reference = reference.format(**paths)
    out = tmp_path / "stats.st"
    result = _calibrate(reference, out, calibration_jsonl)
    assert result.exit_code == 0, result.output
    stats = load_statistics(out)
    _assert_same_statistics(stats, reference_stats[expected])
    other = reference_stats["base" if expected == "merged" else "merged"]
    assert not torch.equal(stats[sorted(stats.weight_names)[1]].eigenvalues,
                           other[sorted(other.weight_names)[1]].eigenvalues)
    for key, value in metadata.items():
        assert stats.metadata[key] == value.format(**paths), key
    if not metadata:  # a local folder: recorded as before, no Hub keys
        assert stats.metadata["model"] == str(Path(tiny_llama).resolve())
        assert "model_revision" not in stats.metadata
    check = CliRunner().invoke(calibrate_cli, [reference, str(out), "--check"])
    assert check.exit_code == 0, check.output
    assert "ok (computed from" in check.output


ERRORS = [  # (reference, words of the message)
    ("{tmp}/missing/model", "does not exist"),
    ("./missing-model", "does not exist"),
    ("org/absent", "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"),
    ("org/tiny@v9", "could not be resolved"),
    ("{adapter}", "holds a PEFT adapter, not a model: name it with its base"),
    ("{base}+{merged}", "is not a PEFT adapter folder"),
    ("{base}@main", "is a local path, which has no revisions"),
    ("a+b+c", "cannot read the model reference"),
]


@pytest.mark.parametrize(("reference", "words"), ERRORS)
def test_reference_errors(reference, words, offline_hub, tiny_llama, lora, calibration_jsonl,
                          tmp_path, monkeypatch):
    """Bad references: exit 2 with one clear message, nothing written."""
    monkeypatch.chdir(tmp_path)
    reference = reference.format(tmp=tmp_path, base=tiny_llama, adapter=lora.adapter,
                                 merged=lora.merged)
    out = tmp_path / "stats.st"
    result = _calibrate(reference, out, calibration_jsonl)
    assert result.exit_code == 2, result.output
    assert "arm-calibrate: error:" in result.output and words in result.output, result.output
    assert not out.exists()


def test_folded_adapter_is_cached_and_redone_on_change(offline_hub, tiny_llama, lora, tmp_path):
    """base+adapter is folded once per content (HF_HOME/mergekit-arm/merged-adapters/KEY,
    weights equal to PEFT's merge_and_unload); a changed adapter is folded again."""
    from mergekit_arm.model_refs import resolve_model

    adapter = tmp_path / "adapter"
    shutil.copytree(lora.adapter, adapter)
    first = resolve_model(f"{tiny_llama}+{adapter}")
    assert first.folder.parent == offline_hub.home / "mergekit-arm" / "merged-adapters"
    merged, expected = load_file(first.folder / "model.safetensors"), \
        load_file(lora.merged / "model.safetensors")
    assert merged.keys() == expected.keys()
    for name in expected:
        assert torch.equal(merged[name], expected[name]), name
    assert (first.folder / "tokenizer.json").is_file()
    assert resolve_model(f"{tiny_llama}+{adapter}").folder == first.folder  # reused
    weights = load_file(adapter / "adapter_model.safetensors")
    save_file({k: v * 2 for k, v in weights.items()}, adapter / "adapter_model.safetensors")
    second = resolve_model(f"{tiny_llama}+{adapter}")
    assert second.folder != first.folder
    again = load_file(second.folder / "model.safetensors")
    assert not any(torch.equal(again[n], merged[n]) for n in merged if "q_proj" in n)


def test_configs_resolve_references(offline_hub, tiny_llama, lora, tmp_path):
    """The stream's origin/start/checkpoints and arm-choose's origin, checkpoints and
    model candidates become local folders; local paths stay as before."""
    from mergekit_arm.choose.build import candidate_model
    from mergekit_arm.choose.config import parse_choose_config
    from mergekit_arm.stream.config import parse_config

    snapshot = offline_hub.home / "hub" / "models--org--tiny" / "snapshots"
    stream = parse_config({
        "origin": "org/tiny", "mode": "checkpoints", "start": f"org/tiny@{SHA_MAIN}",
        "checkpoints": [f"{tiny_llama}+{lora.adapter}", "org/tiny@v1", str(lora.merged)],
        "schedule": {"kind": "constant", "learning_rate": 1.0}}).resolved()
    assert stream.origin == str(snapshot / SHA_MAIN) == stream.start
    folded = Path(stream.checkpoints[0].model)
    assert folded.parent.name == "merged-adapters" and (folded / "config.json").is_file()
    assert stream.checkpoints[1].model == str(snapshot / SHA_V1)
    assert stream.checkpoints[2].model == str(lora.merged.resolve())
    choose = parse_choose_config({
        "validation": {"data": str(tmp_path / "v.jsonl")}, "origin": "org/tiny",
        "checkpoints": ["org/tiny@v1"],
        "candidates": [{"name": "hub", "model": "org/tiny+org/tiny-lora"}]}).resolved()
    assert choose.origin == str(snapshot / SHA_MAIN)
    assert choose.checkpoints == [str(snapshot / SHA_V1)]
    assert choose.candidates[0].model == "org/tiny+org/tiny-lora"  # resolved when built
    assert candidate_model(choose.candidates[0]).parent.name == "merged-adapters"


def test_stream_on_hub_and_adapter_equals_local(offline_hub, tiny_llama, lora,
                                                calibration_jsonl, tmp_path):
    """arm-stream with origin org/tiny and checkpoint base+adapter writes the same model,
    bit for bit, as with the local base folder and PEFT's merged save."""
    from stream_helpers import stream_config

    from mergekit_arm.stream import run_stream

    by_reference = stream_config("org/tiny", [f"{tiny_llama}+{lora.adapter}"],
                                 calibration_jsonl, steps=1)
    local = stream_config(tiny_llama, [lora.merged], calibration_jsonl, steps=1)
    a = run_stream(by_reference, tmp_path / "hub", progress=False)
    b = run_stream(local, tmp_path / "local", progress=False)
    wa, wb = load_file(a.model / "model.safetensors"), load_file(b.model / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_callback_streams_a_peft_run(offline_hub, tiny_llama, math_texts, calibration_jsonl,
                                     tmp_path):
    """ARMCallback on a PEFT (LoRA) Trainer: each save's adapter is folded into origin and
    that full model is the stream's checkpoint; the stream equals arm-stream over
    origin+checkpoint-N, bit for bit, and only the last folded checkpoint stays."""
    import peft
    from datasets import Dataset
    from stream_helpers import stream_config
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from mergekit_arm.demo.tiny_models import load_model_dir
    from mergekit_arm.demo.tokenizer import encode_texts
    from mergekit_arm.demo.training import PadRight
    from mergekit_arm.integrations.transformers import ADAPTER_FOLDS, ARMCallback
    from mergekit_arm.stream import run_stream

    model, tokenizer = load_model_dir(tiny_llama)
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    config = stream_config(tiny_llama, [], calibration_jsonl)
    for key in ("checkpoints", "steps"):
        del config[key]
    callback = ARMCallback(config)
    run = tmp_path / "run"
    args = TrainingArguments(
        output_dir=str(run), max_steps=4, per_device_train_batch_size=4, learning_rate=3e-2,
        save_strategy="steps", save_steps=2, report_to=[], disable_tqdm=True,
        log_level="error", use_cpu=True, dataloader_pin_memory=False, seed=0)
    data = Dataset.from_dict({"input_ids": encode_texts(tokenizer, math_texts[:16], 32)})
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback],
                      data_collator=PadRight(tokenizer.pad_token_id), processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    assert not (run / "checkpoint-2" / "config.json").exists()  # adapter-only checkpoints
    result = callback.result
    assert result is not None and len(result.records) == 2
    assert sorted(callback.fold_seconds) == [2, 4]
    folds = result.out / ".arm-stream" / ADAPTER_FOLDS
    assert sorted(p.name for p in folds.iterdir()) == ["checkpoint-4"]
    replay = stream_config(tiny_llama, [f"{tiny_llama}+{run / f'checkpoint-{n}'}" for n in (2, 4)],
                           calibration_jsonl, mode="checkpoints")
    del replay["steps"]
    expected = run_stream(replay, tmp_path / "replay", progress=False)
    assert [r["learning_rate"] for r in result.records] == \
        [r["learning_rate"] for r in expected.records]
    wa = load_file(result.model / "model.safetensors")
    wb = load_file(expected.model / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_choose_scores_hub_and_adapter_candidates(offline_hub, tiny_llama, lora,
                                                   validation_jsonl, tmp_path):
    """arm-choose: a `model` candidate named org/tiny+org/tiny-lora and a mergekit
    candidate reading BASE+ADAPTER score exactly as PEFT's merged save does."""
    from mergekit_arm.choose.runner import run_choose

    linear = {"merge_method": "linear", "dtype": "float32",
              "models": [{"model": f"{tiny_llama}+{lora.adapter}", "parameters": {"weight": 1.0}}]}
    config = {
        "validation": {"data": str(validation_jsonl), "samples": 4, "max_length": 32},
        "candidates": [{"name": "merged", "model": str(lora.merged)},
                       {"name": "hub", "model": "org/tiny+org/tiny-lora"},
                       {"name": "mergekit", "mergekit": linear}],
        "device": "cpu"}
    result = run_choose(config, tmp_path / "out", progress=False)
    losses = {row.name: row.val_loss for row in result.rows}
    assert losses["hub"] == losses["merged"] == losses["mergekit"], losses


NO_NETWORK_CLI = ("import socket, sys\n"
                  "def refuse(self, address, *a, **k):\n"
                  "    raise SystemExit(f'network touched: {address}')\n"
                  "socket.socket.connect = refuse\n"
                  "from mergekit_arm.scripts.calibrate import main\n"
                  "sys.argv[0] = 'arm-calibrate'\n"
                  "main()\n")


def test_cli_in_a_fresh_process_with_hf_env(offline_hub, calibration_jsonl, tmp_path):
    """The command as a user runs it: HF_HOME and HF_HUB_OFFLINE=1 in the environment (read
    by huggingface_hub at import), sockets refused; the revision is recorded."""
    import os
    import subprocess
    import sys

    out = tmp_path / "stats.st"
    env = {**os.environ, "HF_HOME": str(offline_hub.home), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", NO_NETWORK_CLI, "org/tiny@v1", str(out),
                           "--data", str(calibration_jsonl), *CALIBRATION],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert load_statistics(out).metadata["model_revision"] == SHA_V1
