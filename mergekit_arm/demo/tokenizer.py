"""A byte-level BPE tokenizer trained offline, and the demo's text encoding."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
DEMO_VOCAB_SIZE = 512


def train_tokenizer(
    texts: list[str], vocab_size: int = DEMO_VOCAB_SIZE, model_max_length: int = 1024
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer offline on ``texts``.

    ``<|endoftext|>`` is the bos, eos and pad token; no special tokens are added to
    encoded text automatically; padding is on the right.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if not texts:
        raise ValueError("train_tokenizer needs at least one text")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        padding_side="right",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> list[list[int]]:
    """Token ids of each text followed by eos, truncated to ``max_length`` tokens."""
    eos = tokenizer.eos_token or ""
    return tokenizer([t + eos for t in texts], max_length=max_length, truncation=True)["input_ids"]


__all__ = ["DEMO_VOCAB_SIZE", "EOS_TOKEN", "encode_texts", "train_tokenizer"]
