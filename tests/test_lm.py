"""The real models load offline and compute; our `kernels` package fools no one."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from expspec.kernels.data.corpus import load_corpus, paragraphs
from expspec.kernels.models.gpt import (SOFTCAP, apply_rotary_emb, build_nanochat_gpt, build_tiny_gpt,
                                        tiny_gpt_shape)
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


@pytest.mark.parametrize("where", ["elsewhere", "repo root"])
def test_installed_names_do_not_clash_with_the_hub_kernels_package(tmp_path, where):
    # transformers imports Hugging Face's hub package `kernels` (a dependency since 5.25).
    # expspec installs only `expspec`; from the repo root (`python -c` puts it on sys.path,
    # as a notebook or pytest's rootdir does) the kernels/ folder hands the name over, so
    # transformers gets the hub package, never this repo's folder.
    root = Path(__file__).resolve().parents[1]
    code = (
        "import importlib.metadata as md, importlib.util, sys; from pathlib import Path\n"
        "try:\n    md.distribution('kernels'); hub = True\nexcept md.PackageNotFoundError:\n    hub = False\n"
        "import transformers.activations, transformers.utils.import_utils as iu\n"
        "from expspec.kernels.models.gpt import build_tiny_gpt\n"
        "m = build_tiny_gpt(1, 32, 32, 64, 16)\n"
        "import torch; out = m(torch.zeros(1, 8, dtype=torch.long))\n"
        "try:\n    import kernels; got = Path(kernels.__file__).resolve()\nexcept ModuleNotFoundError:\n    got = None\n"
        f"ours = got == Path({str(root / 'kernels' / '__init__.py')!r})\n"
        # without a hub package, the folder's empty stand-in is all `import kernels` finds at the root
        "print(iu.is_kernels_available() == hub, (got is not None and not ours) == hub, ours and hub,"
        " importlib.util.find_spec('fixtures') is None, tuple(out.logits.shape))\n"
    )
    cwd = root if where == "repo root" else tmp_path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    # outside the root no `fixtures` is importable either; at the root it is the folder itself
    assert out.stdout.split("\n")[-2] == f"True True False {where != 'repo root'} (1, 8, 64)"


def test_the_kernels_hand_off_skips_other_checkouts_and_stands_in_without_the_hub(tmp_path):
    root = Path(__file__).resolve().parents[1]
    init = (root / "kernels" / "__init__.py").read_text()
    other = tmp_path / "other_checkout"
    (other / "kernels").mkdir(parents=True)
    (other / "kernels" / "__init__.py").write_text(init)
    # two checkouts on sys.path (a worktree and PYTHONPATH): each skips both, the hub package wins
    code = ("import sys, importlib.metadata as md; from pathlib import Path\n"
            f"sys.path[:0] = [{str(root)!r}, {str(other)!r}]\n"
            "import kernels; print(Path(kernels.__file__).parent.name, Path(kernels.__file__).parent.parent.name,"
            " md.version('kernels') != '')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["kernels", "site-packages", "True"]
    # no hub package (no site-packages at all): the folder stays, empty and versionless
    code = ("import sys, importlib.metadata as md\n"
            f"sys.path[:] = [{str(other)!r}] + [p for p in sys.path if 'site-packages' not in p]\n"
            "import kernels\n"
            "try:\n    md.version('kernels'); print('versioned')\nexcept md.PackageNotFoundError:\n    print('none')\n"
            "print(kernels.__file__, hasattr(kernels, 'EXPSPEC_KERNELS'))\n")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["none", str(other / "kernels" / "__init__.py"), "True"]


def test_tiny_gpt_nanochat_sizing():
    shape = tiny_gpt_shape(depth=3, aspect_ratio=50, head_dim=64)
    assert shape.model_dim == 192 and shape.n_head == 3  # 150 rounded up to a multiple of 64
    for build in (build_nanochat_gpt, build_tiny_gpt):
        model = build(2, 64, 64, vocab_size=256, max_seq_len=32, seed=0)
        assert model.config.hidden_size == 128
        assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight  # untied
        again = build(2, 64, 64, vocab_size=256, max_seq_len=32, seed=0)
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    with pytest.raises(ExpspecError, match="depth"):
        tiny_gpt_shape(0, 64, 64)


def test_nanochat_gpt_has_nanochat_shape_and_init():
    d, V = 64, 96
    model = build_nanochat_gpt(2, 32, 16, vocab_size=V, max_seq_len=16, seed=0)
    assert model.config.n_head == 4 and model.config.head_dim == 16
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    block = {"attn.c_q": (d, d), "attn.c_k": (d, d), "attn.c_v": (d, d), "attn.c_proj": (d, d),
             "mlp.c_fc": (4 * d, d), "mlp.c_proj": (d, 4 * d)}  # relu^2 MLP of width 4d, no biases
    assert shapes == {"transformer.wte.weight": (V, d), "lm_head.weight": (V, d),
                      **{f"transformer.h.{i}.{k}.weight": v for i in range(2) for k, v in block.items()}}
    # parameter-free RMSNorm: no vectors at all. nanochat's init: zero head and output projections
    assert model.lm_head.weight.abs().max() == 0
    assert all(b.attn.c_proj.weight.abs().max() == 0 and b.mlp.c_proj.weight.abs().max() == 0
               for b in model.transformer.h)
    assert model.transformer.wte.weight.std().item() == pytest.approx(1.0, abs=0.05)
    x = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in model.parameters():  # a random model, so every path carries signal
            p.normal_(0, 3.0)
        logits = model(input_ids=x).logits
        assert logits.shape == (2, 16, V) and logits.dtype == torch.float32
        assert logits.abs().max() <= SOFTCAP and logits.abs().max() > 0.9 * SOFTCAP  # tanh soft-cap at 15
        y = x.clone()
        y[:, 10] = (y[:, 10] + 1) % V
        changed = model(y).logits
        assert torch.equal(changed[:, :10], logits[:, :10]) and not torch.equal(changed[:, 10:], logits[:, 10:])
    # rotary: a query at i and a key at j score by i - j alone (and not the same at every distance)
    gen = torch.Generator().manual_seed(1)
    q, k = (torch.randn(1, 1, 1, 16, generator=gen).expand(1, 12, 1, 16) for _ in range(2))
    rq, rk = (apply_rotary_emb(t, model.cos[:, :12], model.sin[:, :12])[0, :, 0] for t in (q, k))
    scores = rq @ rk.T
    for lag in (0, 2, 5):
        assert torch.allclose(scores.diagonal(-lag), scores.diagonal(-lag)[0].expand(12 - lag), atol=1e-5)
    assert not torch.allclose(scores.diagonal(0)[0], scores.diagonal(-2)[0], atol=1e-3)


def test_unknown_model_names_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExpspecError, match="download it first"):
        load_causal_lm(str(tmp_path / "no-such-model"))
