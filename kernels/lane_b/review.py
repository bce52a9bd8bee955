"""The worksheet's alpha plausibility gate and its manual-review hatch - one that can fail.

Inside [alpha_min, alpha_max]: PASS. Outside: FLAGGED for manual review. A review
(``lane_b.alpha_review``) records what it reviewed: the stats fingerprint (corpus
sample + tokenizer, ``stats.json["fingerprint"]``) and the alpha interval it accepted:

    [lane_b.alpha_review]
    decision = "accepted"            # or "rejected"
    by = "who, when"
    reason = "why"
    fingerprint = "3f9c...:model:smollm2-135m-instruct"
    alpha_interval = [0.04, 0.07]

It turns FLAGGED into FLAGGED -> ACCEPTED only while the current fingerprint matches
and the measured alpha lies in the accepted interval; otherwise the gate fails with
"review covers alpha in [a, b] for <fingerprint>, measured alpha=X". A NaN alpha
always fails. Never a silent pass.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from expspec.kernels.errors import ExpspecError
from expspec.kernels.lane_b.scaling import alpha_plausible

REVIEW_DECISIONS = ("accepted", "rejected")
REVIEW_KEYS = ("decision", "by", "reason", "fingerprint", "alpha_interval")
FORM = ('{decision = "accepted"|"rejected", by = "...", reason = "...", fingerprint = "<stats fingerprint>", '
        "alpha_interval = [low, high]}")


def check_review(review: Mapping[str, Any]) -> None:
    """A review is empty, or every key of FORM, well-typed; anything else is an error."""
    if not review:
        return
    bad = [k for k in ("decision", "by", "reason", "fingerprint") if not str(review.get(k, "")).strip()]
    interval = review.get("alpha_interval")
    ok_interval = (isinstance(interval, (list, tuple)) and len(interval) == 2
                   and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in interval) and interval[0] <= interval[1])
    if bad or not ok_interval or review.get("decision") not in REVIEW_DECISIONS or set(review) - set(REVIEW_KEYS):
        raise ExpspecError(f"lane_b.alpha_review: expected {FORM}, got {dict(review)}")


def alpha_gate(alpha: float, alpha_ci, alpha_min: float, alpha_max: float, review: Mapping[str, Any],
               fingerprint: str | None) -> dict:
    """{passed, verdict, message, review}: the gate for this alpha and stats fingerprint."""
    check_review(review)
    ci = f" [{alpha_ci[0]:.3f}, {alpha_ci[1]:.3f}]" if alpha_ci else ""
    if not math.isfinite(alpha):
        return {"passed": False, "verdict": "FAIL", "review": "",
                "message": f"alpha={alpha} is not a number: the statistics failed (no review can accept it)"}
    if alpha_plausible(alpha, alpha_min, alpha_max):
        return {"passed": True, "verdict": "PASS", "message": "", "review": ""}
    message = f"alpha={alpha:.4f}{ci} outside [{alpha_min}, {alpha_max}]: flag for manual review"
    if not review:
        return {"passed": False, "verdict": "FLAGGED", "message": message, "review": "FLAGGED (no review recorded)"}
    low, high = review["alpha_interval"]
    covers = f"review covers alpha in [{low}, {high}] for {review['fingerprint']}"
    if review["fingerprint"] != fingerprint or not low <= alpha <= high:
        text = f"FLAGGED, review does not apply: {covers}, measured alpha={alpha:.4f} for {fingerprint}"
        return {"passed": False, "verdict": "FLAGGED", "review": text,
                "message": f"{covers}, measured alpha={alpha:.4f} (stats fingerprint {fingerprint})"}
    decision = review["decision"]
    text = f"FLAGGED → {decision.upper()} by {review['by']}: {review['reason']} ({covers})"
    return {"passed": decision == "accepted", "verdict": f"FLAGGED → {decision.upper()}",
            "message": message + f" ({text})", "review": text}
