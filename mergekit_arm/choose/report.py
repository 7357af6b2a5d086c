"""The leaderboard of an ``arm-choose`` run, as Markdown (``OUT/leaderboard.md``) and as the
section appended to the chosen model's card."""

from __future__ import annotations

from dataclasses import dataclass, field

from mergekit_arm.choose.config import ChooseConfig

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


def _validation_line(config: ChooseConfig) -> str:
    val = config.validation
    return (f"{val.samples} texts of {val.data or 'the shipped corpus'} from offset "
            f"{val.offset}, {config.max_length} tokens each, mean token loss "
            f"(nats, lower is better)")


def _build_cell(row: CandidateScore) -> str:
    if row.kind == "model":
        return "-"
    if row.reused:
        return "reused"
    return f"{row.build_seconds:.1f}" + (f" ({row.build})" if row.build != "built" else "")


def leaderboard_markdown(rows: list[CandidateScore], config: ChooseConfig) -> str:
    """Every candidate, best first, with its held-out loss and its gap to the chosen one."""
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
    if others:
        text += f" The others: {others}."
    if best.tuned_on_validation:
        text += f" Its own search read these texts ({', '.join(best.tuned_on_validation)}): " \
                f"{OPTIMISTIC}."
    return text + "\n"


__all__ = ["CandidateScore", "leaderboard_markdown", "model_card_section"]
