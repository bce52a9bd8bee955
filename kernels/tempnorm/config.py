"""TempNorm's knobs: one default each, registered as a Family."""

from __future__ import annotations

from typing import Any

from expspec.kernels.config import Family

KNOBS: dict[str, Any] = {
    "work_dir": "",  # "" = <reports-dir>/work/<recipe key>
}

FAMILY = Family(name="tempnorm", title="TempNorm", knobs=KNOBS, free_text=("work_dir",))
