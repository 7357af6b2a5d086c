"""Issue 24's rough edges: --version on every command, a light ``arm-calibrate --help``,
ARMCallback's line per save, no MergeKit ``torch_dtype`` deprecation in our merges, no
loading bars, the README's Python API snippets run, the leaderboard header and the
stream's patience line."""

from __future__ import annotations

import subprocess
import sys

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
