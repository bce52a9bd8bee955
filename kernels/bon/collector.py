"""The best-of-N collector: n samples of every prompt, scored, with pass@k and diversity.

The config is the seed's collector JSON, validated before anything loads (an unknown key,
a wrong type, or a k above samples_per_prompt is one error line naming it):

    {"base_model": "smollm2-135m-instruct", "adapter_name": null, "adapter_path": null,
     "prompts_file": "fixtures/data/prompts.jsonl", "answer_field": "answer",
     "k_values": [1, 2, 4, 8, 16], "samples_per_prompt": 16, "max_new_tokens": 12,
     "temperature": 0.8, "top_p": 0.95, "scorer": "numeric", "output_dir": "reports/bon_runs",
     "metadata": {}}

base_model, prompts_file, k_values, samples_per_prompt and max_new_tokens are required;
adapter_name and adapter_path default to null (no adapter), metadata to {}, seed to
common.seed, and the rest (``KNOB_FIELDS``: also prompt_field, id_field, n_prompts,
chat_template, max_batch) to the [bon] knob of the same name (kernels/bon/config.py). The
value rules are ``check_collector_values``, which the [bon] table's validation runs too.

All samples of a prompt, and several prompts, share each batched forward
(kernels/models/sampler.py). The run file ``<output_dir>/bon_run_<timestamp>.jsonl`` holds a
header record (config, model and its files' fingerprint, adapter and its
``adapter_fingerprint``, git commit, seed, prompts fingerprint), one record per prompt (id,
prompt, answer, samples, n, c, pass@k per k, diversity, latency, tokens) and a closing
summary record (per-batch latency and tokens/s, mean pass@k). It is written atomically when
the run ends: a killed run leaves no file, never a partial one.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from expspec.kernels.atomic_io import jsonable, jsonl_objects, read_json, write_text_atomic
from expspec.kernels.bon.config import KNOBS
from expspec.kernels.bon.prompts import read_prompts
from expspec.kernels.bon.scoring import diversity, get_scorer, pass_at_k
from expspec.kernels.config import COMMON
from expspec.kernels.errors import ExpspecError
from expspec.kernels.models.pretrained import model_fingerprint
from expspec.kernels.provenance import expspec_version, file_fingerprint, git_commit

RUN_PREFIX = "bon_run_"


# the collector fields that are [bon] knobs (same name, same default)
KNOB_FIELDS = ("prompt_field", "answer_field", "id_field", "n_prompts", "k_values", "samples_per_prompt",
               "max_new_tokens", "temperature", "top_p", "scorer", "chat_template", "max_batch", "output_dir")


@dataclass
class CollectorConfig:
    base_model: str
    prompts_file: str
    k_values: list[int]
    samples_per_prompt: int
    max_new_tokens: int
    adapter_name: str | None = None
    adapter_path: str | None = None
    prompt_field: str = KNOBS["prompt_field"]
    answer_field: str = KNOBS["answer_field"]
    id_field: str = KNOBS["id_field"]
    n_prompts: int = KNOBS["n_prompts"]
    temperature: float = KNOBS["temperature"]
    top_p: float = KNOBS["top_p"]
    scorer: str = KNOBS["scorer"]
    chat_template: bool = KNOBS["chat_template"]
    max_batch: int = KNOBS["max_batch"]
    output_dir: str = KNOBS["output_dir"]
    metadata: dict = field(default_factory=dict)
    seed: int = COMMON.knobs["seed"]

    def to_dict(self) -> dict:
        return asdict(self)


def _json_types(default: Any) -> tuple[type, ...]:
    return (float, int) if isinstance(default, float) else (type(default),)


# field -> accepted JSON types (an int is a float; null only where listed)
_TYPES: dict[str, tuple[type, ...]] = {
    "base_model": (str,), "prompts_file": (str,), **{key: _json_types(KNOBS[key]) for key in KNOB_FIELDS},
    "adapter_name": (str, type(None)), "adapter_path": (str, type(None)), "metadata": (dict,), "seed": (int,),
}


def _type_ok(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in kinds:
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, kinds)


def collector_config(data: Mapping[str, Any], where: str = "collector config") -> CollectorConfig:
    """Validate a collector config mapping (a parsed JSON file); one error line on bad input."""
    if not isinstance(data, Mapping):
        raise ExpspecError(f"{where}: expected a JSON object, got {type(data).__name__}")
    known = [f.name for f in fields(CollectorConfig)]
    for key in data:
        if key not in known:
            raise ExpspecError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
    for f in fields(CollectorConfig):
        if f.default is MISSING and f.default_factory is MISSING and f.name not in data:
            raise ExpspecError(f"{where}: missing required key {f.name!r}")
    for key, value in data.items():
        if not _type_ok(value, _TYPES[key]):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in _TYPES[key])
            raise ExpspecError(f"{where}: {key}: expected {expected}, got {type(value).__name__} {value!r}")
    for key, value in data.items():
        if _TYPES[key][0] is float and isinstance(value, int) and abs(value) > 2**1023:
            raise ExpspecError(f"{where}: {key}: {str(value)[:20]}... is too large for a float")
    cfg = CollectorConfig(**{k: (float(v) if _TYPES[k][0] is float else v) for k, v in data.items()})
    check_collector_config(cfg, where)
    return cfg


def check_collector_values(values: Mapping[str, Any], *, where: str, name: Callable[[str], str]) -> None:
    """The one set of value rules for the collector's knob fields, for a collector config
    (``where`` = the file, names as they are) and the [bon] table (names ``bon.<knob>``)."""
    lead = f"{where}: " if where else ""
    n, ks = values["samples_per_prompt"], values["k_values"]
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) for k in ks):
        raise ExpspecError(f"{lead}{name('k_values')}: expected a non-empty list of integers, got {ks!r}")
    if any(k < 1 for k in ks) or sorted(set(ks)) != list(ks):
        raise ExpspecError(f"{lead}{name('k_values')}: expected increasing integers >= 1, got {ks}")
    if n < 2:
        raise ExpspecError(f"{lead}{name('samples_per_prompt')}: expected >= 2 (best-of-N needs several samples), "
                           f"got {n}")
    if ks[-1] > n:
        raise ExpspecError(f"{lead}{name('k_values')} has {ks[-1]} > {name('samples_per_prompt')} {n}: "
                           f"pass@{ks[-1]} from {n} samples is undefined")
    if ks[0] != 1:
        raise ExpspecError(f"{lead}{name('k_values')}: must start at 1 (pass@1 is what best-of-N is compared "
                           f"with), got {ks}")
    for key in ("max_new_tokens", "max_batch"):
        if values[key] < 1:
            raise ExpspecError(f"{lead}{name(key)}: expected >= 1, got {values[key]}")
    if not values["temperature"] > 0:
        raise ExpspecError(f"{lead}{name('temperature')}: expected > 0, got {values['temperature']}")
    if not 0 < values["top_p"] <= 1:
        raise ExpspecError(f"{lead}{name('top_p')}: expected in (0, 1], got {values['top_p']}")
    if values["n_prompts"] < 0:
        raise ExpspecError(f"{lead}{name('n_prompts')}: expected >= 0 (0 = all), got {values['n_prompts']}")
    try:
        get_scorer(values["scorer"])
    except ExpspecError as err:
        raise ExpspecError(f"{lead}{name('scorer')}: {err}") from None


def check_collector_config(cfg: CollectorConfig, where: str = "collector config") -> None:
    check_collector_values(cfg.to_dict(), where=where, name=lambda key: key)
    if cfg.adapter_name is not None and cfg.adapter_path is None:
        raise ExpspecError(f"{where}: adapter_name {cfg.adapter_name!r} given without adapter_path")


def read_collector_config(path: str | Path) -> CollectorConfig:
    return collector_config(read_json(path, "collector config"), f"collector config {path}")


def load_prompts(cfg: CollectorConfig) -> list[dict]:
    rows = read_prompts(cfg.prompts_file, prompt_field=cfg.prompt_field, answer_field=cfg.answer_field,
                        id_field=cfg.id_field)
    return rows[:cfg.n_prompts] if cfg.n_prompts else rows


def load_model(base_model: str, adapter_path: str | None, *, device: str):
    """(model, tokenizer): the base LM, with the peft adapter on top when one is given."""
    from expspec.kernels.models.pretrained import load_causal_lm

    if adapter_path is not None and not (Path(adapter_path) / "adapter_config.json").is_file():
        raise ExpspecError(f"adapter_path {adapter_path}: no adapter_config.json there (expected a peft adapter dir)")
    model, tok = load_causal_lm(base_model, device=device)
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path).to(device).eval()
    return model, tok


def adapter_fingerprint(adapter_path: str | Path) -> str:
    """What a peft adapter folder makes the model do, hashed: adapter_config.json as parsed,
    its ``target_modules`` sorted (peft writes that set in an order that varies per
    process), and the bytes of the weight files (``adapter_model.*``). Nothing else in the
    folder counts - training.json (wall-clock seconds), the step log, peft's README, nor the
    config's ``base_model_name_or_path`` (a path on the trainer's disk; the run header
    fingerprints the base model's files) - so two bit-identical trainings share a
    fingerprint and different weights never do."""
    folder = Path(adapter_path)
    weights = sorted(folder.glob("adapter_model.*"))
    if not (folder / "adapter_config.json").is_file() or not weights:
        raise ExpspecError(f"adapter_path {folder}: expected a peft adapter dir (adapter_config.json and "
                           f"adapter_model.*)")
    config = read_json(folder / "adapter_config.json", "adapter config")
    if not isinstance(config, dict):
        raise ExpspecError(f"adapter config {folder / 'adapter_config.json'}: expected a JSON object")
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    config.pop("base_model_name_or_path", None)  # where the base model sat on the trainer's disk
    digest = hashlib.sha256(b"adapter_config.json\0" + json.dumps(config, sort_keys=True).encode())
    for path in weights:
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _sample_record(s, gold: str, scorer) -> dict:
    answer, score = scorer.score(s.text, gold)
    return {"text": s.text, "answer": answer, "score": score, "logprob": s.logprob,
            "sampling_logprob": s.sampling_logprob, "tokens": len(s.token_ids), "token_ids": s.token_ids,
            "finished": s.finished, "latency_s": s.latency_s,
            "first_token_entropy": s.token_entropies[0] if s.token_entropies else 0.0,
            "mean_token_entropy": sum(s.token_entropies) / len(s.token_entropies) if s.token_entropies else 0.0}


def prompt_record(index: int, prompt: dict, samples: list[dict], k_values: list[int]) -> dict:
    n, c = len(samples), int(sum(s["score"] for s in samples))
    return {"record": "prompt", "index": index, "id": prompt["id"], "prompt": prompt["prompt"],
            "answer": prompt["answer"], "meta": prompt.get("meta", {}), "samples": samples, "n": n, "c": c,
            "pass_at_k": {str(k): pass_at_k(n, c, k) for k in k_values},
            "diversity": diversity([s["answer"] for s in samples], [s["mean_token_entropy"] for s in samples]),
            "latency_s": sum(s["latency_s"] for s in samples), "tokens": sum(s["tokens"] for s in samples)}


def collect(cfg: CollectorConfig, *, device: str, model=None, tokenizer=None,
            log: Callable[[str], None] = lambda line: None, out_path: str | Path | None = None) -> Path:
    """Sample, score and write the run file; returns its path. ``model``/``tokenizer``: an
    already loaded model (else loaded from the config)."""
    from expspec.kernels.models.sampler import apply_chat_template, sample
    from expspec.kernels.progress import advance

    check_collector_config(cfg)
    prompts = load_prompts(cfg)  # before the model: a bad file fails in a second
    scorer = get_scorer(cfg.scorer)
    if model is None:
        model, tokenizer = load_model(cfg.base_model, cfg.adapter_path, device=device)
    encoded = [apply_chat_template(tokenizer, p["prompt"]) if cfg.chat_template
               else list(tokenizer(p["prompt"])["input_ids"]) for p in prompts]
    batches: list[dict] = []

    def on_batch(done: int, total: int, seconds: float, tokens: int) -> None:
        batches.append({"sequences_done": done, "seconds": seconds, "tokens": tokens,
                        "tok_per_s": tokens / seconds if seconds > 0 else 0.0})
        advance("bon samples", done, total)
        log(f"sampled {done}/{total} sequences ({tokens / max(seconds, 1e-9):.1f} tok/s)")

    started = time.time()
    drawn = sample(model, tokenizer, encoded, n=cfg.samples_per_prompt, max_new_tokens=cfg.max_new_tokens,
                   temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed, max_batch=cfg.max_batch,
                   on_batch=on_batch)
    seconds = time.time() - started
    n = cfg.samples_per_prompt
    records = [prompt_record(i, p, [_sample_record(s, p["answer"], scorer) for s in drawn[i * n:(i + 1) * n]],
                             cfg.k_values) for i, p in enumerate(prompts)]
    tokens = sum(r["tokens"] for r in records)
    header = {"record": "header", "config": cfg.to_dict(), "model": cfg.base_model,
              "model_fingerprint": model_fingerprint(cfg.base_model),
              "adapter": ({"name": cfg.adapter_name, "path": cfg.adapter_path,
                           "fingerprint": adapter_fingerprint(cfg.adapter_path)} if cfg.adapter_path else None),
              "git_commit": git_commit(), "expspec": expspec_version(), "seed": cfg.seed,
              "prompts_fingerprint": file_fingerprint(cfg.prompts_file), "n_prompts": len(prompts),
              "device": device, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))}
    summary = {"record": "summary", "batches": batches, "seconds": seconds, "tokens": tokens,
               "tok_per_s": tokens / seconds if seconds > 0 else 0.0,
               "mean_pass_at_k": {str(k): sum(r["pass_at_k"][str(k)] for r in records) / len(records)
                                  for k in cfg.k_values}}
    out = Path(out_path) if out_path else _run_path(Path(cfg.output_dir), started)
    write_text_atomic(out, "".join(json.dumps(jsonable(r)) + "\n" for r in [header, *records, summary]))
    return out


def _run_path(folder: Path, started: float) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    path, n = folder / f"{RUN_PREFIX}{stamp}.jsonl", 1
    while path.exists():
        n += 1
        path = folder / f"{RUN_PREFIX}{stamp}-{n}.jsonl"
    return path


@dataclass
class Run:
    path: Path
    header: dict
    prompts: list[dict]
    summary: dict

    @property
    def label(self) -> str:
        """"base", or the adapter's name (its folder's name when the config gave none)."""
        adapter = self.header.get("adapter")
        if not adapter:
            return "base"
        return adapter.get("name") or Path(adapter["path"]).name


DIVERSITY_KEYS = ("unique_fraction", "answer_entropy", "mean_token_entropy")


def read_run(path: str | Path) -> Run:
    """A run file: header, prompt records, summary; one error line naming file and line otherwise."""
    path = Path(path)
    records = []
    for number, row in jsonl_objects(path, "run file"):
        if row.get("record") not in ("header", "prompt", "summary"):
            raise ExpspecError(f"run file {path} line {number}: expected a header, prompt or summary record")
        records.append(row)
    if not records or records[0]["record"] != "header":
        raise ExpspecError(f"run file {path}: the first line must be the header record")
    if records[-1]["record"] != "summary" or len(records) < 3:
        raise ExpspecError(f"run file {path}: no closing summary record (an incomplete or foreign file)")
    header = records[0]
    for key, kinds in (("config", (dict,)), ("model", (str,)), ("seed", (int,)), ("adapter", (dict, type(None)))):
        if key not in header or not isinstance(header[key], kinds) or isinstance(header[key], bool):
            raise ExpspecError(f"run file {path} line 1: header field {key!r} missing or not "
                               f"{' or '.join('null' if k is type(None) else k.__name__ for k in kinds)}")
    ks = header["config"].get("k_values")
    if not isinstance(ks, list) or not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1
                                                     for k in ks):
        raise ExpspecError(f"run file {path} line 1: header field 'config.k_values' is not a list of ints >= 1")
    prompts = records[1:-1]
    number_kinds = (int, float)
    for number, row in enumerate(prompts, 2):
        for key, kind in (("id", (str,)), ("samples", (list,)), ("n", (int,)), ("c", (int,)), ("pass_at_k", (dict,)),
                          ("diversity", (dict,)), ("latency_s", number_kinds), ("tokens", (int,))):
            if not isinstance(row.get(key), kind) or isinstance(row.get(key), bool):
                raise ExpspecError(f"run file {path} line {number}: field {key!r} missing or not "
                                   f"{' or '.join(k.__name__ for k in kind)}")
        if not all(isinstance(row["diversity"].get(k), number_kinds) and not isinstance(row["diversity"].get(k), bool)
                   for k in DIVERSITY_KEYS):
            raise ExpspecError(f"run file {path} line {number}: field 'diversity' needs numbers "
                               f"{', '.join(DIVERSITY_KEYS)}")
        if row["n"] != len(row["samples"]) or not 0 <= row["c"] <= row["n"]:
            raise ExpspecError(f"run file {path} line {number}: n={row['n']}, c={row['c']} do not match its "
                               f"{len(row['samples'])} samples")
    return Run(path, records[0], prompts, records[-1])
