"""Training and evaluation on the model's device (CPU, or CUDA on the GPU machine):
response-only SFT with warmup + cosine decay to zero, mean response-token loss, greedy
exact-match accuracy. State dicts (checkpoints, merges) are float32 on the CPU."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence

import torch

from mergekit_arm.evaluation import LossBatch, heldout_loss, loss_batches

from .data import Example, extract_answer, scorer

StateDict = dict[str, torch.Tensor]


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters are."""
    return next(model.parameters()).device


def clone_state(model: torch.nn.Module) -> StateDict:
    """Float32 CPU copies of the model's tensors; a tied tensor (lm_head tied to the
    embedding) is kept once, under its first name, so merges never see two copies of it."""
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        ptr = v.data_ptr()
        if ptr in seen:
            continue
        seen.add(ptr)
        out[k] = v.detach().to(device="cpu", dtype=torch.float32).clone()
    return out


def load_state(model: torch.nn.Module, state: StateDict) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight")} if getattr(
        model.config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"state mismatch: missing {sorted(set(missing) - tied)}, "
                           f"unexpected {unexpected}")


def _autocast(enabled: bool, device: torch.device):
    if enabled:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def encode_examples(tokenizer, examples: Sequence[Example], max_length: int) -> list[tuple[list[int], int]]:
    """Token ids ``prompt + response + eos`` (truncated) and the prompt length."""
    out = []
    eos = tokenizer.eos_token_id
    for e in examples:
        p = tokenizer(e.prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(e.response, add_special_tokens=False)["input_ids"] + [eos]
        ids = (p + r)[:max_length]
        out.append((ids, min(len(p), len(ids))))
    return out


def _collate(encoded: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    for i, (ids, plen) in enumerate(encoded):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention[i, :len(ids)] = 1
        labels[i, plen:len(ids)] = torch.tensor(ids[plen:])
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def _token_losses(model, batch, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of response-token losses per row and the number of such tokens per row."""
    device = model_device(model)
    batch = {k: v.to(device) for k, v in batch.items()}
    with _autocast(bf16, device):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       use_cache=False).logits
    logits = logits[:, :-1].float()
    target = batch["labels"][:, 1:]
    mask = target != -100
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.clamp_min(0).reshape(-1), reduction="none"
    ).view(target.shape)
    return (loss * mask).sum(1), mask.sum(1)


class Evaluator:
    """Mean response-token loss of a model on fixed example sets (encoded once), computed by
    the package's one held-out loss, :func:`mergekit_arm.evaluation.heldout_loss`."""

    def __init__(self, model, tokenizer, max_length: int, batch_size: int, bf16: bool):
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.batch_size, self.bf16 = max_length, batch_size, bf16
        self._cache: dict[tuple[tuple[str, str], ...], list[LossBatch]] = {}
        self.seconds = 0.0
        self.calls = 0

    def _batches(self, examples: Sequence[Example]) -> list[LossBatch]:
        # Keyed by content, not id(examples): a temporary list (a slice such as the halves
        # of the validation split) is freed after its call, and a later list can get its id.
        key = tuple((e.prompt, e.response) for e in examples)
        if key not in self._cache:
            enc = encode_examples(self.tokenizer, examples, self.max_length)
            enc = sorted(enc, key=lambda item: len(item[0]))  # less padding
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            self._cache[key] = loss_batches([ids for ids, _ in enc], self.batch_size, pad,
                                            prompt_lengths=[n for _, n in enc],
                                            device=model_device(self.model))
        return self._cache[key]

    def loss(self, examples: Sequence[Example]) -> float:
        """``sum CE(response tokens) / #response tokens`` (bf16 autocast if configured)."""
        start = time.perf_counter()
        loss = heldout_loss(self.model, self._batches(examples),
                            autocast_dtype=torch.bfloat16 if self.bf16 else None)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return loss

    @torch.no_grad()
    def accuracy(self, examples: Sequence[Example], max_new_tokens: int, batch_size: int = 16) -> float:
        """Exact match under greedy decoding (left-padded batches), scored by the task's
        own reasoning-gym scorer on the extracted answer."""
        if not examples:
            return float("nan")
        self.model.eval()
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        correct = 0
        scorers = {}
        for s in range(0, len(examples), batch_size):
            chunk = examples[s:s + batch_size]
            prompts = [tok(e.prompt, add_special_tokens=False)["input_ids"] for e in chunk]
            width = max(len(p) for p in prompts)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, p in enumerate(prompts):
                ids[i, width - len(p):] = torch.tensor(p)
                mask[i, width - len(p):] = 1
            device = model_device(self.model)
            ids, mask = ids.to(device), mask.to(device)
            with _autocast(self.bf16, device):
                out = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                          max_new_tokens=max_new_tokens, pad_token_id=pad,
                                          eos_token_id=tok.eos_token_id)
            for i, e in enumerate(chunk):
                if e.task not in scorers:
                    scorers[e.task] = scorer(e.task)
                text = tok.decode(out[i, width:], skip_special_tokens=True)
                correct += scorers[e.task](extract_answer(text, e.task), e)
        return correct / len(examples)


def _bucketed_batches(enc, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch of batches: a random order cut into chunks of 16 batches, each chunk sorted
    by length (less padding), then the batches shuffled."""
    order = torch.randperm(len(enc), generator=generator).tolist()
    chunk = 16 * batch_size
    batches = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c:c + chunk], key=lambda i: len(enc[i][0]))
        batches += [part[s:s + batch_size] for s in range(0, len(part), batch_size)]
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


def sft(
    model: torch.nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    warmup_fraction: float,
    max_length: int,
    save_fractions: Sequence[float],
    seed: int,
    bf16: bool,
    weight_decay: float = 0.0,
    log: Callable[[str], None] = print,
    response_only: bool = True,
) -> tuple[dict[float, StateDict], list[dict]]:
    """AdamW, linear warmup then cosine decay to zero, response-only loss.

    Returns ``{fraction: state_dict}`` for each fraction of the total steps and the loss log.
    """
    enc = encode_examples(tokenizer, examples, max_length)
    if not response_only:
        enc = [(ids, 0) for ids, _ in enc]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    steps_per_epoch = math.ceil(len(enc) / batch_size)
    total = steps_per_epoch * epochs
    save_at = {max(1, round(f * total)): f for f in save_fractions}
    warmup = max(1, round(warmup_fraction * total))

    def rate(step: int) -> float:  # step is 0-based; multiplier of learning_rate
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup + 1) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay,
                                  betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    saved: dict[float, StateDict] = {}
    history: list[dict] = []
    step = 0
    start = time.perf_counter()
    running = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.train()
        for _epoch in range(epochs):
            for idx in _bucketed_batches(enc, batch_size, generator):
                loss = _train_step(model, optimizer, _collate([enc[i] for i in idx], pad), bf16)
                scheduler.step()
                step += 1
                running.append(float(loss.detach()))
                if step % max(1, total // 20) == 0 or step == total:
                    mean = sum(running) / len(running)
                    running = []
                    history.append({"step": step, "loss": mean, "lr": optimizer.param_groups[0]["lr"]})
                    log(f"  sft step {step}/{total} loss {mean:.4f} "
                        f"({time.perf_counter() - start:.0f}s)")
                if step in save_at:
                    saved[save_at[step]] = clone_state(model)
    model.eval()
    return saved, history


def _train_step(model, optimizer, batch, bf16: bool) -> torch.Tensor:
    """One AdamW step on the mean token loss of ``batch`` (gradient norm clipped at 1)."""
    sums, counts = _token_losses(model, batch, bf16)
    loss = sums.sum() / counts.sum().clamp_min(1)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss


def pretrain_lm(model, tokenizer, texts: Sequence[str], steps: int, batch_size: int,
                learning_rate: float, max_length: int, seed: int) -> None:
    """Brief plain causal-LM training (constant rate) for the tiny from-scratch origin."""
    eos = tokenizer.eos_token_id
    enc = [(tokenizer(t, add_special_tokens=False)["input_ids"] + [eos])[:max_length] for t in texts]
    enc = [(ids, 0) for ids in enc if len(ids) > 1]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    model.train()
    order: list[int] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(steps):
            if len(order) < batch_size:
                order += torch.randperm(len(enc), generator=generator).tolist()
            idx, order = order[:batch_size], order[batch_size:]
            _train_step(model, optimizer, _collate([enc[i] for i in idx], pad), False)
    model.eval()
