"""JSON as strict readers take it: no NaN or Infinity, in or out.

Python's json module reads and writes ``NaN``, ``Infinity`` and numbers like
``1e400`` (read as infinity), none of which is JSON: jq, Go's encoding/json
(the original fctl) and browsers refuse a document holding one. What we
accept must be what we can write back for them.
"""

import json
import math


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def loads(raw):
    """json.loads, raising ValueError (not JSONDecodeError) for non-finite numbers."""
    return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite)


def dumps(value, **options):
    return json.dumps(value, allow_nan=False, **options)
