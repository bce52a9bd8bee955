"""The whole best-of-N chain through the CLI on a tiny random Llama (SmolLM2's tokenizer and
chat template, 2 layers x 32 wide): collect -> distill -> sft -> collect with the adapter ->
analyze. Real files, real peft, seconds: the smoke experiment runs the same code on SmolLM2.
Then the adapter folder's two promises on those real files: its step log is one record per
optimizer step that the results history draws (``train/loss``), and its fingerprint is its
behaviour (config and weights), not its history (wall-clock seconds, peft's set order)."""

import json
import math
import shutil

import pytest

from expspec.kernels.bon.collector import adapter_fingerprint, read_run
from expspec.kernels.bon.sft import STEP_LOG
from expspec.kernels.cli import main
from expspec.kernels.errors import ExpspecError
from expspec.kernels.models.pretrained import model_fingerprint, resolve_model_path
from expspec.kernels.provenance import file_fingerprint
from expspec.kernels.tracking.curves import step_curves

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    smol = resolve_model_path("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(smol)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)  # with its chat template
    return folder


def test_collect_distill_sft_collect_analyze(tmp_path, tiny_model, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                               for i in range(3)))
    config = {"base_model": str(tiny_model), "prompts_file": str(prompts), "k_values": [1, 2, 4],
              "samples_per_prompt": 4, "max_new_tokens": 4, "output_dir": str(tmp_path / "runs"), "seed": 7}
    (tmp_path / "collector.json").write_text(json.dumps(config))
    assert main(["bon", "collect", "--config", str(tmp_path / "collector.json"), "--device", "cpu"]) == 0
    (base_file,) = (tmp_path / "runs").glob("bon_run_*.jsonl")
    base = read_run(base_file)
    assert len(base.prompts) == 3 and all(r["n"] == 4 for r in base.prompts)
    assert base.header["seed"] == 7 and base.header["git_commit"] and base.header["adapter"] is None
    assert base.header["model_fingerprint"] == model_fingerprint(str(tiny_model))
    assert set(base.prompts[0]["pass_at_k"]) == {"1", "2", "4"} and base.summary["tokens"] > 0

    # a random model solves nothing: the gold answers are the targets
    assert main(["bon", "distill", str(base_file), "--out", str(tmp_path / "pairs.jsonl"), "--keep-unsolved"]) == 0
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 3 and {p["source"] for p in pairs} <= {"gold", "best_of_n"}
    assert main(["bon", "sft", "--pairs", str(tmp_path / "pairs.jsonl"), "--name", "tiny", "--out-dir",
                 str(tmp_path / "adapters"), "--base-model", str(tiny_model), "--set", "bon.sft_epochs=3",
                 "--set", "bon.sft_learning_rate=0.01", "--device", "cpu"]) == 0
    adapter = tmp_path / "adapters" / "tiny"
    assert (adapter / "adapter_config.json").is_file() and any(adapter.glob("adapter_model.*"))
    training = json.loads((adapter / "training.json").read_text())
    assert training["final_loss"] < training["initial_loss"] and training["pairs"] == 3
    assert sum(training["sources"].values()) == training["pairs"]
    assert adapter.stat().st_mode & 0o777 == 0o755  # readable as any other output folder, not mkdtemp's 0700
    steps = [json.loads(line) for line in (adapter / STEP_LOG).read_text().splitlines()]
    per_epoch = -(-training["pairs"] // training["batch_size"])
    assert training["step_log"] == STEP_LOG and len(steps) == training["steps"] == 3 * per_epoch
    assert [s["step"] for s in steps] == list(range(1, 3 * per_epoch + 1))
    assert [s["epoch"] for s in steps] == sorted(s["epoch"] for s in steps) and steps[-1]["epoch"] == 3
    assert all(math.isfinite(s["loss"]) and s["loss"] > 0 and s["lr"] == 0.01 for s in steps)
    curves = step_curves(adapter / STEP_LOG)  # what the tracker logs step by step
    assert curves["train/loss"] == [(s["step"], s["loss"]) for s in steps]
    assert curves["train/lr"] == [(s["step"], 0.01) for s in steps]
    assert not [p.name for p in adapter.parent.iterdir() if p.name.startswith(".")]  # no temp folder left

    # training again into the same name replaces the adapter (renamed aside, then deleted)
    assert main(["bon", "sft", "--pairs", str(tmp_path / "pairs.jsonl"), "--name", "tiny", "--out-dir",
                 str(tmp_path / "adapters"), "--base-model", str(tiny_model), "--set", "bon.sft_epochs=1",
                 "--device", "cpu"]) == 0
    assert json.loads((adapter / "training.json").read_text())["epochs"] == 1
    assert [p.name for p in (tmp_path / "adapters").iterdir()] == ["tiny"]
    assert len((adapter / STEP_LOG).read_text().splitlines()) == per_epoch  # the new adapter's log, not appended

    # the same training again: another training.json (its seconds), the same fingerprint
    assert main(["bon", "sft", "--pairs", str(tmp_path / "pairs.jsonl"), "--name", "tiny", "--out-dir",
                 str(tmp_path / "again"), "--base-model", str(tiny_model), "--set", "bon.sft_epochs=1",
                 "--device", "cpu"]) == 0
    again = tmp_path / "again" / "tiny"
    assert (again / "adapter_model.safetensors").read_bytes() == (adapter / "adapter_model.safetensors").read_bytes()
    assert adapter_fingerprint(again) == adapter_fingerprint(adapter)

    assert main(["bon", "collect", "--config", str(tmp_path / "collector.json"), "--adapter", str(adapter),
                 "--output-dir", str(tmp_path / "runs_adapter"), "--device", "cpu"]) == 0
    (adapter_file,) = (tmp_path / "runs_adapter").glob("bon_run_*.jsonl")
    adapted = read_run(adapter_file)
    assert adapted.label == "tiny" and adapted.header["adapter"]["fingerprint"] == adapter_fingerprint(adapter)
    assert main(["bon", "analyze", str(base_file), str(adapter_file), "--out", str(tmp_path / "summary.json")]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["label"] for r in summary["runs"]] == ["base", "tiny"]


def test_adapter_fingerprint_is_config_and_weights(tmp_path, tiny_model):
    """Two folders that differ only in training.json's seconds, the step log, peft's README and
    the order peft wrote target_modules in (a set: its order varies per process) share a
    fingerprint; folder bytes (``file_fingerprint``) do not. Other weights or another config
    value give another one."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"id": "q1", "prompt": "What is 1 + 1?", "target": "2", "source": "gold"}) + "\n")
    assert main(["bon", "sft", "--pairs", str(pairs), "--name", "a", "--out-dir", str(tmp_path), "--base-model",
                 str(tiny_model), "--set", "bon.sft_epochs=1", "--device", "cpu"]) == 0
    a = tmp_path / "a"

    def variant(name: str, edit) -> str:
        folder = tmp_path / name
        shutil.copytree(a, folder)
        edit(folder)
        return adapter_fingerprint(folder)

    def edit_json(path, **changes):
        path.write_text(json.dumps(json.loads(path.read_text()) | changes, indent=2))

    def history(folder):
        edit_json(folder / "training.json", seconds=123.456)
        (folder / STEP_LOG).write_text('{"step": 1, "mode": "train", "loss": 9.0, "lr": 0.1}\n')
        (folder / "README.md").write_text("another model card")
        config = json.loads((folder / "adapter_config.json").read_text())
        edit_json(folder / "adapter_config.json", target_modules=sorted(config["target_modules"], reverse=True))

    def weights(folder):
        data = bytearray((folder / "adapter_model.safetensors").read_bytes())
        data[-1] ^= 1  # the last byte of the last tensor
        (folder / "adapter_model.safetensors").write_bytes(bytes(data))

    assert len(json.loads((a / "adapter_config.json").read_text())["target_modules"]) == 2
    assert variant("history", history) == adapter_fingerprint(a)
    assert file_fingerprint(tmp_path / "history") != file_fingerprint(a)
    assert variant("weights", weights) != adapter_fingerprint(a)
    assert variant("config", lambda f: edit_json(f / "adapter_config.json", lora_alpha=99)) != adapter_fingerprint(a)
    (tmp_path / "bare").mkdir()
    with pytest.raises(ExpspecError, match="expected a peft adapter dir"):
        adapter_fingerprint(tmp_path / "bare")
