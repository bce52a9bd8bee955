"""SQuAD v1.1 scoring, exactly as the official script, plus the eval aggregates hero reports.

Why a copy of the official metric: hero's F1 is compared with published SQuAD numbers,
so it must be the same function. The original hero code scored the set overlap against
the first gold answer only, which inflates repeated tokens and ignores the other
annotators; here, as in ``evaluate-v1.1.py``:

    normalize(s) = collapse whitespace(remove articles a/an/the(drop ASCII punctuation(lower(s))))
    EM(p, g)     = normalize(p) == normalize(g)
    F1(p, g)     = 2 P R / (P + R) on the token multisets (Counter intersection), 0 if none shared
    score(p, G)  = max over the gold answers g in G;  corpus score = 100 x mean over questions

One quirk kept on purpose: when both answers normalize to nothing (``"the"`` vs ``"a"``),
EM is 1 and F1 is 0, as in the official script.

The aggregates (F1 histogram, error modes, prior baselines) say *how* a model fails: a
decoder that learned only the answer prior scores ~10% on a 10-value type without
reading its prefix, so the checklist compares the model against those priors.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from expspec.kernels.atomic_io import parse_json, read_json
from expspec.kernels.errors import ExpspecError

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The official normalisation: lower, drop punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1_one(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    shared = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if shared == 0:
        return 0.0
    precision = shared / len(pred_tokens)
    recall = shared / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _golds(golds: str | Sequence[str]) -> list[str]:
    golds = [golds] if isinstance(golds, str) else list(golds)
    if not golds:
        raise ExpspecError("squad score: a question needs at least one gold answer")
    return golds


def squad_em(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 if the prediction matches any gold answer after normalisation, else 0.0."""
    return float(max(normalize_answer(prediction) == normalize_answer(g) for g in _golds(golds)))


def squad_f1(prediction: str, golds: str | Sequence[str]) -> float:
    """Token-multiset F1 against the best-matching gold answer, in [0, 1]."""
    return max(_f1_one(prediction, g) for g in _golds(golds))


# --- SQuAD v1.1 files -----------------------------------------------------------------------

@dataclass(frozen=True)
class SquadQuestion:
    """One question of a SQuAD v1.1 file, flattened with its context."""

    id: str
    context: str
    question: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]
    question_type: str

    def spans_match(self) -> bool:
        """Every answer is the context's text at its answer_start (extractive)."""
        return all(self.context[s:s + len(a)] == a for a, s in zip(self.answers, self.answer_starts))


_WH_WORDS = ("what", "which", "who", "whom", "whose", "when", "where", "why", "how")
_OUR_ID = re.compile(r"^(?:train|eval)-\d+-([a-z_]+)$")


def question_type_of(qa: Mapping) -> str:
    """The question's type: its ``question_type`` field (hero's generated data), the type
    in a hero id (``eval-00012-city``), else the first wh-word (real SQuAD), else ``other``."""
    if isinstance(qa.get("question_type"), str) and qa["question_type"]:
        return qa["question_type"]
    match = _OUR_ID.match(str(qa.get("id", "")))
    if match:
        return match.group(1)
    words = re.findall(r"[a-z]+", str(qa.get("question", "")).lower())
    return next((w for w in words if w in _WH_WORDS), "other")


def squad_questions(dataset: Mapping, where: str = "SQuAD data") -> list[SquadQuestion]:
    """Flatten and check a SQuAD v1.1 document (``{"data": [{"paragraphs": [...]}]}``)."""
    def need(cond: bool, path: str, expected: str) -> None:
        if not cond:
            raise ExpspecError(f"{where}: {path}: expected {expected}")

    need(isinstance(dataset, Mapping) and isinstance(dataset.get("data"), list), "data",
         'a SQuAD v1.1 document {"version": "1.1", "data": [...]}')
    out: list[SquadQuestion] = []
    seen: set[str] = set()
    for a, article in enumerate(dataset["data"]):
        need(isinstance(article, Mapping) and isinstance(article.get("paragraphs"), list),
             f"data[{a}].paragraphs", "a list of {context, qas}")
        for p, para in enumerate(article["paragraphs"]):
            at = f"data[{a}].paragraphs[{p}]"
            need(isinstance(para, Mapping) and isinstance(para.get("context"), str), f"{at}.context", "a string")
            need(isinstance(para.get("qas"), list), f"{at}.qas", "a list of {id, question, answers}")
            for q, qa in enumerate(para["qas"]):
                qat = f"{at}.qas[{q}]"
                need(isinstance(qa, Mapping) and isinstance(qa.get("id"), str) and qa["id"] not in seen,
                     f"{qat}.id", "a string id, unique in the file")
                need(isinstance(qa.get("question"), str), f"{qat}.question", "a string")
                answers = qa.get("answers")
                need(isinstance(answers, list) and len(answers) > 0 and all(
                    isinstance(x, Mapping) and isinstance(x.get("text"), str)
                    and isinstance(x.get("answer_start"), int) and not isinstance(x.get("answer_start"), bool)
                    for x in answers), f"{qat}.answers",
                    'a non-empty list of {"text": str, "answer_start": int} (SQuAD v1.1)')
                seen.add(qa["id"])
                out.append(SquadQuestion(qa["id"], para["context"], qa["question"],
                                         tuple(x["text"] for x in answers),
                                         tuple(x["answer_start"] for x in answers), question_type_of(qa)))
    need(len(out) > 0, "data", "at least one question")
    return out


def read_squad(path: str | Path) -> list[SquadQuestion]:
    """The questions of a SQuAD v1.1 JSON file (official dev-v1.1.json or hero's own)."""
    return squad_questions(read_json(path, "SQuAD file"), f"SQuAD file {path}")


def read_predictions(path: str | Path) -> dict[str, str]:
    """``{"id": ..., "prediction": ...}`` per line (JSONL), or the official ``{id: text}`` dict."""
    path = Path(path)
    if not path.is_file():
        raise ExpspecError(f"predictions {path}: file not found (expected JSONL of "
                           '{"id": ..., "prediction": ...} or a JSON {id: text} dict)')
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ExpspecError(f"predictions {path}: not UTF-8 text ({exc})") from None
    try:
        whole = parse_json(text)
    except json.JSONDecodeError:
        whole = None
    # the official {id: text} dict; a dict with an "id" key is one JSONL record instead
    if isinstance(whole, dict) and "id" not in whole and "prediction" not in whole:
        bad = next((k for k, v in whole.items() if not isinstance(v, str)), None)
        if bad is not None:
            raise ExpspecError(f"predictions {path}: id {bad!r}: expected a string prediction")
        return dict(whole)
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = parse_json(line)
        except json.JSONDecodeError:
            record = None
        if not (isinstance(record, dict) and isinstance(record.get("id"), str)
                and isinstance(record.get("prediction"), str)):
            raise ExpspecError(f"predictions {path}:{number}: expected "
                               '{"id": str, "prediction": str} on each line')
        if record["id"] in out:
            raise ExpspecError(f"predictions {path}:{number}: id {record['id']!r} appears twice")
        out[record["id"]] = record["prediction"]
    return out


def squad_scores(predictions: Mapping[str, str], questions: Sequence[SquadQuestion]) -> dict:
    """The official corpus scores, x100; unanswered questions score 0 (counted, not skipped)."""
    em = f1 = 0.0
    for q in questions:
        if q.id in predictions:
            em += squad_em(predictions[q.id], q.answers)
            f1 += squad_f1(predictions[q.id], q.answers)
    return {"exact_match": 100.0 * em / len(questions), "f1": 100.0 * f1 / len(questions)}


# --- eval aggregates ------------------------------------------------------------------------

F1_BINS = ("0", "(0,0.1]", "(0.1,0.5]", "(0.5,1]")


def f1_distribution(f1s: Iterable[float]) -> dict[str, int]:
    """How many examples fall in each F1 bin: 0, (0, 0.1], (0.1, 0.5], (0.5, 1]."""
    counts = dict.fromkeys(F1_BINS, 0)
    for f in f1s:
        counts[F1_BINS[0 if f <= 0 else 1 if f <= 0.1 else 2 if f <= 0.5 else 3]] += 1
    return counts


def first_f1_nonzero_idx(f1s: Sequence[float]) -> int | None:
    """Index (eval order) of the first example with F1 > 0; None when there is none."""
    return next((i for i, f in enumerate(f1s) if f > 0), None)


def is_repetition(prediction: str, tokens: Sequence | None = None, min_run: int = 3) -> bool:
    """A token or a word repeated ``min_run`` times in a row: the degenerate "thethethe" mode.

    With ``tokens`` (the decoded ids or pieces) runs of equal tokens count; from text alone,
    runs of equal words (case-folded) and a unit of >= 2 letters repeated inside a word."""
    def has_run(items: Sequence) -> bool:
        run = 1
        for prev, cur in zip(items, items[1:]):
            run = run + 1 if cur == prev else 1
            if run >= min_run:
                return True
        return False

    if tokens is not None and has_run(list(tokens)):
        return True
    words = prediction.lower().split()
    if has_run(words):
        return True
    repeated_unit = re.compile(rf"(\w{{2,}}?)\1{{{min_run - 1},}}")
    return any(repeated_unit.search(w) for w in words)


def error_modes(predictions: Sequence[str], golds: Sequence[Sequence[str]],
                tokens: Sequence[Sequence] | None = None) -> dict[str, dict[str, float]]:
    """Counts and rates of the failure modes, one mode per example, checked in this order:
    empty (blank), repetition (see ``is_repetition``, whatever its F1), wrong_entity
    (non-empty, no repetition, F1 = 0: a fluent answer that is not the gold one)."""
    counts = {"empty": 0, "repetition": 0, "wrong_entity": 0}
    for i, (pred, gold) in enumerate(zip(predictions, golds, strict=True)):
        if not pred.strip():
            counts["empty"] += 1
        elif is_repetition(pred, tokens[i] if tokens is not None else None):
            counts["repetition"] += 1
        elif squad_f1(pred, gold) == 0.0:
            counts["wrong_entity"] += 1
    n = max(len(predictions), 1)
    return {mode: {"count": c, "rate": c / n} for mode, c in counts.items()}


def most_frequent_answers(train: Sequence[SquadQuestion]) -> tuple[str, dict[str, str]]:
    """The most frequent training answer overall and per question type (ties: alphabetical)."""
    def top(answers: list[str]) -> str:
        counts = Counter(answers)
        return min(counts, key=lambda a: (-counts[a], a))

    if not train:
        raise ExpspecError("prior baselines: no training questions")
    by_type: dict[str, list[str]] = {}
    for q in train:
        by_type.setdefault(q.question_type, []).append(q.answers[0])
    return top([q.answers[0] for q in train]), {t: top(a) for t, a in by_type.items()}


def prior_baselines(train: Sequence[SquadQuestion], evaluation: Sequence[SquadQuestion]) -> dict:
    """Mean EM/F1 (fractions) on ``evaluation`` of two models that never read the context:
    always the most frequent training answer, and the most frequent one of the question's
    type (an unseen type falls back to the overall answer). A latent model must beat both."""
    overall, per_type = most_frequent_answers(train)
    n = len(evaluation)
    if n == 0:
        raise ExpspecError("prior baselines: no evaluation questions")
    typed = [per_type.get(q.question_type, overall) for q in evaluation]
    return {
        "overall": {"answer": overall,
                    "em": sum(squad_em(overall, q.answers) for q in evaluation) / n,
                    "f1": sum(squad_f1(overall, q.answers) for q in evaluation) / n},
        "per_type": {"answers": dict(sorted(per_type.items())),
                     "em": sum(squad_em(a, q.answers) for a, q in zip(typed, evaluation)) / n,
                     "f1": sum(squad_f1(a, q.answers) for a, q in zip(typed, evaluation)) / n},
    }


def eval_aggregates(predictions: Sequence[str], golds: Sequence[Sequence[str]],
                    tokens: Sequence[Sequence] | None = None) -> dict:
    """Everything hero's eval reports about a list of predictions (eval order kept).

    ``mean_em``/``mean_f1`` are fractions (the checklist's scale); ``exact_match``/``f1``
    the official x100 corpus scores of the same numbers."""
    if len(predictions) != len(golds) or not predictions:
        raise ExpspecError(f"eval aggregates: expected as many predictions as questions (> 0), "
                           f"got {len(predictions)} and {len(golds)}")
    ems = [squad_em(p, g) for p, g in zip(predictions, golds)]
    f1s = [squad_f1(p, g) for p, g in zip(predictions, golds)]
    n = len(f1s)
    return {
        "n": n, "mean_em": sum(ems) / n, "mean_f1": sum(f1s) / n,
        "exact_match": 100.0 * sum(ems) / n, "f1": 100.0 * sum(f1s) / n,
        "n_f1_nonzero": sum(f > 0 for f in f1s), "first_f1_nonzero_idx": first_f1_nonzero_idx(f1s),
        "f1_distribution": f1_distribution(f1s), "error_modes": error_modes(predictions, golds, tokens),
        "per_example": [{"em": e, "f1": f} for e, f in zip(ems, f1s)],
    }
