"""A text-like token stream for benchmarks: Zipf unigram plus copies from 1..16 tokens
back, so joints are sparse and structured like a real corpus's, at any size."""

import numpy as np


def text_like_stream(n_tokens: int, vocab_size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab_size + 1)
    tokens = rng.choice(vocab_size, size=n_tokens, p=weights / weights.sum()).astype(np.int64)
    copy = np.flatnonzero(rng.random(n_tokens) < 0.3)
    copy = copy[copy >= 16]
    tokens[copy] = tokens[copy - rng.integers(1, 17, size=copy.size)]
    return tokens
