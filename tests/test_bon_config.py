"""Best-of-N inputs: the [bon] knobs, the collector config, prompt and run files. Bad input
is one ExpspecError line naming the key/file/line; the shipped prompt set is what its
generator makes."""

import json

import pytest

from expspec.kernels.bon.collector import KNOB_FIELDS, collector_config, read_collector_config, read_run
from expspec.kernels.bon.config import KNOBS
from expspec.kernels.bon.pipeline import collector_config as collector_config_from_table
from expspec.kernels.bon.pipeline import holdout_ids
from expspec.kernels.bon.prompts import (CATEGORIES, generate_prompts, held_out_by_category, prompts_jsonl,
                                         read_prompts, shipped_prompts_file)
from expspec.kernels.config import COMMON, resolve_scale
from expspec.kernels.errors import ExpspecError

FIELDS = {"prompt_field": "prompt", "answer_field": "answer", "id_field": "id"}

GOOD = {"base_model": "smollm2-135m-instruct", "adapter_name": None, "adapter_path": None,
        "prompts_file": "prompts.jsonl", "answer_field": "answer", "k_values": [1, 2, 4, 8],
        "samples_per_prompt": 8, "max_new_tokens": 12, "temperature": 0.8, "top_p": 0.95, "scorer": "numeric",
        "output_dir": "reports/bon_runs", "metadata": {"who": "me"}}


def test_good_config_reads():
    cfg = collector_config(GOOD)
    assert cfg.k_values == [1, 2, 4, 8] and cfg.chat_template and isinstance(cfg.temperature, float)
    assert collector_config(dict(GOOD, temperature=1)).temperature == 1.0  # an int is a float


def test_collector_defaults_are_the_knobs():
    """A field the collector JSON leaves out takes the [bon] knob's one default (seed:
    common.seed's), and the table's config is the same config field for field."""
    required = ("base_model", "prompts_file", "k_values", "samples_per_prompt", "max_new_tokens")
    cfg = collector_config({k: GOOD[k] for k in required})
    for key in KNOB_FIELDS:
        if key not in required:
            assert getattr(cfg, key) == KNOBS[key], key
    assert cfg.seed == COMMON.knobs["seed"] and cfg.adapter_path is None and cfg.metadata == {}
    resolved = resolve_scale("smoke")
    from_table = collector_config_from_table(resolved["bon"], resolved["common"], "out")
    for key in KNOB_FIELDS:
        if key != "output_dir":
            assert getattr(from_table, key) == resolved["bon"][key], key
    assert from_table.seed == resolved["common"]["seed"]


@pytest.mark.parametrize("change", [{"samples_per_prompt": 1, "k_values": [1]}, {"k_values": [2, 4]},
                                    {"k_values": [1, 32]}, {"top_p": 1.5}, {"max_batch": 0}, {"n_prompts": -1},
                                    {"temperature": 0}, {"scorer": "fuzzy"}])
def test_collector_json_and_profile_table_share_one_rule(change):
    """The same value is refused by a collector JSON and by the [bon] table, naming the field."""
    with pytest.raises(ExpspecError) as from_json:
        collector_config(dict(GOOD, **change))
    sets = [f"bon.{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in change.items()]
    with pytest.raises(ExpspecError) as from_table:
        resolve_scale("smoke", overrides=sets)
    field = next(iter(change))
    assert field in str(from_json.value) and f"bon.{field}" in str(from_table.value)


@pytest.mark.parametrize("change, words", [
    ({"k_values": [4, 8, 16]}, ["16 > samples_per_prompt 8", "pass@16 from 8 samples is undefined"]),
    ({"colour": "red"}, ["unknown key 'colour'"]),
    ({"samples_per_prompt": "8"}, ["samples_per_prompt: expected int, got str"]),
    ({"samples_per_prompt": 8.0}, ["samples_per_prompt: expected int"]),
    ({"chat_template": 1}, ["chat_template: expected bool"]),
    ({"max_new_tokens": True}, ["max_new_tokens: expected int"]),
    ({"temperature": float("nan")}, ["temperature: expected float"]),
    ({"k_values": [2, 1]}, ["k_values: expected increasing"]),
    ({"k_values": ["1"]}, ["k_values: expected a non-empty list of integers"]),
    ({"k_values": []}, ["k_values"]),
    ({"top_p": 0}, ["top_p"]),
    ({"scorer": "fuzzy"}, ["scorer 'fuzzy'"]),
    ({"adapter_name": "x"}, ["adapter_name 'x' given without adapter_path"]),
    ({"metadata": []}, ["metadata: expected dict"]),
])
def test_bad_config_is_one_line_naming_the_field(change, words):
    with pytest.raises(ExpspecError) as err:
        collector_config(dict(GOOD, **change), "collector config c.json")
    message = str(err.value)
    assert "\n" not in message and message.startswith("collector config c.json")
    for word in words:
        assert word in message


def test_missing_required_key_and_file_errors(tmp_path):
    with pytest.raises(ExpspecError, match="missing required key 'prompts_file'"):
        collector_config({k: v for k, v in GOOD.items() if k != "prompts_file"})
    with pytest.raises(ExpspecError, match="file not found"):
        read_collector_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ExpspecError, match="not valid JSON"):
        read_collector_config(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ExpspecError, match="expected a JSON object"):
        read_collector_config(bad)


@pytest.mark.parametrize("sets, word", [
    (["bon.k_values=1,2,4,32"], "32 > bon.samples_per_prompt 16"),
    (["bon.k_values=2,4"], "must start at 1"),
    (["bon.predictor_m=16"], "predictor_m"),
    (["bon.emergence_tau=1.5"], "emergence_tau"),
    (["bon.coverage_fit_max_k=16"], "coverage_fit_max_k"),
    (["bon.scorer=fuzzy"], "bon.scorer"),
    (["bon.sft_holdout_every=1"], "sft_holdout_every"),
    (["bon.adapter_name=a/b"], "adapter_name"),
    (["bon.samples_per_prompt=1", "bon.k_values=1"], "samples_per_prompt"),
    (["bon.colour=red"], "unknown key bon.colour"),
    (["bon.samples_per_prompt=many"], "cannot read 'many' as int"),
])
def test_bad_knobs_fail_config_resolution(sets, word):
    with pytest.raises(ExpspecError, match=word.replace(".", r"\.")):
        resolve_scale("smoke", overrides=sets)


def test_profiles_resolve():
    for scale in ("smoke", "hero"):
        bon = resolve_scale(scale)["bon"]
        assert bon["k_values"][-1] <= bon["samples_per_prompt"]


def test_shipped_prompts_are_the_generators():
    rows = generate_prompts()
    assert shipped_prompts_file().read_text(encoding="utf-8") == prompts_jsonl(rows)
    assert len(rows) >= 60 and len({r["id"] for r in rows}) == len(rows)
    difficulties = {r["difficulty"] for r in rows}
    assert difficulties == {d for _, d, _ in CATEGORIES} and len(difficulties) >= 4
    first = rows[:len(CATEGORIES)]  # round-robin: any prefix spans every category
    assert {r["category"] for r in first} == {c for c, _, _ in CATEGORIES}
    assert generate_prompts() == rows  # deterministic
    for r in rows:  # the answer is right
        q = r["prompt"]
        if q.startswith("What is "):
            a, op, b = q[len("What is "):q.index("?")].split()
            assert int(r["answer"]) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
    assert len(read_prompts(shipped_prompts_file(), **FIELDS)) == len(rows)


@pytest.mark.parametrize("text, word", [
    ("", "no prompts"), ("{bad\n", "line 1: not valid JSON"), ('{"prompt": "q"}\n', "line 1: missing field 'answer'"),
    ('{"prompt": "q", "answer": "1"}\n[1]\n', "line 2: expected a JSON object"),
    ('{"prompt": "", "answer": "1"}\n', "non-empty text"), ('{"prompt": "q", "answer": [1]}\n', "text or a number"),
    ('{"id": "a", "prompt": "q", "answer": 1}\n{"id": "a", "prompt": "r", "answer": 2}\n', "duplicate id 'a'"),
])
def test_malformed_prompts_file(tmp_path, text, word):
    path = tmp_path / "p.jsonl"
    path.write_text(text)
    with pytest.raises(ExpspecError, match=word):
        read_prompts(path, **FIELDS)


HEADER = {"record": "header", "config": {"k_values": [1, 2]}, "model": "m", "seed": 0, "adapter": None}


@pytest.mark.parametrize("lines, word", [
    ([], "first line must be the header"), (["{x"], "line 1: not valid JSON"),
    ([{"record": "header"}, {"record": "prompt"}], "no closing summary"),
    ([HEADER, {"record": "prompt", "id": "a", "samples": [], "n": 2, "c": 0, "pass_at_k": {}, "tokens": 0,
               "latency_s": 0.1, "diversity": {"unique_fraction": 0, "answer_entropy": 0, "mean_token_entropy": 0}},
      {"record": "summary"}], "n=2, c=0 do not match"),
    ([HEADER, {"record": "prompt", "id": "a"}, {"record": "summary"}], "field 'samples'"),
    ([{"record": "header"}, {"record": "prompt", "id": "a"}, {"record": "summary"}], "header field 'config'"),
    ([dict(HEADER, config={"k_values": ["a"]}), {"record": "prompt"}, {"record": "summary"}], "config.k_values"),
    ([{"record": "what"}], "expected a header, prompt or summary record"),
])
def test_malformed_run_file(tmp_path, lines, word):
    path = tmp_path / "bon_run_x.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    with pytest.raises(ExpspecError, match=word):
        read_run(path)


@pytest.mark.parametrize("n_prompts", [0, 48])
def test_sft_holdout_covers_every_category_on_both_sides(n_prompts):
    """Held out by position within each category: every category is both trained on and held
    out (a category-blind "every 4th of the file" held out 3 whole categories of 12)."""
    resolved = resolve_scale("smoke", overrides=[f"bon.n_prompts={n_prompts}"])
    held = set(holdout_ids(resolved["bon"], resolved["common"]))
    rows = read_prompts(shipped_prompts_file(), **FIELDS)[:n_prompts or None]
    categories = {r["category"] for r in generate_prompts()}
    trained_in = {r["meta"]["category"] for r in rows if r["id"] not in held}
    held_in = {r["meta"]["category"] for r in rows if r["id"] in held}
    assert trained_in == held_in == categories
    every = resolved["bon"]["sft_holdout_every"]
    assert len(held) == sum(len([r for r in rows if r["meta"]["category"] == c]) // every for c in categories)


def test_holdout_without_categories_and_off():
    rows = [{"id": f"p{i}", "meta": {}} for i in range(9)]
    assert held_out_by_category(rows, every=3) == ["p2", "p5", "p8"]
    assert held_out_by_category(rows, every=0) == []
