"""Corpora: read documents from anywhere, split train/val without sharing a paragraph.

A corpus spec is one of
  * ``embedded:austen`` - the six Austen novels shipped gzipped in fixtures/data/austen
  * a ``.txt`` / ``.txt.gz`` file (one document) or a folder of them (one per file)
  * a ``.jsonl`` / ``.jsonl.gz`` file, one document per line in its ``text`` field
  * a ``.parquet`` file with a ``text`` column
  * ``hf:NAME`` or ``hf:NAME:SPLIT`` - a Hugging Face dataset's ``text`` column

The split works per document at paragraph boundaries (blank lines): the last
``val_fraction`` of each document's characters, rounded to whole paragraphs, is
validation. Contiguous blocks keep long-range structure intact inside each side, and
no paragraph is ever on both sides.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from importlib import resources
from dataclasses import dataclass
from pathlib import Path

from expspec.kernels.atomic_io import parse_json
from expspec.kernels.errors import ExpspecError

# Shipped data lives in the fixtures package (fixtures/data; expspec/fixtures/data when installed).
DATA_DIR = Path(str(resources.files("expspec.fixtures") / "data"))
EMBEDDED = {"austen": DATA_DIR / "austen"}


@dataclass
class Document:
    name: str
    text: str


@dataclass
class CorpusSplit:
    train: list[Document]
    val: list[Document]
    fingerprint: str = ""  # of the documents and the split: a tokenizer/stats cache key


def _read_text(path: Path) -> str:
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        raise ExpspecError(f"corpus {path}: cannot read as UTF-8 text ({exc})") from None


def _read_jsonl(path: Path) -> list[Document]:
    docs = []
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = parse_json(line)
        except json.JSONDecodeError:
            raise ExpspecError(f"corpus {path}:{lineno}: not a JSON object per line") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ExpspecError(f"corpus {path}:{lineno}: expected a string field 'text'")
        docs.append(Document(f"{path.name}:{lineno}", record["text"]))
    return docs


def _read_parquet(path: Path) -> list[Document]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises many types for a bad file
        raise ExpspecError(f"corpus {path}: not a readable parquet file ({exc})") from None
    if "text" not in table.column_names:
        raise ExpspecError(f"corpus {path}: no 'text' column (columns: {table.column_names})")
    return [Document(f"{path.name}:{i}", t) for i, t in enumerate(table.column("text").to_pylist())
            if isinstance(t, str)]


def _read_hf(spec: str) -> list[Document]:
    name, _, split = spec[3:].partition(":")
    try:
        import datasets
    except ImportError:
        raise ExpspecError(f"corpus {spec}: needs the 'datasets' package (pip install expspec[hf])") from None
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:
        raise ExpspecError(
            f"corpus {spec}: cannot load dataset {name!r} ({type(exc).__name__}); download it "
            f"where there is a network or pass a local .jsonl/.parquet with a 'text' field"
        ) from None
    if "text" not in ds.column_names:
        raise ExpspecError(f"corpus {spec}: dataset has no 'text' column ({ds.column_names})")
    return [Document(f"{name}:{i}", t) for i, t in enumerate(ds["text"])]


CORPUS_SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".parquet")


def _read_file(path: Path) -> list[Document]:
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return _read_jsonl(path)
    if path.name.endswith(".parquet"):
        return _read_parquet(path)
    if path.name.endswith((".txt", ".txt.gz")):
        return [Document(path.name.split(".")[0], _read_text(path))]
    raise ExpspecError(f"corpus {path}: expected .txt, .jsonl, .parquet (optionally .gz) or a folder")


def _local_path(spec: str) -> Path:
    """A local corpus spec as an existing path; one error line when there is none or it
    cannot be looked up (a name too long, an unknown ``~user``)."""
    try:
        path = Path(spec).expanduser()
        exists = path.exists()
    except (OSError, RuntimeError) as exc:
        raise ExpspecError(f"corpus {spec}: cannot look it up ({exc})") from None
    if not exists:
        raise ExpspecError(f"corpus {path}: no such file or folder")
    return path


def load_documents(spec: str, max_docs: int = 0) -> list[Document]:
    """Read a corpus spec into documents; an unreadable or empty corpus is an error."""
    if spec.startswith("embedded:"):
        key = spec.split(":", 1)[1]
        if key not in EMBEDDED:
            raise ExpspecError(f"corpus {spec}: unknown embedded corpus (known: {', '.join(EMBEDDED)})")
        spec = str(EMBEDDED[key])
    if spec.startswith("hf:"):
        docs = _read_hf(spec)
    else:
        path = _local_path(spec)
        if path.is_dir():  # one empty file in a folder is skipped; an all-empty folder is an error
            docs = [d for f in sorted(path.iterdir()) if f.name.endswith(CORPUS_SUFFIXES) for d in _read_file(f)]
        elif not path.is_file():
            raise ExpspecError(f"corpus {path}: not a file or folder")
        else:
            docs = _read_file(path)
    docs = [d for d in docs if d.text.strip()]
    if max_docs:
        docs = docs[:max_docs]
    if not docs:
        raise ExpspecError(f"corpus {spec}: empty (no document with text)")
    return docs


CHECK_READ_LIMIT = 50 << 20  # check_corpus_spec reads files up to this size to see they hold text


def check_corpus_spec(spec: str) -> None:
    """Cheap up-front check, before any output is written: the corpus exists and, when
    small enough to read at once, has a supported form and some text. ``hf:`` datasets
    are checked when they load; the embedded corpus only by name."""
    if spec.startswith("hf:"):
        return
    if spec.startswith("embedded:"):
        if spec.split(":", 1)[1] not in EMBEDDED:
            raise ExpspecError(f"corpus {spec}: unknown embedded corpus (known: {', '.join(EMBEDDED)})")
        return
    path = _local_path(spec)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if sum(f.stat().st_size for f in files) <= CHECK_READ_LIMIT:
        load_documents(spec)


def paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks, with hard line wraps inside a block undone."""
    return [re.sub(r"\s*\n\s*", " ", p.strip()) for p in re.split(r"\n\s*\n", text) if p.strip()]


# A document is split inside only when it has more than this many times 1 / val_fraction
# paragraphs (a novel); smaller ones (a story, an article) are held out whole.
LARGE_DOC_FACTOR = 10
SPLIT_VERSION = 2  # part of the fingerprint: a new rule is a new split


def _tail_cut(paras: list[str], val_fraction: float) -> int:
    """Index of the first paragraph of the last ``val_fraction`` of characters."""
    total, seen = sum(len(p) for p in paras), 0
    for i in range(len(paras) - 1, 0, -1):
        seen += len(paras[i])
        if seen >= val_fraction * total:
            return i
    return len(paras)


def _held_out_documents(docs: list[Document], val_fraction: float) -> set[int]:
    """Whole documents for validation: in the order of a hash of their content (stable
    under reordering and additions), taken while that brings the held-out characters
    closer to ``val_fraction`` of the total, and at least one."""
    target = val_fraction * sum(len(d.text) for d in docs)
    order = sorted(range(len(docs)), key=lambda i: hashlib.sha256(docs[i].text.encode()).hexdigest())
    chosen, held = set(), 0
    for i in order:
        size = len(docs[i].text)
        if chosen and abs(held + size - target) >= abs(held - target):
            continue  # this one overshoots: a later (smaller) one may still fit
        chosen.add(i)
        held += size
    return chosen


def split_documents(docs: list[Document], val_fraction: float, where: str = "corpus") -> CorpusSplit:
    """Train/validation without sharing a paragraph, at ``val_fraction`` of the characters.

    Whole documents are held out (chosen by a hash of their content), so validation is
    never the endings of training stories. Only a document far larger than 1 /
    val_fraction paragraphs (LARGE_DOC_FACTOR times) is split inside: its last
    val_fraction of characters, at a paragraph boundary. The realised fraction is then
    within one held-out unit (a small document, or a paragraph of a large one) of
    val_fraction, for any mix of document sizes.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ExpspecError(f"val_fraction: expected a number in (0, 1), got {val_fraction}")
    large = {i for i, d in enumerate(docs) if len(paragraphs(d.text)) > LARGE_DOC_FACTOR / val_fraction}
    small = [i for i in range(len(docs)) if i not in large]
    held = {small[j] for j in _held_out_documents([docs[i] for i in small], val_fraction)} if small else set()
    if not large and len(held) >= len(docs):
        raise ExpspecError(f"{where}: {len(docs)} document(s) cannot be split into train and validation "
                           f"at val_fraction={val_fraction} (add documents or split them into paragraphs)")
    train, val = [], []
    for i, doc in enumerate(docs):
        if i in large:
            paras = paragraphs(doc.text)
            cut = _tail_cut(paras, val_fraction)
            train.append(Document(doc.name, "\n\n".join(paras[:cut])))
            if cut < len(paras):
                val.append(Document(doc.name, "\n\n".join(paras[cut:])))
        else:
            (val if i in held else train).append(doc)
    digest = hashlib.sha256(f"val_fraction={val_fraction};split=v{SPLIT_VERSION}".encode())
    for doc in docs:
        digest.update(doc.name.encode() + b"\0" + hashlib.sha256(doc.text.encode()).digest())
    return CorpusSplit(train, val, fingerprint=digest.hexdigest()[:16])


def load_corpus(spec: str, val_fraction: float = 0.05, max_docs: int = 0) -> CorpusSplit:
    return split_documents(load_documents(spec, max_docs=max_docs), val_fraction, f"corpus {spec}")
