"""Models shared by every family: the pretrained loaders (SmolLM2 from its PyPI wheel,
MiniLM from its wheel, any HF id or local dir), the built-in GPT trained from scratch,
and nanochat's parameter counting."""
