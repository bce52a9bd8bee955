"""Hero's schedules: scheduled sampling monotone and floored, first-token weight, LR, step counts;
the hero family's knobs resolve, and a bad word or value is one error naming the knob."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expspec.kernels.config import resolve_config, resolve_scale
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero.schedules import (first_token_weight_at, linear_decay_for, lr_at, optimizer_steps,
                                            teacher_forcing_prob)

law = settings(deadline=None, max_examples=150, derandomize=True)
EPS_MIN = st.floats(0.0, 1.0)
# (schedule, k, c) whose parameters anneal: the ranges check_sampling_schedule admits
SCHEDULES = st.one_of(
    st.tuples(st.just("linear"), st.floats(0.01, 2.0), st.floats(0.0, 0.1)),
    st.tuples(st.just("exponential"), st.floats(0.5, 1.0), st.just(0.0)),
    st.tuples(st.just("inverse_sigmoid"), st.floats(1.0, 2000.0), st.just(0.0)),
    st.tuples(st.just("none"), st.just(1.0), st.just(0.0)),
)


@pytest.mark.property
@law
@given(sched=SCHEDULES, eps_min=EPS_MIN, step=st.integers(0, 100_000), later=st.integers(0, 100_000))
def test_sampling_schedules_are_monotone_and_floored(sched, eps_min, step, later):
    schedule, k, c = sched
    eps = teacher_forcing_prob(step, schedule, k, c, eps_min)
    assert eps_min <= eps <= 1.0
    assert teacher_forcing_prob(step + later, schedule, k, c, eps_min) <= eps


def test_sampling_schedules_follow_bengio_formulas():
    assert teacher_forcing_prob(100, "linear", 1.0, 0.001, 0.5) == pytest.approx(0.9)
    assert teacher_forcing_prob(10_000, "linear", 1.0, 0.001, 0.5) == 0.5  # the plan's floor
    assert teacher_forcing_prob(3, "exponential", 0.9, 0.0, 0.0) == pytest.approx(0.729)
    assert teacher_forcing_prob(10, "inverse_sigmoid", 10.0, 0.0, 0.0) == pytest.approx(10 / (10 + math.e))
    assert teacher_forcing_prob(10**9, "inverse_sigmoid", 1.0, 0.0, 0.25) == 0.25  # no overflow
    assert teacher_forcing_prob(7, "none", 1.0, 0.0, 0.5) == 1.0
    c = linear_decay_for(1.0, 0.5, 500)  # hero's Stage B: reaches the floor at its last step
    assert c == pytest.approx(0.001) and teacher_forcing_prob(500, "linear", 1.0, c, 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize("schedule, k, c, eps_min, message", [
    ("exponential", 1.5, 0.0, 0.5, "k: exponential needs 0 < k <= 1"),
    ("inverse_sigmoid", 0.5, 0.0, 0.5, "k: inverse_sigmoid needs k >= 1"),
    ("linear", 1.0, -0.1, 0.5, "linear needs k > 0 and c >= 0"),
    ("linear", 1.0, 0.1, 1.5, "eps_min: expected a probability"),
    ("cosine", 1.0, 0.1, 0.5, "expected one of none, linear"),
])
def test_bad_sampling_parameters_are_refused(schedule, k, c, eps_min, message):
    with pytest.raises(ExpspecError, match=message):
        teacher_forcing_prob(0, schedule, k, c, eps_min)


@pytest.mark.property
@law
@given(weight=st.floats(1.0, 20.0), total=st.integers(1, 5000), step=st.integers(0, 6000),
       warmup=st.floats(0.0, 1.0))
def test_first_token_weight_stays_between_one_and_weight(weight, total, step, warmup):
    for schedule in ("constant", "warmup", "cosine"):
        w = first_token_weight_at(step, total, weight, schedule, warmup)
        assert 1.0 - 1e-9 <= w <= weight + 1e-9


def test_first_token_weight_shapes():
    assert first_token_weight_at(0, 100, 6.0, "constant") == 6.0
    assert first_token_weight_at(0, 100, 6.0, "warmup", 0.1) == 1.0
    assert first_token_weight_at(5, 100, 6.0, "warmup", 0.1) == pytest.approx(3.5)
    assert first_token_weight_at(10, 100, 6.0, "warmup", 0.1) == 6.0
    assert first_token_weight_at(0, 100, 6.0, "cosine") == 6.0
    assert first_token_weight_at(50, 100, 6.0, "cosine") == pytest.approx(3.5)
    assert first_token_weight_at(100, 100, 6.0, "cosine") == pytest.approx(1.0)
    with pytest.raises(ExpspecError, match="first-token weight schedule"):
        first_token_weight_at(0, 100, 6.0, "linear")


@pytest.mark.property
@law
@given(total=st.integers(1, 5000), a=st.integers(0, 6000), b=st.integers(0, 6000))
def test_cosine_lr_decays_from_lr_to_lr_min(total, a, b):
    lo, hi = sorted((a, b))
    assert lr_at(0, total, 5e-5, "cosine", 1e-6) == pytest.approx(5e-5)
    assert lr_at(total, total, 5e-5, "cosine", 1e-6) == pytest.approx(1e-6)
    assert 1e-6 - 1e-15 <= lr_at(hi, total, 5e-5, "cosine", 1e-6) <= lr_at(lo, total, 5e-5, "cosine", 1e-6) + 1e-15
    assert lr_at(hi, total, 5e-5, "constant", 1e-6) == 5e-5


def test_optimizer_steps_of_the_hero_stages():
    assert optimizer_steps(16000, 10, 32, 10) == 500  # Stage B
    assert optimizer_steps(8000, 6, 32, 10) == 150  # Stage A
    assert optimizer_steps(1200, 3, 8, 1) == 450  # the smoke Stage A
    assert optimizer_steps(10, 1, 4, 2) == 2  # 3 micro-batches: the short last group still steps
    with pytest.raises(ExpspecError, match="must be >= 1"):
        optimizer_steps(0, 1, 4, 2)


# --- the hero family's knobs ----------------------------------------------------------------

def test_hero_family_defaults_and_smoke_resolve():
    hero = resolve_config()["hero"]
    assert (hero["latent_len"], hero["d_z"], hero["batch_size"], hero["grad_accum"]) == (64, 256, 32, 10)
    # scheduled sampling is off until the ladder's Phase 3 turns it on (eps 1.0 -> 0.5)
    assert hero["ss_schedule"] == "none" and hero["ss_eps_min"] == 0.5 and hero["lr_schedule"] == "constant"
    smoke = resolve_scale("smoke")["hero"]
    assert smoke["decoder_model"] == "smollm2-135m-instruct" and smoke["latent_len"] == 4


@pytest.mark.parametrize("overrides, message", [
    (["hero.lr_schedule=linear"], "hero.lr_schedule: expected one of constant, cosine"),
    (["hero.ss_schedule=sigmoid"], "hero.ss_schedule: expected one of none, linear"),
    (["hero.first_token_weight_schedule=step"], "hero.first_token_weight_schedule: expected one of"),
    (["hero.dtype=fp16"], "hero.dtype: expected one of auto, fp32, bf16"),
    (["hero.ss_schedule=exponential", "hero.ss_k=2.0"], "hero.ss_k: exponential needs 0 < k <= 1"),
    (["hero.batch_size=0"], "hero.batch_size: expected a number > 0"),
    (["hero.lr_min=1.0"], "hero.lr_min: expected <= hero.lr"),
    (["hero.lora_dropout=1.5"], "hero.lora_dropout: expected a fraction"),
    (["hero.latent_lenght=4"], "did you mean hero.latent_len"),
])
def test_bad_hero_knobs_name_the_knob(overrides, message):
    with pytest.raises(ExpspecError, match=message):
        resolve_config(overrides=overrides, environ={})


def test_lr_warmup_ramps_linearly_then_follows_the_schedule():
    assert [lr_at(i, 100, 1.0, "cosine", 0.0, warmup_steps=4) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, 100, 1.0, "cosine", 0.0, warmup_steps=4) == pytest.approx(1.0)  # the cosine starts at lr
    assert lr_at(100, 100, 1.0, "cosine", 0.1, warmup_steps=4) == pytest.approx(0.1)
    assert lr_at(2, 100, 1.0, "constant", warmup_steps=4) == 0.75 and lr_at(50, 100, 1.0, "constant", warmup_steps=4) == 1.0
