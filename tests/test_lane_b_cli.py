"""Lane B's gate and CLI: the review hatch, stats/infer end to end, bad input writes nothing."""

import json
import math

import pytest

from expspec.kernels.cli import main
from expspec.kernels.config import resolve_scale
from expspec.kernels.errors import ExpspecError
from expspec.kernels.lane_b.review import alpha_gate

FP = "0123abcd:model:smollm2-135m-instruct"
REVIEW = {"decision": "accepted", "by": "me", "reason": "paper values are below the gate too",
          "fingerprint": FP, "alpha_interval": [0.04, 0.06]}


def test_gate_pass_and_flag():
    assert alpha_gate(0.3, None, 0.2, 0.8, {}, FP)["verdict"] == "PASS"
    assert alpha_gate(0.2, None, 0.2, 0.8, {}, FP)["passed"]  # bounds are inclusive
    flagged = alpha_gate(0.05, (0.04, 0.06), 0.2, 0.8, {}, FP)
    assert not flagged["passed"] and flagged["verdict"] == "FLAGGED"
    assert flagged["message"] == "alpha=0.0500 [0.040, 0.060] outside [0.2, 0.8]: flag for manual review"


def test_review_accepts_only_what_it_reviewed():
    accepted = alpha_gate(0.05, None, 0.2, 0.8, REVIEW, FP)
    assert accepted["passed"] and accepted["verdict"] == "FLAGGED → ACCEPTED"
    assert "by me: paper values" in accepted["review"] and "[0.04, 0.06]" in accepted["review"]
    rejected = alpha_gate(0.05, None, 0.2, 0.8, dict(REVIEW, decision="rejected"), FP)
    assert not rejected["passed"] and rejected["verdict"] == "FLAGGED → REJECTED"
    moved = alpha_gate(0.07, None, 0.2, 0.8, REVIEW, FP)  # alpha left the accepted interval
    assert not moved["passed"]
    assert moved["message"].startswith(f"review covers alpha in [0.04, 0.06] for {FP}, measured alpha=0.0700")
    other = alpha_gate(0.05, None, 0.2, 0.8, REVIEW, "ffff:bpe:4096")  # another corpus sample / tokenizer
    assert not other["passed"] and "measured alpha=0.0500 (stats fingerprint ffff:bpe:4096)" in other["message"]
    assert not alpha_gate(0.05, None, 0.2, 0.8, REVIEW, None)["passed"]  # a bare alpha has no fingerprint


def test_nan_alpha_always_fails():
    for review in ({}, REVIEW, dict(REVIEW, alpha_interval=[-1e9, 1e9])):
        gate = alpha_gate(float("nan"), None, 0.2, 0.8, review, FP)
        assert not gate["passed"] and "not a number" in gate["message"]


@pytest.mark.parametrize("review", [
    {"decision": "maybe", "by": "x", "reason": "y", "fingerprint": FP, "alpha_interval": [0, 1]},
    {"decision": "accepted"},
    {"decision": "accepted", "by": "x", "reason": "y", "alpha_interval": [0, 1]},  # no fingerprint
    dict(REVIEW, alpha_interval=[0.06, 0.04]),
    dict(REVIEW, alpha_interval=["a", "b"]),
    dict(REVIEW, extra="?"),
])
def test_malformed_review_is_an_error(review):
    with pytest.raises(ExpspecError, match="alpha_review"):
        alpha_gate(0.05, None, 0.2, 0.8, review, FP)


def _calibration(tmp_path, alpha=0.3, A=20.0, L_inf=1.0):
    points = [{"tokens": d, "value": L_inf + A * d ** -alpha} for d in (1e6, 4e6, 1.6e7)]
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"points": points}))
    return path


def test_infer_cli_solves_the_planted_law(tmp_path, capsys):
    cal = _calibration(tmp_path)
    out = tmp_path / "infer.json"
    rc = main(["lane-b", "infer", "--alpha", "0.3", "--calibration", str(cal), "--threshold", "1.5",
               "--n-scaling-params", "1e6", "--out", str(out)])
    assert rc == 0
    record = json.loads(out.read_text())
    d_target = (20.0 / 0.5) ** (1 / 0.3)  # A / (T - L_inf) = D^-alpha
    assert record["solve_status"] == "ok" and record["alpha_gate"] == "PASS"
    assert math.isclose(record["inferred_target_tokens"], d_target, rel_tol=1e-6)
    assert math.isclose(record["inferred_target_param_data_ratio"], d_target / 1e6, rel_tol=1e-6)
    assert math.isclose(record["confirmation_ratio"], 1.05 * d_target / 1e6, rel_tol=1e-6)
    assert record["provenance"]["inputs"]["calibration"] and record["provenance"]["git_commit"]


def test_infer_cli_implausible_alpha_still_writes(tmp_path):
    out = tmp_path / "infer.json"
    args = ["lane-b", "infer", "--alpha", "0.05", "--calibration", str(_calibration(tmp_path, alpha=0.05)),
            "--threshold", "1.5", "--n-scaling-params", "1e6", "--out", str(out)]
    assert main(args + ["--scale", "hero"]) == 0  # the hero profile carries no alpha review
    assert json.loads(out.read_text())["solve_status"] == "implausible_alpha"
    # the default scale is smoke, exactly as in pytest: its profile's review applies to the
    # stats it reviewed (fingerprint + alpha interval), never to a bare --alpha
    assert main(args) == 0 and json.loads(out.read_text())["solve_status"] == "implausible_alpha"
    review = resolve_scale("smoke")["lane_b"]["alpha_review"]
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"alpha": sum(review["alpha_interval"]) / 2, "alpha_ci": None,
                                 "fingerprint": review["fingerprint"]}))
    assert main([a if a != "--alpha" else "--stats" for a in args[:3]] + [str(stats)] + args[4:]) == 0
    infer = json.loads(out.read_text())
    assert infer["solve_status"] != "implausible_alpha" and infer["alpha_gate"] == "FLAGGED → ACCEPTED"
    assert infer["provenance"]["config"]["lane_b"]["alpha_review"]["decision"] == "accepted"


@pytest.mark.parametrize("content,message", [
    (None, "file not found"),
    ("{not json", "not valid JSON"),
    ('{"pts": []}', "expected {\"points\""),
    ('{"points": [{"tokens": 1}]}', "points[0] needs numeric"),
])
def test_infer_cli_bad_calibration(tmp_path, capsys, content, message):
    cal = tmp_path / "calibration.json"
    if content is not None:
        cal.write_text(content)
    out = tmp_path / "infer.json"
    rc = main(["lane-b", "infer", "--alpha", "0.3", "--calibration", str(cal), "--threshold", "1.5",
               "--n-scaling-params", "1e6", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_stats_cli_on_a_small_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPSPEC_CACHE", str(tmp_path / "cache"))
    from expspec.kernels.data.corpus import load_documents

    text = load_documents("embedded:austen")[2].text[:150_000]  # a slice of Northanger Abbey
    (tmp_path / "c.txt").write_text(text)
    out = tmp_path / "stats.json"
    rc = main(["lane-b", "stats", "--corpus", str(tmp_path / "c.txt"), "--tokenizer", "bpe:512",
               "--entropy", "ngram", "--out", str(out), "--set", "lane_b.bootstrap=0"])
    assert rc == 0
    stats = json.loads(out.read_text())
    assert stats["tokenizer_id"].startswith("bpe:512:") and stats["vocab_size"] == 512
    assert stats["n_usable_lags"] >= 2 and float(stats["beta"]) > 0
    assert stats["entropy"]["source"] == "ngram" and stats["provenance"]["config"]["lane_b"]["entropy"] == "ngram"
    assert [r["lag"] for r in stats["correlation"]["rows"]][:3] == [1, 2, 3]


def test_stats_cli_empty_corpus_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("  \n")
    out = tmp_path / "stats.json"
    assert main(["lane-b", "stats", "--corpus", str(tmp_path / "empty.txt"), "--out", str(out)]) == 2
    assert "empty" in capsys.readouterr().err and not out.exists()
    assert main(["config", "--set", "lane_b.nope=1"]) == 2


def test_parse_log_cli(capsys):
    assert main(["lane-b", "parse-log", "tests/data/nanochat_2026_bf16_mfu.log"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["evals"] and parsed["min_val_bpb"] > 0
    assert main(["lane-b", "parse-log", "tests/data/nanochat_corrupt.log"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("expspec: error:") and len(err.strip().splitlines()) == 1


def test_run_all_cli_without_threshold_writes_nothing(tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["lane-b", "run-all", "--work-dir", str(work)]) == 2
    assert "threshold.env is missing" in capsys.readouterr().err
    assert not work.exists()
    assert main(["lane-b", "summary"]) == 2 and "no work dir" in capsys.readouterr().err
