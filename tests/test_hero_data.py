"""Hero's generated QA set: extractive SQuAD v1.1, unseen eval people, closed answer sets that
training covers, deterministic per seed, some multi-token answers; `expspec hero data`."""

import json
import re

import pytest

from expspec.kernels.cli import main
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero.qa_data import FACT_TYPES, SINGLE_TOKEN_TYPES, generate_qa, multi_token_values, \
    split_people
from expspec.kernels.hero.squad import normalize_answer, squad_questions


@pytest.fixture(scope="module")
def splits():
    return generate_qa(n_train=600, n_eval=200, seed=7)


@pytest.fixture(scope="module")
def questions(splits):
    return squad_questions(splits.train, "train"), squad_questions(splits.eval, "eval")


def _person(question: str) -> str:
    for fact in FACT_TYPES.values():  # invert the question template
        before, after = fact.question.split("{name}")
        if question.startswith(before) and question.endswith(after):
            return question[len(before):len(question) - len(after)]
    raise AssertionError(question)


def test_every_answer_is_the_span_at_its_answer_start(questions):
    for q in questions[0] + questions[1]:
        assert q.spans_match(), q
        assert len(q.answers) == 1 and q.question_type in FACT_TYPES
        assert 1 <= q.context.count(".") <= 2  # 1-2 facts per context


def test_eval_people_are_never_seen_in_training(questions):
    train, evaluation = questions
    train_people = {_person(q.question) for q in train}
    eval_people = {_person(q.question) for q in evaluation}
    assert train_people and eval_people and not train_people & eval_people
    assert not {p.split()[0] for p in train_people} & {p.split()[0] for p in eval_people}  # first names too
    train_pool, eval_pool = split_people(7)
    assert not set(train_pool) & set(eval_pool)
    for q in evaluation:  # nobody in an eval context, distractors included, is a training person
        assert not any(p in q.context for p in train_pool)


def test_every_eval_answer_value_occurs_in_training(questions):
    train, evaluation = questions
    seen = {(q.question_type, q.answers[0]) for q in train}
    assert all((q.question_type, q.answers[0]) in seen for q in evaluation)
    assert {q.answers[0] for q in train} == {v for f in FACT_TYPES.values() for v in f.values}  # all covered
    for q in train + evaluation:
        assert q.answers[0] in FACT_TYPES[q.question_type].values  # closed per-type sets


def test_question_type_is_in_the_id_and_field(splits):
    for para in splits.eval["data"][0]["paragraphs"]:
        qa = para["qas"][0]
        assert qa["id"].startswith("eval-") and qa["id"].endswith("-" + qa["question_type"])


def test_deterministic_for_a_seed_and_different_across_seeds(splits):
    again = generate_qa(n_train=600, n_eval=200, seed=7)
    assert json.dumps(again.train, sort_keys=True) == json.dumps(splits.train, sort_keys=True)
    assert json.dumps(again.eval, sort_keys=True) == json.dumps(splits.eval, sort_keys=True)
    other = generate_qa(n_train=600, n_eval=200, seed=8)
    assert json.dumps(other.train, sort_keys=True) != json.dumps(splits.train, sort_keys=True)


def test_some_answers_are_multi_token_and_binding_is_needed(questions):
    train, evaluation = questions
    for qs in (train, evaluation):
        multi = [q for q in qs if len(normalize_answer(q.answers[0]).split()) > 1]
        assert 0.1 * len(qs) < len(multi) < 0.35 * len(qs)  # qa_multi_token_share = 0.2
    # two facts of the asked type about two people: only the person tells the answer
    same_type = [q for q in evaluation
                 if sum(bool(re.search(rf"\b{v}\b", q.context)) for v in FACT_TYPES[q.question_type].values) >= 2]
    assert len(same_type) > 0.1 * len(evaluation)


def test_bad_sizes_are_one_line_errors():
    with pytest.raises(ExpspecError, match="n_train >= 1"):
        generate_qa(0, 10, seed=1)
    with pytest.raises(ExpspecError, match="max_facts must be in 1..5"):
        generate_qa(10, 10, seed=1, max_facts=9)


def test_hero_data_cli_writes_squad_files(tmp_path, capsys):
    out = tmp_path / "qa"
    rc = main(["hero", "data", "--out-dir", str(out), "--set", "hero.stage_a_samples=40",
               "--set", "hero.stage_b_samples=60", "--set", "hero.eval_samples=20"])
    assert rc == 0 and "(60 questions)" in capsys.readouterr().out
    train = squad_questions(json.loads((out / "train.json").read_text()))
    dev = squad_questions(json.loads((out / "dev.json").read_text()))
    assert (len(train), len(dev)) == (60, 20)
    (tmp_path / "file").write_text("x")
    assert main(["hero", "data", "--out-dir", str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.slow
def test_single_token_values_are_one_smollm2_token():
    transformers = pytest.importorskip("transformers")
    from expspec.kernels.models.pretrained import resolve_model_path

    try:
        path = resolve_model_path("smollm2-135m-instruct")
    except ExpspecError as err:
        pytest.skip(f"SmolLM2 not available: {err}")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    assert multi_token_values(tokenizer) == []
    assert len(SINGLE_TOKEN_TYPES) == 5 and all(len(FACT_TYPES[t].values) == 10 for t in SINGLE_TOKEN_TYPES)
    vehicles = FACT_TYPES["vehicle"].values
    assert multi_token_values(tokenizer, vehicles) == list(vehicles)  # the two-word type really is
