"""The real models load offline and compute; our `kernels` package fools no one."""

import math
import subprocess
import sys

import pytest
import torch

from expspec.kernels.data.corpus import load_corpus, paragraphs
from expspec.kernels.models.gpt import build_tiny_gpt, tiny_gpt_shape
from expspec.kernels.models.pretrained import encode_sentences, load_causal_lm, load_sentence_encoder
from expspec.kernels.errors import ExpspecError


@pytest.fixture(scope="module")
def austen_sentence():
    split = load_corpus("embedded:austen")
    para = next(p for p in paragraphs(split.val[0].text) if len(p.split()) > 25)
    return " ".join(para.split()[:40])


@pytest.mark.slow
def test_smollm2_loads_offline_and_scores_the_corpus(austen_sentence):
    model, tok = load_causal_lm("smollm2-135m-instruct")
    n_params = sum(p.numel() for p in model.parameters())
    assert 130e6 < n_params < 140e6 and model.config.vocab_size == 49152
    ids = tok(austen_sentence, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    # a pretrained LM on English prose: finite and far below the uniform ln(49152) = 10.8
    assert math.isfinite(loss) and loss < 6.0, loss


@pytest.mark.slow
def test_minilm_embeds_sentences(austen_sentence):
    model, tok = load_sentence_encoder()
    emb = encode_sentences(model, tok, [austen_sentence, austen_sentence.upper(), "Quarterly tax report figures."])
    assert emb.shape == (3, 384) and torch.isfinite(emb).all()
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2]  # a paraphrase is closer than an unrelated sentence


def test_installed_names_do_not_clash_with_the_hub_kernels_package(tmp_path):
    # transformers probes importlib for a package named `kernels` (hub kernels); expspec
    # installs only `expspec`, so outside this repo's root no `kernels` or `fixtures`
    # appears and that code path stays off.
    code = (
        "import importlib.util, transformers.utils.import_utils as iu;"
        "from expspec.kernels.models.gpt import build_tiny_gpt;"
        "m = build_tiny_gpt(1, 32, 32, 64, 16);"
        "import torch; out = m(torch.zeros(1, 8, dtype=torch.long));"
        "print(importlib.util.find_spec('kernels') is None, importlib.util.find_spec('fixtures') is None,"
        " iu.is_kernels_available(), tuple(out.logits.shape))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "True True False (1, 8, 64)"


def test_tiny_gpt_nanochat_sizing():
    shape = tiny_gpt_shape(depth=3, aspect_ratio=50, head_dim=64)
    assert shape.model_dim == 192 and shape.n_head == 3  # 150 rounded up to a multiple of 64
    model = build_tiny_gpt(2, 64, 64, vocab_size=256, max_seq_len=32, seed=0)
    assert model.config.hidden_size == 128 and not model.config.tie_word_embeddings
    again = build_tiny_gpt(2, 64, 64, vocab_size=256, max_seq_len=32, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    with pytest.raises(ExpspecError, match="depth"):
        tiny_gpt_shape(0, 64, 64)


def test_unknown_model_names_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExpspecError, match="download it first"):
        load_causal_lm(str(tmp_path / "no-such-model"))
