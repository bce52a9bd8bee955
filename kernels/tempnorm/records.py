"""Phase 1's data file: one JSON record per context (the seed's schema) and a metadata sidecar.

Each line of ``experiment_data.jsonl`` is one starting point:

    context_index, initial_context, starting_point (text), starting_point_token_ids,
    starting_hidden_vector_dtype ("float16"), starting_hidden_vector (hidden_size floats,
    each exactly a float16), generations: [{generation_index, token_ids, generated_text,
    model_probs}] (gen_number of them, gen_length tokens each), config (the seed's echo
    of model, gen_length, eval_lengths, gen_number, alpha, initial_wander, seed; + dtype),
    and for every eval length L: individual_tempnorms_L, tempnorm_mean_L,
    tempnorm_variance_L and their logs log_individual_tempnorms_L, log_tempnorm_mean_L,
    log_tempnorm_variance_L (see tempnorms.py).

``starting_point_token_ids`` is an addition to the seed: decoding and re-encoding text
is not the identity, and a teacher-forced rescoring must see the very tokens sampled.
Non-finite numbers are written as strings ("-inf": a zero variance's log; "inf": a linear
value past float64, possible only for alpha < 1), as everywhere in expspec. The sidecar
``<stem>.meta.json`` says how the file was made: model, dtype, alpha, seeds, git commit,
the knobs phase 1 read, input fingerprints, generation speed, and the data file's own
record count and fingerprint.

Writing: ``check_output_paths`` runs before any work (neither path a folder, their folder
creatable); ``write_experiment_data`` writes both files to temp files first and renames
them last, the old sidecar removed before the new data lands, so a failure never leaves
a new data file beside a stale sidecar. Reading: every record is checked against the
schema, against the first record's config echo and against the sidecar (its fields,
``n_records`` and ``data_fingerprint``); the first disagreement is one ExpspecError.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from expspec.kernels.atomic_io import json_number, jsonable, parse_json, read_json, write_text_atomic
from expspec.kernels.errors import ExpspecError
from expspec.kernels.tempnorm.tempnorms import PER_LENGTH_FIELDS

FORMAT = "expspec.tempnorm.experiment_data.v1"
SEED_CONFIG_KEYS = ("model", "gen_length", "eval_lengths", "gen_number", "alpha", "initial_wander", "seed")
ECHO_KEYS = (*SEED_CONFIG_KEYS, "dtype")  # each record's config echo: the seed's keys + the weights' dtype
# linear-scale fields (>= 0, may be inf); their logs must be finite except a zero variance's -inf
LINEAR_FIELDS = ("individual_tempnorms", "tempnorm_mean", "tempnorm_variance")


def meta_path(data_file: str | Path) -> Path:
    """``data.jsonl`` -> ``data.meta.json`` next to it."""
    return Path(data_file).with_suffix(".meta.json")


def data_fingerprint(data: bytes) -> str:
    """The data file's fingerprint as the sidecar records it (sha256, as provenance's)."""
    return hashlib.sha256(data).hexdigest()[:16]


def check_output_paths(path: str | Path) -> None:
    """Before any work: the data file and its sidecar can be written there (neither is a
    folder; their folder exists or can be made, and is writable). One ExpspecError if not."""
    path = Path(path)
    for target, what in ((path, "data file"), (meta_path(path), "data sidecar")):
        if target.is_dir():
            raise ExpspecError(f"{what} {target}: is a directory, expected a file path")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ExpspecError(f"data file {path}: {folder} is not a directory, cannot create the file's folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExpspecError(f"data file {path}: folder {folder} is not writable")


def _pending(target: Path, text: str) -> Path:
    """``text`` written (atomically) to a hidden name beside ``target``, for a rename later."""
    return write_text_atomic(target.with_name(f".{target.name}.{os.getpid()}.pending"), text)


def write_experiment_data(path: str | Path, records: Sequence[Mapping], meta: Mapping) -> dict:
    """Write the records (one line each) and the sidecar (``meta`` + format, n_records,
    data_fingerprint): both to temp files, then the old sidecar out, the data in, the
    sidecar in. An OSError is one ExpspecError and leaves no temp file. Returns the sidecar."""
    path = Path(path)
    sidecar_path = meta_path(path)
    text = "".join(json.dumps(jsonable(r), separators=(",", ":")) + "\n" for r in records)
    sidecar = dict(meta, format=FORMAT, n_records=len(records), data_fingerprint=data_fingerprint(text.encode()))
    temps: list[Path] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temps.append(_pending(path, text))
        temps.append(_pending(sidecar_path, json.dumps(jsonable(sidecar), indent=2, sort_keys=True) + "\n"))
        sidecar_path.unlink(missing_ok=True)  # never the new data beside the old sidecar
        os.replace(temps[0], path)
        os.replace(temps[1], sidecar_path)
    except OSError as exc:
        raise ExpspecError(f"data file {path}: cannot write it or its sidecar ({exc.strerror or exc})") from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return sidecar


def _finite(v: float) -> bool:
    return math.isfinite(v)


def _log_variance(v: float) -> bool:  # a zero variance's log is -inf
    return math.isfinite(v) or v == -math.inf


def _linear(v: float) -> bool:  # exp of a log: underflows to 0, overflows (alpha < 1) to inf
    return v >= 0.0  # False for nan


class _Check:
    def __init__(self, where: str):
        self.where = where

    def need(self, ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise ExpspecError(f"{self.where}: field {field}: expected {expected}")

    def numbers(self, record: Mapping, field: str, n: int | None = None, allowed=_finite,
                what: str = "finite numbers") -> list[float]:
        values = record.get(field)
        ok = isinstance(values, list) and (n is None or len(values) == n)
        nums = [json_number(v) for v in values] if ok else []
        ok = ok and all(v is not None and allowed(v) for v in nums)
        self.need(ok, field, f"a list of {n if n is not None else 'some'} {what}")
        return nums  # type: ignore[return-value]

    def number(self, record: Mapping, field: str, allowed=_finite, what: str = "a finite number") -> float:
        value = json_number(record.get(field))
        self.need(value is not None and allowed(value), field, what)
        return value  # type: ignore[return-value]


def _per_length_rule(name: str) -> tuple:
    """(test, what a list holds, what one value is) of a per-length field."""
    if name in LINEAR_FIELDS:
        return _linear, "numbers >= 0 (or \"inf\")", "a number >= 0 (or \"inf\")"
    if name == "log_tempnorm_variance":
        return _log_variance, "finite numbers (or \"-inf\")", "a finite number (or \"-inf\": a zero variance)"
    return _finite, "finite numbers", "a finite number"


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
            allowed, many, one = _per_length_rule(name)
            if name.endswith("individual_tempnorms"):
                record[field] = c.numbers(record, field, n, allowed, many)
            else:
                record[field] = c.number(record, field, allowed, one)
    record["starting_hidden_vector"] = hidden
    return record


def check_echo(record: Mapping, first: Mapping, first_line: int, meta: Mapping, sidecar_name: str,
               where: str) -> None:
    """A record's config echo equals the first record's, agrees with the sidecar's fields,
    and describes the record (its completion count and length)."""
    c = _Check(where)
    echo = record.get("config")
    c.need(echo == first.get("config"), "config", f"the same config echo as line {first_line}'s "
                                                  f"(the records come from different runs)")
    if not isinstance(echo, dict):
        return
    sidecar = dict(meta, seed=meta["seeds"].get("seed")) if isinstance(meta.get("seeds"), dict) else meta
    for key in ECHO_KEYS:
        if key in echo and key in sidecar:
            c.need(echo[key] == sidecar[key], f"config.{key}",
                   f"{sidecar[key]!r}, as the sidecar {sidecar_name} says")
    if isinstance(echo.get("gen_number"), int):
        c.need(len(record["generations"]) == echo["gen_number"], "generations",
               f"{echo['gen_number']} completions, as its config.gen_number")
    if isinstance(echo.get("gen_length"), int):
        c.need(all(len(g["token_ids"]) == echo["gen_length"] for g in record["generations"]),
               "generations[].token_ids", f"{echo['gen_length']} tokens each, as its config.gen_length")


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
    checked, alone and against the first record and the sidecar; the first bad line is one
    ExpspecError naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise ExpspecError(f"data file {path}: file not found (expected the JSONL of `expspec tempnorm generate`)")
    meta = read_json(meta_path(path), "data sidecar") if meta_path(path).is_file() else {}
    if not isinstance(meta, dict):
        raise ExpspecError(f"data sidecar {meta_path(path)}: expected a JSON object")
    data = path.read_bytes()
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ExpspecError(f"data file {path}: not UTF-8 text ({exc})") from None
    records: list[dict] = []
    lengths: list[int] = []
    first_line = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = parse_json(line)
        except json.JSONDecodeError:
            raise ExpspecError(f"{where}: not a JSON object (expected one record per line)") from None
        if not records:
            lengths, first_line = _eval_lengths_of(record, meta, path, number), number
        record = check_record(record, lengths, where)
        first = records[0] if records else record
        c = _Check(where)
        c.need(len(record["starting_hidden_vector"]) == len(first["starting_hidden_vector"]),
               "starting_hidden_vector", f"{len(first['starting_hidden_vector'])} numbers, as line {first_line}'s")
        c.need(len(record["generations"]) == len(first["generations"]), "generations",
               f"{len(first['generations'])} completions, as line {first_line}'s")
        check_echo(record, first, first_line, meta, meta_path(path).name, where)
        records.append(record)
    if not records:
        raise ExpspecError(f"data file {path}: empty (expected one JSON record per line)")
    sidecar = meta_path(path).name
    if "n_records" in meta and meta["n_records"] != len(records):
        raise ExpspecError(f"data file {path}: {len(records)} records, but its sidecar {sidecar} says "
                           f"n_records = {meta['n_records']!r} (the two files come from different runs)")
    if "data_fingerprint" in meta and meta["data_fingerprint"] != data_fingerprint(data):
        raise ExpspecError(f"data file {path}: its fingerprint {data_fingerprint(data)} is not the one its sidecar "
                           f"{sidecar} records ({meta['data_fingerprint']!r}): the file changed after it was written")
    return records, meta, lengths
