"""The leaderboard of an ``arm-choose`` run, as Markdown (``OUT/leaderboard.md``) and as the
section appended to the chosen model's card."""

from __future__ import annotations

from dataclasses import dataclass, field

from mergekit_arm.choose.config import ChooseConfig
from mergekit_arm.choose.pick import Guard, GuardedChoice

OPTIMISTIC = ("a stream that tuned its step sizes or its kept step on these same texts "
              "scores optimistically here; give `arm-choose` held-out texts of its own "
              "(another file, or `validation.offset` past the streams' texts)")


@dataclass
class CandidateScore:
    """One row of the leaderboard."""

    name: str
    kind: str
    source: str
    model: str
    val_loss: float
    build_seconds: float
    score_seconds: float
    reused: bool
    tuned_on_validation: list[str] = field(default_factory=list)
    chosen: bool = False
    build: str = "built"  # as is | built | reused | resumed | rebuilt: <why>
    guard_losses: dict[str, float] = field(default_factory=dict)  # guard name -> loss
    excluded: list[str] = field(default_factory=list)  # why a guard excluded it


def _validation_line(config: ChooseConfig) -> str:
    val = config.validation
    return (f"{val.samples} texts of {val.data or 'the shipped corpus'} from offset "
            f"{val.offset}, at most {config.max_length} tokens each (longer texts are cut), mean "
            "token loss (nats, lower is better)")


def _build_cell(row: CandidateScore) -> str:
    if row.kind == "model":
        return "-"
    if row.reused:
        return "reused"
    return f"{row.build_seconds:.1f}" + (f" ({row.build})" if row.build != "built" else "")


def _guard_lines(config: ChooseConfig, choice: GuardedChoice) -> list[str]:
    lines = [f"Primary (decides): `{config.primary}`. Guards, each candidate's loss at most "
             "the limit:", ""]
    for name, guard in config.guards.items():
        rule = Guard(name, guard.max_regression, guard.relative, guard.against)
        lines.append(f"* `{name}`: limit {choice.limits[name]:.4f} = "
                     f"{rule.describe(choice.references[name])}; {guard.samples} texts of "
                     f"{guard.data or 'the shipped corpus'} from offset {guard.offset}")
    return lines + [""]


def _guarded_markdown(rows: list[CandidateScore], config: ChooseConfig,
                      choice: GuardedChoice) -> str:
    """The leaderboard with a loss column per set and why a candidate was excluded."""
    best = next(row for row in rows if row.chosen)
    names = list(config.guards)
    lines = ["# arm-choose leaderboard", "", f"Held-out (`{config.primary}`): "
             f"{_validation_line(config)}.", "", *_guard_lines(config, choice),
             f"| rank | candidate | kind | {config.primary} loss | vs chosen | "
             + " | ".join(f"{name} loss" for name in names) + " | excluded by | build s | source |",
             "|---|---|---|---|---|" + "---|" * len(names) + "---|---|---|"]
    ranked = sorted(rows, key=lambda row: (bool(row.excluded), row.val_loss != row.val_loss,
                                           row.val_loss))
    for rank, row in enumerate(ranked, 1):
        mark = " **(chosen)**" if row.chosen else ""
        flag = " *" if row.tuned_on_validation else ""
        cells = " | ".join(f"{row.guard_losses.get(name, float('nan')):.4f}" for name in names)
        lines.append(
            f"| {rank} | {row.name}{mark}{flag} | {row.kind} | {row.val_loss:.4f} | "
            f"{row.val_loss - best.val_loss:+.4f} | {cells} | "
            f"{'; '.join(row.excluded) or '-'} | {_build_cell(row)} | {row.source} |")
    if any(row.tuned_on_validation for row in rows):
        lines += ["", f"\\* tuned on these held-out texts: {OPTIMISTIC}."]
    return "\n".join(lines) + "\n"


def leaderboard_markdown(rows: list[CandidateScore], config: ChooseConfig,
                         guarded: GuardedChoice | None = None) -> str:
    """Every candidate, best first, with its held-out loss and its gap to the chosen one
    (with guards: each set's loss and why a candidate was excluded)."""
    if guarded is not None:
        return _guarded_markdown(rows, config, guarded)
    best = next(row for row in rows if row.chosen)
    lines = ["# arm-choose leaderboard", "", f"Held-out: {_validation_line(config)}.", "",
             "| rank | candidate | kind | held-out loss | vs chosen | build s | source |",
             "|---|---|---|---|---|---|---|"]
    ranked = sorted(rows, key=lambda row: (row.val_loss != row.val_loss, row.val_loss))
    for rank, row in enumerate(ranked, 1):
        mark = " **(chosen)**" if row.chosen else ""
        flag = " *" if row.tuned_on_validation else ""
        lines.append(
            f"| {rank} | {row.name}{mark}{flag} | {row.kind} | {row.val_loss:.4f} | "
            f"{row.val_loss - best.val_loss:+.4f} | {_build_cell(row)} | {row.source} |"
        )
    if any(row.tuned_on_validation for row in rows):
        lines += ["", f"\\* tuned on these held-out texts: {OPTIMISTIC}."]
    return "\n".join(lines) + "\n"


def model_card_section(best: CandidateScore, rows: list[CandidateScore],
                       config: ChooseConfig) -> str:
    """The card section of the chosen model: which recipe, and the others' losses."""
    others = ", ".join(f"{row.name} {row.val_loss:.4f}" for row in rows if row is not best)
    text = (f"\n\n## Chosen by arm-choose\n\nThis is candidate `{best.name}` ({best.kind}, "
            f"{best.source}), the lowest held-out loss ({best.val_loss:.4f}) of "
            f"{len(rows)} candidates on {_validation_line(config)}.")
    if config.guards:
        within = [row for row in rows if not row.excluded]
        text += (f" Guards: {', '.join(config.guards)}; {len(within)} of {len(rows)} "
                 "candidates stayed within them (leaderboard.md).")
    if others:
        text += f" The others: {others}."
    if best.tuned_on_validation:
        text += f" Its own search read these texts ({', '.join(best.tuned_on_validation)}): " \
                f"{OPTIMISTIC}."
    return text + "\n"


__all__ = ["CandidateScore", "leaderboard_markdown", "model_card_section"]
