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

from typing import Any, Mapping

from expspec.kernels.review import check_review as core_check_review, reviewed_gate
from expspec.kernels.lane_b.scaling import alpha_plausible

FORM_KEY = "alpha_interval"


def check_review(review: Mapping[str, Any]) -> None:
    """A review is empty, or every key of the core's form (interval: alpha_interval), well-typed."""
    core_check_review(review, "lane_b.alpha_review", FORM_KEY)


def alpha_gate(alpha: float, alpha_ci, alpha_min: float, alpha_max: float, review: Mapping[str, Any],
               fingerprint: str | None) -> dict:
    """{passed, verdict, message, review}: the gate for this alpha and stats fingerprint."""
    ci = f" [{alpha_ci[0]:.3f}, {alpha_ci[1]:.3f}]" if alpha_ci else ""
    passed = alpha_plausible(alpha, alpha_min, alpha_max)  # nan: not plausible (the core fails it first)
    flagged = f"alpha={alpha:.4f}{ci} outside [{alpha_min}, {alpha_max}]: flag for manual review"
    return reviewed_gate("alpha", alpha, passed, flagged, review, fingerprint, "lane_b.alpha_review", FORM_KEY,
                         fingerprint_label="stats fingerprint", not_a_number=": the statistics failed")
