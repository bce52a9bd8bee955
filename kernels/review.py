"""A recorded manual review of a gate that failed - a hatch that can still fail.

A gate whose measured value misses its bar is FLAGGED. A review in the profile records
what a person looked at: the fingerprint of the inputs the value came from and the
interval of values they accepted (or rejected):

    decision = "accepted"            # or "rejected"
    by = "who, when"
    reason = "why"
    fingerprint = "<the inputs' fingerprint, as the report prints it>"
    interval = [low, high]           # the family names this key (e.g. alpha_interval)

It turns FLAGGED into FLAGGED -> ACCEPTED only while the current fingerprint matches and
the measured value lies in the accepted interval; otherwise the gate fails, naming what
the review covers and what was measured. A NaN never passes. Never a silent pass: the
report shows the verdict and the review's reason.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from expspec.kernels.errors import ExpspecError

REVIEW_DECISIONS = ("accepted", "rejected")


def check_review(review: Mapping[str, Any], where: str, interval_key: str = "interval") -> None:
    """A review is empty, or exactly decision/by/reason/fingerprint/<interval_key>, well-typed."""
    if not review:
        return
    keys = ("decision", "by", "reason", "fingerprint", interval_key)
    bad = [k for k in keys[:4] if not str(review.get(k, "")).strip()]
    interval = review.get(interval_key)
    ok_interval = (isinstance(interval, (list, tuple)) and len(interval) == 2
                   and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in interval) and interval[0] <= interval[1])
    if bad or not ok_interval or review.get("decision") not in REVIEW_DECISIONS or set(review) - set(keys):
        form = (f'{{decision = "accepted"|"rejected", by = "...", reason = "...", fingerprint = "...", '
                f"{interval_key} = [low, high]}}")
        raise ExpspecError(f"{where}: expected {form}, got {dict(review)}")


def reviewed_gate(name: str, value: float, passed: bool, flagged: str, review: Mapping[str, Any],
                  fingerprint: str | None, where: str, interval_key: str = "interval",
                  fingerprint_label: str = "fingerprint", not_a_number: str = "") -> dict:
    """{passed, verdict, message, review} for ``name = value`` against its bar (``passed``);
    ``flagged`` is the message of a miss ("alpha=0.05 outside [0.2, 0.8]: flag for manual review")."""
    check_review(review, where, interval_key)
    if not math.isfinite(value):
        return {"passed": False, "verdict": "FAIL", "review": "",
                "message": f"{name}={value} is not a number{not_a_number} (no review can accept it)"}
    if passed:
        return {"passed": True, "verdict": "PASS", "message": "", "review": ""}
    if not review:
        return {"passed": False, "verdict": "FLAGGED", "message": flagged, "review": "FLAGGED (no review recorded)"}
    low, high = review[interval_key]
    covers = f"review covers {name} in [{low}, {high}] for {review['fingerprint']}"
    if review["fingerprint"] != fingerprint or not low <= value <= high:
        text = f"FLAGGED, review does not apply: {covers}, measured {name}={value:.4f} for {fingerprint}"
        return {"passed": False, "verdict": "FLAGGED", "review": text,
                "message": f"{covers}, measured {name}={value:.4f} ({fingerprint_label} {fingerprint})"}
    decision = review["decision"]
    text = f"FLAGGED → {decision.upper()} by {review['by']}: {review['reason']} ({covers})"
    return {"passed": decision == "accepted", "verdict": f"FLAGGED → {decision.upper()}",
            "message": flagged + f" ({text})", "review": text}
