"""Outputs never touch inputs (``mergekit_arm.paths``), write errors of OUT are one-line
errors, and local paths reach MergeKit absolute (never taken for Hub repositories).

Every refusal is checked through the command line, from the folder the paths are relative
to: exit 2, a message naming the output and the input, and not one byte changed on disk.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mergekit_arm.paths import PathRole, check_outputs_apart
from mergekit_arm.scripts.calibrate import main as calibrate_cli
from mergekit_arm.scripts.choose import main as choose_cli
from mergekit_arm.scripts.stream import main as stream_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--samples", "4", "--max-length", "32", "--rank", "4", "-q"]


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> content digest (``link -> target`` for symlinks) of every entry."""
    entries = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            entries[key] = "-> " + os.readlink(path)
        elif path.is_file():
            entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entries[key] = "dir"
    return entries


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_llama, calibration_jsonl) -> Path:
    """``models/base`` and ``run/checkpoint-1`` (copies of the tiny Llama), ``link`` (a
    symlink to ``models/base``), ``data/cal.jsonl`` and the configs of arm-stream and
    arm-choose reading them through relative paths with one slash."""
    root = tmp_path_factory.mktemp("paths")
    shutil.copytree(tiny_llama, root / "models" / "base")
    shutil.copytree(tiny_llama, root / "run" / "checkpoint-1")
    (root / "data").mkdir()
    shutil.copy(calibration_jsonl, root / "data" / "cal.jsonl")
    (root / "link").symlink_to(root / "models" / "base", target_is_directory=True)
    stream = {"origin": "models/base", "checkpoints": [{"model": "run/checkpoint-1"}],
              "steps": 1, "schedule": {"kind": "constant", "learning_rate": 0.5},
              "calibration": {"data": "data/cal.jsonl", "samples": 4, "max_length": 32,
                              "rank": 4},
              "arm": {"rank": 4}, "device": "cpu"}
    choose = {"validation": {"data": "data/cal.jsonl", "samples": 4, "max_length": 32},
              "candidates": [
                  {"name": "ckpt", "model": "run/checkpoint-1"},
                  {"name": "avg", "mergekit": {
                      "merge_method": "linear", "dtype": "float32",
                      "models": [{"model": "models/base", "parameters": {"weight": 1.0}},
                                 {"model": {"model": {"path": "run/checkpoint-1"}},
                                  "parameters": {"weight": 1.0}}]}}]}
    (root / "stream.yml").write_text(yaml.safe_dump(stream))
    (root / "choose.yml").write_text(yaml.safe_dump(choose))
    return root


def _run(cli, args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


COMMANDS = {
    "arm-calibrate": lambda out: (calibrate_cli, ["models/base", out, "--data", "data/cal.jsonl",
                                                  *FAST]),
    "arm-stream": lambda out: (stream_cli, ["stream.yml", out, "-q"]),
    "arm-choose": lambda out: (choose_cli, ["choose.yml", out, "-q"]),
}

# (command, overlap form, OUT relative to the world, the input the message must name)
REFUSED = [
    ("arm-calibrate", "is a model file", "models/base/model.safetensors", "models/base"),
    ("arm-calibrate", "inside the model folder", "models/base/stats.safetensors", "models/base"),
    ("arm-calibrate", "inside it through a symlink", "link/stats.safetensors", "models/base"),
    ("arm-calibrate", "is the data file", "data/cal.jsonl", "data/cal.jsonl"),
    ("arm-calibrate", "is another model's weights", "run/checkpoint-1/model.safetensors",
     "run/checkpoint-1/model.safetensors"),
    ("arm-calibrate", "is another input's file", "stream.yml", "stream.yml"),
    ("arm-stream", "is the origin folder", "models/base", "models/base"),
    ("arm-stream", "inside a checkpoint", "run/checkpoint-1/out", "run/checkpoint-1"),
    ("arm-stream", "inside it through a symlink", "link/out", "models/base"),
    ("arm-stream", "holds an input", "run", "run/checkpoint-1"),
    ("arm-stream", "holds the data file", "data", "data/cal.jsonl"),
    ("arm-choose", "is a model candidate", "run/checkpoint-1", "run/checkpoint-1"),
    ("arm-choose", "inside a mergekit input", "models/base/choose", "models/base"),
    ("arm-choose", "inside it through a symlink", "link/choose", "models/base"),
    ("arm-choose", "holds an input", "models", "models/base"),
    ("arm-choose", "holds the data file", "data", "data/cal.jsonl"),
]


@pytest.mark.parametrize(("command", "form", "out", "source"), REFUSED,
                         ids=[f"{c}-{f}" for c, f, _, _ in REFUSED])
def test_an_output_overlapping_an_input_is_refused(world, monkeypatch, command, form, out,
                                                   source):
    """Refused before anything is written: exit 2, both paths named, nothing changed."""
    monkeypatch.chdir(world)
    before = _tree(world)
    cli, args = COMMANDS[command](out)
    result = _run(cli, args)
    assert result.exit_code == 2, result.output
    assert f"{command}: error:" in result.output
    message = " ".join(result.output.split())
    assert str((world / out).resolve()) in message
    assert str((world / source).resolve()) in message
    assert "Nothing was written" in message
    assert _tree(world) == before


def test_a_loaded_model_is_not_calibrated_into_its_own_folder(world, demo_tokenizer):
    """The Python API: a module loaded from a folder may not write its statistics there."""
    from transformers import AutoModelForCausalLM

    from mergekit_arm.calibration import calibrate
    from mergekit_arm.paths import OutputOverlapError

    folder = world / "models" / "base"
    model = AutoModelForCausalLM.from_pretrained(folder)
    before = _tree(world)
    with pytest.raises(OutputOverlapError, match="lies inside MODEL"):
        calibrate(model, folder / "stats.safetensors", tokenizer=demo_tokenizer, texts=["a b"])
    assert _tree(world) == before


# (outputs, inputs, the reason's start, or None when allowed)
RUN, CKPT = "/w/run", "/w/run/checkpoint-5"
UNITS = [
    ([PathRole("OUT", "/w/run/arm-stream", "folder")], [PathRole("watch", RUN, "run")], None),
    ([PathRole("OUT", f"{CKPT}/out", "folder")], [PathRole("watch", RUN, "run")],
     "lies inside the checkpoint folder"),
    ([PathRole("OUT", RUN, "folder")], [PathRole("watch", RUN, "run")], "is watch"),
    ([PathRole("OUT", "/w", "folder")], [PathRole("watch", RUN, "run")], "watch"),
    ([PathRole("OUT", "/w/stats.safetensors", "file")],
     [PathRole("MODEL", "/w/.stats.safetensors.arm-1-ab.tmp")], "is a temporary entry"),
    ([PathRole("OUT", "/w/a.safetensors", "file")], [PathRole("MODEL", "/w/model")], None),
    ([PathRole("OUT", "/w/model-2", "folder")], [PathRole("MODEL", "/w/model")], None),
    ([PathRole("OUT", "/w/model/x", "file")], [PathRole("MODEL", "/w/model")], "OUT"),
]


@pytest.mark.parametrize(("outputs", "inputs", "reason"), UNITS)
def test_overlap_rules(outputs, inputs, reason):
    """A watched run may hold OUT outside its checkpoints; temporaries count as the output."""
    from mergekit_arm.paths import OutputOverlapError

    if reason is None:
        check_outputs_apart(outputs, inputs)
        return
    with pytest.raises(OutputOverlapError) as caught:
        check_outputs_apart(outputs, inputs)
    assert reason in str(caught.value)


# (OUT relative to the Trainer's output_dir, the refusal's words or None when allowed)
CALLBACK_OUTS = [
    ("arm-stream", None),  # the callback's default OUT
    ("checkpoint-1/arm-stream", "lies inside the checkpoint folder"),
    ("checkpoint-9/arm-stream", "lies inside the checkpoint folder"),  # one still to come
    (".", "itself"),
]


@pytest.mark.parametrize(("out", "reason"), CALLBACK_OUTS)
def test_callback_out_may_sit_in_the_run_but_not_in_a_checkpoint(world, tmp_path, out, reason):
    """``ARMCallback``'s path (``callback_config`` then ``open_stream``): the stream watches
    ``output_dir``, whose ``checkpoint-*`` folders are inputs."""
    from mergekit_arm.integrations.transformers import callback_config
    from mergekit_arm.paths import OutputOverlapError
    from mergekit_arm.stream.driver import open_stream

    output_dir = tmp_path / "run"
    shutil.copytree(world / "models" / "base", output_dir / "checkpoint-1")
    data = {"origin": str(world / "models" / "base"), "arm": {"rank": 4},
            "schedule": {"kind": "constant", "learning_rate": 0.5},
            "calibration": {"data": str(world / "data" / "cal.jsonl"), "samples": 4,
                            "max_length": 32, "rank": 4}}
    config = callback_config(data, "<test>", output_dir.resolve())
    if reason is None:
        with open_stream(config, output_dir / out, progress=False) as runner:
            assert runner.layout.root == (output_dir / out).resolve()
        return
    before = _tree(tmp_path)
    with pytest.raises(OutputOverlapError, match=reason), \
            open_stream(config, output_dir / out, progress=False):
        pass
    assert _tree(tmp_path) == before


REFERENCE_PARTS = [
    ("models/base+run/checkpoint-1", ["models/base", "run/checkpoint-1"]),
    ("models/base@main+run/checkpoint-1@v1", ["models/base", "run/checkpoint-1"]),
    ("org/base+run/checkpoint-1", ["run/checkpoint-1"]),  # a Hub base, a local adapter
    ("models/base", []),  # a plain folder is its own input
    ("org/base+org/adapter", []),
]


@pytest.mark.parametrize(("reference", "parts"), REFERENCE_PARTS)
def test_base_and_adapter_folders_are_inputs(world, monkeypatch, reference, parts):
    """A ``base+adapter`` model resolves to a folded folder elsewhere; its local base and
    adapter folders are inputs too, in arm-calibrate, arm-stream and arm-choose configs."""
    from mergekit_arm.choose.references import _raw_references
    from mergekit_arm.paths import reference_roles
    from mergekit_arm.stream.inputs import reference_inputs

    monkeypatch.chdir(world)
    expected = [str((world / part).resolve()) for part in parts]
    assert [str(r.resolved) for r in reference_roles("MODEL", reference)] == expected
    stream = {"origin": reference, "checkpoints": [{"model": reference}, reference]}
    assert [str(r.resolved) for r in reference_inputs(stream)] == expected * 3
    choose = {"origin": reference, "candidates": [{"name": "a", "model": reference}]}
    assert [str(r.resolved) for r in _raw_references(choose)] == expected * 2
    if parts:
        with pytest.raises(Exception, match="adapter"):
            check_outputs_apart([PathRole("OUT", f"{parts[-1]}/stats.safetensors", "file")],
                                reference_roles("MODEL", reference))


def test_check_reads_a_statistics_file_inside_its_model_folder(world, tmp_path, monkeypatch):
    """Reading is not writing: ``--check`` accepts the file stored in the folder it
    describes (it used to count the file as a weight shard and refuse)."""
    model = tmp_path / "model"
    shutil.copytree(world / "models" / "base", model)
    result = _run(calibrate_cli, [str(model), str(tmp_path / "stats.safetensors"), "--data",
                                  str(world / "data" / "cal.jsonl"), *FAST])
    assert result.exit_code == 0, result.output
    shutil.move(tmp_path / "stats.safetensors", model / "stats.safetensors")
    result = _run(calibrate_cli, [str(model), str(model / "stats.safetensors"), "--check"])
    assert result.exit_code == 0, result.output
    assert "ok (computed from" in result.output


# -- a read-only output ------------------------------------------------------------------
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """Make a folder read-only: ``chmod``, or where that does not stop this process (root),
    ``os.mkdir``/``os.open`` fail there with EROFS as on a read-only file system.
    Returns a function that freezes a folder (its whole tree)."""
    frozen: list[Path] = []

    def deny(path) -> bool:
        return any(Path(os.path.abspath(path)).is_relative_to(f) for f in frozen)

    def fail(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    real_mkdir, real_open = os.mkdir, os.open

    def mkdir(path, mode=0o777, *args, **kwargs):
        if deny(path):
            fail(path)
        return real_mkdir(path, mode, *args, **kwargs)

    def open_(path, flags, mode=0o777, *args, **kwargs):
        if flags & WRITE_FLAGS and deny(path):
            fail(path)
        return real_open(path, flags, mode, *args, **kwargs)

    def freeze(folder: Path) -> None:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir():
                path.chmod(0o555)
        probe = folder / ".probe"
        try:
            probe.touch()
        except PermissionError:
            return  # chmod is enough
        probe.unlink()
        frozen.append(folder.resolve())
        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(os, "open", open_)

    yield freeze
    monkeypatch.undo()
    for path in tmp_path.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)


READ_ONLY = [
    ("arm-stream", "new", "ro/out"),
    ("arm-stream", "new, nested", "ro/a/b"),
    ("arm-stream", "existing", "ro/out"),
    ("arm-choose", "new", "ro/out"),
    ("arm-choose", "existing", "ro/out"),
]


@pytest.mark.parametrize(("command", "state", "out"), READ_ONLY,
                         ids=[f"{c}-{s}" for c, s, _ in READ_ONLY])
def test_a_read_only_output_is_an_error_not_a_traceback(world, tmp_path, monkeypatch, read_only,
                                                        command, state, out):
    """``OSError: [Errno 30]`` (or 13) while preparing OUT becomes ``COMMAND: error:`` with
    exit 2 and the fix; an existing OUT (its lock file cannot be made) too."""
    config = tmp_path / "config.yml"
    name = "stream.yml" if command == "arm-stream" else "choose.yml"
    data = yaml.safe_load((world / name).read_text())
    config.write_text(json.dumps(data))
    monkeypatch.chdir(world)
    target = tmp_path / out
    if state == "existing":  # an OUT of an earlier run: its internal folder, no lock yet
        (target / (".arm-stream" if command == "arm-stream" else ".arm-choose")).mkdir(
            parents=True)
    (tmp_path / "ro").mkdir(exist_ok=True)
    read_only(tmp_path / "ro")
    cli = stream_cli if command == "arm-stream" else choose_cli
    result = _run(cli, [str(config), str(target), "-q"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{command}: error: cannot write OUT {target.resolve()}" in message
    assert "choose an output folder you can write to" in message
    assert "Traceback" not in result.output


# (errno, the failing file relative to tmp_path (None: no file named), converted?)
WRITE_ERRORS = [
    (errno.EROFS, "out/.arm-stream/lock", True),
    (errno.EACCES, "out", True),
    (errno.EACCES, ".", True),  # a parent of OUT (mkdir -p)
    (errno.ENOSPC, None, True),
    (errno.EACCES, "inputs/model.safetensors", False),  # reading an input: its own error
    (errno.ENOENT, "out/missing", False),
    (errno.EACCES, None, False),
]


@pytest.mark.parametrize(("code", "name", "converted"), WRITE_ERRORS)
def test_which_os_errors_become_output_write_errors(tmp_path, code, name, converted):
    """Only a "cannot write" errno on OUT, inside it or one of its parents (or a read-only
    or full file system with no file named) is an OUT write error."""
    from mergekit_arm._io import OutputWriteError
    from mergekit_arm.paths import output_write_errors

    error = OSError(code, os.strerror(code), *([str(tmp_path / name)] if name else []))
    with pytest.raises(OSError) as caught, output_write_errors(tmp_path / "out", "After."):
        raise error
    assert isinstance(caught.value, OutputWriteError) is converted
    if converted:
        assert str(caught.value).startswith(f"cannot write OUT {tmp_path / 'out'}")


# -- local paths reach MergeKit absolute --------------------------------------------------


@pytest.fixture
def no_hub(monkeypatch):
    """Every Hugging Face Hub lookup fails, as offline."""
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("offline: a Hub lookup of " + repr(args))

    for name in ("repo_exists", "list_repo_files", "snapshot_download", "model_info"):
        monkeypatch.setattr(huggingface_hub, name, offline)


REFERENCES = [
    ("run/checkpoint-1", "{w}/run/checkpoint-1"),
    ("run/checkpoint-1@main", "{w}/run/checkpoint-1@main"),
    ("run/checkpoint-1+missing/lora", "{w}/run/checkpoint-1+missing/lora"),
    ("org/hub-model", "org/hub-model"),
    ({"model": {"path": "run/checkpoint-1"}}, {"model": {"path": "{w}/run/checkpoint-1"}}),
]


@pytest.mark.parametrize(("given", "expected"), REFERENCES)
def test_local_model_references_become_absolute(world, monkeypatch, given, expected):
    """Every form of a MergeKit model reference naming an existing local path, in every
    place (``models``, ``base_model``, slices, ``tokenizer_source``); keywords and Hub
    names stay as they are."""
    from mergekit_arm.choose.references import absolute_model_paths, local_references

    monkeypatch.chdir(world)
    (world / "base").mkdir(exist_ok=True)  # a folder named like the keyword

    def fill(value):
        return json.loads(json.dumps(value).replace("{w}", str(world.resolve())))

    config = {"base_model": given, "models": [{"model": given}],
              "slices": [{"sources": [{"model": given, "layer_range": [0, 1]}]}],
              "tokenizer_source": given, "tokenizer": {"source": "base"}}
    out = absolute_model_paths(config)
    assert out["base_model"] == out["models"][0]["model"] == fill(expected)
    assert out["slices"][0]["sources"][0]["model"] == out["tokenizer_source"] == fill(expected)
    assert out["tokenizer"]["source"] == "base"
    local = {path for _, path in local_references(config)}
    assert local == ({str((world / "run" / "checkpoint-1").resolve())}
                     if "{w}" in json.dumps(expected) else set())
    (world / "base").rmdir()


def test_statistics_files_of_a_mergekit_candidate_are_inputs(world, monkeypatch):
    """``activations: data/cal.jsonl`` (any existing file) is made absolute and listed, so
    an OUT holding it is refused like one holding a model."""
    from mergekit_arm.choose.references import absolute_model_paths, local_references

    monkeypatch.chdir(world)
    config = {"models": [{"model": "./models/base",
                          "parameters": {"activations": "data/cal.jsonl"}}]}
    absolute = str((world / "data" / "cal.jsonl").resolve())
    assert absolute_model_paths(config)["models"][0]["parameters"]["activations"] == absolute
    assert ("models[0].parameters.activations", absolute) in local_references(config)


def test_choose_builds_relative_one_slash_paths_offline(world, tmp_path, monkeypatch, no_hub):
    """``models/base`` and ``{model: {path: run/checkpoint-1}}`` in a mergekit candidate:
    the merge and its model card never ask the Hub (it died after the tensors before)."""
    from mergekit_arm.choose import run_choose

    monkeypatch.chdir(world)
    result = run_choose(world / "choose.yml", tmp_path / "choose", progress=False)
    card = (tmp_path / "choose" / "candidates" / "avg" / "model" / "README.md").read_text()
    assert str((world / "run" / "checkpoint-1").resolve()) in card
    assert {row.name for row in result.rows} == {"ckpt", "avg"}


def test_stream_step_replays_offline(world, tmp_path, monkeypatch, no_hub):
    """A stream of relative one-slash paths writes steps/step-1.yml with absolute paths:
    ``mergekit-yaml`` replays it offline, model card included."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    from mergekit_arm.stream import run_stream

    monkeypatch.chdir(world)
    run_stream(world / "stream.yml", tmp_path / "stream", progress=False)
    step = yaml.safe_load((tmp_path / "stream" / "steps" / "step-1.yml").read_text())
    run_merge(MergeConfiguration.model_validate(step), str(tmp_path / "replay"),
              options=MergeOptions(quiet=True, copy_tokenizer=False))
    assert (tmp_path / "replay" / "README.md").is_file()
