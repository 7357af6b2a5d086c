"""Tied embeddings: is the head's input subspace the right frame for the tied matrix?

A tied-embedding model uses one matrix ``E`` (vocab x hidden) twice: as the input
embedding (row lookup) and as ``lm_head`` (``logits = E h``, ``h`` the final normed hidden
state). Its gradient is the sum of two parts,

* ``G_head = sum_t delta_t h_t^T``: rows in the span of the head's inputs ``h`` (the
  argument of docs/method.md, "Why rotate the input side");
* ``G_emb``: row ``v`` is the gradient w.r.t. the residual stream at the positions of token
  ``v``; no input subspace constrains it.

ARM rotates the displacement ``D = E_sft - E_base`` on its input (hidden) side within the
head's top-r input subspace ``S`` (entry ``lm_head.weight``). This script measures, on a
tiny tied Llama (hidden 64, 2 layers, vocab 512), random and after ``--train-steps`` of
AdamW on the demo corpus, the share of each matrix in ``S``: ``|M S|_F^2 / |M|_F^2``
(a random r-dim subspace captures ``r / hidden`` on average), for ``G_head``, ``G_emb``,
``G = G_head + G_emb`` (the held-out LM-loss gradient) and the displacement ``D`` of a
further fine-tuning run; plus ``|G_head|_F / |G|_F``.

    python benchmarks/tied_embedding.py            # the numbers in docs/method.md
    python benchmarks/tied_embedding.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch


def captured(matrix: torch.Tensor, s: torch.Tensor) -> float:
    """Share of ``|M|_F^2`` in the input subspace ``S``: ``|M S|^2 / |M|^2``."""
    m = matrix.double()
    return float((m @ s).pow(2).sum() / m.pow(2).sum().clamp_min(1e-300))


def head_subspace(model, batches, rank: int) -> torch.Tensor:
    """Top-``rank`` eigenvectors of ``E[h h^T]`` over the non-padding final hidden states."""
    moment = torch.zeros(model.config.hidden_size, model.config.hidden_size, dtype=torch.float64)
    with torch.no_grad():
        for ids, mask in batches:
            h = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            h = h[mask.bool()].double()
            moment += h.T @ h
    _, vectors = torch.linalg.eigh(moment)
    return vectors[:, -rank:].flip(1)


def split_gradient(model, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G_head, G_emb)`` of the held-out LM loss: the tied matrix untied in a copy."""
    import copy

    untied = copy.deepcopy(model)
    untied.lm_head.weight = torch.nn.Parameter(untied.model.embed_tokens.weight.detach().clone())
    untied.zero_grad()
    for ids, mask in batches:
        labels = ids.masked_fill(~mask.bool(), -100)
        untied(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    return untied.lm_head.weight.grad.clone(), untied.model.embed_tokens.weight.grad.clone()


def batches_of(tokenizer, texts, max_length: int, size: int = 16):
    out = []
    for i in range(0, len(texts), size):
        enc = tokenizer(texts[i:i + size], truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        out.append((enc["input_ids"], enc["attention_mask"]))
    return out


def measure(model, tokenizer, calibration, held_out, ranks, max_length) -> dict:
    model.eval()
    g_head, g_emb = split_gradient(model, batches_of(tokenizer, held_out, max_length))
    result = {"head_norm_share": float(g_head.norm() / (g_head + g_emb).norm())}
    cal = batches_of(tokenizer, calibration, max_length)
    for r in ranks:
        s = head_subspace(model, cal, r)
        result[f"rank{r}"] = {"G_head": captured(g_head, s), "G_emb": captured(g_emb, s),
                              "G": captured(g_head + g_emb, s),
                              "random": r / model.config.hidden_size}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--sft-steps", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/tied-embedding.json")
    args = parser.parse_args()
    from mergekit_arm.demo import fine_tune, make_tiny_model, train_tokenizer
    from mergekit_arm.demo.corpus import default_demo_records
    from mergekit_arm.demo.tiny_models import load_model_dir

    torch.set_num_threads(1)
    records = default_demo_records()
    texts = [r["text"] for r in records]
    math = [r["text"] for r in records if r.get("domain") == "math"]
    other = [r["text"] for r in records if r.get("domain") != "math"]
    n_cal = 32 if args.quick else 128
    train_steps = 20 if args.quick else args.train_steps
    sft_steps = 10 if args.quick else args.sft_steps
    # calibration: English/code texts; pre-training: the other English/code texts; SFT: the
    # first 100 math texts; held-out gradient: the remaining math texts
    calibration, pretrain = other[:n_cal], other[n_cal:]
    sft_texts, held_out = math[:100], math[100:]
    n_held = len(held_out)
    ranks, max_length = (4, 8, 16), 64
    tokenizer = train_tokenizer(texts, vocab_size=512, model_max_length=128)
    report = {"hidden": 64, "calibration_texts": n_cal, "held_out_texts": n_held,
              "train_steps": train_steps, "sft_steps": sft_steps}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = make_tiny_model(root / "random", "llama", tokenizer=tokenizer, seed=0,
                               tie_word_embeddings=True)
        trained = fine_tune(base, root / "trained", pretrain, steps=train_steps,
                            max_length=max_length, seed=0, num_threads=1)[train_steps]
        sft = fine_tune(trained, root / "sft", sft_texts, steps=sft_steps, max_length=max_length,
                        seed=1, num_threads=1)[sft_steps]
        for label, folder in (("random", base), ("trained", trained)):
            model, _ = load_model_dir(folder)
            assert model.lm_head.weight is model.model.embed_tokens.weight
            report[label] = measure(model, tokenizer, calibration, held_out, ranks, max_length)
        model, _ = load_model_dir(trained)
        displacement = load_model_dir(sft)[0].model.embed_tokens.weight.detach() - \
            model.model.embed_tokens.weight.detach()
        cal = batches_of(tokenizer, calibration, max_length)
        report["sft_displacement"] = {f"rank{r}": captured(displacement, head_subspace(model, cal, r))
                                      for r in ranks}
    print(json.dumps(report, indent=2))
    if not args.quick:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
