"""Task data from reasoning-gym: prompt/response pairs and the splits of the benchmark.

Two tasks, mixed in one SFT run:

* ``gsm_symbolic`` (GSM8K-style word problems with worked solutions ending in
  ``#### <answer>``), the primary task. Its templates (``dataset.task_indices[i]``) are
  split once, with a fixed split seed, into train / validation / test templates. The
  *primary* test split holds problems whose templates the train split never uses; the
  validation split uses its own disjoint templates too, so hyperparameters are chosen on
  the same kind of generalisation the primary test measures. A *secondary* test split
  uses the train templates with problems drawn from another dataset seed.
* a second task that a small model can learn, any reasoning-gym dataset with
  ``question``/``answer`` items (default ``chain_sum`` at low difficulty; ``--task``
  picks another): train, validation, test and calibration come from disjoint dataset
  seeds; duplicates of train questions are removed from the held-out splits.

``data_seed`` shifts every generator seed and the template split, so the same pipeline
can be run on data this repository has never seen. Every split is a list of
:class:`Example`; the formats are plain text (``Question: ...\\nAnswer: ...``) so the
origin is judged on the same strings. Exact match uses the dataset's own
``score_answer`` (reasoning-gym's scorer; a score of 1.0 counts as correct).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

GSM = "gsm_symbolic"
DEFAULT_TASK2 = "chain_sum"
# The template split is part of the benchmark's definition: fixed for data_seed 0.
TEMPLATE_SPLIT_SEED = 1234
TEMPLATE_FRACTIONS = (0.70, 0.15, 0.15)  # train, validation, test templates
# Dataset seeds of the generators (offset by the run seed for the train split of the
# second task only). reasoning-gym seeds item i with ``seed + i``, so the seeds of two
# datasets must be further apart than their sizes or the datasets share items: 10^7
# apart here, and a data seed moves all of them by 10^8.
DATA_VERSION = 3
_SEEDS = {"pool": 10_000_000, "secondary": 20_000_000, "task2_train": 30_000_000,
          "task2_val": 40_000_000, "task2_test": 50_000_000, "calibration": 60_000_000}
_RUN_SEED_STRIDE = 1_000_000
_DATA_SEED_STRIDE = 100_000_000
_MAX_DATASET_SIZE = 100_000


def task2_train_seed(base: int, seed: int) -> int:
    """Dataset seed of the second task's train split for run seed ``seed``:
    ``base + 10^6 seed + 10^5 floor(seed / 10)``. The second term alone would put seeds
    10, 20 and 30 exactly on the validation, test and calibration seeds (10^7 apart), so
    train would *be* validation; the third moves seeds 10-99 off the multiples of 10^6
    (later ones land past this instance's held-out seeds; :func:`check_disjoint_seed_ranges`
    checks every run). Seeds 0-9 are unchanged, so their committed records still hold."""
    if seed < 0:
        raise SystemExit(f"quality benchmark: run seed {seed} is negative; use seeds >= 0")
    return base + _RUN_SEED_STRIDE * seed + _MAX_DATASET_SIZE * (seed // 10)


def check_disjoint_seed_ranges(ranges: dict[str, tuple[int, int]]) -> None:
    """reasoning-gym seeds item i of a dataset with ``seed + i``: two datasets share items
    when their ``[seed, seed + size)`` ranges meet. Stop naming the pair if any do."""
    named = sorted(ranges.items(), key=lambda item: item[1][0])
    for (name_a, (start_a, size_a)), (name_b, (start_b, _)) in zip(named, named[1:]):
        if start_a + size_a > start_b:
            raise SystemExit(f"quality benchmark: the {name_a} and {name_b} splits of the second "
                             f"task would share generated items (seeds {start_a}+{size_a} and "
                             f"{start_b}); use another run seed or --data-seed")


@dataclass(frozen=True)
class Example:
    task: str
    prompt: str
    response: str
    answer: str
    template: int = -1
    entry: dict | None = field(default=None, compare=False, repr=False)  # for the scorer

    def text(self) -> str:
        return self.prompt + self.response


def _gsm_example(item: dict, template: int) -> Example:
    cot = item["metadata"]["answer_cot"].strip()
    if "####" not in cot:
        cot = f"{cot}\n#### {item['answer']}"
    return Example(GSM, f"Question: {item['question'].strip()}\nAnswer:", " " + cot,
                   str(item["answer"]).strip(), template, item)


def _task_example(task: str, item: dict) -> Example:
    return Example(task, f"Question: {item['question'].strip()}\nAnswer:",
                   " " + str(item["answer"]).strip(), str(item["answer"]).strip(), -1, item)


def template_split(num_templates: list[int], data_seed: int = 0) -> dict[str, set[int]]:
    templates = sorted(num_templates)
    rng = random.Random(TEMPLATE_SPLIT_SEED + data_seed)
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


def _task_items(task: str, size: int, seed: int, config: dict) -> list[Example]:
    import reasoning_gym

    try:
        dataset = reasoning_gym.create_dataset(task, size=size, seed=seed, **config)
    except Exception as error:
        raise SystemExit(f"quality benchmark: cannot build reasoning-gym task {task!r} with "
                         f"config {config}: {error}") from error
    items = [dataset[i] for i in range(size)]
    if items and not {"question", "answer"} <= set(items[0]):
        raise SystemExit(f"quality benchmark: task {task!r} items have no question/answer")
    return [_task_example(task, it) for it in items]


@dataclass
class Splits:
    task2: str
    train: list[Example]
    calibration: list[Example]
    val: list[Example]          # gsm (validation templates) + task2
    test_gsm_ood: list[Example]  # primary: templates never trained on
    test_gsm_id: list[Example]   # secondary: train templates, unseen values
    test_task2: list[Example]
    templates: dict[str, list[int]]

    def summary(self) -> dict:
        def count(items: list[Example]) -> dict[str, int]:
            out: dict[str, int] = {}
            for e in items:
                out[e.task] = out.get(e.task, 0) + 1
            return out

        return {name: count(getattr(self, name)) for name in
                ("train", "calibration", "val", "test_gsm_ood", "test_gsm_id", "test_task2")} | {
            "templates": {k: len(v) for k, v in self.templates.items()}}


def build_splits(
    seed: int,
    n_train_gsm: int,
    n_train_task2: int,
    n_val: int,
    n_test: int,
    n_calibration: int,
    task2_config: dict,
    n_test_task2: int | None = None,
    n_val_gsm: int | None = None,
    task2: str = DEFAULT_TASK2,
    data_seed: int = 0,
) -> Splits:
    """All splits for one run seed. Validation and test content does not depend on the
    run seed (only the training sample does), so seeds differ by data order/sample and init;
    ``data_seed`` changes everything (another instance of the benchmark)."""
    seeds = {k: v + _DATA_SEED_STRIDE * data_seed for k, v in _SEEDS.items()}
    n_val_g = n_val if n_val_gsm is None else n_val_gsm
    pool = _gsm_items(max(6000, 4 * (n_train_gsm + n_val_g + n_test + n_calibration)),
                      seeds["pool"])
    split = template_split(list({t for _, t in pool}), data_seed)
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
                 for item, t in _gsm_items(max(2000, 8 * n_test), seeds["secondary"])
                 if t in split["train"]]
    secondary = [e for e in secondary if e.prompt not in seen][:n_test]

    n_t2 = n_test if n_test_task2 is None else n_test_task2
    t2_ranges = {"train": (task2_train_seed(seeds["task2_train"], seed), n_train_task2),
                 "validation": (seeds["task2_val"], 4 * n_val + 50),
                 "test": (seeds["task2_test"], 4 * n_t2 + 50),
                 "calibration": (seeds["calibration"], 2 * n_calibration + 50)}
    check_disjoint_seed_ranges(t2_ranges)
    t2_train, t2_val_pool, t2_test_pool, t2_cal_pool = (
        _task_items(task2, size, start, task2_config) for start, size in t2_ranges.values())
    t2_seen = {e.prompt for e in t2_train}
    t2_val = [e for e in t2_val_pool if e.prompt not in t2_seen][:n_val]
    t2_test = [e for e in t2_test_pool if e.prompt not in t2_seen][:n_t2]
    held_out = {e.prompt for e in t2_val + t2_test}
    t2_cal = [e for e in t2_cal_pool if e.prompt not in held_out][:n_calibration]
    for name, items, wanted in (("validation", t2_val, n_val), ("test", t2_test, n_t2)):
        if len(items) < wanted:
            raise SystemExit(f"quality benchmark: task {task2!r} has only {len(items)} distinct "
                             f"{name} problems not in the train split (wanted {wanted}); "
                             "raise its difficulty or lower the split sizes")

    train = gsm_train + t2_train
    random.Random(seed + 1).shuffle(train)
    calibration = [x for pair in zip(gsm_cal, t2_cal) for x in pair]
    return Splits(
        task2=task2,
        train=train,
        calibration=calibration,
        val=by_split["val"][:n_val_g] + t2_val,
        test_gsm_ood=by_split["test"][:n_test],
        test_gsm_id=secondary,
        test_task2=t2_test,
        templates={k: sorted(v) for k, v in split.items()},
    )


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(generated: str, task: str) -> str | None:
    """The answer a greedy continuation gives.

    gsm: the text after the last ``####`` if present, else the last number in the text;
    any other task: the first non-empty line (its answers are one-liners).
    """
    text = generated.split("\nQuestion:")[0]
    if task == GSM:
        if "####" in text:
            after = text.split("####")[-1].strip().splitlines()
            return after[0].strip() if after else None
        numbers = _NUMBER.findall(text)
        return numbers[-1].replace(",", "") if numbers else None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else None


def scorer(task: str) -> Callable[[str | None, Example], bool]:
    """Exact match with reasoning-gym's own ``score_answer`` for ``task`` (score 1.0)."""
    import reasoning_gym

    score = reasoning_gym.get_score_answer_fn(task)

    def correct(answer: str | None, example: Example) -> bool:
        if answer is None:
            return False
        entry = example.entry or {"question": example.prompt, "answer": example.answer,
                                  "metadata": {}}
        try:
            return float(score(answer, entry)) >= 1.0
        except Exception:  # a scorer that cannot parse the answer: not correct
            return False

    return correct
