"""Data shared by every family: corpora (files, folders, jsonl, parquet, hf:NAME, the
embedded Austen novels) with a whole-document train/validation split, and tokenizers
(a byte-level BPE trained on the corpus, or a pretrained model's own)."""
