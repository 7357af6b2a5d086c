"""Task data from reasoning-gym: prompt/response pairs and the splits of the benchmark.

Two tasks, mixed in one SFT run:

* ``gsm_symbolic`` (GSM8K-style word problems with worked solutions ending in
  ``#### <answer>``). Its templates (``dataset.task_indices[i]``) are split once, with
  a fixed split seed, into train / validation / test templates. The *primary* test
  split holds problems whose templates the train split never uses; the validation
  split uses its own disjoint templates too, so hyperparameters are chosen on the same
  kind of generalisation the primary test measures. A *secondary* test split uses
  the train templates with problems drawn from another dataset seed.
* ``chain_sum`` at low difficulty (a task a small model learns): train, validation
  and test come from disjoint dataset seeds; duplicates of train questions are removed
  from validation and test.

Every split is a list of :class:`Example`; the formats are plain text
(``Question: ...\\nAnswer: ...``) so the origin is judged on the same strings.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass

GSM = "gsm_symbolic"
ARITH = "chain_sum"
# The template split is part of the benchmark's definition, not of a run: fixed.
TEMPLATE_SPLIT_SEED = 1234
TEMPLATE_FRACTIONS = (0.70, 0.15, 0.15)  # train, validation, test templates
# Dataset seeds of the generators (offset by the run seed for the train split only).
# reasoning-gym seeds item i with ``seed + i``, so the seeds of two datasets must be
# further apart than their sizes or the datasets share items: 10^7 apart here.
DATA_VERSION = 2
_SEEDS = {"pool": 10_000_000, "secondary": 20_000_000, "arith_train": 30_000_000,
          "arith_val": 40_000_000, "arith_test": 50_000_000, "calibration": 60_000_000}
_RUN_SEED_STRIDE = 1_000_000


@dataclass(frozen=True)
class Example:
    task: str
    prompt: str
    response: str
    answer: str
    template: int = -1

    def text(self) -> str:
        return self.prompt + self.response

    def to_dict(self) -> dict:
        return asdict(self)


def _gsm_example(item: dict, template: int) -> Example:
    cot = item["metadata"]["answer_cot"].strip()
    if "####" not in cot:
        cot = f"{cot}\n#### {item['answer']}"
    return Example(GSM, f"Question: {item['question'].strip()}\nAnswer:", " " + cot,
                   str(item["answer"]).strip(), template)


def _arith_example(item: dict) -> Example:
    question = item["question"].split(":", 1)[-1].strip()
    return Example(ARITH, f"Question: {question}\nAnswer:", " " + str(item["answer"]).strip(),
                   str(item["answer"]).strip())


def template_split(num_templates: list[int]) -> dict[str, set[int]]:
    templates = sorted(num_templates)
    rng = random.Random(TEMPLATE_SPLIT_SEED)
    rng.shuffle(templates)
    n_train = round(TEMPLATE_FRACTIONS[0] * len(templates))
    n_val = round(TEMPLATE_FRACTIONS[1] * len(templates))
    return {"train": set(templates[:n_train]),
            "val": set(templates[n_train:n_train + n_val]),
            "test": set(templates[n_train + n_val:])}


def _gsm_items(size: int, seed: int) -> list[tuple[dict, int]]:
    import reasoning_gym

    dataset = reasoning_gym.create_dataset(GSM, size=size, seed=seed)
    return [(dataset[i], int(dataset.task_indices[i])) for i in range(size)]


def _arith_items(size: int, seed: int, difficulty: dict) -> list[Example]:
    import reasoning_gym

    dataset = reasoning_gym.create_dataset(ARITH, size=size, seed=seed, **difficulty)
    return [_arith_example(dataset[i]) for i in range(size)]


@dataclass
class Splits:
    train: list[Example]
    calibration: list[Example]
    val: list[Example]          # gsm (validation templates) + chain_sum
    test_gsm_ood: list[Example]  # primary: templates never trained on
    test_gsm_id: list[Example]   # secondary: train templates, unseen values
    test_arith: list[Example]
    templates: dict[str, list[int]]

    def summary(self) -> dict:
        def count(items: list[Example]) -> dict[str, int]:
            out: dict[str, int] = {}
            for e in items:
                out[e.task] = out.get(e.task, 0) + 1
            return out

        return {name: count(getattr(self, name)) for name in
                ("train", "calibration", "val", "test_gsm_ood", "test_gsm_id", "test_arith")} | {
            "templates": {k: len(v) for k, v in self.templates.items()}}


def build_splits(
    seed: int,
    n_train_gsm: int,
    n_train_arith: int,
    n_val: int,
    n_test: int,
    n_calibration: int,
    arith_difficulty: dict,
    n_test_arith: int | None = None,
    n_val_gsm: int | None = None,
) -> Splits:
    """All splits for one run seed. Validation and test content does not depend on the
    run seed (only the training sample does), so seeds differ by data order/sample and init."""
    pool = _gsm_items(max(6000, 4 * (n_train_gsm + n_val + n_test + n_calibration)),
                      _SEEDS["pool"])
    split = template_split(list({t for _, t in pool}))
    by_split: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for item, t in pool:
        for name, members in split.items():
            if t in members:
                by_split[name].append(_gsm_example(item, t))
    # The train pool is shuffled by the run seed; calibration texts come after the
    # training problems (train templates, never trained on).
    train_pool = list(by_split["train"])
    random.Random(seed).shuffle(train_pool)
    gsm_train = train_pool[:n_train_gsm]
    gsm_cal = train_pool[n_train_gsm:n_train_gsm + n_calibration]
    seen = {e.prompt for e in gsm_train}
    secondary = [_gsm_example(item, t)
                 for item, t in _gsm_items(max(2000, 8 * n_test), _SEEDS["secondary"])
                 if t in split["train"]]
    secondary = [e for e in secondary if e.prompt not in seen][:n_test]

    arith_train = _arith_items(n_train_arith, _SEEDS["arith_train"] + _RUN_SEED_STRIDE * seed,
                               arith_difficulty)
    arith_seen = {e.prompt for e in arith_train}
    arith_val = [e for e in _arith_items(4 * n_val + 50, _SEEDS["arith_val"], arith_difficulty)
                 if e.prompt not in arith_seen][:n_val]
    n_arith = n_test if n_test_arith is None else n_test_arith
    arith_test = [e for e in _arith_items(4 * n_arith + 50, _SEEDS["arith_test"], arith_difficulty)
                  if e.prompt not in arith_seen][:n_arith]
    held_out = {e.prompt for e in arith_val + arith_test}
    arith_cal = [e for e in _arith_items(2 * n_calibration + 50, _SEEDS["calibration"],
                                         arith_difficulty)
                 if e.prompt not in held_out][:n_calibration]

    train = gsm_train + arith_train
    random.Random(seed + 1).shuffle(train)
    calibration = [x for pair in zip(gsm_cal, arith_cal) for x in pair]
    return Splits(
        train=train,
        calibration=calibration,
        val=by_split["val"][:n_val if n_val_gsm is None else n_val_gsm] + arith_val,
        test_gsm_ood=by_split["test"][:n_test],
        test_gsm_id=secondary,
        test_arith=arith_test,
        templates={k: sorted(v) for k, v in split.items()},
    )


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(generated: str) -> str | None:
    """The number after the last ``####`` if present, else the last number in the text."""
    text = generated.split("####")[-1] if "####" in generated else generated
    numbers = _NUMBER.findall(text)
    return numbers[-1 if "####" not in generated else 0].replace(",", "") if numbers else None


def answers_match(predicted: str | None, answer: str) -> bool:
    if predicted is None:
        return False
    try:
        return abs(float(predicted) - float(answer.replace(",", ""))) < 1e-6
    except ValueError:
        return predicted.strip() == answer.strip()
