"""Registration of ``merge_method: arm``: it exists in every process that imports MergeKit,
whatever is imported first, at no cost to processes that do not (no torch, no mergekit
imported at start-up). Every case runs in a fresh interpreter (import order is per process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from .helpers import (
    assert_matches_reference,
    load_state_dict,
    mergekit_env,
    reference_merge,
    run_and_check_arm,
    run_mergekit_yaml,
    tool,
)

OFF = {"MERGEKIT_ARM_NO_AUTOREGISTER": "1"}
GET_ARM = "from mergekit.merge_methods import get; print(get('arm').spec.name)"


def _python(code: str, *flags: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-W", "error::RuntimeWarning", "-c", code],
                          capture_output=True, text=True, env=mergekit_env(**(env_extra or {})),
                          timeout=180, cwd="/")


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


@pytest.mark.parametrize("first", [
    "mergekit.merge_methods",            # MergeKit first: registered right after it loads
    "mergekit_arm.merge_methods.arm",    # our method first: it is what pulls MergeKit in
    "mergekit_arm.merge_methods",
    "mergekit_arm.statistics",           # a module the method itself imports
    "mergekit_arm.stream",
])
def test_any_import_order_registers_arm_once(first):
    """The hook registers ``arm`` whichever module is imported first, exactly once, and
    with the very object ``mergekit_arm.merge_methods.arm`` defines."""
    code = (f"import {first}; "
            "from mergekit.merge_methods import registered_methods; "
            "from mergekit_arm.merge_methods.arm import arm_merge_method; "
            f"{GET_ARM}; "
            "print(get('arm') is arm_merge_method, "
            "sum(m.spec.name == 'arm' for m in registered_methods()))")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["arm", "True", "1"]
    assert "could not register" not in proc.stderr


def test_hook_leaves_the_import_system_as_it_found_it():
    """Once ``arm`` is registered the finder is gone from ``sys.meta_path``."""
    proc = _python("import sys; n = len(sys.meta_path); import mergekit.merge_methods; "
                   "print(n - len(sys.meta_path), any('mergekit_arm' in type(f).__module__ "
                   "for f in sys.meta_path))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "False"]


def test_mergekit_planner_resolves_arm():
    """The names MergeKit's planner, task adapter and card writer look up."""
    code = ("import mergekit.plan, mergekit.card, mergekit.merge_methods.task_adapter; "
            "from mergekit import merge_methods; print(merge_methods.get('arm').spec.name)")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "arm"


@pytest.mark.parametrize("first", ["mergekit.merge_methods", "mergekit_arm.merge_methods.arm"])
def test_hook_off_then_register_is_the_fallback(first):
    proc = _python(f"import {first}; {GET_ARM}", env_extra=OFF)
    assert proc.returncode != 0 and "Unimplemented merge method arm" in proc.stderr
    proc = _python(f"import {first}; import mergekit_arm; mergekit_arm.register(); "
                   f"mergekit_arm.register(); {GET_ARM}", env_extra=OFF)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "arm"


def test_register_before_mergekit_is_imported_with_the_hook_on():
    """An explicit ``register()`` racing the hook registers once, without an error."""
    proc = _python(f"import mergekit_arm; mergekit_arm.register(); mergekit_arm.register(); "
                   f"{GET_ARM}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "arm"


def test_without_site_the_explicit_register_works():
    """``python -S`` skips .pth files; the documented fallback still works."""
    import site

    paths = [p for p in sys.path if p] + site.getsitepackages()
    code = (f"import sys; sys.path[:0] = {paths!r}; import mergekit_arm; "
            f"mergekit_arm.register(); {GET_ARM}")
    proc = _python(code, "-S")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "arm"


PTH = Path(__file__).resolve().parents[1] / "mergekit_arm_autoregister.pth"


def _process_pth(site_dir: Path, package_path: list[str]) -> subprocess.CompletedProcess:
    """A ``python -S`` that processes the shipped ``.pth`` from ``site_dir`` (as ``site``
    does at start-up), with only ``package_path`` and the standard library importable."""
    code = (f"import sys; sys.path[:0] = {package_path!r}; import site; "
            f"site.addsitedir({str(site_dir)!r}); "
            "print('mergekit_arm._autoregister' in sys.modules)")
    return _python(code, "-S")


@pytest.mark.parametrize("installed", [True, False])
def test_shipped_pth_hooks_in_and_is_silent_once_the_package_is_gone(tmp_path, installed):
    """The ``.pth`` the wheel installs imports the hook; when the package has been removed
    but the ``.pth`` left behind (a deleted editable checkout), start-up stays silent
    instead of printing a traceback in every Python process."""
    (tmp_path / PTH.name).write_text(PTH.read_text())
    package_path = [str(PTH.parent)] if installed else []
    proc = _process_pth(tmp_path, package_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(installed)
    assert proc.stderr == ""


# ----------------------------------------------- mergekit's own command-line tools


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, tiny_llama, demo_tokenizer) -> tuple[Path, Path]:
    """(origin, current): two random tiny Llamas of one architecture."""
    from mergekit_arm.demo import make_tiny_model

    other = make_tiny_model(tmp_path_factory.mktemp("registration") / "other", "llama",
                            tokenizer=demo_tokenizer, seed=1)
    return tiny_llama, other


def _plain_step(origin: Path | str, cur: Path | str, eta: float) -> dict:
    """An ``arm`` merge with no statistics: the plain step ``W_cur + eta * (W_cur - W_from)``."""
    return {"merge_method": "arm", "base_model": str(cur),
            "models": [{"model": str(origin), "parameters": {"origin": True}}],
            "parameters": {"learning_rate": eta, "missing_statistics": "plain"},
            "dtype": "float32", "out_dtype": "float32"}


@pytest.mark.slow
def test_mergekit_yaml_subprocess_runs_arm(two_models, tmp_path):
    origin, cur = two_models
    config = tmp_path / "arm.yml"
    config.write_text(yaml.safe_dump(_plain_step(origin, cur, 0.5)), encoding="utf-8")
    off = run_mergekit_yaml(config, tmp_path / "off", tmp_path, env=mergekit_env(**OFF))
    assert off.returncode != 0 and "Unimplemented merge method arm" in off.stderr + off.stdout
    run_and_check_arm(config, tmp_path / "out", tmp_path, "--no-write-model-card")


@pytest.mark.slow
def test_mergekit_multi_subprocess_runs_arm(two_models, tmp_path):
    """Two dependent ``arm`` recipes in one ``mergekit-multi`` run."""
    origin, cur = two_models
    first = {"name": "first", **_plain_step(origin, cur, 0.5)}
    second = _plain_step(cur, "first", 0.25)
    config = tmp_path / "multi.yml"
    config.write_text(yaml.safe_dump_all([first, second]), encoding="utf-8")
    proc = subprocess.run(
        [tool("mergekit-multi"), str(config), "-I", str(tmp_path / "steps"),
         "--out-path", str(tmp_path / "out"), "--no-write-model-card"],
        capture_output=True, text=True, env=mergekit_env(), timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    step = tmp_path / "steps" / "first"
    assert_matches_reference(load_state_dict(step), reference_merge(first, tmp_path),
                             torch.float32)
    assert_matches_reference(load_state_dict(tmp_path / "out"),
                             reference_merge(_plain_step(cur, step, 0.25), tmp_path),
                             torch.float32)
