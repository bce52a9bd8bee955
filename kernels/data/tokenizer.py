"""Tokenizers: a byte-level BPE trained on the corpus, or a pretrained model's own.

Spec strings: ``bpe:VOCAB`` trains a byte-level BPE of that vocabulary size on the
training split (cached under ``$EXPSPEC_CACHE/tokenizers`` keyed by the corpus
fingerprint) and ``model:NAME`` uses the tokenizer of a causal LM (see models/pretrained.py).

``token_bytes`` gives, per token id, the number of UTF-8 bytes it stands for, with 0
for special tokens: bits-per-byte = sum(nats) / (ln 2 * sum(bytes)) is comparable
across tokenizers, mean loss per token is not. Every tokenizer carries an ``id``
(``tokenizer_id``) that names it exactly, so statistics measured with two different
tokenizers are never mixed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from expspec.kernels.errors import ExpspecError
from expspec.kernels.models.pretrained import cache_root, resolve_model_path

EOS = "<|endoftext|>"


@dataclass
class Tokenizer:
    id: str
    backend: object  # a tokenizers.Tokenizer
    eos_id: int
    token_bytes: np.ndarray  # int32[vocab_size]
    model: str = ""  # for model:NAME, the NAME as given (a case-sensitive path or hub id)

    @property
    def vocab_size(self) -> int:
        return int(self.token_bytes.shape[0])

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self.backend.decode(list(map(int, ids)), skip_special_tokens=False)

    def encode_documents(self, texts: list[str], max_tokens: int = 0, chunk: int = 1024) -> np.ndarray:
        """One stream: each document followed by EOS (a separator worth 0 bytes).

        Encodes ``chunk`` documents at a time and stops once ``max_tokens`` are reached,
        so a 20M-token sample of a huge corpus does not tokenize all of it."""
        parts, total = [], 0
        for first in range(0, len(texts), chunk):
            for ids in self.encode_batch(texts[first:first + chunk]):
                parts.append(np.asarray(ids + [self.eos_id], dtype=np.int32))
                total += len(ids) + 1
            if max_tokens and total >= max_tokens:
                break
        if not parts:
            raise ExpspecError("tokenizer: nothing to encode (empty corpus)")
        stream = np.concatenate(parts)
        return stream[:max_tokens] if max_tokens else stream


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: the printable stand-in of each byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _piece_bytes(piece: str, byte_decoder: dict[str, int]) -> int:
    """UTF-8 bytes a vocabulary entry stands for (byte-level BPE or SentencePiece)."""
    if all(ch in byte_decoder for ch in piece):
        return len(piece)  # byte-level BPE: one stand-in char per byte
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return 1  # SentencePiece byte fallback
    return len(piece.replace("\u2581", " ").encode("utf-8"))


def _token_bytes(backend, special_ids: set[int]) -> np.ndarray:
    """Per token id, its UTF-8 length; 0 for special tokens (they carry no text).

    Decoding ids one at a time would be wrong: a byte-level token that holds half of a
    multi-byte character decodes to U+FFFD (3 bytes). Count the vocabulary pieces."""
    decoder = _byte_decoder()
    out = np.zeros(backend.get_vocab_size(with_added_tokens=True), dtype=np.int32)
    for piece, i in backend.get_vocab(with_added_tokens=True).items():
        if i not in special_ids and i < len(out):
            out[i] = _piece_bytes(piece, decoder)
    return out


def train_bpe(texts: list[str], vocab_size: int, fingerprint: str) -> Tokenizer:
    """Byte-level BPE on ``texts``; cached by (vocab_size, corpus fingerprint)."""
    from filelock import FileLock
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < 257 + 1:
        raise ExpspecError(f"tokenizer bpe:{vocab_size}: vocabulary must exceed 257 (256 bytes + EOS)")
    tok_id = f"bpe:{vocab_size}:{fingerprint}"
    path = cache_root() / "tokenizers" / (hashlib.sha256(tok_id.encode()).hexdigest()[:16] + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            backend = HFTokenizer.from_file(str(path))
        else:
            backend = HFTokenizer(models.BPE())
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            backend.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            )
            backend.train_from_iterator(texts, trainer=trainer)
            tmp = path.with_suffix(".tmp")
            backend.save(str(tmp))
            tmp.replace(path)
    eos = backend.token_to_id(EOS)
    return Tokenizer(tok_id, backend, eos, _token_bytes(backend, {eos}))


def model_tokenizer(name: str) -> Tokenizer:
    """The fast tokenizer of a pretrained causal LM (``model:NAME``)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        hf = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ExpspecError(f"tokenizer model:{name}: cannot load ({exc.__class__.__name__}); "
                           f"download the model first") from None
    backend = hf.backend_tokenizer
    eos = hf.eos_token_id if hf.eos_token_id is not None else 0
    specials = set(hf.all_special_ids) | {i for i, t in hf.added_tokens_decoder.items() if t.special}
    return Tokenizer(f"model:{name.lower()}", backend, eos, _token_bytes(backend, specials), model=name)


def get_tokenizer(spec: str, train_texts: list[str] | None = None, fingerprint: str = "") -> Tokenizer:
    kind, _, arg = spec.partition(":")
    if kind == "bpe":
        try:
            vocab = int(arg)
        except ValueError:
            raise ExpspecError(f"tokenizer {spec!r}: expected bpe:VOCAB with an integer VOCAB") from None
        if not train_texts:
            raise ExpspecError(f"tokenizer {spec!r}: needs training text (empty corpus)")
        return train_bpe(train_texts, vocab, fingerprint)
    if kind == "model" and arg:
        return model_tokenizer(arg)
    raise ExpspecError(f"tokenizer {spec!r}: expected bpe:VOCAB or model:NAME")

