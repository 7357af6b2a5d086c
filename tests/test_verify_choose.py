"""issue 23: ``arm-verify`` on real folders (Trainer checkpoints, a merge killed after its
weights), ``arm-choose``'s ``OUT/model`` (model files only, hard-linked), rebuilds of
``mergekit`` candidates whose inputs changed, and an import graph without cycles."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from mergekit_arm.checks import verify_output
from mergekit_arm.scripts.verify import main as verify_main

PACKAGE = Path(__file__).resolve().parents[1] / "mergekit_arm"
TRAINER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin",
                       "trainer_state.json")


# -- arm-verify on real folders: Trainer checkpoints, merges killed after their weights --------
def _merge(checkpoints: list[Path], out: Path, patch: dict | None = None) -> Path:
    """A real ``mergekit`` linear merge of ``checkpoints`` into ``out``; ``patch`` replaces
    functions of ``mergekit.merge`` (a step that fails), and the failure is swallowed."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    from mergekit_arm.choose.build import _forget_loaded_models

    config = MergeConfiguration.model_validate({
        "merge_method": "linear", "dtype": "float32",
        "models": [{"model": str(c), "parameters": {"weight": 1.0}} for c in checkpoints]})
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, replacement in (patch or {}).items():
            monkeypatch.setattr(f"mergekit.merge.{name}", replacement)
        try:
            run_merge(config, str(out), MergeOptions(copy_tokenizer=True, lazy_unpickle=True,
                                                     quiet=True))
        except OSError:
            pass  # the merge "crashed" after its weights
        finally:
            _forget_loaded_models()
    return out


def _offline(*args, **kwargs):
    raise OSError("We couldn't connect to 'https://huggingface.co' (offline)")


@pytest.fixture(scope="module")
def merges(tmp_path_factory, tiny_llama_sft) -> dict[str, Path]:
    """Real merges of the two Trainer checkpoints: complete, killed at the model card (the
    hub lookup of issue 23 item 7: weights and config only) and with a failed tokenizer
    copy (MergeKit logs it and finishes: card, no tokenizer)."""
    root = tmp_path_factory.mktemp("merges")
    sources = [tiny_llama_sft[5], tiny_llama_sft[10]]
    return {
        "complete": _merge(sources, root / "complete"),
        "killed-at-card": _merge(sources, root / "card", {"generate_card": _offline}),
        "no-tokenizer-copy": _merge(sources, root / "tok", {"_copy_tokenizer": _offline}),
    }


def _copy(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / source.name))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _statistics_as_weights(folder: Path) -> None:
    save_file({"stats.x": torch.ones(2)}, str(folder / "model.safetensors"),
              metadata={"format": "mergekit-arm-activations"})


def _adapter_next_to_weights(folder: Path) -> None:
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    save_file({"a.lora_A.weight": torch.ones(2, 2)}, str(folder / "adapter_model.safetensors"))


def _adapter_only(folder: Path) -> None:
    _adapter_next_to_weights(folder)
    (folder / "model.safetensors").unlink()


def _peft_checkpoint(folder: Path) -> None:
    """A PEFT run's Trainer checkpoint: training state beside an adapter, no config.json."""
    _adapter_only(folder)
    (folder / "config.json").unlink()


# (case, source, change, kwargs, expected kind, problem text or None for ok)
VERIFY_CASES = [
    ("trainer-checkpoint", "checkpoint", None, {}, "trainer", None),
    ("trainer-truncated-optimizer", "checkpoint", lambda f: _truncate(f / "optimizer.pt"), {},
     "trainer", "optimizer.pt: unreadable"),
    ("trainer-cut-before-state", "checkpoint", lambda f: (f / "trainer_state.json").unlink(), {},
     "trainer", "trainer_state.json: is missing"),
    ("trainer-stray-shard", "checkpoint",
     lambda f: save_file({"x": torch.ones(1)}, str(f / "model-3.safetensors")), {}, "trainer",
     "model-3.safetensors: is a weight file this model's index does not use"),
    ("adapter-next-to-weights", "checkpoint", _adapter_next_to_weights, {}, "trainer", None),
    ("adapter-only", "base", _adapter_only, {}, "adapter", "holds a PEFT adapter"),
    ("peft-trainer-checkpoint", "checkpoint", _peft_checkpoint, {}, "adapter",
     "holds a PEFT adapter"),
    ("statistics-as-weights", "base", _statistics_as_weights, {}, "model",
     "holds ARM activation statistics"),
    ("saved-model", "base", None, {}, "model", None),
    ("saved-model-no-tokenizer", "base", lambda f: [p.unlink() for p in f.glob("tokenizer*")],
     {}, "model", "no tokenizer"),
    ("saved-model-no-tokenizer-allowed", "base",
     lambda f: [p.unlink() for p in f.glob("tokenizer*")], {"tokenizer": False}, "model", None),
    ("merge", "complete", None, {}, "merge", None),
    ("merge-killed-at-card", "killed-at-card", None, {}, "model", "no tokenizer"),
    ("merge-without-tokenizer-copy", "no-tokenizer-copy", None, {}, "merge",
     "MergeKit merge without a tokenizer"),
    ("merge-card-cut", "complete", lambda f: (f / "README.md").unlink(), {}, "merge",
     "without its model card (README.md)"),
    ("merge-card-cut-allowed", "complete", lambda f: (f / "README.md").unlink(),
     {"card": False}, "merge", None),
    ("merge-tokenizer-cut", "complete", lambda f: (f / "tokenizer.json").unlink(), {}, "merge",
     "(tokenizer_config.json) are incomplete or corrupt, as a merge or save stopped midway"),
]


@pytest.mark.parametrize(("case", "source", "change", "kwargs", "kind", "problem"), VERIFY_CASES,
                         ids=[case[0] for case in VERIFY_CASES])
def test_verify_knows_real_folders(tmp_path, tiny_llama, tiny_llama_sft, merges, case, source,
                                   change, kwargs, kind, problem):
    origin = {"checkpoint": tiny_llama_sft[10], "base": tiny_llama, **merges}[source]
    folder = _copy(origin, tmp_path)
    if source == "checkpoint":  # a real Trainer checkpoint, training state and all
        assert all((folder / name).is_file() for name in TRAINER_STATE_FILES)
    if change is not None:
        change(folder)
    report = verify_output(folder, **kwargs)
    assert report.kind == kind
    if problem is None:
        assert report.ok, report.problems
    else:
        assert any(problem in line for line in report.problems), report.problems
        if kind == "adapter":  # the one problem: no "config.json is missing, re-run the merge"
            assert len(report.problems) == 1, report.problems


def test_verify_cli_names_what_is_missing_and_the_fix(merges, tiny_llama_sft):
    killed = CliRunner().invoke(verify_main, [str(merges["killed-at-card"])])
    assert killed.exit_code == 1
    assert "no tokenizer" in killed.output and "re-run the merge" in killed.output
    assert sorted(p.name for p in merges["killed-at-card"].iterdir()) == [
        "config.json", "model.safetensors"]
    no_copy = CliRunner().invoke(verify_main, [str(merges["no-tokenizer-copy"])])
    assert no_copy.exit_code == 1 and f"copy the tokenizer files from {tiny_llama_sft[5]}" \
        in no_copy.output
    checkpoint = CliRunner().invoke(verify_main, [str(tiny_llama_sft[10])])
    assert checkpoint.exit_code == 0 and "Trainer checkpoint" in checkpoint.output


# -- the package's import graph has no cycle ---------------------------------------------------
def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source (top level, under
    ``if TYPE_CHECKING:``, inside functions). ``from pkg import sub`` of a submodule points
    at ``pkg.sub``; importing ``a.b.c`` also imports the packages ``a.b`` and ``a`` (except
    the module's own enclosing packages, which are already importing)."""
    paths = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                wanted = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base
                          for a in node.names]
            else:
                continue
            for target in wanted:
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if not target:
                    continue
                pieces = target.split(".")
                for i in range(1, len(pieces) + 1):
                    implied = ".".join(pieces[:i])
                    if implied in paths and implied != name and not name.startswith(implied + "."):
                        targets.add(implied)
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in order:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], order[other])
        if low[node] == order[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return cycles


def test_import_graph_finds_a_type_checking_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import f\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from pkg.a import g\n")
    (package / "c.py").write_text("from pkg import a\n")
    assert import_cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert "mergekit_arm.choose.runner" in graph["mergekit_arm.choose"]
    assert import_cycles(graph) == []
    # the held-out evaluation sits below both commands
    for module in ("mergekit_arm.choose.runner", "mergekit_arm.stream.measure",
                   "mergekit_arm.stream.driver"):
        assert "mergekit_arm.heldout" in graph[module]
    assert not any(m.startswith("mergekit_arm.stream") for m in graph["mergekit_arm.heldout"])


# -- arm-choose: OUT/model holds the model files only, hard-linked ------------------------------
@pytest.fixture
def run_checkpoints(tmp_path, tiny_llama_sft) -> list[Path]:
    """Copies of the two real Trainer checkpoints (5 and 10 steps), rewritten by tests."""
    return [Path(shutil.copytree(tiny_llama_sft[k], tmp_path / "run" / f"checkpoint-{k}"))
            for k in (5, 10)]


def _validation(validation_jsonl: Path) -> dict:
    return {"data": str(validation_jsonl), "samples": 8, "max_length": 32}


def test_out_model_is_the_model_files_hard_linked(tmp_path, run_checkpoints, tiny_llama,
                                                  validation_jsonl):
    from mergekit_arm.choose import run_choose

    winner = run_checkpoints[1]
    modes = {path.name: path.stat().st_mode for path in winner.iterdir()}
    config = {"validation": _validation(validation_jsonl), "device": "cpu",
              "candidates": [{"name": "random", "model": str(tiny_llama)},
                             {"name": "trained", "model": str(winner)}]}
    result = run_choose(config, tmp_path / "out", progress=False)
    assert result.chosen == "trained"
    names = sorted(path.name for path in result.model.iterdir())
    assert names == ["README.md", "config.json", "generation_config.json", "model.safetensors",
                     "tokenizer.json", "tokenizer_config.json"]
    assert not set(names) & set(TRAINER_STATE_FILES)
    for name in names:
        if name == "README.md":  # a new file: the choice section, never written through a link
            assert (result.model / name).stat().st_nlink == 1 and not (winner / name).exists()
            continue
        if name.endswith(".safetensors"):  # the weights: linked, no second copy
            assert (result.model / name).samefile(winner / name), name
            assert (result.model / name).stat().st_nlink > 1
        else:  # small files their writers rewrite in place: copied
            assert (result.model / name).stat().st_nlink == 1, name
            assert (result.model / name).read_bytes() == (winner / name).read_bytes()
    assert {path.name: path.stat().st_mode for path in winner.iterdir()} == modes
    assert verify_output(result.model).ok
    before = (winner / "config.json").read_bytes()
    with open(result.model / "config.json", "w") as handle:  # as save_pretrained writes it
        handle.write("{}")
    assert (winner / "config.json").read_bytes() == before  # the input is unchanged


def test_out_model_is_copied_where_links_fail(tmp_path, run_checkpoints, monkeypatch):
    from mergekit_arm.choose.output import write_model_folder

    def no_links(source, destination):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("mergekit_arm.choose.output.os.link", no_links)
    left_out = write_model_folder(run_checkpoints[0], tmp_path / "model", "\n## chosen\n")
    assert set(TRAINER_STATE_FILES) <= set(left_out)
    weights = tmp_path / "model" / "model.safetensors"
    assert weights.stat().st_nlink == 1
    assert weights.read_bytes() == (run_checkpoints[0] / "model.safetensors").read_bytes()
    assert (tmp_path / "model" / "README.md").read_text() == "\n## chosen\n"


# -- arm-choose: a build whose input checkpoints changed is rebuilt (or refused) ----------------
def _rewrite(checkpoint: Path, source: Path) -> None:
    """Training went on: other weights saved at the same path (same names, same sizes)."""
    from helpers import load_state_dict

    save_file(load_state_dict(source), str(checkpoint / "model.safetensors"),
              metadata={"format": "pt"})


def test_rewritten_checkpoint_rebuilds_the_builds_that_read_it(
        tmp_path, run_checkpoints, tiny_llama, tiny_llama_sft, calibration_jsonl,
        validation_jsonl):
    from helpers import load_state_dict
    from stream_helpers import stream_config

    from mergekit_arm.choose import run_choose
    from mergekit_arm.errors import ArmError

    c5, c10 = run_checkpoints
    stream = stream_config(tiny_llama, [c5, c10], calibration_jsonl, mode="toward",
                           schedule={"kind": "average", "learning_rate": 1.0})
    stream.pop("steps")
    config = {"validation": {**_validation(validation_jsonl), "offset": 8}, "device": "cpu",
              "candidates": [
                  {"name": "c10", "model": str(c10)},
                  {"name": "average", "mergekit": {
                      "merge_method": "linear", "dtype": "float32",
                      "models": [{"model": str(c), "parameters": {"weight": 1.0}}
                                 for c in (c5, c10)]}},
                  {"name": "stream", "stream": stream}]}
    out = tmp_path / "out"
    first = run_choose(config, out, progress=False)
    assert [row.build for row in first.rows] == ["as is", "built", "built"]
    again = run_choose(config, out, progress=False)
    assert [row.build for row in again.rows] == ["as is", "reused", "reused"]
    stale = load_state_dict(out / "candidates" / "average" / "model")

    _rewrite(c10, tiny_llama)  # the checkpoint now holds other weights
    rebuilt = run_choose(config, out, progress=False)
    rows = {row.name: row for row in rebuilt.rows}
    for name in ("average", "stream"):
        assert rows[name].build == f"rebuilt: inputs changed ({c10})", rows[name].build
        assert not rows[name].reused
    average = load_state_dict(rows["average"].model)
    c5_weights, base = load_state_dict(c5), load_state_dict(tiny_llama)
    for tensor in average:
        torch.testing.assert_close(average[tensor], (c5_weights[tensor] + base[tensor]) / 2)
    assert any(not torch.equal(average[t], stale[t]) for t in average)
    assert "rebuilt: inputs changed" in (out / "leaderboard.md").read_text()
    stream_model = verify_output(rows["stream"].model)  # arm-stream's card says "mergekit"
    assert stream_model.ok and stream_model.kind == "model", stream_model.problems
    assert [r.val_loss for r in rebuilt.rows] != [r.val_loss for r in first.rows]

    _rewrite(c10, tiny_llama_sft[10])  # and back: refused when asked to
    with pytest.raises(ArmError, match=rf"candidate `average`: .*inputs changed \({c10}\)"):
        run_choose(config, out, progress=False, refuse_changed_inputs=True)
    assert not (out / "leaderboard.json").exists()


def test_checkpoint_replaced_by_a_symlink_rebuilds(tmp_path, run_checkpoints, tiny_llama,
                                                   validation_jsonl):
    """The recipe's path now resolves to other weights, every recorded input intact."""
    from mergekit_arm.choose import run_choose

    c5, c10 = run_checkpoints
    link = tmp_path / "latest"
    link.symlink_to(c5)
    config = {"validation": _validation(validation_jsonl), "device": "cpu", "candidates": [
        {"name": "average", "mergekit": {"merge_method": "linear", "dtype": "float32", "models": [
            {"model": str(p), "parameters": {"weight": 1.0}} for p in (link, c10)]}}]}
    out = tmp_path / "out"
    assert run_choose(config, out, progress=False).rows[0].build == "built"
    link.unlink()
    link.symlink_to(tiny_llama)
    row = run_choose(config, out, progress=False).rows[0]
    assert row.build == f"rebuilt: inputs changed ({tiny_llama.resolve()})", row.build


def test_a_merge_of_weights_summing_to_zero_is_refused_and_removed(tmp_path, tiny_llama_sft,
                                                                   validation_jsonl):
    """MergeKit's `linear` divides by the weights' sum: Inf everywhere, blamed on the recipe."""
    from mergekit_arm.choose import run_choose
    from mergekit_arm.errors import OutputCheckError

    config = {"validation": _validation(validation_jsonl), "device": "cpu", "candidates": [
        {"name": "zero", "mergekit": {"merge_method": "linear", "dtype": "float32", "models": [
            {"model": str(tiny_llama_sft[k]), "parameters": {"weight": w}}
            for k, w in ((5, -0.5), (10, 0.5))]}}]}
    out = tmp_path / "out"
    with pytest.raises(OutputCheckError, match=r"(?s)candidate `zero`: its merge was removed.*"
                                               r"Inf.*weights summing to 0"):
        run_choose(config, out, progress=False)
    assert not (out / "candidates" / "zero" / "model").exists()
    assert not (out / "leaderboard.json").exists()


TOKENIZER_NAMES = [  # (file name, is it a tokenizer file)
    ("tokenizer.json", True), ("tokenizer_config.json", True), ("tokenizer.model", True),
    ("special_tokens_map.json", True), ("added_tokens.json", True), ("vocab.json", True),
    ("vocab.txt", True), ("vocab.bpe", True), ("merges.txt", True), ("spiece.model", True),
    ("chat_template.jinja", True), ("qwen.tiktoken", True),
    ("tokenization_custom.py", False), ("config.json", False), ("model.safetensors", False),
    ("training_args.bin", False), ("README.md", False), ("tokenizer", False),
]


@pytest.mark.parametrize("name,expected", TOKENIZER_NAMES)
def test_one_definition_of_the_tokenizer_files(tmp_path, name, expected):
    """arm-verify, OUT/model and a folded adapter's tokenizer copy read one definition
    (model_files.tokenizer_files): the name is a tokenizer file for all three or for none."""
    from mergekit_arm.model_files import (
        TOKENIZER_FILES,
        has_tokenizer,
        is_tokenizer_file,
        model_files,
        tokenizer_files,
    )
    from mergekit_arm.model_refs import copy_tokenizer

    assert all(is_tokenizer_file(known) for known in TOKENIZER_FILES)
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    (source / name).write_text("{}")
    (source / "config.json").write_text("{}")
    assert is_tokenizer_file(name) is expected
    assert has_tokenizer(source) is expected
    assert [p.name for p in tokenizer_files(source)] == ([name] if expected else [])
    copy_tokenizer(source, target)
    assert (target / name).exists() is expected
    other_model_files = {"config.json", "model.safetensors", "README.md", "tokenization_custom.py"}
    assert (name in [p.name for p in model_files(source)]) is (expected
                                                                 or name in other_model_files)


@pytest.mark.parametrize("files,names,copy,complete", [
    ({"model.safetensors": ""}, (None, ["model.safetensors"]), ["model.safetensors"], True),
    ({}, (None, []), [], None),
    ({"model.safetensors.index.json": '{"weight_map": {"a": "m-1.safetensors", '
      '"b": "m-2.safetensors", "c": "m-1.safetensors"}}'},
     ("model.safetensors.index.json", ["m-1.safetensors", "m-2.safetensors"]),
     ["model.safetensors.index.json", "m-1.safetensors", "m-2.safetensors"], True),
    ({"model.safetensors.index.json": '{"weight_m'},  # being written
     ("model.safetensors.index.json", None), ["model.safetensors.index.json"], None),
])
def test_one_reader_of_the_weight_index(tmp_path, files, names, copy, complete):
    """model_files (what a copy needs) and the watcher (is it complete yet?) read the
    index through one function; a half-written index is "not yet" for the watcher."""
    from mergekit_arm.model_files import read_weight_index, weight_file_names
    from mergekit_arm.stream.watch import weight_files

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert read_weight_index(tmp_path) == names
    assert weight_file_names(tmp_path) == copy
    found = weight_files(tmp_path)
    assert (found is not None) is bool(complete)
    if found is not None:
        assert [p.name for p in found] == [n for n in copy if not n.endswith(".json")]
