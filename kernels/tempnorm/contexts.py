"""Contexts: one per line of a text file; the shipped set is drawn from the embedded corpus.

A context is the text a starting point grows from (phase 1 samples ``initial_wander``
tokens after it). The shipped ``fixtures/data/contexts.txt`` holds whole paragraphs of
the embedded Austen novels, drawn at random (seeded) among those of a moderate length,
so a context is a complete thought of a few dozen tokens. ``draw_contexts`` is the
generator (``expspec tempnorm contexts`` writes it); a test regenerates the shipped file
from it byte for byte.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from expspec.kernels.data.corpus import DATA_DIR, Document, paragraphs
from expspec.kernels.errors import ExpspecError

SHIPPED_CONTEXTS = DATA_DIR / "contexts.txt"
# how the shipped file was made (tests/test_tempnorm_cli.py::test_shipped_contexts_are_the_generators_output
# regenerates it byte for byte)
SHIPPED_RECIPE = {"corpus": "embedded:austen", "n": 256, "seed": 0, "min_chars": 120, "max_chars": 360}


def draw_contexts(documents: Sequence[Document], n: int, seed: int = 0, min_chars: int = 120,
                  max_chars: int = 360, where: str = "contexts") -> list[str]:
    """``n`` distinct paragraphs of ``min_chars``..``max_chars`` characters (whitespace
    collapsed, one line each), drawn with ``random.Random(seed)``, in the order drawn (so
    the first lines of the file are already a mix of the documents). ``where`` starts an
    error line (the CLI names the corpus there)."""
    if n < 1:
        raise ExpspecError(f"contexts: expected n >= 1, got {n}")
    if not 0 < min_chars <= max_chars:
        raise ExpspecError(f"contexts: expected 0 < min_chars <= max_chars, got {min_chars}, {max_chars}")
    pool: list[str] = []
    seen: set[str] = set()
    for doc in documents:
        for para in paragraphs(doc.text):
            line = " ".join(para.split())
            if min_chars <= len(line) <= max_chars and line not in seen:
                seen.add(line)
                pool.append(line)
    if len(pool) < n:
        raise ExpspecError(f"{where}: the corpus has {len(pool)} distinct paragraphs of {min_chars}.."
                           f"{max_chars} characters, fewer than the {n} asked for")
    chosen = random.Random(seed).sample(range(len(pool)), n)
    return [pool[i] for i in chosen]


def contexts_text(contexts: Sequence[str]) -> str:
    return "".join(f"{c}\n" for c in contexts)


def contexts_path(contexts_file: str) -> Path:
    """The configured file, or the shipped one for ``""``."""
    return Path(contexts_file).expanduser() if contexts_file else SHIPPED_CONTEXTS


def read_contexts(path: str | Path, max_contexts: int = 0) -> list[str]:
    """The non-blank lines of ``path`` (stripped), the first ``max_contexts`` if > 0."""
    path = Path(path)
    if not path.is_file():
        raise ExpspecError(f"contexts file {path}: file not found (expected one context per line)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ExpspecError(f"contexts file {path}: not UTF-8 text ({exc})") from None
    contexts = [line.strip() for line in text.splitlines() if line.strip()]
    if not contexts:
        raise ExpspecError(f"contexts file {path}: empty (expected one context per line)")
    return contexts[:max_contexts] if max_contexts else contexts
