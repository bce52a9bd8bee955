"""The best-of-N prompt set: questions with exact numeric answers and a spread of difficulty.

Why generated: best-of-N emergence needs prompts the model solves always, sometimes and
never, with answers that can be checked exactly. Arithmetic of growing size, counting and
sequence continuation give that ladder for a small chat model; the generator is seeded,
so the shipped file (fixtures/data/prompts.jsonl) is reproducible byte for byte:

    expspec bon prompts --out fixtures/data/prompts.jsonl      (or python -m expspec.kernels.bon.prompts)

The file lists prompts round-robin over the categories, so any prefix (``bon.n_prompts``)
keeps the spread. Each line: ``{"id", "category", "difficulty" (1-5), "prompt", "answer"}``.
``read_prompts`` reads any such JSONL (the prompt and answer fields are named by the
collector config) and turns a malformed file into one error line naming file and line.
"""

from __future__ import annotations

import json
import random
import sys
from importlib import resources
from pathlib import Path
from typing import Callable

from expspec.kernels.atomic_io import jsonl_objects, write_text_atomic
from expspec.kernels.errors import ExpspecError

GENERATOR_SEED = 20261127
PER_CATEGORY = 6
SUFFIX = " Answer with only the number."
WORDS = ["garden", "river", "window", "pencil", "orange", "planet", "bridge", "candle", "forest", "silver",
         "market", "yellow", "basket", "mirror", "castle", "winter", "letter", "banana", "coffee", "rabbit"]


def _arith(a_digits: int, b_digits: int, op: str) -> Callable[[random.Random], tuple[str, int]]:
    def make(rng: random.Random) -> tuple[str, int]:
        a = rng.randint(10 ** (a_digits - 1) if a_digits > 1 else 2, 10 ** a_digits - 1)
        b = rng.randint(10 ** (b_digits - 1) if b_digits > 1 else 2, 10 ** b_digits - 1)
        if op == "-" and b > a:
            a, b = b, a
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        return f"What is {a} {op} {b}?", value
    return make


def _word_length(rng: random.Random) -> tuple[str, int]:
    word = rng.choice(WORDS)
    return f"How many letters are in the word '{word}'?", len(word)


def _letter_count(rng: random.Random) -> tuple[str, int]:
    word = rng.choice(WORDS)
    letter = rng.choice(sorted(set(word)))
    return f"How many times does the letter '{letter}' appear in '{word}'?", word.count(letter)


def _arithmetic_sequence(rng: random.Random) -> tuple[str, int]:
    start, step = rng.randint(1, 20), rng.randint(2, 9)
    terms = [start + step * i for i in range(4)]
    return f"What number comes next in the sequence {', '.join(map(str, terms))}?", start + step * 4


def _doubling_sequence(rng: random.Random) -> tuple[str, int]:
    start, ratio = rng.randint(1, 5), rng.choice([2, 3])
    terms = [start * ratio**i for i in range(4)]
    return f"What number comes next in the sequence {', '.join(map(str, terms))}?", start * ratio**4


# (category, difficulty, generator): from one-digit sums to three-digit sums and products
CATEGORIES: list[tuple[str, int, Callable[[random.Random], tuple[str, int]]]] = [
    ("add_1x1", 1, _arith(1, 1, "+")),
    ("mul_1x1", 2, _arith(1, 1, "*")),
    ("word_length", 2, _word_length),
    ("add_2x1", 2, _arith(2, 1, "+")),
    ("sequence_add", 3, _arithmetic_sequence),
    ("add_2x2", 3, _arith(2, 2, "+")),
    ("sub_2x2", 3, _arith(2, 2, "-")),
    ("letter_count", 4, _letter_count),
    ("mul_2x1", 4, _arith(2, 1, "*")),
    ("sequence_mul", 4, _doubling_sequence),
    ("add_3x3", 5, _arith(3, 3, "+")),
    ("mul_2x2", 5, _arith(2, 2, "*")),
]


def generate_prompts(per_category: int = PER_CATEGORY, seed: int = GENERATOR_SEED) -> list[dict]:
    """``per_category`` distinct questions of every category, listed round-robin."""
    rng = random.Random(seed)
    made: dict[str, list[dict]] = {}
    for name, difficulty, make in CATEGORIES:
        seen, rows = set(), []
        for _ in range(per_category * 50):
            if len(rows) == per_category:
                break
            question, answer = make(rng)
            if question in seen:
                continue
            seen.add(question)
            rows.append({"id": f"{name}-{len(rows):02d}", "category": name, "difficulty": difficulty,
                         "prompt": question + SUFFIX, "answer": str(answer)})
        made[name] = rows
    return [made[name][i] for i in range(per_category) for name, _, _ in CATEGORIES if i < len(made[name])]


def prompts_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def shipped_prompts_file() -> Path:
    """fixtures/data/prompts.jsonl (source tree or installed package)."""
    return Path(str(resources.files("expspec.fixtures") / "data" / "prompts.jsonl"))


def read_prompts(path: str | Path, *, prompt_field: str, answer_field: str, id_field: str) -> list[dict]:
    """Every line of a prompts JSONL as {"id", "prompt", "answer", "meta"}; one error line on bad input."""
    out, ids = [], set()
    for number, row in jsonl_objects(path, "prompts file"):
        for name in (prompt_field, answer_field):
            if name not in row:
                raise ExpspecError(f"prompts file {path} line {number}: missing field {name!r}")
        prompt, answer = row[prompt_field], row[answer_field]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ExpspecError(f"prompts file {path} line {number}: field {prompt_field!r} must be non-empty text")
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
            raise ExpspecError(f"prompts file {path} line {number}: field {answer_field!r} must be text or a "
                               f"number, got {type(answer).__name__}")
        pid = str(row.get(id_field, f"line-{number}"))
        if pid in ids:
            raise ExpspecError(f"prompts file {path} line {number}: duplicate {id_field} {pid!r}")
        ids.add(pid)
        meta = {k: v for k, v in row.items() if k not in (prompt_field, answer_field, id_field)}
        out.append({"id": pid, "prompt": prompt, "answer": str(answer), "meta": meta})
    if not out:
        raise ExpspecError(f"prompts file {path}: no prompts (empty file)")
    return out


def held_out_by_category(prompts: list[dict], *, every: int) -> list[str]:
    """Ids of the prompts held out of training: within each category (``meta["category"]``;
    a file without one is one category), the prompts at positions every-1, 2*every-1, ...
    So every category with at least ``every`` prompts is both trained on and held out
    (a category-blind "every Nth of the file" on a round-robin file would hold out whole
    categories). ``every`` = 0: none."""
    if not every:
        return []
    seen: dict[str, int] = {}
    out = []
    for p in prompts:
        category = str(p.get("meta", {}).get("category", ""))
        position = seen[category] = seen.get(category, -1) + 1
        if position % every == every - 1:
            out.append(p["id"])
    return out


def main(argv: list[str] | None = None) -> int:
    out = Path((argv if argv is not None else sys.argv[1:])[0]) if (argv or sys.argv[1:]) else shipped_prompts_file()
    write_text_atomic(out, prompts_jsonl(generate_prompts()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
