"""Hero's SQuAD v1.1 scorer: the official metric's laws, the eval aggregates, `expspec qa score`."""

import json
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from expspec.kernels.cli import main
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero.squad import (SquadQuestion, error_modes, eval_aggregates, f1_distribution,
                                        first_f1_nonzero_idx, is_repetition, normalize_answer, prior_baselines,
                                        question_type_of, squad_em, squad_f1, squad_questions)

WORDS = st.sampled_from(["paris", "red", "cat", "new", "truck", "big", "boat", "x1", "denver", "broncos"])
ANSWERS = st.lists(WORDS, min_size=0, max_size=6).map(" ".join)
NONEMPTY = st.lists(WORDS, min_size=1, max_size=6).map(" ".join)
PUNCT = st.sampled_from(list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"))
law = settings(deadline=None, max_examples=150, derandomize=True)


# --- the official metric ------------------------------------------------------------------

def test_official_normalization_and_examples():
    assert normalize_answer("  The  Denver-Broncos!\n") == "denverbroncos"
    assert normalize_answer("An apple, a day") == "apple day"
    assert squad_em("the Broncos.", ["Denver Broncos", "Broncos"]) == 1.0
    assert squad_f1("Denver", "Denver Broncos") == pytest.approx(2 / 3)
    assert squad_f1("Broncos", ["Denver Broncos", "Broncos"]) == 1.0  # max over golds, not the first
    assert squad_f1("cat cat", "cat sat") == pytest.approx(0.5)  # multiset: one cat shared, not set overlap
    assert squad_f1("Paris", "London") == 0.0
    # the official quirk: both normalise to nothing -> EM 1, F1 0
    assert squad_em("the", "a") == 1.0 and squad_f1("the", "a") == 0.0


@pytest.mark.property
@law
@given(pred=ANSWERS, golds=st.lists(ANSWERS, min_size=1, max_size=3))
def test_f1_is_a_fraction_and_the_max_over_golds(pred, golds):
    f1 = squad_f1(pred, golds)
    assert 0.0 <= f1 <= 1.0
    assert f1 == max(squad_f1(pred, [g]) for g in golds)
    assert squad_em(pred, golds) == max(squad_em(pred, [g]) for g in golds)


@pytest.mark.property
@law
@given(a=ANSWERS, b=ANSWERS)
def test_symmetric_for_one_gold(a, b):
    assert squad_f1(a, [b]) == pytest.approx(squad_f1(b, [a]))
    assert squad_em(a, [b]) == squad_em(b, [a])


@pytest.mark.property
@law
@given(pred=ANSWERS, gold=NONEMPTY)
@example(pred="the paris", gold="Paris")
def test_exact_match_implies_f1_one(pred, gold):
    if squad_em(pred, [gold]) == 1.0 and normalize_answer(gold):  # see the official quirk above
        assert squad_f1(pred, [gold]) == 1.0


@pytest.mark.property
@law
@given(words=st.lists(WORDS, min_size=1, max_size=6), gold=ANSWERS, data=st.data())
def test_invariant_to_case_punctuation_articles_whitespace(words, gold, data):
    plain = " ".join(words)
    noisy_words = []
    for w in words:
        w = "".join(c.upper() if data.draw(st.booleans()) else c for c in w)  # case
        w = w + data.draw(st.text(PUNCT, max_size=2))  # punctuation
        noisy_words.append(w)
        noisy_words += data.draw(st.lists(st.sampled_from(["a", "An", "THE"]), max_size=1))  # articles
    noisy = data.draw(st.sampled_from([" ", "  ", "\t", " \n "])).join(noisy_words)  # whitespace
    assert normalize_answer(noisy) == normalize_answer(plain)
    assert squad_f1(noisy, [gold]) == squad_f1(plain, [gold])
    assert squad_em(noisy, [gold]) == squad_em(plain, [gold])


@pytest.mark.property
@law
@given(word=WORDS, n=st.integers(1, 8))
def test_duplicates_count_as_a_multiset(word, n):
    # n copies against one: precision 1/n, recall 1 -> 2/(n+1); a set overlap would say 1
    assert squad_f1(" ".join([word] * n), [word]) == pytest.approx(2 / (n + 1))


# --- aggregates -----------------------------------------------------------------------------

def test_f1_bins_first_nonzero_and_error_modes():
    assert f1_distribution([0.0, 0.05, 0.1, 0.3, 0.5, 0.51, 1.0]) == {
        "0": 1, "(0,0.1]": 2, "(0.1,0.5]": 2, "(0.5,1]": 2}
    assert first_f1_nonzero_idx([0.0, 0.0, 0.4, 1.0]) == 2 and first_f1_nonzero_idx([0.0]) is None
    assert is_repetition("thethethe") and is_repetition("Paris paris PARIS") and is_repetition("x", tokens=[5, 5, 5])
    assert not is_repetition("small boat") and not is_repetition("the the") and not is_repetition("Mississippi")
    modes = error_modes(["", "the the the", "London", "Paris", "red red red"],
                        [["Paris"]] * 4 + [["red"]])
    assert {m: v["count"] for m, v in modes.items()} == {"empty": 1, "repetition": 2, "wrong_entity": 1}
    assert modes["repetition"]["rate"] == pytest.approx(0.4)
    agg = eval_aggregates(["Paris", "small car", ""], [["Paris"], ["small boat"], ["cat"]])
    assert agg["mean_f1"] == pytest.approx(0.5) and agg["f1"] == pytest.approx(50.0)
    assert agg["exact_match"] == pytest.approx(100 / 3) and agg["n_f1_nonzero"] == 2
    assert agg["first_f1_nonzero_idx"] == 0 and agg["f1_distribution"]["(0.1,0.5]"] == 1
    with pytest.raises(ExpspecError, match="as many predictions"):
        eval_aggregates(["a"], [])


def _q(qid, answer, qtype):
    return SquadQuestion(qid, f"ctx {answer}", "q?", (answer,), (4,), qtype)


def test_prior_baselines_overall_and_per_type():
    train = [_q("t1", "Paris", "city"), _q("t2", "Paris", "city"), _q("t3", "Rome", "city"),
             _q("t4", "red", "color"), _q("t5", "blue", "color"), _q("t6", "blue", "color")]
    evaluation = [_q("e1", "Paris", "city"), _q("e2", "blue", "color"), _q("e3", "red", "color"),
                  _q("e4", "cat", "pet")]  # an unseen type falls back to the overall answer
    priors = prior_baselines(train, evaluation)
    assert priors["overall"]["answer"] == "Paris"  # tie Paris/blue (2 each): alphabetical
    assert priors["overall"]["em"] == pytest.approx(0.25)
    assert priors["per_type"]["answers"] == {"city": "Paris", "color": "blue"}
    assert priors["per_type"]["em"] == pytest.approx(0.5) and priors["per_type"]["f1"] == pytest.approx(0.5)


def test_question_type_from_field_id_or_wh_word():
    assert question_type_of({"id": "x", "question_type": "pet"}) == "pet"
    assert question_type_of({"id": "eval-000012-city"}) == "city"
    assert question_type_of({"id": "56be4db0acb8001400a502ec", "question": "Which NFL team won?"}) == "which"
    assert question_type_of({"id": "z", "question": "Name the team."}) == "other"


# --- expspec qa score -----------------------------------------------------------------------

GOLD = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
    {"context": "The Denver Broncos won. The cat sat.", "qas": [
        {"id": "q1", "question": "Who won?", "answers": [{"text": "Denver Broncos", "answer_start": 4},
                                                         {"text": "Broncos", "answer_start": 11}]},
        {"id": "q2", "question": "What happened?", "answers": [{"text": "The cat sat", "answer_start": 24}]}]},
    {"context": "Paris.", "qas": [{"id": "q3", "question": "Where?",
                                    "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}
PREDS = {"q1": "The Broncos!", "q2": "cat cat"}  # q3 unanswered: scores 0, still counted
# by hand: EM = (1 + 0 + 0) / 3; F1 = (1 + 0.5 + 0) / 3 (q2: one "cat" shared, P = R = 1/2)
EXPECTED = {"exact_match": 100 / 3, "f1": 50.0}


@pytest.fixture
def gold_file(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(GOLD))
    return path


@pytest.mark.parametrize("form", ["jsonl", "official"])
def test_qa_score_matches_the_hand_computed_example(tmp_path, gold_file, capsys, form):
    pred = tmp_path / f"pred.{form}"
    if form == "jsonl":
        pred.write_text("".join(json.dumps({"id": k, "prediction": v}) + "\n" for k, v in PREDS.items()))
    else:
        pred.write_text(json.dumps(PREDS))
    out = tmp_path / "score.json"
    assert main(["qa", "score", "--pred", str(pred), "--gold", str(gold_file), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed == pytest.approx(EXPECTED) and json.loads(out.read_text()) == pytest.approx(EXPECTED)
    assert "1 of 3 questions unanswered" in captured.err


@pytest.mark.parametrize("pred_text, gold, message", [
    ('{"id": "q1", "prediction": "x"}\nnot json\n', GOLD, "pred.jsonl:2: expected"),
    ('{"id": "q1", "answer": "x"}\n', GOLD, "pred.jsonl:1: expected"),
    ('{"id": "q1", "prediction": "x"}\n{"id": "q1", "prediction": "y"}\n', GOLD, "appears twice"),
    ('{"q1": 3}', GOLD, "id 'q1': expected a string prediction"),
    ('{"q1": "x"}', {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "q1", "question": "?",
                                                                         "answers": []}]}]}]},
     r"data\[0\].paragraphs\[0\].qas\[0\].answers: expected a non-empty list"),
    ('{"q1": "x"}', {"version": "1.1"}, "data: expected a SQuAD v1.1 document"),
])
def test_qa_score_bad_files_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, pred_text, gold, message):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(pred_text)
    gold_path = tmp_path / "dev.json"
    gold_path.write_text(json.dumps(gold))
    out = tmp_path / "score.json"
    rc = main(["qa", "score", "--pred", str(pred), "--gold", str(gold_path), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("expspec: error:")
    assert re.search(message, err), err
    assert not out.exists()


def test_qa_score_missing_files(tmp_path, gold_file, capsys):
    assert main(["qa", "score", "--pred", str(tmp_path / "none.jsonl"), "--gold", str(gold_file)]) == 2
    assert "none.jsonl: file not found" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["qa", "score", "--pred", str(tmp_path / "bad.json"), "--gold", str(tmp_path / "bad.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_squad_questions_rejects_duplicate_ids():
    doc = {"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "a", "question": "?", "answers": [{"text": "c", "answer_start": 0}]}] * 2}]}]}
    with pytest.raises(ExpspecError, match=r"qas\[1\].id: expected a string id, unique"):
        squad_questions(doc)


def test_qa_priors_cli(tmp_path, gold_file, capsys):
    assert main(["qa", "priors", "--train", str(gold_file), "--gold", str(gold_file)]) == 0
    priors = json.loads(capsys.readouterr().out)
    assert set(priors) == {"overall", "per_type"} and 0 <= priors["per_type"]["f1"] <= 1
