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

from safetensors.torch import load_file, save_file

from . import merges
from .data import DATA_VERSION, Splits, build_splits
from .train import Evaluator, StateDict, clone_state, load_state, pretrain_lm, sft


@dataclass
class Preset:
    name: str
    model: str  # "tiny" or "smollm2"
    n_train_gsm: int
    n_train_arith: int
    n_val: int  # per task
    n_test: int  # per gsm test split
    n_test_arith: int
    n_calibration: int  # calibration texts (also the pool of the split-half floor)
    max_length: int
    epochs: int
    batch_size: int
    learning_rate: float
    warmup_fraction: float
    bf16: bool
    eval_batch_size: int
    acc_gsm: int  # greedy-decoded problems of the primary gsm test split
    acc_arith: int
    gsm_new_tokens: int
    arith_new_tokens: int
    cal_max_length: int
    rank: int
    stream_steps: int
    alpha_grid: list[float]
    lambda_grid: list[float]
    stream_eta_grid: list[float]
    line_search_base: float = 0.5
    line_search_multipliers: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
    energy_options: list[float | None] = field(default_factory=lambda: [None, 0.9])
    arith_difficulty: dict = field(default_factory=lambda: {
        "min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2})
    n_val_gsm: int | None = None  # gsm validation problems (None: n_val)
    # Smallest number of steps a stream may return; 0 lets validation keep the start
    # checkpoint (then the "ARM" candidate is just sft-20%).
    min_stream_steps: int = 0
    # tiny model only
    vocab_size: int = 1024
    hidden: int = 64
    layers: int = 2
    intermediate: int = 192
    pretrain_steps: int = 150
    pretrain_lr: float = 3e-3

    def training_key(self, seed: int) -> str:
        keys = ("model", "n_train_gsm", "n_train_arith", "max_length", "epochs", "batch_size",
                "learning_rate", "warmup_fraction", "bf16", "arith_difficulty", "vocab_size",
                "hidden", "layers", "intermediate", "pretrain_steps", "pretrain_lr")
        blob = json.dumps({k: getattr(self, k) for k in keys} | {"seed": seed,
                          "data_version": DATA_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


QUICK = Preset(
    name="quick", model="tiny", n_train_gsm=200, n_train_arith=600, n_val=40, n_test=80,
    n_test_arith=80,
    n_calibration=64, max_length=160, epochs=4, batch_size=16, learning_rate=3e-3,
    warmup_fraction=0.1, bf16=False, eval_batch_size=32, acc_gsm=8, acc_arith=80,
    gsm_new_tokens=80, arith_new_tokens=6, cal_max_length=160, rank=16, stream_steps=4,
    alpha_grid=[0.05, 0.1, 0.25, 0.5, 1.0, 2.0], lambda_grid=[1.0, 1.5, 2.0, 3.0],
    stream_eta_grid=[0.05, 0.1, 0.25, 0.5], min_stream_steps=1,
)

# Sized for a *contended* 2-core CPU (other jobs running) where SmolLM2-135M trained at
# ~20 tokens/s and evaluated at ~50 tokens/s in float32 (bf16 autocast was 4x slower:
# no native bf16 here). A worked gsm_symbolic problem is ~190 tokens, a chain_sum one
# ~20, so on this machine the full preset fine-tunes on chain_sum only and measures
# gsm_symbolic loss on a few problems as a forgetting indicator. With more compute,
# raise n_train_gsm / n_val_gsm / n_test with --set (the code paths are the same).
FULL = Preset(
    name="full", model="smollm2", n_train_gsm=0, n_train_arith=160, n_val=16, n_test=6,
    n_test_arith=48, n_calibration=8, max_length=192, epochs=3, batch_size=8,
    learning_rate=1e-4, warmup_fraction=0.1, bf16=False, eval_batch_size=16, acc_gsm=0,
    acc_arith=48, gsm_new_tokens=200, arith_new_tokens=6, cal_max_length=128, rank=16,
    # Step grids and the one-step minimum are those of the committed full table (first
    # passed with --set; the coarser grid's first pass always picked its smallest value).
    stream_steps=2, alpha_grid=[0.05, 0.1, 0.25, 0.5], lambda_grid=[1.0, 2.0],
    stream_eta_grid=[0.1, 0.25], min_stream_steps=1, line_search_multipliers=[0.5, 1.0, 2.0],
    energy_options=[None], arith_difficulty={"min_terms": 2, "max_terms": 3, "min_digits": 1,
                                             "max_digits": 2},
    n_val_gsm=0,
)


def smallest(preset: Preset) -> Preset:
    """The CI smoke-test settings: the quick preset shrunk to seconds."""
    return Preset(**(asdict(preset) | {
        "name": preset.name + "-smoke", "n_train_gsm": 24, "n_train_arith": 48, "n_val": 8,
        "n_test": 8, "n_test_arith": 8, "n_calibration": 8, "max_length": 96, "epochs": 2, "batch_size": 8,
        "acc_gsm": 2, "acc_arith": 4, "gsm_new_tokens": 16, "cal_max_length": 64,
        "rank": 8, "stream_steps": 2, "alpha_grid": [0.5, 1.0], "lambda_grid": [1.0, 2.0],
        "stream_eta_grid": [0.5], "line_search_multipliers": [0.5, 1.0],
        "energy_options": [None], "pretrain_steps": 10, "hidden": 32, "intermediate": 64}))


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class Run:
    """State of one seed: models, evaluators, timings, results."""

    def __init__(self, preset: Preset, seed: int, cache: Path, work: Path, log=print):
        self.preset, self.seed, self.cache, self.work, self.log = preset, seed, cache, work, log
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
            self.splits: Splits = build_splits(self.seed, p.n_train_gsm, p.n_train_arith, p.n_val,
                                               p.n_test, p.n_calibration, p.arith_difficulty,
                                               p.n_test_arith, p.n_val_gsm)
        with self.stage("origin"):
            self._origin()
        with self.stage("sft"):
            self._sft()
        self.evaluator = Evaluator(self.model, self.tokenizer, p.max_length, p.eval_batch_size,
                                   p.bf16)
        self.calibrator = merges.Calibrator(
            self.model, self.tokenizer, [e.text() for e in self.splits.calibration],
            self.work / "stats", p.n_calibration, p.cal_max_length, p.rank)
        self.calibrator.folder.mkdir(parents=True, exist_ok=True)

    def _origin(self) -> None:
        p = self.preset
        if p.model == "smollm2":
            from .models import load_folder, smollm2_folder

            self.model, self.tokenizer = load_folder(smollm2_folder(self.cache, self.log))
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
        path = self.cache / f"tiny-origin-{key}.safetensors"
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
        paths = {f: self.cache / f"sft-{p.model}-{key}-{int(f * 100)}.safetensors" for f in fracs}
        meta = self.cache / f"sft-{p.model}-{key}.json"
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
            "loss_arith": self.evaluator.loss(s.test_arith),
            "acc_gsm_ood": (self.evaluator.accuracy(s.test_gsm_ood[:p.acc_gsm], p.gsm_new_tokens)
                            if p.acc_gsm else None),
            "acc_arith": self.evaluator.accuracy(s.test_arith[:p.acc_arith], p.arith_new_tokens,
                                                 batch_size=32),
            "selected": selected or {},
        }
        self.timings["test"] = self.timings.get("test", 0.0) + time.perf_counter() - start
        self.results[name] = row
        self.log(f"[seed {self.seed}] {name:<22} val {row['val']:.4f} gsm-ood {row['loss_gsm_ood']:.4f} "
                 f"gsm-id {row['loss_gsm_id']:.4f} arith {row['loss_arith']:.4f} "
                 f"acc-gsm {_num(row['acc_gsm_ood'])} acc-arith {_num(row['acc_arith'])} "
                 f"{selected or ''}")

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


CANDIDATES = (
    "origin", "sft-10%", "sft-20%", "sft-30%", "sft-100%", "expo-20%", "avg-early",
    "task-arithmetic", "model-stock", "arm-single", "arm-stream", "arm-line-search",
    "ablation-rotation0", "ablation-offsubspace0",
)


def run_candidates(run: Run) -> None:
    p, ck, origin = run.preset, run.ckpt, run.origin
    c10, c20, c30, c100 = ck[0.1], ck[0.2], ck[0.3], ck[1.0]
    early = [c10, c20, c30]
    future = merges.diff(c100, c20)  # the update SFT made after the 20% checkpoint

    with run.stage("baselines"):
        run.test("origin", origin)
        for f, name in ((0.1, "sft-10%"), (0.2, "sft-20%"), (0.3, "sft-30%"), (1.0, "sft-100%")):
            run.test(name, ck[f])
        state, sel, v = run.select(lambda alpha: merges.expo(origin, c20, alpha),
                                   [{"alpha": a} for a in p.alpha_grid])
        run.test("expo-20%", state, sel, v)
        run.test("avg-early", merges.average(early))
        state, sel, v = run.select(
            lambda lam: merges.mergekit_merge("task_arithmetic", origin, early,
                                              {"weight": 1.0, "normalize": True, "lambda": lam}),
            [{"lam": x} for x in p.lambda_grid])
        run.test("task-arithmetic", state, sel, v)
        run.test("model-stock", merges.mergekit_merge("model_stock", origin, early, {}))

    with run.stage("calibration (origin, c10, c20, split halves)"):
        s_origin = run.calibrator(origin, "origin")
        s_c20 = run.calibrator(c20, "c20")
        s_c10 = run.calibrator(c10, "c10")
        texts = run.calibrator.texts[:p.n_calibration]
        half = len(texts) // 2
        s_half_a = run.calibrator(origin, "origin-halfA", texts=texts[:half], samples=half)
        s_half_b = run.calibrator(origin, "origin-halfB", texts=texts[half:2 * half], samples=half)
        s_c20_a = run.calibrator(c20, "c20-halfA", texts=texts[:half], samples=half)
        s_origin_a = s_half_a

    with run.stage("diagnostics"):
        d20 = merges.diff(c20, origin)
        diag: dict = {
            "noise_floor_split_half_origin": merges.angle_summary(s_half_a, s_half_b, p.rank),
            "angles_origin_to_c20": merges.angle_summary(s_origin, s_c20, p.rank),
            "angles_origin_to_c20_half_samples": merges.angle_summary(s_origin_a, s_c20_a, p.rank),
            "angles_c10_to_c20": merges.angle_summary(s_c10, s_c20, p.rank),
        }
        for energy in p.energy_options:
            if energy is not None:
                diag[f"noise_floor_split_half_energy{energy}"] = merges.angle_summary(
                    s_half_a, s_half_b, p.rank, energy)
                diag[f"angles_origin_to_c20_energy{energy}"] = merges.angle_summary(
                    s_origin, s_c20, p.rank, energy)
        cos = {}
        for energy in p.energy_options:
            tag = "rank" if energy is None else f"energy{energy}"
            cos[f"origin->c20 vs c100-c20 ({tag})"] = merges.direction_cosines(
                d20, future, s_origin, s_c20, p.rank, energy)
        cos["origin->c20 vs c100-c20 (half calibration samples)"] = merges.direction_cosines(
            d20, future, s_origin_a, s_c20_a, p.rank)
        cos["origin->c20 vs c100-c20 (off_subspace 0)"] = merges.direction_cosines(
            d20, future, s_origin, s_c20, p.rank, off_subspace=0.0)
        cos["c10->c20 (latest step) vs c100-c20"] = merges.direction_cosines(
            merges.diff(c20, c10), future, s_c10, s_c20, p.rank)
        try:
            from .procrustes import procrustes_cosines

            cos.update(procrustes_cosines(d20, future, s_origin, s_c20, p.rank))
        except ImportError:
            pass
        diag["cosines_first_step"] = cos
        run.diagnostics["first_step"] = diag
        for k, v in cos.items():
            run.log(f"  cos {k}: unrotated {v['unrotated']:.4f} rotated {v['rotated']:.4f}")
        for k, v in diag.items():
            if k.startswith(("noise", "angles")):
                run.log(f"  {k}: mean {v.get('mean', float('nan')):.2f} deg, "
                        f"median {v.get('median', float('nan')):.2f}, p90 {v.get('p90', float('nan')):.2f}")

    def step_diag(k: int, cur: StateDict, stats) -> dict:
        out: dict = {}
        if stats is not None:
            out["angles_origin_to_cur"] = merges.angle_summary(s_origin, stats, p.rank)
            out["cos_vs_c100_minus_cur"] = merges.direction_cosines(
                d20, merges.diff(c100, cur), s_origin, stats, p.rank)
        return out

    with run.stage("arm-single"):
        state, sel, v = run.select(
            lambda eta, energy: merges.arm_merge(c20, origin, [], s_c20, s_origin, eta, p.rank,
                                                 energy),
            [{"eta": a, "energy": e} for e in p.energy_options for a in p.alpha_grid])
        run.test("arm-single", state, sel, v)

    streams = {}
    with run.stage("arm-stream"):
        best = None
        for eta0 in p.stream_eta_grid:
            res = merges.arm_stream(c20, origin, [], s_origin, run.calibrator, run.val,
                                    steps=p.stream_steps, min_steps=p.min_stream_steps,
                                    rates=merges.cosine_rates(eta0, p.stream_steps), rank=p.rank,
                                    diagnostics=step_diag, label=f"arm-stream eta0={eta0}",
                                    log=run.log)
            streams[eta0] = res.trajectory
            if best is None or res.best_val < best[1].best_val:
                best = (eta0, res)
        eta0, res = best
        run.test("arm-stream", res.best_state,
                 {"eta0": eta0, "schedule": "cosine", "steps": res.best_step,
                  "max_steps": p.stream_steps}, res.best_val)
        run.diagnostics["arm-stream"] = {str(k): v for k, v in streams.items()}

    with run.stage("arm-line-search"):
        res_ls = merges.arm_stream(c20, origin, [], s_origin, run.calibrator, run.val,
                                   steps=p.stream_steps, min_steps=p.min_stream_steps, line_search=p.line_search_multipliers,
                                   base_rate=p.line_search_base, rank=p.rank,
                                   diagnostics=step_diag, label="arm-line-search", log=run.log)
        run.test("arm-line-search", res_ls.best_state,
                 {"base_rate": p.line_search_base, "multipliers": p.line_search_multipliers,
                  "steps": res_ls.best_step,
                  "rates": [t.get("rate") for t in res_ls.trajectory[1:] if "rate" in t]},
                 res_ls.best_val)
        run.diagnostics["arm-line-search"] = res_ls.trajectory

    with run.stage("ablations"):
        for name, kwargs in (("ablation-rotation0", {"rotation_strength": 0.0}),
                             ("ablation-offsubspace0", {"off_subspace": 0.0})):
            res_ab = merges.arm_stream(c20, origin, [], s_origin, run.calibrator, run.val,
                                       steps=p.stream_steps, min_steps=p.min_stream_steps,
                                       rates=merges.cosine_rates(eta0, p.stream_steps),
                                       rank=p.rank, diagnostics=None, label=name, log=run.log,
                                       **kwargs)
            run.test(name, res_ab.best_state,
                     {"eta0 (from arm-stream)": eta0, "steps": res_ab.best_step} | kwargs,
                     res_ab.best_val)
            run.diagnostics[name] = res_ab.trajectory
    run.timings["calibration passes (s)"] = run.calibrator.seconds
    run.timings["validation evals (s)"] = run.evaluator.seconds
