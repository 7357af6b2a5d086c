"""Fault injection: full disks, kills mid-write, half-written checkpoints, changed inputs,
truncated outputs, uncaught errors. Each test backs a row of docs/faults.md."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import SafetensorError
from safetensors.torch import save_file

from mergekit_arm._io import (
    OutputWriteError,
    atomic_directory,
    atomic_file,
    parse_temporary_name,
    temporary_name,
    write_text_atomic,
)
from mergekit_arm.checks import check_finite_state, require_valid_output, verify_output
from mergekit_arm.errors import ArmError, NonFiniteError, OutputCheckError
from mergekit_arm.scripts.verify import main as verify_main
from mergekit_arm.statistics import LayerStatistics, StatisticsContent, write_statistics
from mergekit_arm.stream.state import OutLayout, open_state, save_state, weights_fingerprint
from mergekit_arm.stream.watch import CheckpointWatcher

REPO = Path(__file__).resolve().parent.parent
ENOSPC_MESSAGE = "Error while serializing: I/O error: No space left on device (os error 28)"


def _content() -> StatisticsContent:
    basis = torch.linalg.qr(torch.randn(8, 3))[0]
    return StatisticsContent(layers={"w": LayerStatistics(basis, torch.ones(3), torch.tensor(4.0))})


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MERGEKIT_ARM_NO_AUTOREGISTER"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- item 6: a full disk -------------------------------------------------------------------
def test_safetensors_enospc_names_the_output_and_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise SafetensorError(ENOSPC_MESSAGE)  # what safetensors raises on ENOSPC (not OSError)

    monkeypatch.setattr("mergekit_arm.statistics.save_file", full_disk)
    out = tmp_path / "stats.safetensors"
    with pytest.raises(OutputWriteError, match="disk is full") as caught:
        write_statistics(out, _content())
    assert str(out) in str(caught.value) and "another disk" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_oserror_enospc_in_a_folder_write_is_explained(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(OutputWriteError, match="disk is full") as caught, \
            atomic_directory(final) as tmp:
        (tmp / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(final) in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_real_safetensors_failure_is_translated(tmp_path):
    """A SafetensorError raised by the real library (its folder vanished) becomes ours."""
    out = tmp_path / "x.safetensors"
    with pytest.raises(OutputWriteError, match=str(out)), atomic_file(out) as tmp:
        shutil.rmtree(tmp.parent)
        save_file({"a": torch.zeros(2)}, str(tmp))
    assert list(tmp_path.iterdir()) == []


# -- item 7: a kill mid-write ----------------------------------------------------------------
def test_stale_temporaries_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    out = tmp_path / "stats.safetensors"
    dead = tmp_path / f".stats.safetensors.arm-{_dead_pid()}-0123abcd.tmp"
    dead.mkdir()
    (dead / "stats.safetensors").write_bytes(b"half")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".stats.safetensors.arm-{sleeper.pid}-0123abcd.tmp"
        live.mkdir()
        other_target = tmp_path / f".other.bin.arm-{_dead_pid()}-0123abcd.tmp"
        other_target.write_bytes(b"x")
        foreign = tmp_path / ".stats.safetensors.user-file.tmp"  # not our pattern
        foreign.write_bytes(b"keep")
        write_statistics(out, _content())
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted([out.name, live.name, other_target.name, foreign.name])
    finally:
        sleeper.kill()
        sleeper.wait()


def test_sigkill_during_statistics_write_is_cleaned_by_the_next_run(tmp_path):
    out = tmp_path / "stats.safetensors"
    script = textwrap.dedent(f"""
        import time, torch
        from safetensors.torch import save_file
        from mergekit_arm._io import atomic_file
        with atomic_file({str(out)!r}) as tmp:
            save_file({{"a": torch.zeros(1000)}}, str(tmp))
            print("written", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(), stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [p for p in tmp_path.iterdir()]
    assert len(left) == 1 and parse_temporary_name(left[0]) is not None  # the kill's leftover
    write_statistics(out, _content())
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_killed_folder_replacement_is_rolled_back(tmp_path):
    """A kill between the two renames of a folder replacement loses nothing."""
    final = tmp_path / "model"
    final.mkdir()
    (final / "a").write_text("old")
    old = temporary_name(final, "old").with_name(
        f".model.arm-{_dead_pid()}-0123abcd.old")
    os.replace(final, old)  # the state a kill leaves: target gone, previous one parked
    with pytest.raises(RuntimeError), atomic_directory(final, overwrite=True):
        raise RuntimeError("the next write fails")
    assert (final / "a").read_text() == "old"


# -- item 10 (part): file modes --------------------------------------------------------------
@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_outputs_get_the_umask_mode(tmp_path, umask_022):
    stats = write_statistics(tmp_path / "stats.safetensors", _content())
    write_text_atomic(tmp_path / "state.json", "{}")
    with atomic_directory(tmp_path / "model") as folder:
        save_file({"a": torch.zeros(2)}, str(folder / "model.safetensors"))  # 0600 by itself
        (folder / "sub").mkdir(mode=0o700)
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(stats) == 0o644
    assert mode(tmp_path / "state.json") == 0o644
    assert mode(tmp_path / "model") == 0o755
    assert mode(tmp_path / "model" / "model.safetensors") == 0o644
    assert mode(tmp_path / "model" / "sub") == 0o755


# -- item 9 (part): one clear first line for an uncaught ArmError ----------------------------
def _uncaught(code: str, **env: str) -> subprocess.CompletedProcess:
    script = "import mergekit_arm._autoregister\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], env={**_env(), **env},
                          capture_output=True, text=True, timeout=120)


def test_uncaught_arm_error_prints_its_message_first():
    code = """
        from mergekit_arm.errors import StatisticsError
        try:
            raise StatisticsError("/s/base.safetensors is missing; run arm-calibrate")
        except StatisticsError as error:
            raise RuntimeError("task failed") from error
    """
    proc = _uncaught(code)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == "mergekit-arm: /s/base.safetensors is missing; run arm-calibrate"
    assert "Traceback" not in proc.stderr and len(lines) == 2
    verbose = _uncaught(code, MERGEKIT_ARM_TRACEBACK="1")
    assert verbose.returncode == 1
    assert verbose.stderr.splitlines()[0].startswith("mergekit-arm: /s/base.safetensors")
    assert "Traceback" in verbose.stderr


def test_other_uncaught_errors_keep_their_traceback():
    proc = _uncaught("raise ValueError('not ours')")
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "mergekit-arm:" not in proc.stderr


@pytest.mark.slow
def test_mergekit_yaml_error_starts_with_our_message(tmp_path, tiny_llama):
    current = shutil.copytree(tiny_llama, tmp_path / "current")
    config = {
        "merge_method": "arm", "base_model": str(current),
        "models": [{"model": str(tiny_llama),
                    "parameters": {"origin": True,
                                   "activations": str(tmp_path / "missing-a.safetensors")}}],
        "parameters": {"learning_rate": 0.5,
                       "activations": str(tmp_path / "missing-b.safetensors")},
        "dtype": "float32",
    }
    path = tmp_path / "merge.yml"
    path.write_text(json.dumps(config))
    mergekit_yaml = shutil.which("mergekit-yaml") or str(Path(sys.executable).parent / "mergekit-yaml")
    proc = subprocess.run([mergekit_yaml, str(path), str(tmp_path / "out")], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if line.startswith("mergekit-arm: ")]
    assert ours and "missing-" in ours[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "config.json").exists()


# -- item 4: non-finite inputs ---------------------------------------------------------------
def test_check_finite_state_names_checkpoint_and_tensor():
    good = {"a.weight": torch.ones(3, 3), "ids": torch.arange(3)}
    check_finite_state(good, "/ckpt/step-5")
    bad = {**good, "b.weight": torch.tensor([1.0, float("nan"), float("inf")])}
    with pytest.raises(NonFiniteError, match=r"/ckpt/step-5: tensor b.weight holds 1 NaN and 1 Inf"):
        check_finite_state(bad, "/ckpt/step-5")
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.bias[0] = float("-inf")
    with pytest.raises(NonFiniteError, match=r"m: tensor bias"):
        check_finite_state(module, "m")


# -- item 6 (mergekit-yaml side): verifying a finished output --------------------------------
@pytest.fixture
def model_copy(tmp_path, tiny_llama) -> Path:
    folder = tmp_path / "merged"
    shutil.copytree(tiny_llama, folder)
    return folder


def test_complete_output_verifies(model_copy):
    report = require_valid_output(model_copy)
    assert report.tensors > 0 and "tokenizer.json" in report.files
    result = CliRunner().invoke(verify_main, [str(model_copy)])
    assert result.exit_code == 0 and result.output.startswith("ok: ")


def test_truncated_tokenizer_is_found(model_copy):
    tokenizer = model_copy / "tokenizer.json"
    data = tokenizer.read_bytes()
    tokenizer.write_bytes(data[: len(data) // 3])  # a disk that filled during MergeKit's copy
    report = verify_output(model_copy)
    assert not report.ok and any(p.startswith(str(tokenizer)) for p in report.problems)
    result = CliRunner().invoke(verify_main, [str(model_copy)])
    assert result.exit_code == 1 and "tokenizer.json" in result.output
    with pytest.raises(OutputCheckError, match="tokenizer.json"):
        require_valid_output(model_copy)


def test_truncated_shard_is_found(model_copy):
    weights = model_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    report = verify_output(model_copy)
    assert [p for p in report.problems if p.startswith(str(weights))]
    assert "truncated" in report.problems[0]


def test_index_problems_and_leftover_shards_are_found(model_copy):
    from safetensors import safe_open

    with safe_open(str(model_copy / "model.safetensors"), framework="pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    names = sorted(tensors)
    half = len(names) // 2
    (model_copy / "model.safetensors").unlink()
    save_file({n: tensors[n] for n in names[:half]}, str(model_copy / "model-00001-of-00002.safetensors"))
    save_file({n: tensors[n] for n in names[half:]}, str(model_copy / "model-00002-of-00002.safetensors"))
    index = {"metadata": {}, "weight_map": {
        **{n: "model-00001-of-00002.safetensors" for n in names[:half]},
        **{n: "model-00002-of-00002.safetensors" for n in names[half:]}}}
    (model_copy / "model.safetensors.index.json").write_text(json.dumps(index))
    assert verify_output(model_copy).ok
    save_file({names[0]: tensors[names[0]]}, str(model_copy / "model-3.safetensors"))  # leftover
    report = verify_output(model_copy)
    assert len(report.problems) == 1 and "model-3.safetensors" in report.problems[0]
    (model_copy / "model-3.safetensors").unlink()
    (model_copy / "model-00002-of-00002.safetensors").unlink()
    report = verify_output(model_copy)
    assert any("model-00002-of-00002.safetensors" in p and "missing" in p for p in report.problems)


def test_nonfinite_output_is_found(model_copy):
    from safetensors.torch import load_file

    tensors = load_file(str(model_copy / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("inf")
    save_file(tensors, str(model_copy / "model.safetensors"), metadata={"format": "pt"})
    report = verify_output(model_copy)
    assert len(report.problems) == 1 and name in report.problems[0]
    assert verify_output(model_copy, finite=False).ok


# -- item 2: watch mode reads only complete checkpoints --------------------------------------
def _checkpoint_bytes(tiny_llama: Path) -> bytes:
    return (tiny_llama / "model.safetensors").read_bytes()


def _presized(folder: Path, data: bytes, source: Path) -> Path:
    """config + a weights file at full size with a valid header and zero data (closed)."""
    folder.mkdir()
    shutil.copy(source / "config.json", folder / "config.json")
    header = 8 + int.from_bytes(data[:8], "little")
    weights = folder / "model.safetensors"
    weights.write_bytes(data[:header] + bytes(len(data) - header))
    return weights


def test_presized_weights_held_open_are_not_read_half_zero(tmp_path, tiny_llama):
    data = _checkpoint_bytes(tiny_llama)
    folder = tmp_path / "checkpoint-7"
    folder.mkdir()
    shutil.copy(tiny_llama / "config.json", folder / "config.json")
    header = 8 + int.from_bytes(data[:8], "little")
    opened = threading.Event()

    def writer() -> None:
        with open(folder / "model.safetensors", "wb") as handle:
            handle.write(data[:header])
            handle.truncate(len(data))  # full size, readable header, zero data
            handle.flush()
            opened.set()
            time.sleep(1.0)  # longer than settle_seconds
            handle.seek(header)
            handle.write(data[header:])

    thread = threading.Thread(target=writer)
    thread.start()
    opened.wait()
    try:
        watcher = CheckpointWatcher(tmp_path, settle_seconds=0.3, poll_seconds=0.05,
                                    idle_timeout=10)
        found = watcher.next_checkpoint(None)
        content = (folder / "model.safetensors").read_bytes()
    finally:
        thread.join()
    assert found == folder
    assert content == data


def test_trainer_run_waits_for_the_checkpoints_marker(tmp_path, tiny_llama):
    data = _checkpoint_bytes(tiny_llama)
    done = tmp_path / "checkpoint-1"
    shutil.copytree(tiny_llama, done)
    (done / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    weights = _presized(tmp_path / "checkpoint-2", data, tiny_llama)  # closed, then a pause
    now = [0.0]
    watcher = CheckpointWatcher(tmp_path, settle_seconds=5, clock=lambda: now[0])
    for now[0] in (0.0, 10.0, 100.0):
        assert not watcher.ready(weights.parent)
    weights.write_bytes(data)
    (weights.parent / "trainer_state.json").write_text('{"global_st')  # being written
    for now[0] in (200.0, 300.0):
        assert not watcher.ready(weights.parent)
    (weights.parent / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    now[0] = 400.0
    assert not watcher.ready(weights.parent)  # changed: settles first
    now[0] = 405.0
    assert watcher.ready(weights.parent)


def test_checksum_file_must_match(tmp_path, tiny_llama):
    import hashlib

    data = _checkpoint_bytes(tiny_llama)
    weights = _presized(tmp_path / "checkpoint-3", data, tiny_llama)
    (weights.parent / "SHA256SUMS").write_text(
        f"{hashlib.sha256(data).hexdigest()}  model.safetensors\n")
    now = [0.0]
    watcher = CheckpointWatcher(tmp_path, settle_seconds=5, clock=lambda: now[0])
    for now[0] in (0.0, 10.0, 100.0):
        assert not watcher.ready(weights.parent)
    weights.write_bytes(data)
    now[0] = 200.0
    assert not watcher.ready(weights.parent)
    now[0] = 205.0
    assert watcher.ready(weights.parent)


def test_bytes_changed_under_an_unchanged_mtime_are_noticed(tmp_path, tiny_llama):
    """Without marker or checksum, two reads of the bytes must agree (an mmap writer may
    leave size and mtime unchanged)."""
    data = _checkpoint_bytes(tiny_llama)
    weights = _presized(tmp_path / "checkpoint-4", data, tiny_llama)
    info = weights.stat()
    now = [0.0]
    watcher = CheckpointWatcher(tmp_path, settle_seconds=5, clock=lambda: now[0])
    assert not watcher.ready(weights.parent)
    weights.write_bytes(data)
    os.utime(weights, ns=(info.st_atime_ns, info.st_mtime_ns))
    now[0] = 10.0
    assert not watcher.ready(weights.parent)  # same names, sizes, mtimes; other bytes
    now[0] = 20.0
    assert watcher.ready(weights.parent)


# -- item 5: resume notices changed inputs ---------------------------------------------------
def _model(folder: Path, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    save_file({"w": torch.randn(64, 64, generator=generator)}, str(folder / "model.safetensors"))
    return folder


def test_resume_refuses_a_checkpoint_rewritten_at_the_same_path(tmp_path):
    origin, ckpt = _model(tmp_path / "origin", 0), _model(tmp_path / "checkpoint-5", 1)
    config = {"mode": "checkpoints", "origin": str(origin), "start": None,
              "checkpoints": [{"model": str(ckpt), "weight": 1.0}]}
    layout = OutLayout(tmp_path / "out")
    state, resumed = open_state(layout, config, restart=False)
    assert not resumed
    state.consumed.append(str(ckpt))
    state.step = 1
    save_state(layout, state)
    assert set(json.loads(layout.state_file.read_text())["fingerprints"]) == {str(origin), str(ckpt)}

    os.utime(ckpt / "model.safetensors")  # a touch is not a change
    _, resumed = open_state(layout, config, restart=False)
    assert resumed
    before = weights_fingerprint(ckpt)
    _model(ckpt, 2)  # same size, same header, other weights
    assert weights_fingerprint(ckpt) != before
    with pytest.raises(ArmError, match=rf"{ckpt}.*changed.*--restart"):
        open_state(layout, config, restart=False)
    fresh, resumed = open_state(layout, config, restart=True)
    assert not resumed and fresh.step == 0


def test_stream_refuses_a_checkpoint_with_nan(tmp_path, tiny_llama, calibration_jsonl):
    from safetensors.torch import load_file

    from mergekit_arm.stream import run_stream

    from .stream_helpers import stream_config

    broken = shutil.copytree(tiny_llama, tmp_path / "checkpoint-5")
    tensors = load_file(str(broken / "model.safetensors"))
    name = sorted(tensors)[-1]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[3] = float("nan")
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    config = stream_config(tiny_llama, [broken], calibration_jsonl, mode="checkpoints", steps=1)
    with pytest.raises(NonFiniteError, match=rf"{broken}.*{name}"):
        run_stream(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "model").exists()


def test_wrapped_write_failure_is_explained_but_our_errors_pass_through(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(OutputWriteError, match="disk is full"), atomic_directory(out):
        try:
            raise SafetensorError(ENOSPC_MESSAGE)
        except SafetensorError as error:
            raise RuntimeError("save_pretrained failed") from error  # a library's wrapper
    with pytest.raises(NonFiniteError), atomic_file(tmp_path / "x"):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise NonFiniteError("ours, raised while handling a write error") from None
    with pytest.raises(KeyboardInterrupt), atomic_file(tmp_path / "x"):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


# How each command-line tool ends on our errors and on Ctrl-C: (command, its main, the API
# function it calls, the hint printed after an interrupt).
CLI_CASES = [
    ("arm-calibrate", "mergekit_arm.scripts.calibrate", "mergekit_arm.calibration.calibrate",
     "nothing was written"),
    ("arm-stream", "mergekit_arm.scripts.stream", "mergekit_arm.stream.run_stream",
     "resume after the last completed step"),
    ("arm-choose", "mergekit_arm.scripts.choose", "mergekit_arm.choose.run_choose",
     "finished builds are reused"),
]


@pytest.mark.parametrize("command, script, api, hint", CLI_CASES, ids=[c[0] for c in CLI_CASES])
@pytest.mark.parametrize("raised, code", [(ArmError("the model folder /m has no config.json"), 2),
                                          (KeyboardInterrupt(), 130)], ids=["arm-error", "ctrl-c"])
def test_command_line_tools_end_with_a_message_and_exit_code(tmp_path, monkeypatch, command,
                                                             script, api, hint, raised, code):
    import importlib

    module_name, function = api.rsplit(".", 1)

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(importlib.import_module(module_name), function, fail)
    main = importlib.import_module(script).main
    config = tmp_path / "config.yml"
    config.write_text("{}\n")
    args = [str(tmp_path / "model"), str(tmp_path / "out.safetensors")] \
        if command == "arm-calibrate" else [str(config), str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    message = result.stderr.strip()
    assert "Traceback" not in message
    if code == 2:
        assert message == f"{command}: error: the model folder /m has no config.json"
    else:
        assert message.startswith(f"{command}: interrupted; ") and hint in message
