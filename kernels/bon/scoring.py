"""Scoring samples: the pluggable scorers, the unbiased pass@k, and answer diversity.

pass@k is the chance that at least one of k samples, drawn without replacement from the n
taken, is correct. With c correct (Chen et al. 2021, the Codex paper):

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n-c+1}^{n} (1 - k / i),  = 1 when n - c < k

The product form never builds the huge binomials. k > n is an error: pass@16 from 8
samples is undefined. (The seed took "any of the first k samples correct": one draw of
the estimator, unbiased but needlessly noisy, and order dependent.)

A scorer is ``parse(reply) -> answer or None`` plus ``match(answer, gold) -> bool``:

* ``exact``: the reply's first line, normalised (lower case, whitespace collapsed, outer
  punctuation and quotes dropped), equals the normalised gold;
* ``numeric``: the reply's answer number, compared as a number (``"12.0"`` = ``"12"``).
  An operand (a number beside ``+ - * / × ÷ ^``, e.g. the question's numbers echoed in
  "23 + 45 = 68") is never the answer. The answer is the reply's first number when the
  reply starts with one ("18", "68, which is 8 more than 60"); else the first number
  after the first answer marker (``=``, ``is``, ``equals``, ``are``) that is followed by one
  ("The sum is 68, which is 8 more than 60" -> 68, "12 * 13 = 12 * 10 + 36 = 156" -> 156);
  else the first number at all ("The word has 6 letters." -> 6). A reply cut off before its
  answer ("23 + 45 =") has none;
* ``contains``: the normalised gold occurs in the normalised reply.

``register_scorer(name, parse, match)`` adds one; the collector config names it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from expspec.kernels.errors import ExpspecError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ExpspecError(f"pass_at_k: {name} must be an integer, got {value!r}")
    if n < 1 or not 0 <= c <= n:
        raise ExpspecError(f"pass_at_k: need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ExpspecError(f"pass_at_k: k={k} must be in [1, n={n}] (pass@k from fewer than k samples is undefined)")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


# --- scorers ------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?!\d)")
_MARKER = re.compile(r"=|\b(?:is|equals|are)\b", re.IGNORECASE)
_OPERATORS = "+-*/×÷^"


def normalize_text(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .,:;!?\"'`")


def _number(text: str) -> float | None:
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _after_a_term(text: str) -> bool:
    """Does ``text`` end with a number or a closing bracket (the left side of an operator)?"""
    text = text.rstrip()
    return bool(text) and (text[-1].isdigit() or text[-1] == ")")


def _numbers(reply: str) -> list[tuple[int, str, bool]]:
    """(start, number text, is an operand) of every number in the reply. An operator is
    binary: a minus sign right after a number ("81-36") is the operator, not the sign, and
    a leading "- 42" (a list bullet) is no operator."""
    out = []
    for m in _NUMBER.finditer(reply):
        start, text = m.start(), m.group()
        if text.startswith("-") and _after_a_term(reply[:start]):
            start, text = start + 1, text[1:]
        before, after = reply[:start].rstrip(), reply[m.end():].lstrip()
        operand = (bool(before) and before[-1] in _OPERATORS and _after_a_term(before[:-1])) or (
            bool(after) and after[0] in _OPERATORS)
        if _number(text) is not None:
            out.append((start, text.replace(",", ""), operand))
    return out


def parse_number(reply: str) -> str | None:
    """The reply's answer number as text (the rule: module docstring), or None."""
    reply = reply.replace("**", "")  # markdown bold, not an operator
    answers = [(start, text) for start, text, operand in _numbers(reply) if not operand]
    if not answers:
        return None
    if answers[0][0] == len(reply) - len(reply.lstrip(" \t\n*_")):  # the reply starts with it
        return answers[0][1]
    for marker in _MARKER.finditer(reply):
        after = [text for start, text in answers if start >= marker.end()]
        if after:
            return after[0]
    return answers[0][1]


def _numbers_equal(answer: str | None, gold: str) -> bool:
    a, g = (_number(answer) if answer is not None else None), _number(str(gold))
    return a is not None and g is not None and math.isclose(a, g, rel_tol=1e-9, abs_tol=1e-9)


@dataclass(frozen=True)
class Scorer:
    name: str
    parse: Callable[[str], str | None]  # reply -> the answer it gives (None: no answer)
    match: Callable[[str | None, str], bool]  # (parsed answer, gold) -> correct?

    def score(self, reply: str, gold: str) -> tuple[str | None, float]:
        answer = self.parse(reply)
        return answer, float(bool(self.match(answer, gold)))


SCORERS: dict[str, Scorer] = {
    "exact": Scorer("exact", lambda r: normalize_text(r.strip().splitlines()[0]) if r.strip() else None,
                    lambda a, g: a is not None and a == normalize_text(str(g))),
    "numeric": Scorer("numeric", parse_number, _numbers_equal),
    "contains": Scorer("contains", lambda r: normalize_text(r) or None,
                       lambda a, g: a is not None and normalize_text(str(g)) in a),
}


def register_scorer(name: str, parse: Callable[[str], str | None], match: Callable[[str | None, str], bool]) -> None:
    """Add a scorer the collector config can name."""
    if name in SCORERS:
        raise ExpspecError(f"scorer {name!r} already exists (known: {', '.join(SCORERS)})")
    SCORERS[name] = Scorer(name, parse, match)


def get_scorer(name: str) -> Scorer:
    if name not in SCORERS:
        raise ExpspecError(f"scorer {name!r}: expected one of {', '.join(SCORERS)}")
    return SCORERS[name]


# --- diversity ----------------------------------------------------------------------------

def answer_entropy(answers: Sequence[str | None]) -> float:
    """Shannon entropy (nats) of the answers' distribution; no answer counts as one value."""
    counts = Counter("\0none" if a is None else a for a in answers)
    total = sum(counts.values())
    return float(-sum(c / total * math.log(c / total) for c in counts.values())) if total else 0.0


def diversity(answers: Sequence[str | None], token_entropies: Sequence[float]) -> dict:
    """unique-answer fraction, answer entropy, and the samples' mean token entropy."""
    n = len(answers)
    unique = len({"\0none" if a is None else a for a in answers})
    return {"unique_fraction": unique / n if n else 0.0, "answer_entropy": answer_entropy(answers),
            "mean_token_entropy": float(sum(token_entropies) / len(token_entropies)) if token_entropies else 0.0}
