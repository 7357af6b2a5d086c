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

from mergekit_arm._io import write_text_atomic
from mergekit_arm.calibration import TextRole
from mergekit_arm.checks import check_finite_state
from mergekit_arm.choose.build import tuned_on
from mergekit_arm.choose.builds import Builds, Built
from mergekit_arm.choose.config import (
    CandidateEntry,
    ChooseConfig,
    load_choose_config,
    parse_choose_config,
)
from mergekit_arm.choose.guards import (
    apply_guards,
    guard_batches,
    guards_record,
    origin_guard_losses,
)
from mergekit_arm.choose.output import write_model_folder
from mergekit_arm.choose.pick import lowest_loss
from mergekit_arm.choose.references import choose_inputs
from mergekit_arm.choose.report import CandidateScore, leaderboard_markdown, model_card_section
from mergekit_arm.errors import ArmError, ModelLoadError
from mergekit_arm.evaluation import heldout_loss
from mergekit_arm.heldout import heldout_batches, quiet_transformers
from mergekit_arm.models import load_causal_lm, load_model_config, load_tokenizer, resolve_device
from mergekit_arm.paths import PathRole, check_outputs_apart, writes_output

logger = logging.getLogger("mergekit_arm.choose")

INTERNAL = ".arm-choose"
LEADERBOARD = "leaderboard.json"
VALIDATION_ROLE = TextRole("validation data", "`validation.data` in the arm-choose config")
PRIMARY = "\0primary"  # the key of the primary set among the scored sets (not a guard name)


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


def _score(folder: Path, name: str, sets: Mapping[str, list], tokenizer, config: ChooseConfig,
           device: torch.device) -> dict[str, float]:
    """Held-out loss of the model in ``folder`` on each set of batches (finite weights and a
    fitting vocabulary checked first; the model is loaded once)."""
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
        return {key: heldout_loss(model, batches) for key, batches in sets.items()}
    finally:
        del model
        gc.collect()


def _scored(entry: CandidateEntry, built: Built, sets: Mapping[str, list], tokenizer,
            config: ChooseConfig, device: torch.device) -> CandidateScore:
    """The leaderboard row of one built candidate (``sets``: the primary's batches under
    :data:`PRIMARY`, then each guard's)."""
    started = time.perf_counter()
    losses = _score(built.folder, entry.name, sets, tokenizer, config, device)
    loss = losses.pop(PRIMARY)
    logger.info("candidate %s: held-out loss %.4f%s", entry.name, loss,
                "".join(f", {key} {value:.4f}" for key, value in losses.items()))
    return CandidateScore(
        name=entry.name, kind=entry.kind, source=_source(entry), model=str(built.folder),
        val_loss=loss, build_seconds=round(built.seconds, 2),
        score_seconds=round(time.perf_counter() - started, 2), reused=built.reused,
        tuned_on_validation=tuned_on(entry, config), build=built.status, guard_losses=losses)


def _write_model(best: CandidateScore, rows: list[CandidateScore], out: Path,
                 config: ChooseConfig) -> Path:
    """``OUT/model``: the chosen folder's model files (hard links where possible, see
    :mod:`~mergekit_arm.choose.output`) with the model card's choice section appended."""
    target = out / "model"
    write_model_folder(Path(best.model), target, model_card_section(best, rows, config))
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
               restart: bool = False, progress: bool = True,
               refuse_changed_inputs: bool = False) -> ChooseResult:
    """Build (or reuse) every candidate of ``config`` in ``out``, score each on
    ``validation`` and write the lowest-loss one to ``out/model``. A build whose input
    weights changed since it was made is made again, or refused with
    ``refuse_changed_inputs`` (:mod:`~mergekit_arm.choose.builds`)."""
    cfg = _as_config(config)
    cfg.check_guard_references()
    root = Path(out).expanduser().resolve()
    check_outputs_apart([PathRole("OUT", out, "folder")], choose_inputs(cfg, config))
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
        builds = Builds(root, root / INTERNAL, restart, refuse_changed_inputs)
        built = [(entry, builds.build(entry, cfg, progress)) for entry in cfg.candidates]
        device = resolve_device(cfg.device)
        tokenizer = load_tokenizer(cfg.tokenizer or built[0][1].folder, cfg.trust_remote_code,
                                   fix="set `tokenizer:` in the arm-choose config")
        positions = load_model_config(built[0][1].folder, cfg.trust_remote_code)
        sets = {PRIMARY: heldout_batches(cfg.validation, "validation", tokenizer, device,
                                         cfg.max_length, VALIDATION_ROLE, positions)}
        sets |= guard_batches(cfg, tokenizer, device, positions)
        with quiet_transformers():
            rows = [_scored(entry, made, sets, tokenizer, cfg, device)
                    for entry, made in built]
            origin = origin_guard_losses(cfg, sets, lambda folder, name, subset: _score(
                folder, name, subset, tokenizer, cfg, device))
        guarded = apply_guards(cfg, rows, origin)  # raises when none is within every guard
        chosen = (lowest_loss({row.name: row.val_loss for row in rows}) if guarded is None
                  else guarded.chosen)
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
        if guarded is not None:
            record |= guards_record(cfg, guarded)
        write_text_atomic(root / "leaderboard.md", leaderboard_markdown(rows, cfg, guarded))
        write_text_atomic(root / LEADERBOARD, json.dumps(record, indent=2))
        return ChooseResult(out=root, model=model, chosen=best.name, rows=rows)
    finally:
        lock.release()


__all__ = ["CandidateScore", "ChooseResult", "run_choose"]
