"""The architecture table (issue 22): for every architecture in :data:`ARCHITECTURES`, a
tiny random model and a "fine-tuned" sibling (the origin's weights, deterministically
perturbed) are calibrated in both modes, merged with ``merge_method: arm`` through
MergeKit's own ``mergekit-yaml`` command, and every merged tensor is compared with an
independent float64 reference; on tied-embedding models a short ``arm-stream`` is run and
every ``steps/step-K.yml`` is replayed with ``mergekit-yaml`` and must give ``steps/step-K``
bit for bit. This table backs the README's "Supported architectures" table.

Independent of the package (tests/arch_reference.py): which weights are linear maps is read
off the modules (``nn.Linear``, GPT-2 ``Conv1D``, stacked experts, routers), their inputs are
measured with forward hooks in float64, and the step is
:func:`tests.reference.reference_arm_step`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from .arch_reference import (
    assert_files_agree,
    assert_statistics_match,
    linear_maps,
    measured_inputs,
    reference_merge,
    rotated_weights,
    runtime_state,
    tied_embedding,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RANK_STORED, RANK_MERGED = 8, 4
MAX_LENGTH, SAMPLES = 32, 12
LEARNING_RATE = 0.5


@dataclass(frozen=True)
class Arch:
    """One row of the table: how to build the model, and what the README says of it."""

    name: str
    config: Callable[[dict], object]  # token ids -> transformers config
    tied: bool
    layer_sequential: bool  # the layer-sequential pass supports its layout
    moe: bool = False
    buffers: Callable[[object], dict[str, torch.Tensor]] | None = None  # stored as real ones are


def _common(ids: dict) -> dict:
    return dict(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, **ids)


def _cfg(cls_name: str, **extra) -> Callable[[dict], object]:
    def make(ids: dict):
        import transformers

        return getattr(transformers, cls_name)(**{**_common(ids), **extra})

    return make


def _gpt2(ids: dict):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=512, n_embd=32, n_layer=2, n_head=2, n_positions=64, **ids)


def _opt(ids: dict):
    from transformers import OPTConfig

    return OPTConfig(vocab_size=512, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                     num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=64,
                     **ids)


def _phi(ids: dict):
    from transformers import PhiConfig

    return PhiConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=64, **ids)


def _gpt_neox(ids: dict):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(vocab_size=512, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=64, **ids)


def _gpt_neox_buffers(config) -> dict[str, torch.Tensor]:
    """The attention buffers Pythia's checkpoints hold (transformers 5 no longer saves
    them, and MergeKit's gpt-neox architecture requires them)."""
    n = config.max_position_embeddings
    out = {}
    for i in range(config.num_hidden_layers):
        prefix = f"gpt_neox.layers.{i}.attention."
        out[prefix + "bias"] = torch.tril(torch.ones(n, n, dtype=torch.bool)).view(1, 1, n, n)
        out[prefix + "masked_bias"] = torch.tensor(-1e9)
        out[prefix + "rotary_emb.inv_freq"] = torch.ones(4)
    return out


ARCHITECTURES = {a.name: a for a in [
    Arch("llama-tied", _cfg("LlamaConfig", tie_word_embeddings=True), tied=True,
         layer_sequential=True),
    Arch("llama", _cfg("LlamaConfig", tie_word_embeddings=False), tied=False,
         layer_sequential=True),
    Arch("gpt2", _gpt2, tied=True, layer_sequential=False),
    Arch("phi3", _cfg("Phi3Config"), tied=False, layer_sequential=True),
    Arch("qwen2", _cfg("Qwen2Config"), tied=False, layer_sequential=True),
    Arch("qwen3", _cfg("Qwen3Config", head_dim=8), tied=False, layer_sequential=True),
    Arch("gemma", _cfg("GemmaConfig", head_dim=8), tied=True, layer_sequential=True),
    Arch("gemma2", _cfg("Gemma2Config", head_dim=8, sliding_window=16), tied=True,
         layer_sequential=True),
    Arch("mistral", _cfg("MistralConfig"), tied=False, layer_sequential=True),
    Arch("mixtral", _cfg("MixtralConfig", num_local_experts=4, num_experts_per_tok=2),
         tied=False, layer_sequential=True, moe=True),
    Arch("qwen3-moe", _cfg("Qwen3MoeConfig", head_dim=8, num_experts=4, num_experts_per_tok=2,
                           moe_intermediate_size=32, decoder_sparse_step=1),
         tied=False, layer_sequential=True, moe=True),
    Arch("opt", _opt, tied=True, layer_sequential=False),
    Arch("qwen2-tied", _cfg("Qwen2Config", tie_word_embeddings=True), tied=True,
         layer_sequential=True),
    Arch("gemma3", _cfg("Gemma3TextConfig", head_dim=8, sliding_window=16), tied=True,
         layer_sequential=True),
    Arch("phi", _phi, tied=False, layer_sequential=False),
    Arch("gpt-neox", _gpt_neox, tied=False, layer_sequential=False, buffers=_gpt_neox_buffers),
]}


def _rows(xfail: dict[str, str] | None = None, only: Callable[[Arch], bool] = lambda a: True):
    """The table's names as parameters; ``xfail`` marks rows known to fail (strict)."""
    xfail = xfail or {}
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=xfail[name]))
        if name in xfail else name
        for name, arch in ARCHITECTURES.items() if only(arch)
    ]


# -- the models ------------------------------------------------------------------------


def _perturbed(model: torch.nn.Module, seed: int) -> None:
    """Add ``0.1 * max(std, 0.02) * N(0, 1)`` to every parameter, one seeded draw each."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            scale = 0.1 * max(float(param.std()) if param.numel() > 1 else 0.0, 0.02)
            param.add_(scale * torch.randn(param.shape, generator=generator))


@dataclass
class World:
    """One architecture's models, statistics and merge, built once per row."""

    arch: Arch
    root: Path
    origin: Path
    sibling: Path
    tokens: list[list[int]]
    stats: dict[tuple[str, str], Path]  # ("origin" | "sibling", mode) -> statistics file


def _build(arch: Arch, root: Path, tokenizer, texts: list[str]) -> World:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mergekit_arm.calibration.data import tokenize_texts
    from mergekit_arm.demo.runtime import quiet_runtime

    ids = {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id",
                                                        "pad_token_id")}
    with quiet_runtime(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(arch.config(ids)).eval()
        # the row's columns describe the model that is built
        assert (tied_embedding(model) is not None) == arch.tied, arch.name
        assert ("experts" in linear_maps(model).values()) == arch.moe, arch.name
        folders = {}
        for label, seed in (("origin", None), ("sibling", 1)):
            if seed is not None:
                _perturbed(model, seed)
            folders[label] = root / label
            model.save_pretrained(folders[label])
            tokenizer.save_pretrained(folders[label])
            if arch.buffers is not None:
                weights = folders[label] / "model.safetensors"
                save_file({**load_file(weights), **arch.buffers(model.config)}, weights,
                          metadata={"format": "pt"})
        # the folder's tokenizer as transformers reloads it (for a Qwen2 config that is a
        # Qwen2Tokenizer, which splits some texts differently from the one saved)
        reloaded = AutoTokenizer.from_pretrained(folders["origin"])
    return World(arch, root, folders["origin"], folders["sibling"],
                 tokenize_texts(reloaded, texts, MAX_LENGTH), {})


@pytest.fixture(scope="module")
def worlds(tmp_path_factory, demo_tokenizer, calibration_texts):
    """``worlds(name)``: the row's :class:`World`, built on first use (module-scoped)."""
    cache: dict[str, World] = {}
    texts = calibration_texts[:SAMPLES]

    def get(name: str) -> World:
        if name not in cache:
            cache[name] = _build(ARCHITECTURES[name], tmp_path_factory.mktemp(name),
                                 demo_tokenizer, texts)
        return cache[name]

    get.texts = texts
    return get


def _calibrate(world: World, which: str, mode: str, texts: list[str]) -> Path:
    """Statistics of ``which`` ("origin"/"sibling") in ``mode``, computed once."""
    from mergekit_arm.calibration import CalibrationOptions, calibrate

    key = (which, mode)
    if key not in world.stats:
        folder = getattr(world, which)
        out = world.root / f"{which}-{mode}.safetensors"
        options = CalibrationOptions(samples=SAMPLES, max_length=MAX_LENGTH, rank=RANK_STORED,
                                     batch_size=4, mode=mode, device="cpu")
        calibrate(folder, out, options, texts=texts, progress=False)
        world.stats[key] = out
    return world.stats[key]


# -- MergeKit ----------------------------------------------------------------------------


def mergekit_yaml(config: dict, path: Path, out: Path) -> None:
    """``mergekit-yaml CONFIG OUT``: MergeKit's own command (``mergekit.scripts.run_yaml``),
    run in this process (a subprocess costs ~5 s of imports per row; the start-up hook
    is tested in test_registration.py and test_end_to_end.py)."""
    from click.testing import CliRunner
    from mergekit.scripts.run_yaml import main

    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = CliRunner().invoke(main, [str(path), str(out)], catch_exceptions=True)
    if result.exit_code != 0:
        raise AssertionError(f"mergekit-yaml {path} failed ({result.exit_code}): "
                             f"{result.exception!r}\n{result.output[-3000:]}"
                             ) from result.exception


def arm_config(world: World, cur_stats: Path, from_stats: Path, **parameters) -> dict:
    return {
        "merge_method": "arm",
        "base_model": str(world.sibling),
        "models": [{"model": str(world.origin),
                    "parameters": {"origin": True, "activations": str(from_stats)}}],
        "parameters": {"learning_rate": LEARNING_RATE, "rank": RANK_MERGED,
                       "activations": str(cur_stats), **parameters},
        "dtype": "float32",
    }


# -- the tests ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", _rows())
def test_calibration_modes_agree_with_measured_inputs(worlds, name):
    """Both calibration modes give the same statistics, and those are the eigenpairs of
    each linear map's input measured here; layouts the layer-sequential pass does not
    support are refused by name, with all-at-once as the fix. ``arm-calibrate --check``
    accepts each file for its own model and refuses it for the other."""
    from mergekit_arm.calibration import check_statistics
    from mergekit_arm.errors import CalibrationError, StatisticsError

    world = worlds(name)
    for which, other in (("origin", "sibling"), ("sibling", "origin")):
        whole = _calibrate(world, which, "all-at-once", worlds.texts)
        check_statistics(whole, getattr(world, which))
        with pytest.raises(StatisticsError, match="computed from"):
            check_statistics(whole, getattr(world, other))
        if world.arch.layer_sequential:
            assert_files_agree(whole, _calibrate(world, which, "layer-sequential",
                                                  worlds.texts))
        else:
            with pytest.raises(CalibrationError, match="all-at-once"):
                _calibrate(world, which, "layer-sequential", worlds.texts)
        measured = measured_inputs(getattr(world, which), world.tokens, world.arch.moe)
        assert_statistics_match(whole, measured, name)


@pytest.mark.parametrize("name", _rows())
def test_merge_matches_float64_reference(worlds, name):
    """``mergekit-yaml`` with ``merge_method: arm`` equals the float64 reference on every
    tensor (1e-4 relative), and every linear map was really rotated (it differs from the
    plain step by more than 1e-3)."""
    world = worlds(name)
    cur = _calibrate(world, "sibling", "all-at-once", worlds.texts)
    origin = _calibrate(world, "origin", "all-at-once", worlds.texts)
    out = world.root / "merged"
    mergekit_yaml(arm_config(world, cur, origin), world.root / "merge.yml", out)
    model, merged = runtime_state(out)
    want = reference_merge(world.sibling, world.origin, cur, origin, RANK_MERGED,
                           LEARNING_RATE)
    assert sorted(merged) == sorted(want)
    for tensor_name, expected in want.items():
        error = float((merged[tensor_name].double() - expected).norm() / expected.norm())
        assert error < 1e-4, f"{name}: {tensor_name}: relative error {error:.2e}"
    _, sibling = runtime_state(world.sibling)
    _, origin_state = runtime_state(world.origin)
    for tensor_name in rotated_weights(model):
        plain = sibling[tensor_name].double() * (1 + LEARNING_RATE) - LEARNING_RATE * (
            origin_state[tensor_name].double())
        moved = float((merged[tensor_name].double() - plain).norm() / plain.norm())
        assert moved > 1e-3, f"{name}: {tensor_name} took the plain step ({moved:.1e})"


def _replay(step_yml: Path, out: Path) -> None:
    from click.testing import CliRunner
    from mergekit.scripts.run_yaml import main

    result = CliRunner().invoke(main, [str(step_yml), str(out)], catch_exceptions=True)
    assert result.exit_code == 0, f"replaying {step_yml} failed:\n{result.output[-3000:]}"


@pytest.mark.parametrize("name", _rows(only=lambda a: a.tied))
def test_tied_stream_steps_replay_exactly(worlds, name, calibration_jsonl):
    """On a tied-embedding model every ``steps/step-K.yml`` of a 2-step ``arm-stream``
    reproduces ``steps/step-K`` bit for bit under ``mergekit-yaml``."""
    from stream_helpers import stream_config

    from mergekit_arm.stream import run_stream

    from .helpers import load_state_dict

    world = worlds(name)
    out = world.root / "stream"
    config = stream_config(world.origin, [world.sibling], calibration_jsonl, steps=2,
                           save_every=1, arm={"rank": RANK_MERGED, "rotation_strength": 1.0})
    run_stream(config, out, progress=False)
    steps = sorted((out / "steps").glob("step-*.yml"))
    assert [p.name for p in steps] == ["step-1.yml", "step-2.yml"]
    for step_yml in steps:
        replay = world.root / f"replay-{step_yml.stem}"
        _replay(step_yml, replay)
        want, got = load_state_dict(step_yml.with_suffix("")), load_state_dict(replay)
        assert sorted(got) == sorted(want)
        differ = [n for n in want if not torch.equal(got[n], want[n])]
        assert not differ, f"{name}: {step_yml.name} replayed differs in {differ}"


def _without_checkpoint_names(path: Path, out: Path, drop: str) -> Path:
    """A copy of statistics file ``path`` as an older mergekit-arm wrote it: the alias
    ``drop`` (a checkpoint name) and its probe left out."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != f"{drop}::probe"}  # noqa: SIM118
    aliases = json.loads(metadata["aliases"])
    del aliases[drop]
    metadata["aliases"] = json.dumps(aliases, sort_keys=True)
    save_file(tensors, out, metadata=metadata)
    return out


def test_gpt_neox_head_is_recorded_under_its_checkpoint_name(worlds, tmp_path):
    """GPT-NeoX stores its head as ``embed_out.weight`` (what MergeKit hands the merge);
    transformers 5 loads it as ``lm_head.weight`` (what calibration measures). The file
    records the checkpoint name as an alias of the head's entry, with its own probe, so
    the merge and ``--check`` find it (the table rows above check the merged values). A
    file without that alias (an older mergekit-arm) is refused by both, telling the user to
    calibrate again rather than that the file is another model's."""
    import json

    from safetensors import safe_open

    from mergekit_arm.calibration import check_statistics
    from mergekit_arm.errors import StatisticsError

    world = worlds("gpt-neox")
    cur = _calibrate(world, "sibling", "all-at-once", worlds.texts)
    origin = _calibrate(world, "origin", "all-at-once", worlds.texts)
    with safe_open(str(cur), "pt") as f:
        assert json.loads(f.metadata()["aliases"])["embed_out.weight"] == "lm_head.weight"
        assert torch.equal(f.get_tensor("embed_out.weight::probe"),
                           f.get_tensor("lm_head.weight::probe"))
    old_cur = _without_checkpoint_names(cur, tmp_path / "old-cur.safetensors", "embed_out.weight")
    old_origin = _without_checkpoint_names(origin, tmp_path / "old-origin.safetensors",
                                           "embed_out.weight")
    with pytest.raises(AssertionError) as refused:
        mergekit_yaml(arm_config(world, old_cur, old_origin), tmp_path / "merge.yml",
                      tmp_path / "out")
    message = str(refused.value)
    assert "no activation statistics for the linear weight embed_out.weight" in message, message
    assert "computed from this very model" in message and "older mergekit-arm" in message, message
    assert not (tmp_path / "out" / "model.safetensors").exists()
    with pytest.raises(StatisticsError, match="embed_out.weight, the checkpoint name of "
                                              "lm_head.weight.*older mergekit-arm"):
        check_statistics(old_cur, world.sibling)
