"""Build the default calibration corpus, ``calibration/default.jsonl``.

The corpus is what ARM runs through a model when the user gives no ``--data``: a mix
of English prose, grade-school math with worked solutions, and short code snippets,
all written for this project. The samples are data in ``sources/``:

* ``sources/english.jsonl``: ``{"genre", "text"}``, paragraphs separated by a blank line;
* ``sources/code.jsonl``: ``{"task", "language", "code"}``;
* ``sources/people.jsonl``: the names and pronouns of the math problems.

The math problems are generated from the templates of ``math_templates.py`` with a
fixed seed. This script holds only the assembly and the checks: every arithmetic
step of every worked solution is re-evaluated exactly, and the prose and code samples
are checked for length, whitespace, syntax (Python) and duplicates.

Run from the repository root::

    python calibration/generate.py          # (re)write default.jsonl
    python calibration/generate.py --check  # exit 1 unless the file on disk is byte-identical

The output is byte-for-byte deterministic. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import random
import re
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

from math_templates import TEMPLATES, fmt

SEED = 20240917
HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
OUT_PATH = HERE / "default.jsonl"


def read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict[str, str]]:
    """Records of ``path``; each must be an object with string ``fields``."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            record = json.loads(line)
            if not isinstance(record, dict) or not all(
                isinstance(record.get(f), str) for f in fields
            ):
                raise AssertionError(f"{path}:{number}: expected an object with strings {fields}")
            records.append(record)
    return records


def clean_prose(raw: str) -> str:
    """Normal form of prose: paragraphs separated by one blank line, single spaces."""
    paragraphs = [" ".join(p.split()) for p in raw.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


# ---------------------------------------------------------------------------
# Checks of the worked solutions
# ---------------------------------------------------------------------------

_NUM = r"[$(]*\d+(?:\.\d+)?\)*"
_EQ_RE = re.compile(
    rf"(?P<lhs>{_NUM}(?:\s*[-+*/]\s*{_NUM})+)\s*=\s*\$?(?P<rhs>-?\d+(?:\.\d+)?(?:/\d+)?)(?![\d/])"
)


def _exact(expr: str) -> Fraction:
    """Evaluate + - * / ( ) on decimal literals exactly."""
    tree = ast.parse(expr.replace("$", ""), mode="eval")

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(ast.get_source_segment(expr.replace("$", ""), node))
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
        raise ValueError(f"unsupported expression: {expr!r}")

    return ev(tree)


def check_arithmetic(text: str) -> int:
    """Verify every ``a op b = c`` statement in ``text``; return how many were checked."""
    checked = 0
    for m in _EQ_RE.finditer(text):
        before = text[: m.start()]
        prev = before.rstrip()[-1:]
        if (before and before[-1].isalnum()) or (prev and prev in "+-*/"):
            continue  # part of a symbolic expression such as "2x + 3 = 11"
        lhs, rhs = m.group("lhs"), m.group("rhs")
        if lhs.count("(") != lhs.count(")"):
            raise AssertionError(f"unbalanced expression {lhs!r} in: {text}")
        if _exact(lhs) != Fraction(rhs):
            raise AssertionError(f"wrong arithmetic {lhs} = {rhs} in: {text}")
        checked += 1
    return checked


def make_math_sample(template, rng: random.Random) -> str:
    question, steps, answer = template(rng)
    answer = Fraction(answer)
    final = fmt(answer)
    text = question + "\n\n" + "\n".join(steps) + f"\n#### {final}"
    # Self-check: every arithmetic statement is exact, there is at least one, and the
    # final answer is stated in the last step of the worked solution.
    if check_arithmetic(text) == 0:
        raise AssertionError(f"no checkable arithmetic in: {text}")
    last = steps[-1].replace("$", "")
    numbers = {Fraction(n) for n in re.findall(r"\d+(?:\.\d+)?(?:/\d+)?", last)}
    if answer not in numbers:
        raise AssertionError(f"final answer {final} not derived in last step: {text}")
    return text


def generate_math(count: int, rng: random.Random) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    order: list = []
    while len(out) < count:
        if not order:
            order = list(TEMPLATES)
            rng.shuffle(order)
        template = order.pop()
        text = make_math_sample(template, rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out

# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------


def english_samples() -> list[str]:
    """The prose samples, each 60 to 250 words and already in normal form."""
    texts = [r["text"] for r in read_jsonl(SOURCES / "english.jsonl", ("genre", "text"))]
    for text in texts:
        if text != clean_prose(text):
            raise AssertionError(f"English sample not in normal form: {text[:60]}...")
        n = word_count(text)
        if not 60 <= n <= 250:
            raise AssertionError(f"English sample has {n} words: {text[:60]}...")
    return texts


def code_sample(description: str, language: str, body: str) -> str:
    """``description``, a blank line and ``body`` fenced as ``language`` (5 to 40 lines)."""
    n_lines = body.count("\n") + 1
    if not 5 <= n_lines <= 40:
        raise AssertionError(f"code sample has {n_lines} lines: {description}")
    if body != body.strip("\n"):
        raise AssertionError(f"code sample starts or ends with a blank line: {description}")
    if any(line != line.rstrip() or "\t" in line for line in body.splitlines()):
        raise AssertionError(f"trailing whitespace or tab in code sample: {description}")
    if language == "python":
        ast.parse(body)  # every Python snippet must at least be valid syntax
    return f"{description}\n\n```{language}\n{body}\n```"


def code_samples() -> list[str]:
    """The code samples; no two share a task description."""
    items = read_jsonl(SOURCES / "code.jsonl", ("task", "language", "code"))
    repeated = [d for d, c in Counter(r["task"] for r in items).items() if c > 1]
    if repeated:
        raise AssertionError(f"repeated code task descriptions: {repeated}")
    return [code_sample(r["task"], r["language"], r["code"]) for r in items]


def word_count(text: str) -> int:
    return len(text.split())


def build_records() -> list[dict[str, str]]:
    english = english_samples()
    code = code_samples()
    math_count = round((len(english) + len(code)) / 2)
    math = generate_math(math_count, random.Random(SEED))

    records: list[dict[str, str]] = []
    for domain, texts in (("english", english), ("math", math), ("code", code)):
        for i, text in enumerate(texts, start=1):
            records.append({"text": text, "domain": domain, "id": f"{domain}-{i:03d}"})

    texts = [r["text"] for r in records]
    if len(set(texts)) != len(texts):
        dupes = [t[:60] for t, c in Counter(texts).items() if c > 1]
        raise AssertionError(f"duplicate samples: {dupes}")

    random.Random(SEED + 1).shuffle(records)
    return records


def render(records: list[dict[str, str]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def summary(records: list[dict[str, str]]) -> str:
    lines = ["domain    samples  words(mean  min  max)  chars(mean)"]
    for domain in ("english", "math", "code"):
        words = [word_count(r["text"]) for r in records if r["domain"] == domain]
        chars = [len(r["text"]) for r in records if r["domain"] == domain]
        lines.append(
            f"{domain:<9} {len(words):>7}  {sum(words) / len(words):>10.1f} {min(words):>4} "
            f"{max(words):>4}  {sum(chars) / len(chars):>11.1f}"
        )
    words = [word_count(r["text"]) for r in records]
    lines.append(
        f"{'total':<9} {len(records):>7}  {sum(words) / len(words):>10.1f} "
        f"{min(words):>4} {max(words):>4}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 unless the file on disk is byte-identical to a rebuild",
    )
    parser.add_argument("--output", type=Path, default=OUT_PATH, help="where to write the corpus")
    args = parser.parse_args(argv)

    records = build_records()
    content = render(records)
    digest = hashlib.sha256(content).hexdigest()
    if args.check:
        current = args.output.read_bytes() if args.output.exists() else b""
        if current != content:
            print(f"{args.output} differs from a rebuild (sha256 of the file "
                  f"{hashlib.sha256(current).hexdigest()}, of the rebuild {digest}); "
                  "run python calibration/generate.py")
            return 1
        print(f"{args.output} is byte-identical to a rebuild (sha256 {digest})")
    else:
        tmp = args.output.with_name(f".{args.output.name}.tmp")
        tmp.write_bytes(content)
        tmp.replace(args.output)
        print(f"wrote {len(records)} samples ({len(content)} bytes, sha256 {digest}) "
              f"to {args.output}")
    print(summary(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
