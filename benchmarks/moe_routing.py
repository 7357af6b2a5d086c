"""Mixture-of-experts: measure each expert's input on the tokens routed to it, or on all tokens?

For each expert ``e`` of a tiny Mixtral (transformers 5 stacked experts) and each of its two
weights (``gate_up_proj[e]``, input: the MoE block input; ``down_proj[e]``, input:
``act(x W_gate^T) * (x W_up^T)``) this script computes two second moments on the
calibration texts:

* **routed**: over the tokens the router sends to ``e`` (what mergekit-arm stores);
* **all**: over every token (for ``gate_up_proj`` the router's input; for ``down_proj`` the
  expert applied to every token, as if every token were routed to it).

and reports, at rank ``r`` (top-r eigenvectors ``S``), mean over experts and layers:

1. ``overlap(routed, all)``: ``|S_routed^T S_all|_F^2 / r`` (mean cos^2 of the principal
   angles; 1 = the same subspace) and the largest principal angle;
2. split-half stability of each: the same overlap between the subspaces of two disjoint
   halves of the calibration texts (sampling noise; 1 = stable);
3. what the merge needs: the share of the gradient of the LM loss on held-out texts w.r.t.
   the expert's weight ``G`` (``out x in``) that the subspace captures,
   ``|G S|_F^2 / |G|_F^2``. ARM rotates the displacement ``W_sft - W_base`` (a sum of such
   gradients) on its input side within ``S``; the gradient of expert ``e`` is
   ``sum_{t routed to e} delta_t x_t^T``, so its row space is spanned by the routed inputs.

Random init, and after ``--train-steps`` of AdamW on the demo corpus (routing specialises).

    python benchmarks/moe_routing.py                  # the numbers in docs/method.md
    python benchmarks/moe_routing.py --quick          # smoke run
"""

from __future__ import annotations

import argparse
import json
import random

import torch


def _subspace(moment: torch.Tensor, r: int) -> torch.Tensor:
    _, vectors = torch.linalg.eigh(moment.double())
    return vectors[:, -r:].flip(1)


def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|A^T B|_F^2 / r``: mean cos^2 of the principal angles of two r-dim subspaces."""
    return float((a.T @ b).pow(2).sum() / a.shape[1])


def max_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = torch.linalg.svdvals(a.T @ b).clamp(max=1.0)
    return float(torch.rad2deg(torch.arccos(cos.min())))


def captured(grad: torch.Tensor, s: torch.Tensor) -> float:
    """Share of ``|G|_F^2`` in the input subspace ``S``: ``|G S|^2 / |G|^2``."""
    g = grad.double()
    return float((g @ s).pow(2).sum() / g.pow(2).sum().clamp_min(1e-300))


class Moments:
    """Per (weight, expert): routed and all-token ``sum x x^T`` per half of the texts."""

    def __init__(self) -> None:
        self.sums: dict[tuple, torch.Tensor] = {}
        self.counts: dict[tuple, int] = {}
        self.half = 0
        self.keep: torch.Tensor | None = None  # non-padding rows of the current batch

    def add(self, key: tuple, x: torch.Tensor) -> None:
        key = (*key, self.half)
        x = x.double()
        self.sums[key] = self.sums.get(key, 0) + x.T @ x
        self.counts[key] = self.counts.get(key, 0) + x.shape[0]

    def moment(self, key: tuple, halves=(0, 1)) -> torch.Tensor:
        total = sum(self.sums[(*key, h)] for h in halves)
        return total / sum(self.counts[(*key, h)] for h in halves)


def hook_experts(model, moments: Moments) -> list:
    handles = []
    for prefix, module in model.named_modules():
        if not hasattr(module, "gate_up_proj") or getattr(module.gate_up_proj, "ndim", 0) != 3:
            continue

        def hook(m, args, prefix=prefix):
            hidden, top_k_index = args[0], args[1]
            if moments.keep is not None:
                hidden, top_k_index = hidden[moments.keep], top_k_index[moments.keep]
            for e in range(m.gate_up_proj.shape[0]):
                inner = m._apply_gate(hidden @ m.gate_up_proj[e].T)
                rows = (top_k_index == e).any(dim=-1)
                moments.add((f"{prefix}.gate_up_proj", e, "all"), hidden)
                moments.add((f"{prefix}.down_proj", e, "all"), inner)
                if rows.any():
                    moments.add((f"{prefix}.gate_up_proj", e, "routed"), hidden[rows])
                    moments.add((f"{prefix}.down_proj", e, "routed"), inner[rows])

        handles.append(module.register_forward_pre_hook(hook))
    return handles


def batches(token_lists: list[list[int]], pad: int, size: int = 8):
    for i in range(0, len(token_lists), size):
        chunk = token_lists[i:i + size]
        width = max(len(t) for t in chunk)
        ids = torch.full((len(chunk), width), pad)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, t in enumerate(chunk):
            ids[j, :len(t)], mask[j, :len(t)] = torch.tensor(t), 1
        yield ids, mask


def train(model, token_lists, pad: int, steps: int, seed: int) -> None:
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        ids, mask = next(batches(rng.sample(token_lists, 8), pad))
        labels = ids.masked_fill(mask == 0, -100)
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def measure(model, calib: list[list[int]], held: list[list[int]], pad: int, ranks) -> dict:
    moments = Moments()
    handles = hook_experts(model, moments)
    half = len(calib) // 2
    with torch.no_grad():
        for h, part in enumerate((calib[:half], calib[half:])):
            moments.half = h
            for ids, mask in batches(part, pad):
                moments.keep = mask.reshape(-1).bool()  # padding is not measured
                model(input_ids=ids, attention_mask=mask, use_cache=False)
    for handle in handles:
        handle.remove()
    # gradients of the LM loss on held-out texts
    model.zero_grad()
    for ids, mask in batches(held, pad):
        labels = ids.masked_fill(mask == 0, -100)
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    params = dict(model.named_parameters())
    keys = sorted({k[:2] for k in moments.sums})
    starved = [k for k in keys if any((*k, "routed", h) not in moments.counts for h in (0, 1))]
    keys = [k for k in keys if k not in starved]
    out = {"experts_without_routed_tokens_in_a_half": len(starved) // 2}
    for r in ranks:
        rows = []
        for name, e in keys:
            full = {kind: _subspace(moments.moment((name, e, kind)), r) for kind in ("routed", "all")}
            halves = {kind: [_subspace(moments.moment((name, e, kind), (h,)), r) for h in (0, 1)]
                      for kind in ("routed", "all")}
            grad = params[name].grad[e]
            rows.append({
                "weight": name.rsplit(".", 1)[1],
                "tokens_routed": sum(moments.counts[(name, e, "routed", h)] for h in (0, 1)),
                "tokens_all": sum(moments.counts[(name, e, "all", h)] for h in (0, 1)),
                "overlap_routed_all": overlap(full["routed"], full["all"]),
                "max_angle_routed_all": max_angle(full["routed"], full["all"]),
                "split_half_routed": overlap(*halves["routed"]),
                "split_half_all": overlap(*halves["all"]),
                "grad_captured_routed": captured(grad, full["routed"]),
                "grad_captured_all": captured(grad, full["all"]),
            })
        summary = {}
        for weight in ("gate_up_proj", "down_proj"):
            sel = [row for row in rows if row["weight"] == weight]
            summary[weight] = {k: sum(row[k] for row in sel) / len(sel)
                               for k in sel[0] if k != "weight"}
            summary[weight]["grad_routed_better_in"] = (
                f"{sum(row['grad_captured_routed'] > row['grad_captured_all'] for row in sel)}"
                f"/{len(sel)}")
        out[f"rank_{r}"] = summary
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=256, help="calibration texts (two halves)")
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--ranks", default="4,8,16")
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.held_out, args.train_steps, args.ranks = 32, 8, 5, "4"
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, MixtralConfig

    from mergekit_arm.demo.corpus import default_demo_texts
    from mergekit_arm.demo.tokenizer import train_tokenizer

    texts = default_demo_texts()
    random.Random(args.seed).shuffle(texts)
    tokenizer = train_tokenizer(texts)
    pad = tokenizer.pad_token_id or 0
    lists = [t for t in (tokenizer(x)["input_ids"][: args.max_length] for x in texts) if len(t) >= 8]
    calib = lists[: args.texts]
    held = lists[args.texts: args.texts + args.held_out]
    train_set = lists[args.texts + args.held_out:] or lists
    config = MixtralConfig(vocab_size=max(512, len(tokenizer)), hidden_size=args.hidden,
                           intermediate_size=2 * args.hidden, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2,
                           num_local_experts=args.experts, num_experts_per_tok=2,
                           max_position_embeddings=256, tie_word_embeddings=False)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(config, experts_implementation="eager").float()
    ranks = [int(r) for r in args.ranks.split(",")]
    report = {"setup": {**vars(args), "calibration_tokens": sum(map(len, calib)),
                        "held_out_tokens": sum(map(len, held))}}
    report["random"] = measure(model, calib, held, pad, ranks)
    train(model, train_set, pad, args.train_steps, args.seed)
    report[f"trained_{args.train_steps}_steps"] = measure(model, calib, held, pad, ranks)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
