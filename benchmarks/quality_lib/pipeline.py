"""One seed of the benchmark: origin -> SFT with checkpoints -> candidates -> test.

Selection protocol: every hyperparameter (ExPO alpha, task-arithmetic lambda, ARM
learning rates/schedule/number of steps, line-search steps) is chosen by the mean
response-token loss on the *validation* split. The test splits are evaluated once per
candidate, after its selection, by :meth:`Run.test`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mergekit_arm.choose.standard import TOWARD_MULTIPLIERS

from . import merges
from .data import DATA_VERSION, Splits, build_splits
from .train import Evaluator, StateDict, clone_state, load_state, pretrain_lm, sft


@dataclass
class Preset:
    name: str
    model: str  # "tiny" or "smollm2"
    n_train_gsm: int
    n_train_task2: int
    n_val: int  # second-task validation problems (and gsm ones unless n_val_gsm is set)
    n_test: int  # per gsm test split
    n_test_task2: int
    n_calibration: int  # calibration texts of the main statistics
    max_length: int
    epochs: int
    batch_size: int
    learning_rate: float
    warmup_fraction: float
    bf16: bool  # bf16 autocast for training and evaluation (CPU with avx512_bf16, or GPU)
    eval_batch_size: int
    acc_gsm: int  # greedy-decoded problems of the primary gsm test split
    acc_task2: int
    gsm_new_tokens: int
    cal_max_length: int
    rank: int  # rank of the diagnostics (angles, cosines); ARM candidates use the rank
    # that arm-single chose on validation among rank_options
    stream_steps: int
    alpha_grid: list[float]
    lambda_grid: list[float]
    stream_eta_grid: list[float]
    # second task: any reasoning-gym dataset with question/answer items, and its config
    task2: str = "chain_sum"
    task2_config: dict = field(default_factory=lambda: {
        "min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2})
    task2_new_tokens: int | None = None  # None: longest test answer + 4 tokens
    data_seed: int = 0  # shifts every dataset seed and the gsm template split
    line_search_base: float = 0.5
    line_search_multipliers: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
    # arm-single: ranks tried on validation; statistics store max(rank_options, rank_sweep)
    rank_options: list[int] = field(default_factory=lambda: [16])
    rank_sweep: list[int] = field(default_factory=lambda: [4, 16, 64])  # diagnostics only
    energy_cut: float = 0.9  # the `energy` variant of arm-single
    # "more calibration tokens": the variant's statistics use this many times n_calibration
    calibration_multiplier: int = 2
    checkpoint_eta_grid: list[float] = field(default_factory=lambda: [1.0, 1.5, 2.0])
    n_val_gsm: int | None = None  # gsm validation problems (None: n_val)
    # Smallest number of steps a stream may return; 0 lets validation keep the start
    # checkpoint (then the "ARM" candidate is just sft-20%).
    min_stream_steps: int = 0
    # the averaging recipes (quality_lib/recipes.py)
    ema_grid: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    toward_multipliers: list[float] = field(default_factory=lambda: list(TOWARD_MULTIPLIERS))
    block_multipliers: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5])
    # run the arm-single variants too (three seeds showed them ties of arm-single)
    diagnostics: bool = False
    # tiny model only
    vocab_size: int = 1024
    hidden: int = 64
    layers: int = 2
    intermediate: int = 192
    pretrain_steps: int = 150
    pretrain_lr: float = 3e-3

    @property
    def stats_rank(self) -> int:
        """Rank stored in every statistics file (the largest any candidate or sweep reads,
        plus one so that the eigengap rule can see the gap after its largest rank)."""
        return max([self.rank, *self.rank_options, *self.rank_sweep]) + 1

    @property
    def calibration_pool(self) -> int:
        return self.n_calibration * max(1, self.calibration_multiplier)

    def training_key(self, seed: int) -> str:
        keys = ("model", "n_train_gsm", "n_train_task2", "max_length", "epochs", "batch_size",
                "learning_rate", "warmup_fraction", "bf16", "task2", "task2_config", "data_seed",
                "vocab_size", "hidden", "layers", "intermediate", "pretrain_steps",
                "pretrain_lr")
        blob = json.dumps({k: getattr(self, k) for k in keys} | {"seed": seed,
                          "data_version": DATA_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


QUICK = Preset(
    name="quick", model="tiny", n_train_gsm=200, n_train_task2=600, n_val=40, n_test=80,
    n_test_task2=80,
    n_calibration=64, max_length=160, epochs=4, batch_size=16, learning_rate=3e-3,
    warmup_fraction=0.1, bf16=False, eval_batch_size=32, acc_gsm=8, acc_task2=80,
    gsm_new_tokens=80, cal_max_length=160, rank=16, stream_steps=4,
    alpha_grid=[0.05, 0.1, 0.25, 0.5, 1.0, 2.0], lambda_grid=[1.0, 1.5, 2.0, 3.0],
    stream_eta_grid=[0.05, 0.1, 0.25, 0.5], min_stream_steps=1,
    rank_options=[16, 32], rank_sweep=[4, 16, 32],
)

# SmolLM2-135M-Instruct on 2 CPU cores with avx512_bf16 (measured: ~140 training and
# ~470 evaluation tokens/s with bf16 autocast, half that in float32). A worked
# gsm_symbolic problem is ~170 tokens, a chain_sum one ~30. One seed takes about 1.5 h
# including the SFT (cached for re-runs); on a GPU raise the sizes with --set.
FULL = Preset(
    name="full", model="smollm2", n_train_gsm=240, n_train_task2=480, n_val=32, n_test=48,
    n_test_task2=96, n_calibration=64, max_length=320, epochs=3, batch_size=8,
    learning_rate=1e-4, warmup_fraction=0.1, bf16=True, eval_batch_size=16, acc_gsm=16,
    acc_task2=96, gsm_new_tokens=200, cal_max_length=256, rank=16, stream_steps=3,
    alpha_grid=[0.05, 0.1, 0.25, 0.5], lambda_grid=[1.0, 2.0], stream_eta_grid=[0.1, 0.25],
    min_stream_steps=1, line_search_multipliers=[0.5, 1.0, 2.0], n_val_gsm=24,
    task2_config={"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
    rank_options=[16, 64], rank_sweep=[4, 16, 64], checkpoint_eta_grid=[1.0, 1.5, 2.0],
)


# The full protocol sized for the GPU machine (benchmarks/device/run.sh): 4x the SFT data,
# 2-4x the test problems, 5 seeds (quality.py --gpu). Everything else as FULL.
GPU = Preset(**(asdict(FULL) | {
    "name": "gpu", "n_train_gsm": 960, "n_train_task2": 1920, "n_val": 64, "n_test": 96,
    "n_test_task2": 192, "batch_size": 16, "acc_gsm": 48, "acc_task2": 192, "n_val_gsm": 48}))


def smallest(preset: Preset) -> Preset:
    """The CI smoke-test settings: the quick preset shrunk to seconds."""
    return Preset(**(asdict(preset) | {
        "name": preset.name + "-smoke", "n_train_gsm": 24, "n_train_task2": 48, "n_val": 8,
        "n_test": 8, "n_test_task2": 8, "n_calibration": 8, "max_length": 96, "epochs": 2,
        "batch_size": 8, "acc_gsm": 2, "acc_task2": 4, "gsm_new_tokens": 16,
        "cal_max_length": 64, "rank": 8, "stream_steps": 2, "alpha_grid": [0.5, 1.0],
        "lambda_grid": [1.0, 2.0], "stream_eta_grid": [0.5], "line_search_multipliers": [0.5, 1.0],
        "rank_options": [8], "rank_sweep": [4, 8], "checkpoint_eta_grid": [1.0, 1.5],
        "pretrain_steps": 10, "hidden": 32, "intermediate": 64, "ema_grid": [0.5],
        "toward_multipliers": [1.0, 1.5], "block_multipliers": [0.5, 1.0]}))


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class Run:
    """State of one seed: models, evaluators, timings, results."""

    def __init__(self, preset: Preset, seed: int, cache: Path, work: Path, log=print,
                 device: str = "cpu"):
        """``device``: where the model trains and runs (``cpu`` or ``cuda``); checkpoints
        and merges stay float32 on the CPU. A non-CPU device keys its own SFT cache."""
        self.preset, self.seed, self.cache, self.work, self.log = preset, seed, cache, work, log
        self.device = torch.device(device)
        self.cache_tag = "" if self.device.type == "cpu" else f"-{self.device.type}"
        self.timings: dict[str, float] = {}
        self.results: dict[str, dict] = {}
        self.diagnostics: dict[str, object] = {}
        self.val_cache: dict[int, float] = {}

    def stage(self, name: str):
        run = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()
                run.log(f"[seed {run.seed}] {name} ...")

            def __exit__(self, *exc):
                run.timings[name] = run.timings.get(name, 0.0) + time.perf_counter() - self.start
                run.log(f"[seed {run.seed}] {name}: {time.perf_counter() - self.start:.1f}s")

        return _Stage()

    # --------------------------------------------------------------- building
    def prepare(self) -> None:
        p = self.preset
        with self.stage("data"):
            self.splits: Splits = build_splits(
                self.seed, p.n_train_gsm, p.n_train_task2, p.n_val, p.n_test,
                (p.calibration_pool + 1) // 2, p.task2_config, p.n_test_task2, p.n_val_gsm, p.task2,
                p.data_seed)
        with self.stage("origin"):
            self._origin()
        with self.stage("sft"):
            self._sft()
        self.evaluator = Evaluator(self.model, self.tokenizer, p.max_length, p.eval_batch_size,
                                   p.bf16)
        self.calibrator = merges.Calibrator(
            self.model, self.tokenizer, [e.text() for e in self.splits.calibration],
            self.work / "stats", p.n_calibration, p.cal_max_length, p.stats_rank)
        self.calibrator.folder.mkdir(parents=True, exist_ok=True)

    def _origin(self) -> None:
        p = self.preset
        if p.model == "smollm2":
            from .models import load_folder, smollm2_folder

            self.model, self.tokenizer = load_folder(smollm2_folder(self.cache, self.log))
            self.model.to(self.device)
            self.origin = clone_state(self.model)
            return
        from mergekit_arm.demo import default_demo_texts

        from .models import tiny_origin

        key = p.training_key(self.seed)
        general = default_demo_texts()
        tok_texts = general + [e.text() for e in self.splits.train]
        self.model, self.tokenizer = tiny_origin(tok_texts, p.vocab_size, p.hidden, p.layers,
                                                 p.intermediate, self.seed,
                                                 max(256, p.max_length))
        self.model.to(self.device)
        path = self.cache / f"tiny-origin-{key}{self.cache_tag}.safetensors"
        if path.is_file():
            load_state(self.model, load_file(path))
        else:
            # "Pretraining": plain LM on the package's general texts (english, math, code).
            pretrain_lm(self.model, self.tokenizer, general, p.pretrain_steps, 16,
                        p.pretrain_lr, p.max_length, self.seed)
            save_file(clone_state(self.model), path)
        self.origin = clone_state(self.model)

    def _sft(self) -> None:
        p = self.preset
        key = p.training_key(self.seed)
        fracs = (0.1, 0.2, 0.3, 1.0)
        tag = self.cache_tag
        paths = {f: self.cache / f"sft-{p.model}-{key}{tag}-{int(f * 100)}.safetensors"
                 for f in fracs}
        meta = self.cache / f"sft-{p.model}-{key}{tag}.json"
        if all(x.is_file() for x in paths.values()) and meta.is_file():
            self.log(f"  reusing cached SFT run {key}")
            self.ckpt = {f: load_file(x) for f, x in paths.items()}
            self.sft_history = json.loads(meta.read_text())["history"]
        else:
            saved, self.sft_history = sft(
                self.model, self.tokenizer, self.splits.train, epochs=p.epochs,
                batch_size=p.batch_size, learning_rate=p.learning_rate,
                warmup_fraction=p.warmup_fraction, max_length=p.max_length,
                save_fractions=fracs, seed=self.seed, bf16=p.bf16, log=self.log)
            self.ckpt = saved
            for f, x in paths.items():
                save_file(saved[f], x)
            meta.write_text(json.dumps({"history": self.sft_history}))
        load_state(self.model, self.origin)

    # -------------------------------------------------------------- evaluation
    def val(self, state: StateDict) -> float:
        # The origin and the checkpoints are evaluated once (they stay alive, so id() is safe).
        fixed = any(state is s for s in [self.origin, *self.ckpt.values()])
        if fixed and id(state) in self.val_cache:
            return self.val_cache[id(state)]
        load_state(self.model, state)
        loss = self.evaluator.loss(self.splits.val)
        loss = loss if math.isfinite(loss) else float("inf")
        if fixed:
            self.val_cache[id(state)] = loss
        return loss

    def val_part(self, state: StateDict, part: int) -> float:
        """Loss on half of the validation split (``part`` 0: even, 1: odd indices): the
        selection and validation sets of a per-block search."""
        load_state(self.model, state)
        loss = self.evaluator.loss(self.splits.val[part::2])
        return loss if math.isfinite(loss) else float("inf")

    def task2_new_tokens(self) -> int:
        p = self.preset
        if p.task2_new_tokens is not None:
            return p.task2_new_tokens
        lengths = [len(self.tokenizer(" " + e.answer, add_special_tokens=False)["input_ids"])
                   for e in self.splits.test_task2[:p.acc_task2]]
        return max(lengths, default=4) + 4

    def test(self, name: str, state: StateDict, selected: dict | None = None,
             val: float | None = None) -> None:
        """The only place the test splits are touched: once per candidate."""
        p = self.preset
        start = time.perf_counter()
        s = self.splits
        val = val if val is not None else self.val(state)
        load_state(self.model, state)  # self.val may have answered from its cache
        row = {
            "val": val,
            "loss_gsm_ood": self.evaluator.loss(s.test_gsm_ood),
            "loss_gsm_id": self.evaluator.loss(s.test_gsm_id),
            "loss_task2": self.evaluator.loss(s.test_task2),
            "acc_gsm_ood": (self.evaluator.accuracy(s.test_gsm_ood[:p.acc_gsm], p.gsm_new_tokens)
                            if p.acc_gsm else None),
            "acc_task2": (self.evaluator.accuracy(s.test_task2[:p.acc_task2],
                                                  self.task2_new_tokens(), batch_size=32)
                          if p.acc_task2 else None),
            "selected": selected or {},
        }
        self.timings["test"] = self.timings.get("test", 0.0) + time.perf_counter() - start
        self.results[name] = row
        self.log(f"[seed {self.seed}] {name:<26} val {row['val']:.4f} "
                 f"gsm-ood {row['loss_gsm_ood']:.4f} gsm-id {row['loss_gsm_id']:.4f} "
                 f"{p.task2} {row['loss_task2']:.4f} acc-gsm {_num(row['acc_gsm_ood'])} "
                 f"acc-{p.task2} {_num(row['acc_task2'])} {selected or ''}")

    def copy_result(self, name: str, source: str, selected: dict) -> None:
        """A candidate that validation resolved to another candidate's exact model (no new
        test evaluation: the row is that candidate's)."""
        self.results[name] = dict(self.results[source]) | {"selected": selected}
        self.log(f"[seed {self.seed}] {name:<26} = {source} (chosen on validation)")

    def select(self, builder, grid: list[dict]) -> tuple[StateDict, dict, float]:
        best = (None, None, float("inf"))
        tried = []
        for params in grid:
            state = builder(**params)
            loss = self.val(state)
            tried.append((params, loss))
            if loss < best[2] or best[0] is None:
                best = (state, params, loss)
        self.log("  validation: " + ", ".join(f"{p} -> {v:.4f}" for p, v in tried))
        return best[0], dict(best[1]) | {"val_grid": [[json.dumps(p), v] for p, v in tried]}, best[2]
