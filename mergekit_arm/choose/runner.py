"""``run_choose``: build every candidate recipe, score each on held-out text, keep the best.

The chosen candidate is the lowest mean token loss on ``validation`` (ties: the first
listed). ``OUT/`` receives ``candidates/<name>/`` (the builds), ``model/`` (the chosen
model: hard links to a build inside OUT, a copy of an outside folder, with a model card
naming the choice), ``leaderboard.json`` (the record) and ``leaderboard.md``. The
leaderboard is written last, so its presence means the choice is complete. A re-run
reuses every build whose spec is unchanged and refuses a changed one unless ``restart``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from mergekit_arm._io import atomic_directory, write_text_atomic
from mergekit_arm.calibration import TextRole
from mergekit_arm.checks import check_finite_state
from mergekit_arm.choose.build import (
    build_mergekit,
    build_stream,
    candidate_model,
    candidate_spec,
    spec_key,
    tuned_on,
)
from mergekit_arm.choose.config import (
    CandidateEntry,
    ChooseConfig,
    load_choose_config,
    parse_choose_config,
)
from mergekit_arm.choose.pick import lowest_loss
from mergekit_arm.choose.references import choose_inputs
from mergekit_arm.choose.report import CandidateScore, leaderboard_markdown, model_card_section
from mergekit_arm.errors import ArmError, ModelLoadError
from mergekit_arm.evaluation import heldout_loss
from mergekit_arm.heldout import heldout_batches, quiet_transformers
from mergekit_arm.models import load_causal_lm, load_tokenizer, resolve_device
from mergekit_arm.paths import PathRole, check_outputs_apart, writes_output

logger = logging.getLogger("mergekit_arm.choose")

INTERNAL = ".arm-choose"
LEADERBOARD = "leaderboard.json"
VALIDATION_ROLE = TextRole("validation data", "`validation.data` in the arm-choose config")


@dataclass(frozen=True)
class ChooseResult:
    """The chosen model folder and every candidate's score, in config order."""

    out: Path
    model: Path
    chosen: str
    rows: list[CandidateScore]


def _as_config(config: ChooseConfig | str | os.PathLike | Mapping) -> ChooseConfig:
    """The config, paths absolute and the standard recipes written out."""
    if isinstance(config, Mapping):
        config = parse_choose_config(dict(config))
    elif not isinstance(config, ChooseConfig):
        config = load_choose_config(config)
    return config.resolved().expanded()


def _source(entry: CandidateEntry) -> str:
    value = getattr(entry, entry.kind)
    return value if isinstance(value, str) else f"inline {entry.kind} config"


class _Builds:
    """``OUT/candidates/<name>/`` and the spec each build was made from."""

    def __init__(self, root: Path, restart: bool) -> None:
        self.root = root
        self.internal = root / INTERNAL
        self.specs_file = self.internal / "specs.json"
        self.restart = restart
        self.specs: dict[str, str] = {}
        if self.specs_file.is_file() and not restart:
            self.specs = json.loads(self.specs_file.read_text(encoding="utf-8"))

    def folder(self, name: str) -> Path:
        return self.root / "candidates" / name

    def check(self, entry: CandidateEntry, key: str) -> bool:
        """Whether a build of this spec exists; refuses a build of another spec."""
        folder = self.folder(entry.name)
        old = self.specs.get(entry.name)
        if self.restart and folder.exists():
            shutil.rmtree(folder)
            return False
        if old is not None and old != key and folder.exists():
            raise ArmError(
                f"candidate `{entry.name}` changed since its build in {folder} was made; run "
                "again with --restart to rebuild (or give the changed recipe a new name)"
            )
        return entry.kind == "mergekit" and (folder / "model").is_dir()

    def record(self, entry: CandidateEntry, key: str) -> None:
        self.specs[entry.name] = key
        write_text_atomic(self.specs_file, json.dumps(self.specs, indent=2, sort_keys=True))


def _build(entry: CandidateEntry, builds: _Builds, config: ChooseConfig,
           progress: bool) -> tuple[Path, float, bool]:
    """The candidate's model folder, build seconds and whether an earlier build was reused."""
    key = spec_key(candidate_spec(entry))
    reused = builds.check(entry, key)
    builds.record(entry, key)
    started = time.perf_counter()
    if entry.kind == "model":
        folder = candidate_model(entry)
    elif entry.kind == "mergekit":
        folder = builds.folder(entry.name) / "model"
        if not reused:
            logger.info("candidate %s: mergekit merge into %s", entry.name, folder)
            build_mergekit(entry, builds.folder(entry.name), config)
    else:
        logger.info("candidate %s: arm-stream in %s", entry.name, builds.folder(entry.name))
        folder = build_stream(entry, builds.folder(entry.name), restart=builds.restart,
                              progress=progress)
    return folder, time.perf_counter() - started, reused


def _score(folder: Path, name: str, batches, tokenizer, config: ChooseConfig,
           device: torch.device) -> float:
    """Held-out loss of the model in ``folder`` (finite weights and a fitting vocabulary
    checked first)."""
    model = load_causal_lm(folder, dtype=config.dtype, device=str(device),
                           trust_remote_code=config.trust_remote_code)
    try:
        rows = model.get_input_embeddings().num_embeddings
        if len(tokenizer) > rows:
            raise ModelLoadError(
                f"candidate `{name}` ({folder}) has {rows} embedding rows but the scoring "
                f"tokenizer has {len(tokenizer)} tokens; every candidate must share the "
                "tokenizer (set `tokenizer:` to the right one)"
            )
        check_finite_state(model, f"candidate `{name}` ({folder})")
        return heldout_loss(model, batches)
    finally:
        del model
        gc.collect()


def _scored(entry: CandidateEntry, folder: Path, seconds: float, reused: bool, batches,
            tokenizer, config: ChooseConfig, device: torch.device) -> CandidateScore:
    """The leaderboard row of one built candidate."""
    started = time.perf_counter()
    loss = _score(folder, entry.name, batches, tokenizer, config, device)
    logger.info("candidate %s: held-out loss %.4f", entry.name, loss)
    return CandidateScore(
        name=entry.name, kind=entry.kind, source=_source(entry), model=str(folder),
        val_loss=loss, build_seconds=round(seconds, 2),
        score_seconds=round(time.perf_counter() - started, 2), reused=reused,
        tuned_on_validation=tuned_on(entry, config))


def _write_model(best: CandidateScore, rows: list[CandidateScore], out: Path,
                 config: ChooseConfig) -> Path:
    """``OUT/model``: the chosen folder (hard links inside OUT, else a copy) with the model
    card's choice section appended (a new file, never written through a link)."""
    source = Path(best.model)
    target = out / "model"
    inside = source.resolve().is_relative_to(out.resolve())
    with atomic_directory(target, overwrite=True) as partial:
        for item in source.iterdir():
            if item.name.startswith("."):
                continue
            destination = partial / item.name
            if item.is_dir():
                shutil.copytree(item, destination)
            elif item.name == "README.md":
                continue
            elif inside:
                try:
                    os.link(item, destination)
                except OSError:
                    shutil.copy2(item, destination)
            else:
                shutil.copy2(item, destination)
        card = source / "README.md"
        text = card.read_text(encoding="utf-8") if card.is_file() else ""
        (partial / "README.md").write_text(text + model_card_section(best, rows, config),
                                           encoding="utf-8")
    return target


def _open_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ArmError(f"OUT {out} exists and is not a folder")
    if out.is_dir() and not (out / INTERNAL).exists() and any(out.iterdir()):
        raise ArmError(f"OUT {out} already exists and is not an arm-choose output folder; "
                       "choose a new or empty folder")
    (out / INTERNAL).mkdir(parents=True, exist_ok=True)


@writes_output("Builds finished before stay in OUT and are reused when the same command "
               "runs again where OUT can be written")
def run_choose(config: ChooseConfig | str | os.PathLike | Mapping, out: str | os.PathLike, *,
               restart: bool = False, progress: bool = True) -> ChooseResult:
    """Build (or reuse) every candidate of ``config`` in ``out``, score each on
    ``validation`` and write the lowest-loss one to ``out/model``."""
    cfg = _as_config(config)
    root = Path(out).expanduser().resolve()
    check_outputs_apart([PathRole("OUT", out, "folder")], choose_inputs(cfg))
    _open_out(root)
    lock = FileLock(str(root / INTERNAL / "lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ArmError(f"another arm-choose is already writing to {root}") from None
    try:
        for stale in (root / LEADERBOARD, root / "leaderboard.md"):  # rewritten last
            stale.unlink(missing_ok=True)
        if restart:
            shutil.rmtree(root / "model", ignore_errors=True)
        builds = _Builds(root, restart)
        built = [(entry, *_build(entry, builds, cfg, progress)) for entry in cfg.candidates]
        device = resolve_device(cfg.device)
        tokenizer = load_tokenizer(cfg.tokenizer or built[0][1], cfg.trust_remote_code,
                                   fix="set `tokenizer:` in the arm-choose config")
        batches = heldout_batches(cfg.validation, "validation", tokenizer, device,
                                  cfg.max_length, VALIDATION_ROLE)
        with quiet_transformers():
            rows = [_scored(entry, folder, seconds, reused, batches, tokenizer, cfg, device)
                    for entry, folder, seconds, reused in built]
        chosen = lowest_loss({row.name: row.val_loss for row in rows})
        if chosen is None:
            raise ArmError("every candidate has a non-finite held-out loss; check the models "
                           "and the `validation` texts")
        best = next(row for row in rows if row.name == chosen)
        best.chosen = True
        model = _write_model(best, rows, root, cfg)
        if cfg.keep == "best":
            for row in rows:
                if row is not best:
                    shutil.rmtree(builds.folder(row.name), ignore_errors=True)
        record = {"chosen": best.name, "model": str(model),
                  "validation": cfg.validation.model_dump(mode="json"),
                  "max_length": cfg.max_length, "rows": [asdict(row) for row in rows]}
        write_text_atomic(root / "leaderboard.md", leaderboard_markdown(rows, cfg))
        write_text_atomic(root / LEADERBOARD, json.dumps(record, indent=2))
        return ChooseResult(out=root, model=model, chosen=best.name, rows=rows)
    finally:
        lock.release()


__all__ = ["CandidateScore", "ChooseResult", "run_choose"]
