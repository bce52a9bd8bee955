"""pass@k (kernels/bon/scoring.py) is the unbiased estimator 1 - C(n-c, k)/C(n, k), and the
scorers and diversity measures do what their docstrings say."""

import math
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from expspec.kernels.bon.scoring import (SCORERS, answer_entropy, diversity, get_scorer, parse_number, pass_at_k,
                                         register_scorer)
from expspec.kernels.errors import ExpspecError


@st.composite
def n_c_k(draw, max_n=40):
    n = draw(st.integers(1, max_n))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@pytest.mark.property
@given(n_c_k())
@example((16, 1, 16)).via("pass@n with one correct sample is 1")
@example((200, 3, 7)).via("large n: the product form, not the binomials")
def test_equals_the_exact_binomial_ratio(nck):
    n, c, k = nck
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)


@pytest.mark.property
@given(n_c_k())
def test_bounded_and_monotone_in_c_and_k(nck):
    n, c, k = nck
    value = pass_at_k(n, c, k)
    assert 0.0 <= value <= 1.0
    if c < n:
        assert pass_at_k(n, c + 1, k) >= value - 1e-12
    if k < n:
        assert pass_at_k(n, c, k + 1) >= value - 1e-12


@pytest.mark.property
@given(n_c_k())
def test_pass_at_n_is_one_iff_some_sample_is_correct(nck):
    n, c, _ = nck
    assert (pass_at_k(n, c, n) == 1.0) == (c > 0)
    assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)  # pass@1 is the fraction correct


@pytest.mark.parametrize("args, word", [((8, 2, 16), "k=16"), ((8, 9, 1), "0 <= c <= n"), ((0, 0, 1), "n >= 1"),
                                        ((8, 2, 0), "k=0"), ((8, 2.0, 1), "c must be an integer"),
                                        ((8, True, 1), "c must be an integer")])
def test_bad_arguments(args, word):
    with pytest.raises(ExpspecError, match=word):
        pass_at_k(*args)


@pytest.mark.parametrize("reply, answer", [("23 + 45 = 68", "68"), ("The answer is 7.", "7"), ("18\n\nThis is a", "18"),
                                           ("8 + 9 is 17", "17"), ("12 * 4 = 48 in Python 3.", "48"),
                                           ("There are 1,234 apples", "1234"), ("no idea", None),
                                           ("It equals -3.5 degrees", "-3.5"),
                                           # the first answer, not a later remark's number
                                           ("The sum is 68, which is 8 more than 60", "68"),
                                           ("68, which is 8 more than 60", "68"),
                                           # operands (echoes of the question) are never the answer
                                           ("23 + 45 =", None), ("To find 47 + 38, we need", None),
                                           ("What is 7 + 5? The answer is 12.", "12"), ("81-36=45", "45"),
                                           ("12 * 13 = 12 * 10 + 12 * 3 = 156", "156"), ("(3 + 4) * 2 = 14", "14"),
                                           # markdown bold and a list bullet are no operators
                                           ("**42**", "42"), ("- 42", "42"),
                                           ("The word has 6 letters.", "6"), ("-5", "-5")])
def test_numeric_parse(reply, answer):
    assert parse_number(reply) == answer


def test_scorers():
    numeric, exact, contains = get_scorer("numeric"), get_scorer("exact"), get_scorer("contains")
    assert numeric.score("23 + 45 = 68.0", "68") == ("68.0", 1.0)
    assert numeric.score("It is 69", "68") == ("69", 0.0)
    assert exact.score("  Paris. \nmore", "paris")[1] == 1.0 and exact.score("Paris is big", "paris")[1] == 0.0
    assert contains.score("I think it is Paris!", "paris")[1] == 1.0
    register_scorer("always_test", lambda r: r, lambda a, g: True)
    try:
        assert get_scorer("always_test").score("x", "y")[1] == 1.0
    finally:
        SCORERS.pop("always_test")
    with pytest.raises(ExpspecError, match="already exists"):
        register_scorer("numeric", lambda r: r, lambda a, g: True)
    with pytest.raises(ExpspecError, match="expected one of"):
        get_scorer("fuzzy")


def test_diversity():
    assert answer_entropy(["1", "1", "1"]) == 0.0
    assert answer_entropy(["1", "2"]) == pytest.approx(math.log(2))
    d = diversity(["1", None, None, "2"], [1.0, 3.0])
    assert d["unique_fraction"] == 0.75 and d["mean_token_entropy"] == 2.0
    assert d["answer_entropy"] == pytest.approx(-(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5)))
