"""Unit tests of the trainer (kernels/train/: loop, schedule, time_to_target).

Everything is tiny (vocab 64, depth 1, seq 16, a handful of steps) so the module runs
in seconds on one CPU core.
"""

import math
import re

import numpy as np
import pytest
import torch

from expspec.kernels.config import defaults
from expspec.kernels.errors import ExpspecError
from expspec.kernels.models.gpt import build_nanochat_gpt, build_tiny_gpt
from expspec.kernels.train.bpb import evaluate_bpb
from expspec.kernels.train.schedule import lr_multiplier
from expspec.kernels.train.time_to_target import fit_crossing_step, step_time_medians, time_to_target
from expspec.kernels.models.params import nanochat_scaling_params, scaling_params
from expspec.kernels.train.launch import main
from expspec.kernels.train.loop import batch_starts, train
from expspec.kernels.train.optim import build_optimizer, muon_momentum
from expspec.kernels.train.config import TrainConfig, horizon
from expspec.kernels.train.training_log import parse_training_log

V = 64


def markov_stream(n: int, seed: int) -> np.ndarray:
    """A learnable stream: next = 3*prev + small noise (mod V), EOS (id 0) every 40 tokens."""
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.int32)
    prev = 1
    for i in range(n):
        prev = 0 if i % 40 == 39 else (3 * prev + int(rng.integers(0, 3))) % (V - 1) + 1
        out[i] = prev
    return out


TRAIN, VAL = markov_stream(6000, 0), markov_stream(1200, 1)
TOKEN_BYTES = np.array([0] + [1 + i % 3 for i in range(1, V)], dtype=np.int32)  # id 0 = special


def tiny_cfg(**overrides) -> TrainConfig:
    knobs = dict(depth=1, aspect_ratio=32, head_dim=16, max_seq_len=16, device_batch_size=4,
                 total_batch_size=128, num_iterations=8, eval_every=4, eval_tokens=512,
                 learning_rate=1e-2, warmdown_ratio=0.25)
    knobs.update(overrides)
    seed = knobs.pop("seed", 0)
    return TrainConfig.from_lane_b(defaults()["lane_b"], seed=seed, **knobs)


def quiet(_line: str) -> None:
    pass


def test_lr_multiplier_follows_nanochat_shape():
    T = 100
    lrm = [lr_multiplier(i, T, warmup_ratio=0.1, warmdown_ratio=0.4, final_lr_frac=0.1) for i in range(T + 1)]
    assert lrm[0] == pytest.approx(1 / 10) and lrm[9] == pytest.approx(1.0)  # (it+1)/warmup
    assert all(v == 1.0 for v in lrm[10:61])  # flat until T - warmdown
    assert lrm[80] == pytest.approx(0.5 + 0.5 * 0.1)  # halfway down the warmdown
    assert lrm[T] == pytest.approx(0.1)  # ends at final_lr_frac
    assert all(a >= b for a, b in zip(lrm[60:], lrm[61:]))


def test_nanochat_gpt_d12_counts_as_nanochat_does():
    # nanochat's d12: depth 12, aspect 64 -> d = 768, 6 heads of 128, vocab 2^15
    depth, d, vocab = 12, 768, 32768
    with torch.device("meta"):  # counts only: no memory, no init time
        model = build_nanochat_gpt(depth, 64, 128, vocab, 2048, seed=0)
    groups = scaling_params(model)
    assert groups["transformer_matrices"] == depth * (4 * d * d + 8 * d * d) == 84_934_656  # attn + relu^2 MLP
    assert groups["lm_head"] == vocab * d == 25_165_824
    assert groups["total"] == 12 * depth * d ** 2 + vocab * d == nanochat_scaling_params(depth, d, vocab)
    assert groups["excluded_embeddings"] == vocab * d and groups["excluded_vectors"] == 0
    assert groups["all_params"] == sum(p.numel() for p in model.parameters())


def test_llama_tiny_gpt_counts_block_matrices_and_head_only():
    d, depth = 32, 2
    model = build_tiny_gpt(depth, 16, 16, V, 16, seed=0)
    groups = scaling_params(model)
    assert groups["transformer_matrices"] == depth * (4 * d * d + 3 * 4 * d * d)  # attn + SwiGLU MLP: 16 d^2
    assert groups["lm_head"] == V * d
    assert groups["excluded_embeddings"] == V * d
    assert groups["excluded_vectors"] == (2 * depth + 1) * d  # RMSNorm gains
    assert groups["total"] == groups["transformer_matrices"] + groups["lm_head"]
    assert groups["all_params"] == sum(p.numel() for p in model.parameters())


NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch/optim/_muon.py (Keller Jordan's quintic)


def hand_muon(w, grads, momenta, lr, weight_decay):
    """torch.optim.Muon (nesterov, adjust_lr_fn="original") written out, float64 with torch's
    bf16 roundings: per step, buf = m buf + (1 - m) g; u = (1 - m) g + m buf; O = 5 Newton-Schulz
    steps on u (a bf16 copy, transposed when tall, scaled to Frobenius norm 1; X <- aX + (bA + cA^2)X
    with A = XX^T); w <- w (1 - lr wd) - lr sqrt(max(1, rows / cols)) O."""
    r = lambda t: t.bfloat16().double()  # noqa: E731  (torch orthogonalises in bf16)
    a, b, c = NS_COEFFICIENTS
    w, buf = w.double(), torch.zeros_like(w, dtype=torch.float64)
    for g, m in zip(grads, momenta):
        g = g.double()
        buf = m * buf + (1 - m) * g
        x = r((1 - m) * g + m * buf)
        tall = x.shape[0] > x.shape[1]
        x = x.T if tall else x
        x = r(x / r(x.norm()))
        for _ in range(5):
            gram = r(x @ x.T)
            x = r(a * x + r(b * gram + c * gram @ gram) @ x)
        x = x.T if tall else x
        w = w * (1 - lr * weight_decay) - lr * max(1.0, w.shape[0] / w.shape[1]) ** 0.5 * x
    return w


def test_muon_steps_of_the_trainer_match_a_hand_written_muon():
    cfg = tiny_cfg(matrix_lr=0.05, weight_decay=0.5)
    model = build_nanochat_gpt(cfg.depth, cfg.aspect_ratio, cfg.head_dim, V, cfg.max_seq_len, seed=0)
    opt = build_optimizer(cfg, model)
    assert set(opt.optimizers) == {"muon", "adamw"}
    d = model.config.n_embd
    adamw_lrs = sorted(g["initial_lr"] for g in opt.optimizers["adamw"].param_groups)
    assert adamw_lrs == pytest.approx(sorted(lr * (d / 768) ** -0.5 for lr in (cfg.embedding_lr, cfg.unembedding_lr)))
    muon_params = opt.optimizers["muon"].param_groups[0]["params"]
    assert {id(p) for p in muon_params} == {id(p) for p in model.transformer.h.parameters()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    grads = [{name: torch.randn(p.shape, generator=gen) for name, p in model.named_parameters()} for _ in range(2)]
    for step, step_grads in enumerate(grads):
        for name, p in model.named_parameters():
            p.grad = step_grads[name].clone()
        opt.schedule(step, 1.0)
        opt.step()
    momenta = [muon_momentum(0), muon_momentum(1)]
    assert momenta == [0.85, pytest.approx(0.85 + 0.1 / 300)]  # nanochat's warmup 0.85 -> 0.95 over 300 steps
    checked = 0
    for name, p in model.named_parameters():
        if not name.startswith("transformer.h."):
            continue
        expected = hand_muon(before[name], [g[name] for g in grads], momenta, cfg.matrix_lr, cfg.weight_decay)
        moved = expected - before[name].double()
        tolerance = 3e-3 * moved.norm()  # same math as torch; a few bf16 roundings may differ in order
        assert (p.detach().double() - expected).norm() <= tolerance, name
        wrong = hand_muon(before[name], [g[name] for g in grads], [0.95, 0.95], cfg.matrix_lr, cfg.weight_decay)
        assert (wrong - expected).norm() > 3 * tolerance  # a constant 0.95 momentum would be caught
        checked += 1
    assert checked == 6 * cfg.depth  # q, k, v, proj, fc, mlp proj


def test_other_models_get_one_adamw_at_learning_rate():
    cfg = tiny_cfg(model="tiny_gpt", learning_rate=2e-3, weight_decay=0.1)
    model = build_tiny_gpt(cfg.depth, cfg.aspect_ratio, cfg.head_dim, V, cfg.max_seq_len, seed=0)
    opt = build_optimizer(cfg, model)
    assert set(opt.optimizers) == {"adamw"}
    assert [(g["initial_lr"], g["weight_decay"]) for g in opt.param_groups] == [(2e-3, 0.1), (2e-3, 0.0)]
    opt.schedule(3, 0.5)
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)


def test_horizon_uses_ratio_unless_iterations_given():
    assert horizon(tiny_cfg(num_iterations=7), 10_000) == 7
    cfg = tiny_cfg(num_iterations=-1, target_param_data_ratio=2.5)
    assert horizon(cfg, 10_000) == math.floor(2.5 * 10_000 / 128)
    assert horizon(cfg, 1) == 1  # never zero steps


def test_batch_windows_depend_only_on_seed_and_step():
    a = batch_starts(1000, 16, 8, seed=3, step=5)
    assert np.array_equal(a, batch_starts(1000, 16, 8, seed=3, step=5))
    assert not np.array_equal(a, batch_starts(1000, 16, 8, seed=3, step=6))
    assert not np.array_equal(a, batch_starts(1000, 16, 8, seed=4, step=5))
    assert a.min() >= 0 and a.max() <= 1000 - 17


def test_evaluate_bpb_is_nats_over_ln2_bytes_without_specials():
    model = build_nanochat_gpt(1, 32, 16, V, 16, seed=0)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # uniform prediction: every target costs ln V nats
    tb = torch.as_tensor(TOKEN_BYTES, dtype=torch.int64)
    bpb = evaluate_bpb(model, VAL, tb, 16, 4, 512, "cpu")
    targets = np.concatenate([VAL[i * 16 + 1:i * 16 + 17] for i in range((512 - 1) // 16)])
    counted = TOKEN_BYTES[targets] > 0
    expected = counted.sum() * math.log(V) / (math.log(2) * TOKEN_BYTES[targets].sum())
    assert bpb == pytest.approx(expected, rel=1e-6)


def test_time_to_target_measured_extrapolated_unreachable():
    evals = [(0, 3.0), (10, 2.0), (20, 1.6), (30, 1.4), (40, 1.3)]
    times = [0.0, 5.0, 10.0, 15.0, 20.0]
    hit = time_to_target(evals, times, threshold=1.6, horizon=40, sec_per_step=0.5)
    assert (hit.method, hit.measured_sec, hit.crossing_step) == ("measured", 10.0, 20)
    assert hit.reached_within_horizon
    # exact power law v = 10 s^-0.5 -> crossing of 1.0 at s = 100
    law = [(0, 9.0)] + [(s, 10 * s ** -0.5) for s in (10, 20, 30, 40)]
    far = time_to_target(law, times, threshold=1.0, horizon=40, sec_per_step=0.5)
    assert far.method == "extrapolated:power_law"
    assert far.crossing_step == pytest.approx(100, rel=1e-6)
    assert far.extrapolated_sec == pytest.approx(50, rel=1e-6) and not far.reached_within_horizon
    flat = time_to_target([(0, 3.0), (10, 2.0), (20, 2.1), (30, 2.2)], times[:4], 1.0, 40, 0.5)
    assert flat.method == "unreachable" and flat.extrapolated_sec == math.inf
    assert time_to_target(evals, times, float("nan"), 40, 0.5).method == "no_threshold"


def test_runs_crossing_at_the_same_eval_rank_by_where_they_cross_not_by_jitter():
    fast_clock = time_to_target([(0, 3.0), (10, 2.0), (20, 1.5)], [0, 4.0, 8.0], 1.9, 40, sec_per_step=0.4)
    slow_clock = time_to_target([(0, 3.0), (10, 2.0), (20, 1.5)], [0, 4.4, 8.9], 1.9, 40, sec_per_step=0.4)
    assert fast_clock.measured_sec != slow_clock.measured_sec  # wall time differs by jitter...
    assert fast_clock.score_sec == slow_clock.score_sec  # ...the score does not
    assert fast_clock.crossing_step == pytest.approx(12.0)  # 2.0 -> 1.5 over steps 10..20 crosses 1.9 at 12
    nearer = time_to_target([(0, 3.0), (10, 1.95), (20, 1.5)], [0, 4.0, 8.0], 1.9, 40, sec_per_step=0.4)
    assert nearer.crossing_step == pytest.approx(10 + 0.05 / 0.45 * 10) and nearer.score_sec < fast_clock.score_sec


def test_crossing_fits_offset_and_linear():
    steps = [10, 20, 30, 40]
    floored = [1 + 10 * s ** -0.5 for s in steps]  # floor 1.0: 1.5 is met at s = 400, 0.9 never
    assert fit_crossing_step(steps, floored, 1.5, "power_law_offset")[0] == pytest.approx(400, rel=1e-6)
    assert fit_crossing_step(steps, floored, 0.9, "power_law_offset")[0] == math.inf
    assert fit_crossing_step(steps, [3 - 0.01 * s for s in steps], 2.0, "linear")[0] == pytest.approx(100)
    with pytest.raises(ExpspecError, match="cubic"):
        fit_crossing_step(steps, floored, 1.5, "cubic")


def test_step_time_medians_skip_warmup_steps():
    assert step_time_medians([900, 800, 700, 10, 12, 11], [1, 2, 3, 100, 90, 95]) == (95.0, 11.0)
    assert step_time_medians([5.0], [7.0]) == (7.0, 5.0)  # too short to skip anything


def test_training_learns_logs_nanochat_lines_and_checkpoints(tmp_path):
    lines = []
    result = train(tiny_cfg(target_threshold=4.0), TRAIN, VAL, TOKEN_BYTES, log=lines.append,
                   out_dir=tmp_path)
    assert result.status == "ok" and result.steps == result.horizon == 8
    assert [s for s, _ in result.evals] == [0, 4, 8]
    assert result.final_val_bpb < result.evals[0][1]  # it learns
    assert result.min_val_bpb == min(v for _, v in result.evals)
    assert result.tokens_trained == 8 * 128 and result.grad_accum_steps == 2
    assert result.n_scaling_params == result.scaling_params["total"]
    assert result.time_to_target_method == "measured" and result.reached_within_horizon
    assert result.tok_per_sec_median > 0 and result.dt_median_ms > 0
    step_re = re.compile(r"^step \d{5}/\d{5} \(\d+\.\d{2}%\) \| loss: \d+\.\d{6} \| lrm: \d\.\d{2} \| "
                         r"dt: \d+\.\d{2}ms \| tok/sec: [\d,]+ \| mfu: \d+\.\d{2} \| total time: \d+\.\d{2}m$")
    assert sum(bool(step_re.match(line)) for line in lines) == 8
    assert "Total batch size 128 => gradient accumulation steps: 2" in lines
    assert any(re.match(r"^Step 00004 \| Validation bpb: \d\.\d{6}$", line) for line in lines)
    assert lines[-2].startswith("Minimum validation bpb: ")
    assert lines[-1].startswith("Time-to-target (val_bpb): ")
    assert (tmp_path / "train.log").read_text().splitlines() == lines
    state = torch.load(result.checkpoint_path, weights_only=True)
    assert state["step"] == 8 and [tuple(e) for e in state["state"]["evals"]] == list(result.evals)


def test_trainer_log_round_trips_through_the_parser(tmp_path):
    result = train(tiny_cfg(target_threshold=4.0), TRAIN, VAL, TOKEN_BYTES, log=quiet, out_dir=tmp_path)
    parsed = parse_training_log(result.log_path)
    assert [s for s, _ in parsed.evals] == [s for s, _ in result.evals]
    assert [v for _, v in parsed.evals] == pytest.approx([v for _, v in result.evals], abs=1e-6)
    assert parsed.min_val_bpb == pytest.approx(result.min_val_bpb, abs=1e-6)
    assert parsed.total_batch_size == 128 and parsed.num_iterations == 8 and parsed.steps == 8
    assert parsed.n_scaling_params == result.n_scaling_params
    assert parsed.dt_median_ms == pytest.approx(result.dt_median_ms, abs=0.01)
    assert parsed.time_to_target[0]["method"] == result.time_to_target_method


def test_same_seed_same_numbers_other_seed_differs():
    a = train(tiny_cfg(seed=5, num_iterations=4), TRAIN, VAL, TOKEN_BYTES, log=quiet)
    b = train(tiny_cfg(seed=5, num_iterations=4), TRAIN, VAL, TOKEN_BYTES, log=quiet)
    c = train(tiny_cfg(seed=6, num_iterations=4), TRAIN, VAL, TOKEN_BYTES, log=quiet)
    assert a.train_losses == b.train_losses and a.evals == b.evals
    assert a.train_losses != c.train_losses


def test_return_model_gives_the_trained_model():
    result, model = train(tiny_cfg(num_iterations=2), TRAIN, VAL, TOKEN_BYTES, log=quiet, return_model=True)
    tb = torch.as_tensor(TOKEN_BYTES, dtype=torch.int64)
    assert not model.training
    assert evaluate_bpb(model, VAL, tb, 16, 4, 512, "cpu") == pytest.approx(result.final_val_bpb, abs=1e-9)


def test_gradient_accumulation_matches_one_big_micro_batch():
    one = train(tiny_cfg(device_batch_size=8, num_iterations=3), TRAIN, VAL, TOKEN_BYTES, log=quiet)
    two = train(tiny_cfg(device_batch_size=4, num_iterations=3), TRAIN, VAL, TOKEN_BYTES, log=quiet)
    assert (one.grad_accum_steps, two.grad_accum_steps) == (1, 2)
    assert two.train_losses == pytest.approx(one.train_losses, abs=1e-5)
    assert two.final_val_bpb == pytest.approx(one.final_val_bpb, abs=1e-5)


def test_resume_reaches_the_uninterrupted_numbers(tmp_path):
    full = train(tiny_cfg(checkpoint_every=3), TRAIN, VAL, TOKEN_BYTES, log=quiet, out_dir=tmp_path / "a")
    mid = tmp_path / "a" / "checkpoint_00003.pt"
    assert mid.is_file()
    resumed = train(tiny_cfg(resume_from=str(mid)), TRAIN, VAL, TOKEN_BYTES, log=quiet, out_dir=tmp_path / "b")
    assert resumed.status == "ok" and resumed.steps == full.steps
    assert resumed.train_losses == full.train_losses
    assert resumed.evals == full.evals and resumed.min_val_bpb == full.min_val_bpb
    with pytest.raises(ExpspecError, match="learning_rate"):
        train(tiny_cfg(resume_from=str(mid), learning_rate=5e-3), TRAIN, VAL, TOKEN_BYTES, log=quiet)


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    full = train(tiny_cfg(checkpoint_every=2, keep_checkpoints=1), TRAIN, VAL, TOKEN_BYTES, log=quiet,
                 out_dir=tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").glob("checkpoint*.pt")) == ["checkpoint.pt",
                                                                             "checkpoint_00006.pt"]
    resumed = train(tiny_cfg(resume_from=str(tmp_path / "a" / "checkpoint_00006.pt")), TRAIN, VAL, TOKEN_BYTES,
                    log=quiet, out_dir=tmp_path / "b")
    assert resumed.train_losses == full.train_losses and resumed.evals == full.evals
    with pytest.raises(ExpspecError, match="keep_checkpoints"):
        tiny_cfg(keep_checkpoints=0)


def test_non_finite_loss_stops_the_run_without_raising(tmp_path):
    # the Llama with AdamW at lr 1e30 overflows at once; nanochat's GPT (norms everywhere,
    # soft-capped logits, orthogonalised updates) stays finite even at absurd LRs
    result = train(tiny_cfg(model="tiny_gpt", learning_rate=1e30), TRAIN, VAL, TOKEN_BYTES, log=quiet,
                   out_dir=tmp_path)
    assert result.status == "failed" and result.steps == 1
    assert "non-finite train loss" in result.notes and "at step 1" in result.notes
    assert result.checkpoint_path == "" and not (tmp_path / "checkpoint.pt").exists()
    assert parse_training_log(tmp_path / "train.log").failed_at_step == 1


@pytest.mark.parametrize("overrides, needle", [
    ({"total_batch_size": 100}, "total_batch_size"),
    ({"target_metric": "val_loss"}, "target_metric"),
    ({"warmup_ratio": 0.7, "warmdown_ratio": 0.5}, "warmdown_ratio"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"depth": 0}, "depth"),
    ({"bogus": 1}, "bogus"),
    ({"learning_rate": "3e-3"}, "learning_rate must be of type float"),
    ({"depth": 2.0}, "depth must be of type int"),
])
def test_bad_config_is_one_line_error_naming_the_knob(overrides, needle):
    with pytest.raises(ExpspecError, match=needle) as err:
        tiny_cfg(**overrides)
    assert "\n" not in str(err.value)


def test_short_or_out_of_vocab_streams_are_refused():
    with pytest.raises(ExpspecError, match="val_tokens"):
        train(tiny_cfg(), TRAIN, VAL[:10], TOKEN_BYTES, log=quiet)
    with pytest.raises(ExpspecError, match="train_tokens"):
        train(tiny_cfg(), TRAIN + V, VAL, TOKEN_BYTES, log=quiet)


def test_module_entry_writes_result_json(tmp_path):
    import json

    cfg = tiny_cfg(num_iterations=2)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    np.savez(tmp_path / "data.npz", train=TRAIN, val=VAL, token_bytes=TOKEN_BYTES)
    assert main(["--config", str(tmp_path / "cfg.json"), "--data", str(tmp_path / "data.npz"),
                 "--out-dir", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["status"] == "ok" and result["steps"] == 2
    (tmp_path / "bad.json").write_text(json.dumps({**cfg.to_dict(), "depht": 2}))
    assert main(["--config", str(tmp_path / "bad.json"), "--data", str(tmp_path / "data.npz"),
                 "--out-dir", str(tmp_path / "out2")]) == 2
