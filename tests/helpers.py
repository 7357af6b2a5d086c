"""Shared test helpers: reading saved weights, comparing state dicts, throwaway texts."""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch
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
