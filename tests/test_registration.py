"""The start-up hook: ``arm`` exists in any process that imports MergeKit, at no cost to
processes that do not (no torch, no mergekit imported at start-up)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _python(code: str, *flags: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MERGEKIT_ARM_NO_AUTOREGISTER"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, cwd="/")


def test_start_up_imports_neither_torch_nor_mergekit():
    proc = _python("import sys; print('torch' in sys.modules, 'mergekit' in sys.modules, "
                   "'mergekit_arm._autoregister' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "True"]


def test_importing_mergekit_registers_arm():
    proc = _python("from mergekit.merge_methods import get; m = get('arm'); "
                   "print(m.spec.pretty_name, m.spec.reference_url)")
    assert proc.returncode == 0, proc.stderr
    assert "ARM (Activation-guided Rotation-aware Merging)" in proc.stdout
    assert "2602.03237" in proc.stdout


def test_mergekit_planner_resolves_arm():
    """The names MergeKit's planner, task adapter and card writer look up."""
    code = ("import mergekit.plan, mergekit.card, mergekit.merge_methods.task_adapter; "
            "from mergekit import merge_methods; print(merge_methods.get('arm').spec.name)")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "arm"


def test_hook_can_be_switched_off_and_register_is_the_fallback():
    off = {"MERGEKIT_ARM_NO_AUTOREGISTER": "1"}
    proc = _python("from mergekit.merge_methods import get; get('arm')", env_extra=off)
    assert proc.returncode != 0 and "Unimplemented merge method arm" in proc.stderr
    proc = _python("import mergekit_arm; mergekit_arm.register(); mergekit_arm.register(); "
                   "from mergekit.merge_methods import get; print(get('arm').spec.name)",
                   env_extra=off)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "arm"


@pytest.mark.parametrize("flag", ["-S"])
def test_without_site_the_explicit_register_works(flag):
    """``python -S`` skips .pth files; the documented fallback still works."""
    import site

    paths = [p for p in sys.path if p] + site.getsitepackages()
    code = (f"import sys; sys.path[:0] = {paths!r}; import mergekit_arm; "
            "mergekit_arm.register(); from mergekit.merge_methods import get; print(get('arm').spec.name)")
    proc = _python(code, flag)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "arm"
