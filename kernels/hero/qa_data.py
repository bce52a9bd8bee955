"""Hero's QA set: generated deterministically, written as SQuAD v1.1 JSON.

Why generated: the question is whether a latent prefix carries *who has what*. A real
QA set mixes that with world knowledge and answer styles; this one isolates it:

* extractive - every answer is a span of its context, at ``answer_start``;
* eval people are never seen in training (their first names are held out), so a model
  cannot answer from memorised people, only from the prefix;
* answers come from closed per-type sets that training covers (5 fact types x 10 values,
  each a leading-space word that is ONE SmolLM2 token, so first-token accuracy is the
  answer's accuracy), plus a two-word "vehicle" type so F1 measures partial credit;
* 1-2 facts per context; in a two-fact context the other fact is often of the same type
  about another person, so picking the right value needs the binding, not the type.

The type of each question is in its id (``eval-000012-city``) and its ``question_type``
field, which the prior baselines (``squad.prior_baselines``) group by.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

from expspec.kernels.atomic_io import write_json_atomic
from expspec.kernels.errors import ExpspecError


@dataclass(frozen=True)
class FactType:
    statement: str  # "{name} ... {value} ...": the context sentence
    question: str  # "... {name} ...?"
    values: tuple[str, ...]  # the closed answer set
    single_token: bool  # each value is one decoder token after a leading space


FACT_TYPES: dict[str, FactType] = {
    "pet": FactType("{name}'s pet is a {value}.", "What pet does {name} have?",
                    ("dog", "cat", "horse", "rabbit", "parrot", "goat", "turtle", "snake", "pig", "duck"), True),
    "color": FactType("{name}'s favorite color is {value}.", "What is {name}'s favorite color?",
                      ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "brown"),
                      True),
    "city": FactType("{name} lives in {value}.", "Which city does {name} live in?",
                     ("Paris", "London", "Berlin", "Rome", "Madrid", "Tokyo", "Boston", "Dublin", "Chicago",
                      "Moscow"), True),
    "job": FactType("{name} works as a {value}.", "What is {name}'s job?",
                    ("teacher", "doctor", "farmer", "baker", "nurse", "lawyer", "pilot", "driver", "writer",
                     "singer"), True),
    "sport": FactType("{name} plays {value} every week.", "Which sport does {name} play?",
                      ("tennis", "football", "golf", "hockey", "soccer", "basketball", "rugby", "cricket",
                       "baseball", "boxing"), True),
    # two words that share parts, so a near miss ("small car" for "small boat") earns F1 0.5
    "vehicle": FactType("{name} owns a {value}.", "What does {name} own?",
                        ("small boat", "big boat", "fast boat", "small car", "big car", "fast car", "new truck",
                         "big truck", "new bike", "fast bike"), False),
}
SINGLE_TOKEN_TYPES = tuple(t for t, f in FACT_TYPES.items() if f.single_token)
MULTI_TOKEN_TYPES = tuple(t for t, f in FACT_TYPES.items() if not f.single_token)

FIRST_NAMES = ("Alice", "Bruno", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas",
               "Kira", "Leo", "Maya", "Nico", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara",
               "Umar", "Vera", "Wade", "Xena", "Yusuf", "Zoe", "Anton", "Bianca", "Cyrus", "Dalia",
               "Emil", "Farah", "Gideon", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Milo", "Nadia")
LAST_NAMES = ("Abbott", "Brennan", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ito",
              "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quiroga",
              "Rossi", "Silva", "Tanaka")
EVAL_FIRST_NAMES = 10  # first names held out for eval: 10 x 20 eval people, 30 x 20 training people
MAX_FACTS = 5  # facts per context at most (a context longer than that is not what hero asks)


class QASplits(NamedTuple):
    train: dict  # SQuAD v1.1 document
    eval: dict


def split_people(seed: int) -> tuple[list[str], list[str]]:
    """(training people, eval people): full names whose first names never cross the split."""
    firsts = list(FIRST_NAMES)
    random.Random(f"hero-qa-names-{seed}").shuffle(firsts)
    train_firsts, eval_firsts = sorted(firsts[EVAL_FIRST_NAMES:]), sorted(firsts[:EVAL_FIRST_NAMES])
    return ([f"{first} {last}" for first in train_firsts for last in LAST_NAMES],
            [f"{first} {last}" for first in eval_firsts for last in LAST_NAMES])


def _pick_type(rng: random.Random, multi_token_share: float, allowed: Sequence[str]) -> str:
    multi = [t for t in MULTI_TOKEN_TYPES if t in allowed]
    single = [t for t in SINGLE_TOKEN_TYPES if t in allowed]
    if multi and (not single or rng.random() < multi_token_share):
        return rng.choice(multi)
    return rng.choice(single)


def _context(facts: list[tuple[str, str, str]], asked: int) -> tuple[str, int]:
    """The facts' sentences joined by spaces, and where the asked fact's value starts."""
    parts, start, offset = [], -1, 0
    for i, (person, qtype, value) in enumerate(facts):
        before, after = FACT_TYPES[qtype].statement.split("{value}")
        before = before.format(name=person)
        if i == asked:
            start = offset + len(before)
        sentence = before + value + after.format(name=person)
        parts.append(sentence)
        offset += len(sentence) + 1
    return " ".join(parts), start


def _split(name: str, n: int, rng: random.Random, people: list[str], answer_values: dict[str, list[str]] | None,
           multi_token_share: float, max_facts: int, same_type_share: float) -> tuple[dict, dict[str, set[str]]]:
    """One split's SQuAD document and the answer values it asked, per type.

    ``answer_values=None`` (training): each type's answers are dealt from a shuffled deck of
    its values, so every value is asked once per 10 questions of the type. Otherwise (eval)
    answers are drawn from the given per-type values, the ones training asked."""
    types = list(FACT_TYPES) if answer_values is None else [t for t in FACT_TYPES if answer_values.get(t)]
    decks: dict[str, list[str]] = {t: [] for t in FACT_TYPES}
    asked_values: dict[str, set[str]] = {t: set() for t in FACT_TYPES}
    paragraphs = []
    for i in range(n):
        qtype = _pick_type(rng, multi_token_share, types)
        if answer_values is None:
            if not decks[qtype]:
                decks[qtype] = list(FACT_TYPES[qtype].values)
                rng.shuffle(decks[qtype])
            value = decks[qtype].pop()
        else:
            value = rng.choice(sorted(answer_values[qtype]))
        asked_values[qtype].add(value)
        persons = rng.sample(people, rng.randint(1, max_facts))
        facts = [(persons[0], qtype, value)]
        for other in persons[1:]:  # distractors: another person, often the same fact type
            otype = qtype if rng.random() < same_type_share else _pick_type(rng, multi_token_share, list(FACT_TYPES))
            facts.append((other, otype, rng.choice([v for v in FACT_TYPES[otype].values if v != value])))
        rng.shuffle(facts)
        asked = next(j for j, fact in enumerate(facts) if fact[0] == persons[0])
        context, start = _context(facts, asked)
        paragraphs.append({"context": context, "qas": [{
            "id": f"{name}-{i:06d}-{qtype}", "question_type": qtype,
            "question": FACT_TYPES[qtype].question.format(name=persons[0]),
            "answers": [{"text": value, "answer_start": start}]}]})
    return {"version": "1.1", "data": [{"title": f"hero_qa_{name}", "paragraphs": paragraphs}]}, asked_values


def generate_qa(n_train: int, n_eval: int, seed: int, multi_token_share: float = 0.2, max_facts: int = 2,
                same_type_share: float = 0.5) -> QASplits:
    """Training and eval SQuAD v1.1 documents, one question per context, the same for a seed.

    ``multi_token_share``: share of questions about the two-word type; ``max_facts``: facts
    per context drawn from 1..max_facts; ``same_type_share``: chance that a distractor fact
    has the asked type (so only the person tells the answers apart)."""
    if n_train < 1 or n_eval < 0:
        raise ExpspecError(f"generate_qa: expected n_train >= 1 and n_eval >= 0, got {n_train}, {n_eval}")
    if not 0.0 <= multi_token_share <= 1.0 or not 0.0 <= same_type_share <= 1.0:
        raise ExpspecError(f"generate_qa: multi_token_share and same_type_share must be in [0, 1], "
                           f"got {multi_token_share}, {same_type_share}")
    if not 1 <= max_facts <= MAX_FACTS:
        raise ExpspecError(f"generate_qa: max_facts must be in 1..{MAX_FACTS}, got {max_facts}")
    train_people, eval_people = split_people(seed)
    params = (n_train, n_eval, seed, multi_token_share, max_facts, same_type_share)
    train, covered = _split("train", n_train, random.Random(f"hero-qa-train-{params}"), train_people, None,
                            multi_token_share, max_facts, same_type_share)
    evaluation, _ = _split("eval", n_eval, random.Random(f"hero-qa-eval-{params}"), eval_people,
                           {t: sorted(v) for t, v in covered.items()}, multi_token_share, max_facts,
                           same_type_share)
    for doc in (train, evaluation):
        doc["hero_qa"] = {"seed": seed, "n_train": n_train, "n_eval": n_eval, "max_facts": max_facts,
                          "multi_token_share": multi_token_share, "same_type_share": same_type_share}
    return QASplits(train, evaluation)


def write_qa(out_dir: str | Path, splits: QASplits) -> tuple[Path, Path]:
    """``train.json`` and ``dev.json`` (the official script's name for the eval file)."""
    out_dir = Path(out_dir)
    return write_json_atomic(out_dir / "train.json", splits.train), write_json_atomic(out_dir / "dev.json",
                                                                                      splits.eval)


def multi_token_values(tokenizer, values: Sequence[str] | None = None) -> list[str]:
    """The values (default: every single-token type's) that are NOT one token after a space
    for this tokenizer: empty for SmolLM2; another decoder may split some, which makes
    first-token accuracy a prefix-of-answer accuracy for those values."""
    if values is None:
        values = [v for t in SINGLE_TOKEN_TYPES for v in FACT_TYPES[t].values]
    return [v for v in values if len(tokenizer.encode(" " + v, add_special_tokens=False)) != 1]


QA_SOURCES = "generated | hf:NAME (a SQuAD-format dataset, e.g. hf:rajpurkar/squad) | DIR (train.json + dev.json)"


def load_questions(source: str, n_train: int, n_eval: int, seed: int, multi_token_share: float = 0.2,
                   max_facts: int = 2) -> tuple[list, list]:
    """(training questions, eval questions) for ``hero.qa_dataset``.

    ``generated``: this module's set. ``hf:NAME``: a Hugging Face dataset in SQuAD's columns
    (id, context, question, answers{text, answer_start}), its train and validation splits;
    the first n_train / n_eval of each (SQuAD is already shuffled). ``DIR``: a folder with
    SQuAD v1.1 ``train.json`` and ``dev.json`` (e.g. written by ``expspec hero data`` or
    downloaded where there is a network)."""
    from expspec.kernels.hero.squad import SquadQuestion, question_type_of, read_squad, squad_questions

    if source == "generated":
        splits = generate_qa(n_train, n_eval, seed, multi_token_share, max_facts)
        return squad_questions(splits.train, "hero train"), squad_questions(splits.eval, "hero eval")
    if source.startswith("hf:"):
        try:
            from datasets import load_dataset

            data = load_dataset(source[3:])
        except Exception as exc:  # offline, unknown name: say what to do
            raise ExpspecError(f"hero.qa_dataset {source}: cannot load ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:160]}); download it where there is a network "
                               f"or pass a folder with train.json and dev.json") from None

        def questions(split: str, n: int) -> list:
            rows = data[split].select(range(min(n, len(data[split]))))
            return [SquadQuestion(r["id"], r["context"], r["question"], tuple(r["answers"]["text"]),
                                  tuple(r["answers"]["answer_start"]), question_type_of(r)) for r in rows]

        return questions("train", n_train), questions("validation", n_eval)
    folder = Path(source)
    if not folder.is_dir():
        raise ExpspecError(f"hero.qa_dataset {source!r}: expected {QA_SOURCES}")
    return read_squad(folder / "train.json")[:n_train], read_squad(folder / "dev.json")[:n_eval]
