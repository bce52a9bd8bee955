"""Corpus loaders and the paragraph-level train/val split."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expspec.kernels.data.corpus import load_corpus, load_documents, paragraphs, split_documents, Document
from expspec.kernels.errors import ExpspecError
from expspec.kernels.data.tokenizer import get_tokenizer


def test_embedded_austen_split_never_shares_a_paragraph():
    split = load_corpus("embedded:austen", val_fraction=0.05)
    assert len(split.train) == 6 and len(split.val) == 6
    for doc, train, val in zip(load_documents("embedded:austen"), split.train, split.val):
        # each novel is cut once, between two paragraphs: train + val is the novel, in order
        assert paragraphs(train.text) + paragraphs(val.text) == paragraphs(doc.text)
        assert train.name == val.name == doc.name
    n_val = sum(len(d.text) for d in split.val)
    n_all = n_val + sum(len(d.text) for d in split.train)
    assert 0.05 <= n_val / n_all < 0.06
    again = load_corpus("embedded:austen", val_fraction=0.05)
    assert again.fingerprint == split.fingerprint and [d.text for d in again.val] == [d.text for d in split.val]


def test_every_format_loads_the_same_documents(tmp_path):
    texts = ["First doc.\n\nSecond para here.", "Another doc\nwrapped line.\n\nEnd."]
    (tmp_path / "folder").mkdir()
    for i, t in enumerate(texts):
        (tmp_path / "folder" / f"d{i}.txt").write_text(t)
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as fh:
        fh.write("\n".join(json.dumps({"text": t}) for t in texts))
    pq.write_table(pa.table({"text": texts}), tmp_path / "c.parquet")
    for spec in ["folder", "c.jsonl", "c.jsonl.gz", "c.parquet"]:
        docs = load_documents(str(tmp_path / spec))
        assert [d.text for d in docs] == texts, spec
    assert paragraphs(texts[1]) == ["Another doc wrapped line.", "End."]


@pytest.mark.parametrize("content,match", [
    (None, "no such file"),
    ("", "empty"),
    ("   \n\n  ", "empty"),
])
def test_bad_txt_corpus(tmp_path, content, match):
    path = tmp_path / "c.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ExpspecError, match=match):
        load_documents(str(path))


def test_bad_structured_corpora(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(ExpspecError, match=r"bad.jsonl:2: not a JSON object"):
        load_documents(str(tmp_path / "bad.jsonl"))
    (tmp_path / "nofield.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(ExpspecError, match="field 'text'"):
        load_documents(str(tmp_path / "nofield.jsonl"))
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "n.parquet")
    with pytest.raises(ExpspecError, match="no 'text' column"):
        load_documents(str(tmp_path / "n.parquet"))
    (tmp_path / "c.csv").write_text("a,b")
    with pytest.raises(ExpspecError, match="expected .txt"):
        load_documents(str(tmp_path / "c.csv"))
    with pytest.raises(ExpspecError, match="unknown embedded"):
        load_documents("embedded:shakespeare")


def test_hf_corpus_offline_says_what_to_do(monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # the libraries read those variables when first imported; in a session that imported them
    # earlier the variables alone are ignored and the load retries an absent network (5 retries,
    # 23-46 s here) before the same error
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ExpspecError, match="cannot load dataset 'no-such-org/no-such-set'"):
        load_documents("hf:no-such-org/no-such-set")


def test_single_paragraph_documents_hold_out_whole_documents():
    docs = [Document(f"d{i}", f"text number {i:03d}") for i in range(20)]
    split = split_documents(docs, 0.1)
    assert len(split.val) == 2 and len(split.train) == 18


def test_short_documents_are_held_out_whole_not_cut():
    # 100 three-paragraph stories at 1%: the old rule moved a paragraph of EVERY story to
    # validation (22% of the text, and validation = story endings)
    docs = [Document(f"s{i}", "\n\n".join(f"Story {i} paragraph {j} " + "words " * (5 + (i * j) % 7)
                                          for j in range(3))) for i in range(100)]
    split = split_documents(docs, 0.01)
    val_chars = sum(len(d.text) for d in split.val)
    total = val_chars + sum(len(d.text) for d in split.train)
    assert abs(val_chars / total - 0.01) <= max(len(d.text) for d in docs) / total
    assert all(d in docs for d in split.val + split.train) and len(split.val) + len(split.train) == 100
    shuffled = split_documents(docs[::-1], 0.01)  # chosen by content, not by position
    assert sorted(d.name for d in shuffled.val) == sorted(d.name for d in split.val)


def _unit_tolerance(docs, val_fraction):
    """The stated bound: one small document, plus one paragraph of each split document."""
    from expspec.kernels.data.corpus import LARGE_DOC_FACTOR

    tol = 0
    small = [len(d.text) for d in docs if len(paragraphs(d.text)) <= LARGE_DOC_FACTOR / val_fraction]
    tol += max(small, default=0)
    tol += sum(max(len(p) for p in paragraphs(d.text)) + 2 for d in docs
               if len(paragraphs(d.text)) > LARGE_DOC_FACTOR / val_fraction)
    return tol


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(1, 400), st.integers(1, 60)), min_size=2, max_size=40),
       val_fraction=st.sampled_from([0.01, 0.05, 0.1, 0.3]))
def test_realised_validation_fraction_is_within_one_unit(sizes, val_fraction):
    docs = [Document(f"d{i}", "\n\n".join(f"d{i}p{j} " + "x" * ((i * 7 + j * 3) % length + 1)
                                          for j in range(n_paras)))
            for i, (n_paras, length) in enumerate(sizes)]
    try:
        split = split_documents(docs, val_fraction)
    except ExpspecError:
        assert all(len(paragraphs(d.text)) * val_fraction <= 10 for d in docs)  # only tiny corpora refuse
        return
    val_chars = sum(len(d.text) for d in split.val)
    total = val_chars + sum(len(d.text) for d in split.train)
    assert split.val and abs(val_chars - val_fraction * total) <= _unit_tolerance(docs, val_fraction)
    train_paras = {p for d in split.train for p in paragraphs(d.text)}
    assert not train_paras & {p for d in split.val for p in paragraphs(d.text)}  # no shared paragraph


def test_bpe_tokenizer_bytes_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPSPEC_CACHE", str(tmp_path))
    texts = ["It is a truth universally acknowledged, that a single man"] * 50 + ["café — naïve"] * 5
    tok = get_tokenizer("bpe:300", texts, fingerprint="abc")
    ids = tok.encode("a truth universally café")
    assert tok.decode(ids) == "a truth universally café"
    assert sum(tok.token_bytes[i] for i in ids) == len("a truth universally café".encode())
    assert tok.token_bytes[tok.eos_id] == 0 and tok.id == "bpe:300:abc"
    stream = tok.encode_documents(["ab", "cd"])
    assert stream[-1] == tok.eos_id and (stream == tok.eos_id).sum() == 2
    assert get_tokenizer("bpe:300", texts, fingerprint="abc").encode("truth") == tok.encode("truth")
    assert len(list((tmp_path / "tokenizers").glob("*.json"))) == 1
    for bad in ["bpe:x", "wordpiece:100", "bpe:10"]:
        with pytest.raises(ExpspecError):
            get_tokenizer(bad, texts)


def test_folder_with_an_empty_file_keeps_the_others(tmp_path):
    (tmp_path / "a.txt").write_text("Some text.")
    (tmp_path / "b.txt").write_text("")
    assert [d.text for d in load_documents(str(tmp_path))] == ["Some text."]
    (tmp_path / "a.txt").write_text("  ")
    with pytest.raises(ExpspecError, match="empty"):
        load_documents(str(tmp_path))


def test_fingerprint_names_the_split():
    docs = load_documents("embedded:austen")[:2]
    assert split_documents(docs, 0.05).fingerprint != split_documents(docs, 0.1).fingerprint
    assert split_documents(docs, 0.05).fingerprint == split_documents(docs, 0.05).fingerprint


def test_encode_documents_stops_at_max_tokens_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPSPEC_CACHE", str(tmp_path))
    texts = [f"document number {i} with some words" for i in range(50)]
    tok = get_tokenizer("bpe:300", texts, fingerprint="chunks")
    full = tok.encode_documents(texts)
    assert (tok.encode_documents(texts, max_tokens=100, chunk=7) == full[:100]).all()
    assert (tok.encode_documents(texts, chunk=7) == full).all()
