"""``arm-choose`` with guards: the lowest primary loss among the candidates within every guard.

The rule (:func:`mergekit_arm.choose.pick.guarded_choice`) runs on a table of losses
(absolute / relative, against the origin / a candidate, none qualifying); ``run_choose``
and the CLI run on the tiny fixtures (three model candidates, no builds).
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from mergekit_arm.choose import parse_choose_config, run_choose
from mergekit_arm.choose.pick import Guard, guarded_choice
from mergekit_arm.errors import ArmConfigError
from mergekit_arm.scripts.choose import main as choose_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# primary: b best, then a, then c. Guard "g": a best, then c, b worst; origin 1.00 there.
PRIMARY = {"a": 2.0, "b": 1.5, "c": 2.5}
GUARD = {"g": {"a": 1.00, "b": 1.20, "c": 1.05}}
ORIGIN = {"g": 1.00}

CASES = [
    # (guard, chosen, excluded, closest)
    (Guard("g", 0.5), "b", set(), None),                          # loose: the unguarded pick
    (Guard("g", 0.1), "a", {"b"}, None),                          # absolute vs origin
    (Guard("g", 0.2), "b", set(), None),                          # the limit itself passes
    (Guard("g", 0.1, relative=True), "a", {"b"}, None),           # 1.10 = origin x 1.1
    (Guard("g", 0.25, relative=True), "b", set(), None),          # 1.25
    (Guard("g", 0.0, against="c"), "a", {"b"}, None),             # vs a candidate: <= c's 1.05
    (Guard("g", 0.15, against="c"), "b", set(), None),            # 1.05 + 0.15 = 1.20
    (Guard("g", 0.1, relative=True, against="a"), "a", {"b"}, None),  # 1.10
    (Guard("g", 0.0), "a", {"b", "c"}, None),                     # only a matches origin
]


@pytest.mark.parametrize(("guard", "chosen", "excluded", "closest"), CASES)
def test_guarded_choice(guard, chosen, excluded, closest):
    choice = guarded_choice(PRIMARY, GUARD, [guard], ORIGIN)
    assert choice.chosen == chosen
    assert set(choice.excluded) == excluded
    assert choice.closest == closest
    reference = ORIGIN["g"] if guard.against == "origin" else GUARD["g"][guard.against]
    assert choice.limits["g"] == pytest.approx(guard.limit(reference))


def test_none_qualifying_names_the_closest():
    guards = [Guard("g", 0.0, against="a"), Guard("h", 0.0)]
    losses = {**GUARD, "h": {"a": 3.0, "b": 2.0, "c": 2.02}}
    choice = guarded_choice(PRIMARY, losses, guards, {"h": 1.99})
    assert choice.chosen is None and set(choice.excluded) == {"a", "b", "c"}
    # worst excess: a 1.01 (on h), b 0.20 (on g), c 0.05 (on g; 0.03 on h)
    assert choice.closest == "c"
    assert choice.excluded["c"] == ["g 1.0500 > 1.0000 (a 1.0000 + 0)",
                                    "h 2.0200 > 1.9900 (origin 1.9900 + 0)"]


def test_non_finite_losses_never_pass():
    losses = {"g": {"a": math.nan, "b": None, "c": 1.0}}
    choice = guarded_choice(PRIMARY, losses, [Guard("g", 1.0)], ORIGIN)
    assert choice.chosen == "c" and set(choice.excluded) == {"a", "b"}
    with pytest.raises(ValueError, match="reference a has loss nan"):
        guarded_choice(PRIMARY, losses, [Guard("g", 1.0, against="a")], ORIGIN)


@pytest.fixture(scope="module")
def guard_texts(tmp_path_factory, demo_records):
    """English texts (the models trained on math)."""
    texts = [r["text"] for r in demo_records if r.get("domain") == "english"][:8]
    path = tmp_path_factory.mktemp("guard") / "english.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def _config(tiny_llama, tiny_llama_sft, validation_jsonl, guard_texts, **guard) -> dict:
    return {"validation": {"data": str(validation_jsonl), "samples": 8, "max_length": 32},
            "primary": "math", "origin": str(tiny_llama), "device": "cpu",
            "candidates": [{"name": "c5", "model": str(tiny_llama_sft[5])},
                           {"name": "c10", "model": str(tiny_llama_sft[10])}],
            "guards": {"english": {"data": str(guard_texts), "samples": 8, "max_length": 32,
                                   **guard}}}


def test_run_choose_with_a_guard(tmp_path, tiny_llama, tiny_llama_sft, validation_jsonl,
                                 guard_texts):
    config = _config(tiny_llama, tiny_llama_sft, validation_jsonl, guard_texts,
                     max_regression=0.0, relative=True, against="c5")
    result = run_choose(config, tmp_path / "out", progress=False)
    rows = {row.name: row for row in result.rows}
    english = {name: row.guard_losses["english"] for name, row in rows.items()}
    expected = guarded_choice({n: r.val_loss for n, r in rows.items()}, {"english": english},
                              [Guard("english", 0.0, relative=True, against="c5")])
    assert result.chosen == expected.chosen and expected.chosen is not None
    assert {n for n, r in rows.items() if r.excluded} == set(expected.excluded)
    record = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert record["primary"] == "math"
    assert record["guards"]["english"]["limit"] == pytest.approx(english["c5"])
    assert [row["guard_losses"] for row in record["rows"]] == [
        {"english": english["c5"]}, {"english": english["c10"]}]
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| math loss | vs chosen | english loss | excluded by |" in board
    assert "limit" in board and "c5" in board


def test_none_within_the_guards_exits_2_naming_the_closest(tmp_path, tiny_llama,
                                                           tiny_llama_sft, validation_jsonl,
                                                           guard_texts):
    """The reference (here `origin` is the later checkpoint c10) is better on the guard
    set than both candidates (the base and c5), and no regression is allowed."""
    config = _config(tiny_llama, tiny_llama_sft, validation_jsonl, guard_texts,
                     max_regression=0.0)
    config["origin"] = str(tiny_llama_sft[10])
    config["candidates"] = [{"name": "base", "model": str(tiny_llama)},
                            {"name": "c5", "model": str(tiny_llama_sft[5])}]
    config_file = tmp_path / "choose.json"
    config_file.write_text(json.dumps(config))
    out = tmp_path / "out"
    result = CliRunner().invoke(choose_cli, [str(config_file), str(out), "-q"])
    assert result.exit_code == 2, result.output
    assert "arm-choose: error: no candidate is within every guard" in result.output
    assert "The closest is `c5`" in result.output and "english" in result.output
    assert not (out / "model").exists() and not (out / "leaderboard.json").exists()


@pytest.mark.parametrize(("change", "match"), [
    ({"primary": "english"}, "has the name of the primary set"),
    ({"origin": None}, "set `origin:`"),
    ({"guards": {"bad name": {"max_regression": 0.1, "against": "c5"}}}, "plain name"),
    ({"guards": {"english": {"max_regression": -0.1}}}, "max_regression"),
])
def test_guard_config_errors(tiny_llama, tiny_llama_sft, validation_jsonl, guard_texts, change,
                             match):
    config = _config(tiny_llama, tiny_llama_sft, validation_jsonl, guard_texts,
                     max_regression=0.1) | change
    with pytest.raises(ArmConfigError, match=match):
        parse_choose_config(config)


def test_guard_against_an_unknown_candidate(tmp_path, tiny_llama, tiny_llama_sft,
                                            validation_jsonl, guard_texts):
    config = _config(tiny_llama, tiny_llama_sft, validation_jsonl, guard_texts,
                     max_regression=0.1, against="c20")
    with pytest.raises(ArmConfigError, match="`guards.english.against` is 'c20'.*c5, c10"):
        run_choose(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
