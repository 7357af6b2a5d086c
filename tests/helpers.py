"""Shared test helpers: reading saved weights, comparing state dicts, throwaway texts, and
``run_and_check_arm`` (a ``mergekit-yaml`` run checked against the float64 reference)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file


def load_state_dict(model_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of every ``*.safetensors`` file in ``model_dir``."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors files in {model_dir}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        for name, tensor in load_file(str(file)).items():
            if name in state:
                raise ValueError(f"tensor {name} is in more than one file of {model_dir}")
            state[name] = tensor
    return state


def assert_state_dicts_close(
    a: dict[str, torch.Tensor],
    b: dict[str, torch.Tensor],
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> None:
    """Assert same names, shapes, dtypes and close values; the message names the first offender."""
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    assert not missing and not extra, f"tensor names differ: only in a {missing}, only in b {extra}"
    for name in sorted(a):
        x, y = a[name], b[name]
        assert x.shape == y.shape, f"{name}: shape {tuple(x.shape)} != {tuple(y.shape)}"
        assert x.dtype == y.dtype, f"{name}: dtype {x.dtype} != {y.dtype}"
        xf, yf = x.double(), y.double()
        if not torch.allclose(xf, yf, rtol=rtol, atol=atol, equal_nan=True):
            diff = (xf - yf).abs()
            raise AssertionError(
                f"{name}: tensors differ (max abs diff {diff.max().item():.3g}, "
                f"{int((diff > atol + rtol * yf.abs()).sum())} of {diff.numel()} elements "
                f"outside rtol={rtol}, atol={atol})"
            )


def synthetic_records(per_domain: int = 24, seed: int = 0) -> list[dict[str, str]]:
    """Throwaway english/math/code texts, for runs where the shipped corpus is missing."""
    rng = random.Random(seed)
    names = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana"]
    things = ["apples", "books", "coins", "marbles", "pencils", "stamps"]
    places = ["the park", "the library", "the market", "the river", "school"]
    records: list[dict[str, str]] = []
    for _ in range(per_domain):
        n, p, t = rng.choice(names), rng.choice(places), rng.choice(things)
        records.append({"domain": "english", "text": (
            f"{n} walked to {p} in the morning. The weather was mild and {n} "
            f"brought some {t} to share with friends before lunch.")})
        a, b, c = rng.randint(2, 60), rng.randint(2, 60), rng.randint(2, 9)
        records.append({"domain": "math", "text": (
            f"Question: {n} has {a} {t} and buys {b} more, then shares them equally among "
            f"{c} friends. How many does each get? Answer: {a} + {b} = {a + b}; "
            f"{a + b} / {c} = {(a + b) / c:.2f}.")})
        f, k = rng.choice(["add", "scale", "total", "mix"]), rng.randint(1, 9)
        records.append({"domain": "code", "text": (
            f"def {f}(values):\n    result = 0\n    for v in values:\n"
            f"        result += v * {k}\n    return result\n")})
    return records


# ------------------------------------------------------- merges through mergekit-yaml


def tool(name: str) -> str:
    """Path of a console script installed next to this interpreter."""
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def mergekit_env(**extra: str) -> dict[str, str]:
    """The environment of a MergeKit subprocess: start-up hook on, hub offline."""
    env = {k: v for k, v in os.environ.items() if k != "MERGEKIT_ARM_NO_AUTOREGISTER"}
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env


def run_mergekit_yaml(config: Path, out: Path, cwd: Path, *args: str,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``mergekit-yaml CONFIG OUT [ARGS]`` in a subprocess (``arm`` comes from the hook)."""
    return subprocess.run([tool("mergekit-yaml"), str(config), str(out), *args], cwd=cwd,
                          env=mergekit_env() if env is None else env, capture_output=True,
                          text=True, timeout=300)


# Input-embedding names of the architectures the tests build (tied: lm_head's matrix).
_INPUT_EMBEDDINGS = ("model.embed_tokens.weight", "transformer.wte.weight")

# Parameters the float64 reference implements; any other value is refused, not ignored.
_REFERENCE_DEFAULTS = {"eigengap": False, "pairing": "subspace"}
_REFERENCE_UNMODELLED = ("energy",)


def reference_merge(config: dict, cwd: Path) -> dict[str, torch.Tensor]:
    """Every output tensor of an ``arm`` YAML computed by ``tests/reference.py`` (float64).

    Roles as in the kernel: ``base_model`` is ``W_cur``, the input with ``origin: true``
    is ``W_from`` (none: the base), every other input is a weighted target (none: the
    base). Weights without statistics (untied embeddings, norms, or no ``activations`` at
    all) take the plain step ``W_cur + eta * d``. On a tied-embedding model (the base's
    config says ``tie_word_embeddings``) the input embedding is ``lm_head``'s matrix
    and takes ``lm_head.weight``'s subspaces (docs/method.md, "Tied embeddings").
    """
    from mergekit_arm.rotation import select_subspace
    from mergekit_arm.statistics import ActivationStatistics

    from .reference import reference_arm_step

    if config.get("merge_method") != "arm":
        raise ValueError(f"not an arm merge: {config.get('merge_method')!r}")
    params = config["parameters"]
    for name, default in _REFERENCE_DEFAULTS.items():
        if params.get(name, default) != default:
            raise NotImplementedError(f"the reference implements only {name}: {default!r}")
    unmodelled = [name for name in _REFERENCE_UNMODELLED if name in params]
    if unmodelled:
        raise NotImplementedError(f"the reference does not model {unmodelled}")
    base = (cwd / config["base_model"]).resolve()
    per_model = {(cwd / m["model"]).resolve(): m.get("parameters", {}) for m in config["models"]}
    origin = next((p for p, q in per_model.items() if q.get("origin")), base)
    targets = [p for p in per_model if p not in (origin, base)] or [base]
    weights = [per_model.get(p, {}).get("weight", 1.0) for p in targets]
    states = {p: load_state_dict(p) for p in {base, origin, *targets}}
    cur_path, from_path = params.get("activations"), per_model.get(origin, {}).get("activations")
    cur_stats = ActivationStatistics(cwd / cur_path) if cur_path else None
    from_stats = ActivationStatistics(cwd / from_path) if from_path else None
    rank, eta = params.get("rank", 64), params["learning_rate"]
    from transformers import AutoConfig

    tied = bool(getattr(AutoConfig.from_pretrained(base), "tie_word_embeddings", False))
    out = {}
    for name, w_cur in states[base].items():
        s_from = s_cur = None
        entry = "lm_head.weight" if tied and name.endswith(_INPUT_EMBEDDINGS) else name
        if cur_stats is not None and from_stats is not None and entry in cur_stats:
            lc, lf = cur_stats[entry], from_stats[entry]
            s_cur = select_subspace(lc.basis, lc.eigenvalues, lc.trace, rank)
            s_from = select_subspace(lf.basis, lf.eigenvalues, lf.trace, rank)
        out[name] = reference_arm_step(
            w_cur, states[origin][name], [states[t][name] for t in targets], weights,
            s_from, s_cur, eta, gamma=params.get("rotation_strength", 1.0),
            beta=params.get("off_subspace", 1.0), normalize=params.get("normalize", True),
        )
    return out


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """``|got - want| / |want|`` in float64 (Frobenius norms)."""
    return float((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-12))


def assert_matches_reference(merged: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                             out_dtype: torch.dtype, tolerance: float | None = None) -> None:
    """Same tensor names, every tensor in ``out_dtype`` and within ``tolerance`` (relative;
    default 1e-4 for float32 output, 1e-2 below) of the reference; names the offender."""
    if tolerance is None:
        tolerance = 1e-4 if out_dtype == torch.float32 else 1e-2
    missing, extra = sorted(set(expected) - set(merged)), sorted(set(merged) - set(expected))
    assert not missing and not extra, f"tensor names differ: missing {missing}, extra {extra}"
    for name, want in expected.items():
        assert merged[name].dtype == out_dtype, f"{name}: dtype {merged[name].dtype}"
        error = relative_error(merged[name], want)
        assert error < tolerance, f"{name}: relative error {error:.2e} >= {tolerance:.0e}"


def run_and_check_arm(config: dict | Path, out: Path, cwd: Path, *args: str,
                      tolerance: float | None = None) -> dict[str, torch.Tensor]:
    """Merge ``config`` (a YAML file or a dict, paths relative to ``cwd``) with
    ``mergekit-yaml`` in a subprocess, check the result is a loadable Hugging Face folder
    and compare it tensor by tensor with :func:`reference_merge`; returns the merged tensors."""
    if isinstance(config, dict):
        path = out.parent / f"{out.name}.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        config, data = path, config
    else:
        data = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    proc = run_mergekit_yaml(Path(config), out, cwd, *args)
    assert proc.returncode == 0, f"mergekit-yaml failed:\n{proc.stderr[-3000:]}"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # a loadable Hugging Face folder, not only tensors
    merged = load_state_dict(out)
    assert_matches_reference(merged, reference_merge(data, cwd),
                             getattr(torch, data.get("out_dtype", "float32")), tolerance)
    return merged
