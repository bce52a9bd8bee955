"""Hero's training on the real SmolLM2 + MiniLM (loaded once for the module), tiny sizes:
scheduled sampling's K-step chain, resuming every rung from a user's Stage A checkpoint
(its shape checked first, its optimizer state on request), a stage resumed from its own
mid-stage checkpoint ending bit-exactly where an uninterrupted one ends, and a Stage A under
torchrun (2 gloo processes) that trains like one process on the same global batch."""

import json
import shutil

import pytest
import torch

from expspec.kernels.config import cache_knobs, resolve_scale
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero import stages
from expspec.kernels.hero.checkpoints import CHECKPOINT_FORMAT, load_prefix_optimizer, mid_checkpoints
from expspec.kernels.hero.ladder import HeroLadder
from expspec.kernels.hero.latent import LatentPrefix
from expspec.kernels.hero.losses import IGNORE
from expspec.kernels.hero.model import add_lora, answer_logits, build_latent, load_models, prefix_embeds, prepare
from expspec.kernels.hero.qa_data import load_questions
from expspec.kernels.provenance import file_fingerprint
from expspec.kernels.train.checkpoint import write_checkpoint
from test_hero_ladder import STARVED

SETS = [*STARVED, "hero.grad_accum=2"]  # Stage A: 16 questions / (4 x 2) = 2 optimizer steps, kd on
SEED = 3

pytestmark = [pytest.mark.xdist_group("hero"), pytest.mark.slow]


@pytest.fixture(scope="module")
def loaded():
    cfg = resolve_scale("smoke", overrides=SETS)["hero"]
    train_q, eval_q = load_questions(cfg["qa_dataset"], max(cfg["stage_a_samples"], cfg["stage_b_samples"]),
                                     cfg["eval_samples"], cfg["qa_seed"], cfg["qa_multi_token_share"],
                                     cfg["qa_max_facts"])
    models = load_models(cfg, "cpu")
    return cfg, models, prepare(models, train_q), prepare(models, eval_q)


@pytest.fixture
def models_without_lora(loaded):
    """The shared models as loaded: a test that added LoRA gets it taken out again."""
    yield loaded
    models = loaded[1]
    if models.lora is not None:
        models.lora.unload()
        models.lora = None


def _ladder(cfg, root, loaded):
    ladder = HeroLadder(cfg, seed=SEED, root=root, log=lambda line: None)
    ladder._models, ladder._train, ladder._evals = loaded[1:]  # the module's models, not a second load
    return ladder


# --- scheduled sampling: a K-step chain over the model's own predictions ---------------------------

def _prefix_and_gold(loaded, k, seed=0):
    cfg, models, train, _ = loaded
    latent = build_latent(models, cfg, seed)
    index = list(range(6))
    gold = torch.randint(100, 5000, (len(index), k), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return models, prefix_embeds(models, latent, train, index), gold


def _greedy_full_passes(models, prefix, fed, j):
    """Answer token j's greedy prediction after the prefix and fed[:, :j], with a full forward pass."""
    with torch.no_grad():
        return answer_logits(models, prefix, fed[:, :j])[:, j].argmax(-1)


def test_chain_with_eps_one_feeds_the_gold(models_without_lora):
    models, prefix, gold = _prefix_and_gold(models_without_lora, 5)
    coins = torch.rand(gold[:, :-1].shape)
    assert torch.equal(stages._scheduled_inputs(models, prefix, gold, 1.0, coins), gold[:, :-1])
    assert torch.equal(stages._scheduled_inputs(models, prefix, gold, 0.5, torch.zeros_like(coins)), gold[:, :-1])


def test_chain_with_eps_zero_is_greedy_decoding(models_without_lora):
    k = 6
    models, prefix, gold = _prefix_and_gold(models_without_lora, k)
    fed = stages._scheduled_inputs(models, prefix, gold, 0.0, torch.rand(gold[:, :-1].shape))
    with torch.no_grad():
        generated = models.decoder.generate(inputs_embeds=prefix, attention_mask=torch.ones(prefix.shape[:2],
                                            dtype=torch.long), max_new_tokens=k - 1, do_sample=False,
                                            eos_token_id=models.eos_id, pad_token_id=models.tokenizer.pad_token_id)
    for row, tokens in zip(fed.tolist(), generated.tolist()):
        n = tokens.index(models.eos_id) + 1 if models.eos_id in tokens else len(tokens)  # generate stops at EOS
        assert row[:n] == tokens[:n]
    for j in range(k - 1):  # and past an EOS: each fed token is the greedy one after the tokens fed before it
        assert torch.equal(fed[:, j], _greedy_full_passes(models, prefix, fed, j))


def test_chain_mixes_gold_and_its_own_predictions(models_without_lora):
    k = 6
    models, prefix, gold = _prefix_and_gold(models_without_lora, k, seed=1)
    gold[0, 3:] = IGNORE  # a short answer: past its end the gold (ignored) stays
    coins = torch.rand(gold[:, :-1].shape, generator=torch.Generator().manual_seed(2))
    fed = stages._scheduled_inputs(models, prefix, gold, 0.5, coins)
    took_gold = (coins < 0.5) | (gold[:, :-1] == IGNORE)
    assert torch.equal(fed[took_gold], gold[:, :-1][took_gold])
    assert (~took_gold).sum() >= 5
    for j in range(k - 1):  # the model's token is its greedy prediction given what the chain fed before
        own = ~took_gold[:, j]
        assert torch.equal(fed[own, j], _greedy_full_passes(models, prefix, fed, j)[own])


# --- resume_from: a user's proven Stage A checkpoint ------------------------------------------

def _user_checkpoint(path, models, cfg, seed, latent_len=None, d_dec=None, step=7):
    """A Stage A checkpoint as train_stage writes it: a prefix moved away from its init and
    AdamW state after one step."""
    if latent_len or d_dec:
        emb = models.decoder.get_input_embeddings().weight
        d = d_dec or emb.shape[1]
        latent = LatentPrefix(models.encoder.config.hidden_size, d, latent_len or cfg["latent_len"], cfg["d_z"],
                              torch.zeros(d), torch.ones(d))
    else:
        latent = build_latent(models, cfg, seed)
    optimizer = torch.optim.AdamW(latent.parameters(), lr=1e-2)
    sum(p.square().sum() for p in latent.parameters()).backward()
    optimizer.step()
    write_checkpoint(path, {"format": CHECKPOINT_FORMAT, "stage": "A", "global_step": step,
                            "latent": latent.state_dict(), "optimizer": optimizer.state_dict()})
    return latent, optimizer


@pytest.mark.parametrize("shape, message", [({"latent_len": 6}, "latent_len is 6 in the checkpoint, 4 in this config"),
                                            ({"d_dec": 64}, "decoder hidden size is 64 in the checkpoint, 576")])
def test_a_checkpoint_of_another_shape_stops_before_training(tmp_path, models_without_lora, monkeypatch, shape,
                                                             message):
    cfg, models = models_without_lora[:2]
    path = tmp_path / "proven.pt"
    _user_checkpoint(path, models, cfg, 0, **shape)
    trained = []
    monkeypatch.setattr(stages, "train_stage", lambda *a, **k: trained.append(a))
    ladder = _ladder({**cfg, "resume_from": str(path)}, tmp_path / "work", models_without_lora)
    with pytest.raises(ExpspecError, match=rf"checkpoint .*proven\.pt.*: {message}"):
        ladder.run()
    assert not trained and not list(ladder.dir.glob("*/result.json"))


def test_every_rung_resumes_from_the_users_checkpoint(tmp_path, models_without_lora, monkeypatch):
    cfg, models = models_without_lora[:2]
    path = tmp_path / "proven.pt"
    proven, optimizer = _user_checkpoint(path, models, cfg, seed=11)
    calls, real = [], stages.train_stage

    def spy(stage, models_, latent, *args, **kwargs):
        calls.append((stage, {k: v.clone() for k, v in latent.state_dict().items()}, kwargs))
        return real(stage, models_, latent, *args, **kwargs)

    monkeypatch.setattr(stages, "train_stage", spy)
    resumed = {**cfg, "resume_from": str(path), "resume_optimizer": True}
    ladder = _ladder(resumed, tmp_path / "work", models_without_lora)
    result = ladder.run(max_rungs=1)
    assert [c[0] for c in calls] == ["B"]  # no Stage A trained
    stage, start, kwargs = calls[0]
    for name, tensor in proven.state_dict().items():
        assert torch.equal(start[name], tensor), name
    assert kwargs["start_step"] == 7
    saved = optimizer.state_dict()["state"]
    assert torch.equal(kwargs["optimizer_state"]["state"][0]["exp_avg"], saved[0]["exp_avg"])
    rung = json.loads((ladder.dir / "0_phase1" / "result.json").read_text())
    assert rung["stage_a"]["resumed_from"] == str(path) and rung["stage_a"]["steps"] == 0
    assert rung["stage_b"]["global_step_end"] == 7 + rung["stage_b"]["steps"]
    assert result["inputs"]["resume_from"] == file_fingerprint(path) and ladder.stage_a_dir.name.startswith("resumed-")
    # another checkpoint is another key: its rungs never reuse these
    _user_checkpoint(tmp_path / "other.pt", models, cfg, seed=12)
    other = HeroLadder({**resumed, "resume_from": str(tmp_path / "other.pt")}, seed=SEED, root=tmp_path / "work")
    assert other.dir != ladder.dir and other.stage_a_dir != ladder.stage_a_dir
    # the optimizer state only when asked for
    assert _ladder({**resumed, "resume_optimizer": False}, tmp_path / "work", models_without_lora) \
        ._optimizer_state({"optimizer": saved}) is None


def test_the_prefix_optimizer_state_goes_on(models_without_lora):
    cfg, models = models_without_lora[:2]
    latent = build_latent(models, cfg, 0)
    first = torch.optim.AdamW(latent.parameters(), lr=1e-2)
    sum(p.square().sum() for p in latent.parameters()).backward()
    first.step()
    extra = torch.nn.Parameter(torch.zeros(3))  # a LoRA weight: starts fresh
    second = torch.optim.AdamW([*latent.parameters(), extra], lr=1e-2)
    load_prefix_optimizer(second, list(latent.parameters()), first.state_dict())
    for param in latent.parameters():
        assert torch.equal(second.state[param]["exp_avg_sq"], first.state[param]["exp_avg_sq"])
    assert extra not in second.state
    with pytest.raises(ExpspecError, match="covers 1 tensors"):
        load_prefix_optimizer(second, list(latent.parameters()),
                              {"state": {}, "param_groups": [{"params": [0]}]})


# --- mid-stage checkpoints: a resumed stage ends where an uninterrupted one ends -------------------

# 2 epochs x 2 steps; a checkpoint every 2 steps lands at the first epoch's end (before its epoch
# record), a log window of 3 spans it; Stage B: scheduled-sampling coins and LoRA dropout draw.
# Evals only at the epochs' ends, no teacher: 1 s a step
MID_STAGE = {"stage_a_epochs": 2, "stage_b_samples": 16, "stage_b_epochs": 2, "log_every": 3, "eval_every": 100,
             "checkpoint_every": 2, "keep_checkpoints": 1, "ss_schedule": "linear", "ss_c": 0.2, "kd_weight": 0.0,
             "max_new_tokens": 2}


def _run_stage(stage, loaded, cfg, out, resume=None):
    """Stage ``stage`` from the seed's prefix (and, Stage B, the seed's fresh LoRA) into ``out``."""
    _, models, train, evals = loaded
    out.mkdir(exist_ok=True)
    latent = build_latent(models, cfg, SEED)
    if stage == "B":
        torch.manual_seed(SEED)
        if models.lora is None:
            add_lora(models, cfg)
            _run_stage.lora_init = {k: v.clone() for k, v in models.lora.state_dict().items() if "lora_" in k}
        models.lora.load_state_dict(_run_stage.lora_init, strict=False)
    torch.manual_seed(SEED)
    return stages.train_stage(stage, models, latent, train, evals, cfg, out, SEED, start_step=5 * (stage == "B"),
                              resume=resume)


def _without_timing(path):
    return [{k: v for k, v in json.loads(line).items() if k != "sec_per_step"}
            for line in path.read_text().splitlines()]


@pytest.mark.parametrize("stage", ["A", "B"])
def test_a_stage_resumed_from_a_mid_stage_checkpoint_ends_as_an_uninterrupted_one(tmp_path, models_without_lora,
                                                                                   stage):
    cfg = {**models_without_lora[0], **MID_STAGE}
    whole = _run_stage(stage, models_without_lora, cfg, tmp_path / "whole")
    runs = [tmp_path / "whole"]
    if stage == "A":  # checkpoint_every = 0 writes nothing new and trains the same bits
        plain = _run_stage(stage, models_without_lora, {**cfg, "checkpoint_every": 0}, tmp_path / "plain")
        assert [p.name for p in (tmp_path / "plain").glob("*.pt")] == ["stage_a.pt"] and plain == {
            **whole, **{k: plain[k] for k in ("wall_s", "sec_per_step", "checkpoint")}}
        runs.append(tmp_path / "plain")
        # nor keys anything: the same Stage A, ladder and recipe
        ladders = [HeroLadder({**cfg, "checkpoint_every": every, "keep_checkpoints": keep}, SEED, tmp_path / "work")
                   for every, keep in ((0, 2), (2, 1), (500, 5))]
        assert len({(ladder.stage_a_dir, ladder.dir) for ladder in ladders}) == 1
        assert cache_knobs("hero", ladders[0].cfg) == cache_knobs("hero", ladders[2].cfg)
    assert [p.name for p in mid_checkpoints(tmp_path / "whole", stage)] == [f"stage_{stage.lower()}_step_000002.pt"]
    # killed after step 3: the final artifacts gone, the diagnostics longer than at step 2
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "whole", resumed_dir)
    (resumed_dir / f"stage_{stage.lower()}.pt").unlink()
    mid = mid_checkpoints(resumed_dir, stage)[-1]
    resumed = _run_stage(stage, models_without_lora, cfg, resumed_dir, resume=mid)
    assert resumed["resumed_from_step"] == 2 and "resumed_from_step" not in whole
    assert resumed["steps"] == whole["steps"] == 4 and resumed["max_grad_norm"] == whole["max_grad_norm"]
    final = f"stage_{stage.lower()}.pt"
    one, *others = (torch.load(d / final, weights_only=True) for d in [resumed_dir, *runs])
    for other in others:  # bitwise: the prefix (+ LoRA) and AdamW's moments and steps
        for part in ("latent", "lora") if stage == "B" else ("latent",):
            assert one[part].keys() == other[part].keys()
            for name, tensor in one[part].items():
                assert torch.equal(tensor, other[part][name]), (part, name)
        for index, state in one["optimizer"]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, other["optimizer"]["state"][index][key]), (index, key)
    for name in ("diagnostics.jsonl", "diagnostics_epoch.jsonl"):  # no record twice, none lost
        records = _without_timing(resumed_dir / name)
        assert len(records) >= 2 and all(_without_timing(d / name) == records for d in runs)


# --- DDP: the ladder under torchrun (2 gloo processes) = one process on the same global batch ---

def _records(folder):
    return [json.loads(line) for line in (folder / "diagnostics.jsonl").read_text().splitlines()]


def _same_records(one, two):
    """Float summation order differs (two half batches): SmolLM2's large activations make that
    ~1e-6 relative in a step's numbers, and Adam's next steps on a random prefix grow it to ~1e-4."""
    assert [(r["stage"], r["mode"], r["global_step"]) for r in two] == \
        [(r["stage"], r["mode"], r["global_step"]) for r in one]
    for a, b in zip(one, two):  # rank 0 alone wrote, and what it wrote is the whole batch's
        for key in ("first", "kce", "kd", "first_acc", "first_acc_top5", "grad_norm", "answer_length_avg"):
            assert b[key] == (a[key] if a[key] is None else pytest.approx(a[key], rel=1e-3, abs=1e-5)), \
                (a["stage"], a["mode"], a["global_step"], key)
        assert b["token_diversity"] == a["token_diversity"]


def test_the_ladder_under_torchrun_matches_one_process(tmp_path, models_without_lora, capsys):
    """Stage A as a torchrun job against Stage A in this process; then a rung's Stage B (+ its
    eval) as a torchrun job resumed from this process's Stage A checkpoint (hero.resume_from),
    against this process's rung from that checkpoint."""
    cfg, models = models_without_lora[:2]
    cfg = {**cfg, "lora_dropout": 0.0}  # dropout masks are each rank's own draws
    single = _ladder(cfg, tmp_path / "one", models_without_lora)
    single.run(max_rungs=1)  # in this process, the module's models
    ddp = _ladder({**cfg, "nproc_per_node": 2}, tmp_path / "two", models_without_lora)
    assert (ddp.stage_a_dir.name, ddp.dir.name) == (single.stage_a_dir.name, single.dir.name)  # the same runs
    a_two = ddp.stage_a()
    a_one = json.loads((single.stage_a_dir / "stage_a.json").read_text())
    assert (a_one["world_size"], a_two["world_size"]) == (1, 2)
    rec_one, rec_two = _records(single.stage_a_dir), _records(ddp.stage_a_dir)
    assert rec_two[0]["grad_norm"] == pytest.approx(rec_one[0]["grad_norm"], rel=1e-5)  # the summed gradient
    _same_records(rec_one, rec_two)
    assert (ddp.stage_a_dir / "diagnostics_epoch.jsonl").read_text().count("\n") == 1  # rank 0 alone
    # the prefix's move: Adam's steps are ~lr per weight whatever the gradient's size, so a weight
    # whose gradient is ~0 may step either way; the move as a whole is the one-process move
    start = build_latent(models, cfg, SEED).state_dict()
    moved = {}
    for label, folder in (("one", single.stage_a_dir), ("two", ddp.stage_a_dir)):
        state = torch.load(folder / "stage_a.pt", weights_only=True)["latent"]
        moved[label] = torch.cat([(state[name] - start[name]).reshape(-1) for name in start])
    difference = float((moved["two"] - moved["one"]).norm() / moved["one"].norm())
    with capsys.disabled():
        print(f"\nStage A prefix move, 2 processes vs 1: relative difference {difference:.2e}")
    assert difference < 1e-2

    resumed = _ladder({**cfg, "nproc_per_node": 2, "resume_from": str(single.stage_a_dir / "stage_a.pt")},
                      tmp_path / "three", models_without_lora)
    resumed.run(max_rungs=1)
    rung_one, rung_two = (json.loads((d.dir / "0_phase1" / "result.json").read_text()) for d in (single, resumed))
    assert rung_two["stage_b"]["world_size"] == 2 and rung_two["stage_a"]["steps"] == 0
    b_one, b_two = (_records(d.dir / "0_phase1") for d in (single, resumed))
    b_one = [r for r in b_one if r["stage"] == "B"]  # the resumed rung has no Stage A records of ours
    assert b_two[0]["grad_norm"] == pytest.approx(b_one[0]["grad_norm"], rel=1e-5)  # prefix + LoRA, summed
    _same_records(b_one, b_two)
    assert rung_two["eval"]["first_token"] == pytest.approx(rung_one["eval"]["first_token"], rel=1e-3)
    assert (resumed.dir / "0_phase1" / "eval_detailed.jsonl").is_file()
