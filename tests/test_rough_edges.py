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
