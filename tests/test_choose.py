"""``arm-choose``: every kind of candidate built, scored independently of the runner, the
lowest loss kept; reuse, refusal of changed builds, the tuned-on flag and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from helpers import load_state_dict
from stream_helpers import independent_loss, stream_config
from transformers import AutoModelForCausalLM, AutoTokenizer

from mergekit_arm.choose import parse_choose_config, run_choose
from mergekit_arm.errors import ArmConfigError, ArmError
from mergekit_arm.scripts.choose import main as choose_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def halves(validation_texts) -> tuple[int, int]:
    """(n, offset): the streams read texts [0, n), the choice reads [n, 2n)."""
    n = len(validation_texts) // 2
    return n, n


def _linear(models: list[Path]) -> dict:
    return {"merge_method": "linear", "dtype": "float32",
            "models": [{"model": str(m), "parameters": {"weight": 1.0}} for m in models]}


def _task_arithmetic(base: Path, model: Path, weight: float) -> dict:
    return {"merge_method": "task_arithmetic", "base_model": str(base), "dtype": "float32",
            "models": [{"model": str(model), "parameters": {"weight": weight}}]}


@pytest.fixture
def choose_config(tmp_path, tiny_llama, tiny_llama_sft, calibration_jsonl, validation_jsonl,
                  halves):
    """A config of all three kinds: a checkpoint, two mergekit merges (inline and file) and a
    toward-average stream whose own validation reads the first half of the held-out texts."""
    n, offset = halves
    stream = stream_config(tiny_llama, [tiny_llama_sft[5], tiny_llama_sft[10]], calibration_jsonl,
                           mode="toward", steps=None, schedule={"kind": "average", "learning_rate": 1.0},
                           validation={"data": str(validation_jsonl), "samples": n})
    stream.pop("steps")
    stream_file = tmp_path / "stream.yml"
    stream_file.write_text(yaml.safe_dump(stream))
    expo_file = tmp_path / "expo.yml"
    expo_file.write_text(yaml.safe_dump(_task_arithmetic(tiny_llama, tiny_llama_sft[10], 1.5)))
    return {
        "validation": {"data": str(validation_jsonl), "offset": offset, "samples": n,
                       "max_length": 32},
        "candidates": [
            {"name": "c10", "model": str(tiny_llama_sft[10])},
            {"name": "average", "mergekit": _linear([tiny_llama_sft[5], tiny_llama_sft[10]])},
            {"name": "expo", "mergekit": str(expo_file)},
            {"name": "stream-average", "stream": str(stream_file)},
        ],
        "device": "cpu",
    }


def _independent(folder: Path, texts: list[str]) -> float:
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return independent_loss(model, AutoTokenizer.from_pretrained(folder), texts, 32)


def test_the_lowest_independent_loss_is_kept(tmp_path, choose_config, validation_texts, halves,
                                             tiny_llama_sft):
    n, offset = halves
    result = run_choose(choose_config, tmp_path / "out", progress=False)
    texts = validation_texts[offset:offset + n]
    independent = {row.name: _independent(Path(row.model), texts) for row in result.rows}
    for row in result.rows:
        assert row.val_loss == pytest.approx(independent[row.name], rel=1e-4), row.name
    assert result.chosen == min(independent, key=independent.get)
    best, runner_up = sorted(independent.values())[:2]
    assert runner_up - best > 1e-3  # a real choice, not a tie the order broke
    # the builds are what their recipes say
    c5, c10 = load_state_dict(tiny_llama_sft[5]), load_state_dict(tiny_llama_sft[10])
    rows = {row.name: row for row in result.rows}
    average = load_state_dict(rows["average"].model)
    stream = load_state_dict(rows["stream-average"].model)
    for name in c10:
        torch.testing.assert_close(average[name], (c5[name] + c10[name]) / 2)
        torch.testing.assert_close(stream[name], (c5[name] + c10[name]) / 2, rtol=1e-5, atol=1e-6)
    # OUT/model is the chosen build, its card says so, the leaderboard records every row
    chosen = load_state_dict(result.model)
    for name, tensor in load_state_dict(rows[result.chosen].model).items():
        assert torch.equal(chosen[name], tensor)
    card = (result.model / "README.md").read_text()
    assert "## Chosen by arm-choose" in card and f"`{result.chosen}`" in card
    record = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert record["chosen"] == result.chosen
    assert [r["name"] for r in record["rows"]] == ["c10", "average", "expo", "stream-average"]
    assert all(not r["tuned_on_validation"] for r in record["rows"])
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert f"{result.chosen} **(chosen)**" in board


def test_rerun_reuses_builds_and_refuses_a_changed_one(tmp_path, choose_config):
    out = tmp_path / "out"
    first = run_choose(choose_config, out, progress=False)
    again = run_choose(choose_config, out, progress=False)
    assert [r.reused for r in again.rows if r.kind == "mergekit"] == [True, True]
    assert [r.val_loss for r in again.rows] == [r.val_loss for r in first.rows]
    changed = json.loads(json.dumps(choose_config))
    changed["candidates"][1]["mergekit"]["models"][0]["parameters"]["weight"] = 3.0
    with pytest.raises(ArmError, match="candidate `average` changed since its build"):
        run_choose(changed, out, progress=False)
    restarted = run_choose(changed, out, restart=True, progress=False)
    assert not any(r.reused for r in restarted.rows)
    assert restarted.rows[1].val_loss != first.rows[1].val_loss


def test_a_stream_tuned_on_the_same_texts_is_flagged(tmp_path, choose_config, halves):
    n, _ = halves
    config = {**choose_config, "validation": {**choose_config["validation"], "offset": 0}}
    result = run_choose(config, tmp_path / "out", progress=False)
    flags = {row.name: row.tuned_on_validation for row in result.rows}
    assert flags == {"c10": [], "average": [], "expo": [], "stream-average": ["validation"]}
    assert "tuned on these held-out texts" in (tmp_path / "out" / "leaderboard.md").read_text()


def test_keep_best_removes_the_other_builds(tmp_path, choose_config):
    config = {**choose_config, "keep": "best"}
    result = run_choose(config, tmp_path / "out", progress=False)
    left = sorted(p.name for p in (tmp_path / "out" / "candidates").iterdir())
    assert left == ([result.chosen] if result.chosen != "c10" else [])
    assert (result.model / "config.json").is_file()


@pytest.mark.parametrize(("change", "message"), [
    ({"candidates": [{"name": "x", "model": "a", "stream": "b"}]},
     "needs exactly one of `model`, `mergekit` or `stream`"),
    ({"candidates": [{"name": "x", "model": "a"}, {"name": "x", "model": "b"}]},
     "repeated: x"),
    ({"candidates": [{"name": "../x", "model": "a"}]}, "plain folder name"),
    ({"candidates": [{"name": "x", "modle": "a"}]}, r"unknown key `candidates\[0\].modle`"),
    ({"keep": "some"}, "`keep`"),
    ({"validation": {"data": "v.jsonl", "sample": 3}}, "allowed here: batch_size, data"),
])
def test_config_errors_name_the_key(change, message):
    config = {"validation": {"data": "v.jsonl"}, "candidates": [{"name": "x", "model": "a"}],
              **change}
    with pytest.raises(ArmConfigError, match=message):
        parse_choose_config(config, "choose.yml")


def test_bad_recipes_fail_with_the_candidate_named(tmp_path, choose_config):
    missing = {**choose_config, "candidates": [{"name": "gone", "mergekit": str(tmp_path / "no.yml")}]}
    with pytest.raises(ArmConfigError, match="candidate `gone`: mergekit config .* does not exist"):
        run_choose(missing, tmp_path / "a", progress=False)
    invalid = {**choose_config, "candidates": [{"name": "bad", "mergekit": {"merge_method": "linear"}}]}
    with pytest.raises(ArmConfigError, match="candidate `bad`: invalid mergekit config"):
        run_choose(invalid, tmp_path / "b", progress=False)
    writing = tmp_path / "still-writing"
    writing.mkdir()
    (writing / "config.json").write_text((Path(choose_config["candidates"][0]["model"])
                                          / "config.json").read_text())
    (writing / "model.safetensors").write_bytes(b"\x10\x00\x00")  # a header cut short
    partial = {**choose_config, "candidates": [{"name": "late", "model": str(writing)}]}
    with pytest.raises(ArmError, match="candidate `late`: .* is incomplete"):
        run_choose(partial, tmp_path / "c", progress=False)
    not_ours = tmp_path / "taken"
    not_ours.mkdir()
    (not_ours / "file.txt").write_text("x")
    with pytest.raises(ArmError, match="not an arm-choose output folder"):
        run_choose(choose_config, not_ours, progress=False)


def test_cli_refuses_a_nan_candidate_and_writes_no_choice(tmp_path, choose_config, tiny_llama):
    broken = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(broken)
    config = {**choose_config, "candidates": [*choose_config["candidates"][:2],
                                              {"name": "broken", "model": str(broken)}]}
    config_file = tmp_path / "choose.yml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    result = CliRunner().invoke(choose_cli, [str(config_file), str(out), "-q"])
    assert result.exit_code == 2, result.output
    assert "candidate `broken`" in result.output and "NaN" in result.output
    assert not (out / "model").exists() and not (out / "leaderboard.json").exists()


def test_docs_list_every_key():
    from mergekit_arm.choose import ChooseConfig
    from mergekit_arm.choose.config import CandidateEntry
    from mergekit_arm.stream.config import ValidationConfig

    docs = (Path(__file__).resolve().parents[1] / "docs" / "choose.md").read_text()
    keys = [*ChooseConfig.model_fields,
            *(f"validation.{k}" for k in ValidationConfig.model_fields),
            *(f"candidates[].{k}" for k in CandidateEntry.model_fields)]
    for key in keys:
        assert f"| `{key}` |" in docs, f"{key} missing in docs/choose.md"
    parse_choose_config(yaml.safe_load((Path(__file__).resolve().parents[1] / "yaml_examples"
                                        / "choose.yml").read_text()), "choose.yml")


def test_lowest_loss_rule():
    from mergekit_arm.choose.pick import lowest_loss

    assert lowest_loss({"a": 2.0, "b": 1.0, "c": 1.0}) == "b"  # ties: the first listed
    assert lowest_loss({"a": float("nan"), "b": float("inf"), "c": 3.0, "d": None}) == "c"
    assert lowest_loss({"a": float("nan"), "b": None}) is None
    assert lowest_loss({}) is None


def test_standard_candidates_are_written_out(tmp_path, tiny_llama, tiny_llama_sft,
                                             validation_jsonl, halves):
    n, offset = halves
    held_out = {"data": str(validation_jsonl), "samples": n, "max_length": 32}
    config = {"origin": str(tiny_llama), "checkpoints": [str(tiny_llama_sft[5]),
                                                         str(tiny_llama_sft[10])],
              "standard": "all", "tuning": held_out,
              "validation": {**held_out, "offset": offset}, "device": "cpu"}
    result = run_choose(config, tmp_path / "out", progress=False)
    rows = {row.name: row for row in result.rows}
    assert list(rows) == ["ckpt-checkpoint-5", "ckpt-checkpoint-10", "average", "model-stock",
                          "toward-line-search"]
    assert [rows[name].kind for name in rows] == ["model", "model", "mergekit", "mergekit",
                                                  "stream"]
    assert not any(row.tuned_on_validation for row in result.rows)  # it tuned on `tuning`
    c5, c10 = load_state_dict(tiny_llama_sft[5]), load_state_dict(tiny_llama_sft[10])
    average = load_state_dict(rows["average"].model)
    for name in c10:
        torch.testing.assert_close(average[name], (c5[name] + c10[name]) / 2)
    trajectory = (Path(rows["toward-line-search"].model).parent / "trajectory.jsonl").read_text()
    assert len([line for line in trajectory.splitlines() if line.strip()]) >= 2
    # the same texts for tuning and choosing are refused; `standard` needs its models
    with pytest.raises(ArmConfigError, match="`tuning` and `validation` read the same texts"):
        parse_choose_config({**config, "validation": held_out})
    with pytest.raises(ArmConfigError, match="needs `origin` and at least one"):
        parse_choose_config({**config, "origin": None})
    with pytest.raises(ArmConfigError, match="model-stock` needs two or more"):
        parse_choose_config({**config, "standard": ["model-stock"], "checkpoints": ["a"]})
    with pytest.raises(ArmConfigError, match="repeated: average"):
        parse_choose_config({**config, "candidates": [{"name": "average", "model": "x"}]}
                            ).resolved().expanded()


def test_readme_example_is_a_valid_config():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Choosing among recipes: `arm-choose`", 1)[1]
    block = section.split("```yaml", 1)[1].split("```", 1)[0]
    config = parse_choose_config(yaml.safe_load(block), "README.md").resolved().expanded()
    assert [c.name for c in config.candidates] == [
        "ckpt-step-200", "ckpt-step-400", "average", "model-stock", "toward-line-search",
        "arm", "expo", "my-stream", "old-run"]
