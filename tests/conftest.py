"""Session fixtures: a tokenizer, tiny Llama/Qwen3 models, their fine-tuned checkpoints
and calibration texts. Everything is built locally in a few seconds; nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import synthetic_records  # noqa: E402

SFT_STEPS = [5, 10]


def _corpus_records() -> tuple[list[dict[str, str]], bool]:
    """The shipped calibration corpus, or throwaway texts when it is missing (real?)."""
    from mergekit_arm.demo import corpus
    from mergekit_arm.errors import ArmError

    try:
        records = corpus.default_demo_records()
    except (FileNotFoundError, ArmError):
        return synthetic_records(), False
    domains = {r.get("domain") for r in records}
    if not {"math", "english"} <= domains and not {"math", "code"} <= domains:
        return synthetic_records(), False
    return records, True


@pytest.fixture(scope="session")
def demo_records() -> Iterator[list[dict[str, str]]]:
    """Records of the default corpus; ``default_demo_records`` is patched to throwaway
    texts for the session when the shipped file is missing."""
    records, real = _corpus_records()
    if real:
        yield records
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("mergekit_arm.demo.corpus.default_demo_records", lambda: list(records))
        yield records


@pytest.fixture(scope="session")
def demo_tokenizer(demo_records):
    """Byte-level BPE tokenizer (vocab 512) trained on the whole corpus."""
    from mergekit_arm.demo import train_tokenizer

    return train_tokenizer([r["text"] for r in demo_records], vocab_size=512,
                           model_max_length=128)


@pytest.fixture(scope="session")
def math_texts(demo_records) -> list[str]:
    """Math texts of the corpus (the "SFT" data of the fine-tuned fixtures)."""
    return [r["text"] for r in demo_records if r.get("domain") == "math"][:64]


def _base(tmp_path_factory, arch: str, tokenizer) -> Path:
    from mergekit_arm.demo import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp(f"tiny_{arch}") / "base", arch,
                           tokenizer=tokenizer, seed=0)


def _sft(tmp_path_factory, arch: str, base: Path, texts: list[str]) -> dict[int, Path]:
    from mergekit_arm.demo import fine_tune

    out = tmp_path_factory.mktemp(f"tiny_{arch}_sft")
    return fine_tune(base, out, texts, steps=max(SFT_STEPS), save_steps=min(SFT_STEPS),
                     max_length=64, seed=0, num_threads=1)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, demo_tokenizer) -> Path:
    """Folder of a random tiny Llama (hidden 64, 2 layers, vocab 512, float32)."""
    return _base(tmp_path_factory, "llama", demo_tokenizer)


@pytest.fixture(scope="session")
def tiny_llama_sft(tmp_path_factory, tiny_llama, math_texts) -> dict[int, Path]:
    """{5: path, 10: path}: Trainer checkpoints (``checkpoint-5``, ``checkpoint-10``) of
    fine-tuning ``tiny_llama`` on math texts."""
    return _sft(tmp_path_factory, "llama", tiny_llama, math_texts)


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory, demo_tokenizer) -> Path:
    """Folder of a random tiny Qwen3 (hidden 64, 2 layers, head_dim 16, float32)."""
    return _base(tmp_path_factory, "qwen3", demo_tokenizer)


@pytest.fixture(scope="session")
def tiny_qwen3_sft(tmp_path_factory, tiny_qwen3, math_texts) -> dict[int, Path]:
    """{5: path, 10: path}: checkpoints of fine-tuning ``tiny_qwen3`` on math texts."""
    return _sft(tmp_path_factory, "qwen3", tiny_qwen3, math_texts)


@pytest.fixture(scope="session")
def calibration_texts(demo_records) -> list[str]:
    """24 short texts, 8 per domain where possible (the shortest of each domain)."""
    by_domain: dict[str, list[str]] = {}
    for r in demo_records:
        by_domain.setdefault(r.get("domain", "other"), []).append(r["text"])
    texts: list[str] = []
    for domain in sorted(by_domain):
        texts += sorted(by_domain[domain], key=len)[:8]
    return texts[:24]


@pytest.fixture(scope="session")
def calibration_jsonl(tmp_path_factory, calibration_texts) -> Path:
    """A ``.jsonl`` file with one ``{"text": ...}`` object per calibration text."""
    path = tmp_path_factory.mktemp("calibration") / "calibration.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for text in calibration_texts:
            handle.write(json.dumps({"text": text}) + "\n")
    return path


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures(...)``): faster
    for tiny models on a shared 2-core machine, and the same setting as subprocesses run
    with OMP_NUM_THREADS=1, so results match bit for bit."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def validation_texts(demo_records) -> list[str]:
    """Math texts after the 64 the SFT fixtures trained on (held out where the corpus allows)."""
    math_texts = [r["text"] for r in demo_records if r.get("domain") == "math"]
    held_out = math_texts[64:80]
    return held_out if len(held_out) >= 8 else math_texts[-8:]


@pytest.fixture(scope="session")
def validation_jsonl(tmp_path_factory, validation_texts) -> Path:
    path = tmp_path_factory.mktemp("validation") / "heldout.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in validation_texts))
    return path
