"""What hero's keys and skips are made of, without loading a model: the ladder's keys hold the
model files' and a dataset folder's fingerprints (and a resumed checkpoint's); at hero scale a
decoder or dataset this machine cannot get (no network here) skips, naming it, while a bug
still fails; the DDP shards partition a micro-batch."""

import json

import pytest

from expspec.kernels.config import resolve_scale
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero import availability
from expspec.kernels.hero.ddp import all_reduce_grads, shard
from expspec.kernels.hero.ladder import HeroLadder, processes
from expspec.kernels.hero.qa_data import generate_qa, write_qa

pytestmark = pytest.mark.xdist_group("hero")


def _ladder(tmp_path, *sets):
    cfg = resolve_scale("smoke", overrides=list(sets))["hero"]
    return HeroLadder(cfg, seed=1, root=tmp_path / "work", log=lambda line: None)


def test_an_edited_dataset_folder_changes_the_stage_a_and_ladder_keys(tmp_path):
    data = tmp_path / "qa"
    write_qa(data, generate_qa(40, 10, seed=0))
    before = _ladder(tmp_path, f"hero.qa_dataset={data}")
    dev = json.loads((data / "dev.json").read_text())
    dev["data"][0]["paragraphs"][0]["qas"][0]["question"] += " (edited)"
    (data / "dev.json").write_text(json.dumps(dev))
    after = _ladder(tmp_path, f"hero.qa_dataset={data}")
    assert before.stage_a_dir != after.stage_a_dir and before.dir != after.dir
    assert before.inputs["qa_files"]["train.json"] == after.inputs["qa_files"]["train.json"]
    assert before.inputs["qa_files"]["dev.json"] != after.inputs["qa_files"]["dev.json"]
    assert _ladder(tmp_path, f"hero.qa_dataset={data}").stage_a_dir == after.stage_a_dir  # stable


def test_keys_hold_the_model_files_not_only_their_names(tmp_path, monkeypatch):
    from expspec.kernels.models import pretrained

    base = _ladder(tmp_path)
    assert base.inputs["decoder_files"].startswith("files:") and base.inputs["encoder_files"].startswith("files:")
    real = pretrained.model_fingerprint
    monkeypatch.setattr(pretrained, "model_fingerprint",  # the same name, other weights
                        lambda name: "files:other" if "smollm2" in name else real(name))
    other = _ladder(tmp_path)
    assert other.stage_a_dir != base.stage_a_dir and other.dir != base.dir


def test_a_missing_dataset_file_is_one_line(tmp_path):
    (tmp_path / "qa").mkdir()
    (tmp_path / "qa" / "train.json").write_text("{}")
    with pytest.raises(ExpspecError, match=r"dev\.json: no such file"):
        _ladder(tmp_path, f"hero.qa_dataset={tmp_path / 'qa'}")


def test_the_process_layout_is_not_part_of_a_key(tmp_path):
    one, two = _ladder(tmp_path), _ladder(tmp_path, "hero.nproc_per_node=2")
    assert (one.stage_a_dir, one.dir) == (two.stage_a_dir, two.dir) and two.nproc == 2


def test_resume_from_must_be_a_file():
    with pytest.raises(ExpspecError, match=r"hero\.resume_from /no/such\.pt: file not found"):
        resolve_scale("smoke", overrides=["hero.resume_from=/no/such.pt"])


# --- hero scale: skip when the model or dataset cannot be had (this machine has no hub access) ---

@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """A machine whose hub cannot be reached and whose caches hold nothing (whatever this
    machine's network and caches are)."""
    import datasets
    import huggingface_hub
    from huggingface_hub import HfApi

    try:  # the HTTP client the hub runs on: httpx, or its httpx2 fork
        import httpx2 as http
    except ImportError:
        import httpx as http

    def unreachable(self, repo_id, repo_type=None):
        raise http.ConnectError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(HfApi, "auth_check", unreachable)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))


def test_an_unreachable_hub_model_and_dataset_are_named(offline_hub):
    reason = availability.model_missing("meta-llama/Llama-3.1-8B-Instruct")
    assert reason.startswith("meta-llama/Llama-3.1-8B-Instruct ") and "huggingface-cli download" in reason
    assert "\n" not in reason
    reason = availability.dataset_missing("hf:rajpurkar/squad")
    assert reason.startswith("rajpurkar/squad ") and "--repo-type dataset" in reason
    # what is here is available: the shipped models, the generated set, a folder
    assert availability.model_missing("smollm2-135m-instruct") is None
    assert availability.model_missing("all-minilm-l6-v2") is None
    assert availability.dataset_missing("generated") is None
    assert availability.model_missing("/no/such/model/dir") == "/no/such/model/dir: no such model folder"


def test_a_hub_that_never_answers_is_named_not_waited_on(offline_hub, monkeypatch):
    import time

    from huggingface_hub import HfApi

    monkeypatch.setattr(availability, "HUB_TIMEOUT_S", 0.5)
    monkeypatch.setattr(HfApi, "auth_check", lambda self, repo_id, repo_type=None: time.sleep(30))
    start = time.monotonic()
    reason = availability.model_missing("meta-llama/Llama-3.1-8B-Instruct")
    assert time.monotonic() - start < 5 and "gave no answer in 0.5 s" in reason


def test_gated_and_unknown_repos_are_named(offline_hub, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:  # the HTTP client the hub runs on: httpx, or its httpx2 fork
        import httpx2 as http
    except ImportError:
        import httpx as http
    response = http.Response(403, request=http.Request("GET", "https://huggingface.co/api/models/x"))
    for error, words in ((GatedRepoError, "is gated"), (RepositoryNotFoundError, "is not on the Hugging Face hub")):
        def refuse(self, repo_id, repo_type=None, error=error):
            raise error(f"{repo_id}: refused", response=response)
        monkeypatch.setattr(HfApi, "auth_check", refuse)
        assert words in availability.model_missing("meta-llama/Llama-3.1-8B-Instruct")


def test_a_bug_is_not_taken_for_a_missing_model(offline_hub, monkeypatch):
    from huggingface_hub import HfApi

    def broken(self, repo_id, repo_type=None):
        raise KeyError("a bug of ours")
    monkeypatch.setattr(HfApi, "auth_check", broken)
    with pytest.raises(KeyError):
        availability.model_missing("meta-llama/Llama-3.1-8B-Instruct")


def test_hero_scale_skips_naming_the_hf_id_or_the_dataset(offline_hub, monkeypatch):
    from expspec.fixtures import scale as scale_module
    from expspec.fixtures.hero import require_hero_inputs

    hero = resolve_scale("hero")["hero"]
    assert hero["decoder_model"] == "meta-llama/Llama-3.1-8B-Instruct"
    monkeypatch.setattr(scale_module, "cuda_missing", lambda: None)  # as on a GPU box without a network
    with pytest.raises(pytest.skip.Exception, match=r"hero scale needs the decoder model: meta-llama/Llama-3\.1-8B"):
        require_hero_inputs(hero, "hero")
    with pytest.raises(pytest.skip.Exception, match=r"hero scale needs the qa dataset: rajpurkar/squad"):
        require_hero_inputs({**hero, "decoder_model": "smollm2-135m-instruct"}, "hero")
    require_hero_inputs(hero, "smoke")  # smoke never asks


def test_shards_partition_a_micro_batch():
    for n in range(0, 9):
        for size in (1, 2, 3):
            parts = [list(range(n))[shard(n, r, size)] for r in range(size)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_nproc_zero_takes_every_gpu_only_when_this_worker_owns_them(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    every = [f"cuda:{i}" for i in range(4)]
    assert processes(0, "cpu") == 1 and processes(2, "cpu") == 2
    assert processes(0, "cuda:0", every) == 4  # one worker, every GPU its own
    assert processes(0, "cuda", ["cuda", "cuda:1", "cuda:2", "cuda:3"]) == 4
    assert processes(0, "cuda:1", ["cuda:1"]) == 1 and processes(0, "cuda:0") == 1  # an xdist worker's one GPU
    assert processes(0, "cuda:0", every[:2]) == 1  # --devices names only some of them
    assert processes(3, "cuda:0") == 3
    with pytest.raises(ExpspecError, match=r"^hero\.nproc_per_node = 5: only 4 CUDA devices are visible"):
        processes(5, "cuda:0", every)


def test_the_process_group_waits_dist_timeout_min(monkeypatch):
    """Ranks wait while rank 0 evaluates: the group's timeout is the knob's, not NCCL's 10 minutes."""
    from datetime import timedelta

    import torch.distributed as dist

    from expspec.kernels.hero.launch import init_group

    seen = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout: seen.update(b=backend, t=timeout))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_group("cpu", 60) is False and not seen  # one process: no group
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert init_group("cpu", 90) is True and seen == {"b": "gloo", "t": timedelta(minutes=90)}
    assert resolve_scale("smoke")["hero"]["dist_timeout_min"] == 60


def test_a_gradient_no_rank_has_stays_none(tmp_path):
    """AdamW skips a parameter without a gradient: the all_reduce must not turn it into zeros."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
        used.grad = torch.tensor([1.0, 2.0, 3.0])
        all_reduce_grads([used, unused])
        assert used.grad.tolist() == [1.0, 2.0, 3.0] and unused.grad is None
    finally:
        dist.destroy_process_group()


def test_a_hub_models_key_is_its_revision_before_and_after_the_download(tmp_path, monkeypatch):
    """Keyed by the commit it resolves to: the hub's answer before the download equals the
    cached snapshot's after it, so a first run's download never changes the keys (a rerun
    after a kill finds its Stage A)."""
    import types

    import huggingface_hub
    from huggingface_hub import HfApi, constants

    from expspec.kernels.models.pretrained import model_fingerprint

    commit = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(HfApi, "model_info", lambda self, repo_id, timeout=None: types.SimpleNamespace(sha=commit))
    before = model_fingerprint("org/model")
    snapshot = tmp_path / "hub" / "models--org--model" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--model" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--model" / "refs" / "main").write_text(commit)
    assert isinstance(huggingface_hub.try_to_load_from_cache("org/model", "config.json"), str)
    assert model_fingerprint("org/model") == before == f"hub:org/model@{commit}"

    def unreachable(self, repo_id, timeout=None):
        raise OSError("no network")
    monkeypatch.setattr(HfApi, "model_info", unreachable)
    assert model_fingerprint("org/other") == "id:org/other"  # neither cached nor reachable: it cannot load anyway
