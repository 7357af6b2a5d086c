"""Issue 24's rough edges: --version on every command, a light ``arm-calibrate --help``,
ARMCallback's line per save, no MergeKit ``torch_dtype`` deprecation in our merges, no
loading bars, the README's Python API snippets run, the leaderboard header and the
stream's patience line."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from mergekit_arm import __version__

COMMANDS = ["calibrate", "stream", "choose", "verify", "demo"]


@pytest.mark.parametrize("script", COMMANDS)
def test_every_command_has_version(script):
    from importlib import import_module

    main = import_module(f"mergekit_arm.scripts.{script}").main
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"(mergekit-arm) {__version__}")


@pytest.mark.parametrize("script", COMMANDS)
def test_help_imports_neither_torch_nor_transformers(script):
    """``COMMAND --help`` builds the command without torch (arm-calibrate took 2-4 s)."""
    code = (f"import sys, mergekit_arm.scripts.{script}; "
            "print(sorted(m for m in ('torch', 'transformers', 'mergekit.merge') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_callback_prints_one_line_per_save_unless_logging_shows_it(capsys):
    """ARMCallback's line per merged save reaches the user without any logging set up
    (printed, as the Trainer prints its logs), and only once when a console handler shows
    the INFO record."""
    import logging

    from mergekit_arm.integrations.transformers import announce, console_shows, logger

    assert not console_shows(logger)  # nothing configured: WARNING and above only
    announce("ARM stream step %d (%s) took %.2f s", 3, "a -> b", 1.5)
    assert capsys.readouterr().out == "ARM stream step 3 (a -> b) took 1.50 s\n"

    handler = logging.StreamHandler()
    owner = logging.getLogger("mergekit_arm")
    level = owner.level
    owner.addHandler(handler)
    owner.setLevel(logging.INFO)
    try:
        assert console_shows(logger)
        announce("step %d", 4)
        captured = capsys.readouterr()
        assert captured.out == "" and "step 4" in captured.err  # the handler's line only
    finally:
        owner.removeHandler(handler)
        owner.setLevel(level)
    file_only = logging.FileHandler(Path(tempfile.mkdtemp()) / "log.txt")
    owner.addHandler(file_only)
    owner.setLevel(logging.INFO)
    owner.propagate = False  # (pytest's own capture handlers sit on the root logger)
    try:
        assert not console_shows(logger)  # a log file is no console: still printed
    finally:
        owner.propagate = True
        owner.removeHandler(file_only)
        file_only.close()
        owner.setLevel(level)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_llama, tiny_llama_sft, calibration_jsonl):
    """``arm-calibrate -q`` of the tiny base and its checkpoint-10: (folder, outputs)."""
    from mergekit_arm.scripts.calibrate import main

    root = tmp_path_factory.mktemp("rough")
    outputs = []
    for name, model in (("base", tiny_llama), ("sft", tiny_llama_sft[10])):
        result = CliRunner().invoke(main, [str(model), str(root / f"{name}.safetensors"), "-q",
                                           "--data", str(calibration_jsonl), "--samples", "8",
                                           "--max-length", "32", "--rank", "8"])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    return root, outputs


def test_calibrate_shows_no_weight_loading_bars(calibrated):
    for output in calibrated[1]:
        assert "Loading weights" not in output and "it/s" not in output, output
        assert output.startswith("wrote ")


def test_arm_merge_does_not_print_mergekits_torch_dtype_deprecation(
        calibrated, tiny_llama, tiny_llama_sft):
    root, _ = calibrated
    config = root / "arm.yml"
    config.write_text(
        f"merge_method: arm\nbase_model: {tiny_llama_sft[10]}\nmodels:\n"
        f"  - model: {tiny_llama}\n    parameters:\n      origin: true\n"
        f"      activations: {root / 'base.safetensors'}\n"
        f"parameters:\n  learning_rate: 0.5\n  activations: {root / 'sft.safetensors'}\n"
        "  rank: 4\ndtype: float32\nout_dtype: float32\n")
    done = subprocess.run([str(Path(sys.executable).parent / "mergekit-yaml"), str(config),
                           str(root / "merged"), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (root / "merged" / "config.json").is_file()
    assert "torch_dtype" not in done.stdout + done.stderr


def test_dtype_filter_drops_only_mergekits_warning():
    """The same deprecation from anyone else's code still reaches the user."""
    import logging

    from mergekit_arm.quiet import TORCH_DTYPE_DEPRECATED, MergeKitDtypeFilter

    record = logging.LogRecord("transformers.configuration_utils", logging.WARNING, __file__,
                               1, f"{TORCH_DTYPE_DEPRECATED}! Use `dtype` instead!", None, None)
    assert MergeKitDtypeFilter().filter(record)  # called from this test: kept
    other = logging.LogRecord("transformers.configuration_utils", logging.WARNING, __file__,
                              1, "something else", None, None)
    assert MergeKitDtypeFilter().filter(other)
