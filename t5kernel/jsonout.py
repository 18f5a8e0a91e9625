"""JSON text of what users read: ``results.json``, ``evals/*/results.json``,
``sweep.json`` and ``--json`` output.

Standard JSON has no NaN or Infinity. Python's ``json`` writes them as bare tokens, which
jq, JavaScript's ``JSON.parse`` and most other readers refuse, so an undefined score (e.g.
STS-B's correlation of constant predictions) is written as ``null``. Files only t5k reads
back (a checkpoint's ``state.json``) keep Python's tokens, which round-trip exactly.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` (plain containers) with every NaN or infinite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(value)``: always standard JSON."""
    return json.dumps(finite(value), allow_nan=False, **options)
