"""Phase 1's data file: one JSON record per context (the seed's schema) and a metadata sidecar.

Each line of ``experiment_data.jsonl`` is one starting point:

    context_index, initial_context, starting_point (text), starting_point_token_ids,
    starting_hidden_vector_dtype ("float16"), starting_hidden_vector (hidden_size floats,
    each exactly a float16), generations: [{generation_index, token_ids, generated_text,
    model_probs}] (gen_number of them, gen_length tokens each), config (the seed's echo),
    and for every eval length L: individual_tempnorms_L, tempnorm_mean_L,
    tempnorm_variance_L and their logs log_individual_tempnorms_L, log_tempnorm_mean_L,
    log_tempnorm_variance_L (see tempnorms.py).

``starting_point_token_ids`` is an addition to the seed: decoding and re-encoding text
is not the identity, and a teacher-forced rescoring must see the very tokens sampled.
Non-finite numbers are written as strings ("-inf": a zero variance), as everywhere in
expspec. The sidecar ``<stem>.meta.json`` says how the file was made: model, alpha, seeds,
git commit, the resolved config, input fingerprints, generation speed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from expspec.kernels.atomic_io import jsonable, read_json, write_json_atomic, write_text_atomic
from expspec.kernels.errors import ExpspecError
from expspec.kernels.tempnorm.tempnorms import PER_LENGTH_FIELDS

FORMAT = "expspec.tempnorm.experiment_data.v1"
SEED_CONFIG_KEYS = ("model", "gen_length", "eval_lengths", "gen_number", "alpha", "initial_wander", "seed")


def meta_path(data_file: str | Path) -> Path:
    """``data.jsonl`` -> ``data.meta.json`` next to it."""
    return Path(data_file).with_suffix(".meta.json")


def write_experiment_data(path: str | Path, records: Sequence[Mapping], meta: Mapping) -> Path:
    """The records (one line each) and the sidecar, each written atomically."""
    text = "".join(json.dumps(jsonable(r), separators=(",", ":")) + "\n" for r in records)
    write_text_atomic(path, text)
    write_json_atomic(meta_path(path), dict(meta, format=FORMAT, n_records=len(records)))
    return Path(path)


def _number(value: Any) -> float | None:
    """A JSON number, or one of the strings expspec writes for non-finite floats."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return None


class _Check:
    def __init__(self, where: str):
        self.where = where

    def need(self, ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise ExpspecError(f"{self.where}: field {field}: expected {expected}")

    def numbers(self, record: Mapping, field: str, n: int | None = None, finite: bool = True) -> list[float]:
        values = record.get(field)
        ok = isinstance(values, list) and (n is None or len(values) == n)
        nums = [_number(v) for v in values] if ok else []
        ok = ok and all(v is not None and (math.isfinite(v) or not finite) for v in nums)
        self.need(ok, field, f"a list of {n if n is not None else 'some'} {'finite ' if finite else ''}numbers")
        return nums  # type: ignore[return-value]

    def number(self, record: Mapping, field: str, finite: bool = True) -> float:
        value = _number(record.get(field))
        self.need(value is not None and (math.isfinite(value) or not finite), field,
                  "a finite number" if finite else "a number")
        return value  # type: ignore[return-value]


def check_record(record: Any, eval_lengths: Sequence[int], where: str) -> dict:
    """Validate one record against the schema; return it with numbers as floats."""
    c = _Check(where)
    c.need(isinstance(record, dict), "(record)", "a JSON object per line")
    for field in ("initial_context", "starting_point"):
        c.need(isinstance(record.get(field), str), field, "a string")
    c.need(isinstance(record.get("context_index"), int), "context_index", "an integer")
    ids = record.get("starting_point_token_ids")
    c.need(isinstance(ids, list) and len(ids) > 0 and all(isinstance(t, int) for t in ids),
           "starting_point_token_ids", "a non-empty list of token ids")
    c.need(record.get("starting_hidden_vector_dtype") == "float16", "starting_hidden_vector_dtype", '"float16"')
    hidden = c.numbers(record, "starting_hidden_vector")
    c.need(len(hidden) > 0, "starting_hidden_vector", "a non-empty list of numbers")
    gens = record.get("generations")
    c.need(isinstance(gens, list) and len(gens) > 0, "generations", "a non-empty list of completions")
    longest = max(eval_lengths)
    for g, gen in enumerate(gens):
        at = f"generations[{g}]"
        c.need(isinstance(gen, dict), at, "an object {token_ids, generated_text, model_probs}")
        c.need(isinstance(gen.get("generated_text"), str), f"{at}.generated_text", "a string")
        tokens = gen.get("token_ids")
        c.need(isinstance(tokens, list) and all(isinstance(t, int) for t in tokens) and len(tokens) >= longest,
               f"{at}.token_ids", f"a list of >= {longest} token ids (the longest eval length)")
        probs = c.numbers(gen, "model_probs", len(tokens))
        c.need(all(0.0 < p <= 1.0 for p in probs), f"{at}.model_probs", "probabilities in (0, 1]")
        gen["model_probs"] = probs
    n = len(gens)
    for L in eval_lengths:
        for name in PER_LENGTH_FIELDS:
            field = f"{name}_{L}"
            finite = name not in ("tempnorm_variance", "log_tempnorm_variance")  # 0 variance: log -inf
            if name.endswith("individual_tempnorms"):
                record[field] = c.numbers(record, field, n, finite)
            else:
                record[field] = c.number(record, field, finite)
    record["starting_hidden_vector"] = hidden
    return record


def _eval_lengths_of(first: Any, meta: Mapping, path: Path, number: int) -> list[int]:
    """The sidecar's eval lengths, else the first record's config echo (as the seed reads them)."""
    config = first.get("config") if isinstance(first, dict) else None
    lengths = meta.get("eval_lengths") or (config.get("eval_lengths") if isinstance(config, dict) else None)
    if not (isinstance(lengths, list) and lengths and all(isinstance(v, int) and v >= 1 for v in lengths)):
        raise ExpspecError(f"{path}:{number}: no eval_lengths (expected a list of lengths in the sidecar "
                           f"{meta_path(path).name} or in the first record's config)")
    return lengths


def read_experiment_data(path: str | Path) -> tuple[list[dict], dict, list[int]]:
    """(records, sidecar meta or {}, eval lengths) of a phase 1 data file, every record
    checked; the first bad line is one ExpspecError naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise ExpspecError(f"data file {path}: file not found (expected the JSONL of `expspec tempnorm generate`)")
    meta = read_json(meta_path(path), "data sidecar") if meta_path(path).is_file() else {}
    if not isinstance(meta, dict):
        raise ExpspecError(f"data sidecar {meta_path(path)}: expected a JSON object")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ExpspecError(f"data file {path}: not UTF-8 text ({exc})") from None
    records: list[dict] = []
    lengths: list[int] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ExpspecError(f"{where}: not a JSON object (expected one record per line)") from None
        if not records:
            lengths = _eval_lengths_of(record, meta, path, number)
        record = check_record(record, lengths, where)
        if records:
            first = records[0]
            c = _Check(where)
            c.need(len(record["starting_hidden_vector"]) == len(first["starting_hidden_vector"]),
                   "starting_hidden_vector", f"{len(first['starting_hidden_vector'])} numbers, as line 1's")
            c.need(len(record["generations"]) == len(first["generations"]), "generations",
                   f"{len(first['generations'])} completions, as the first record's")
        records.append(record)
    if not records:
        raise ExpspecError(f"data file {path}: empty (expected one JSON record per line)")
    return records, meta, lengths
