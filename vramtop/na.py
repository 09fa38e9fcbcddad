"""The "not available" value every layer uses for a field the driver cannot give.

A field that NVML reports as NOT_SUPPORTED, NO_PERMISSION or missing is ``NA``, not ``None`` and
not an exception: it formats as ``N/A`` with any format spec, is falsy, compares unequal to every
number, and arithmetic on it yields ``NA`` again, so display code never has to special-case it.
``float(NA)`` is NaN, the numeric layers' (numpy, shared memory, analysis) "not available", so
``float(field)`` is the one conversion from a snapshot field to a number. JSON output turns it
into ``null``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

_SPEC = re.compile(r"(?:(.)?([<>^=]))?[+\- ]?z?#?0?(\d*)")


class NaType:
    """Singleton type of :data:`NA`."""

    _instance: NaType | None = None
    __slots__ = ()

    def __new__(cls) -> NaType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NA"

    def __str__(self) -> str:
        return "N/A"

    def __format__(self, spec: str) -> str:
        # Keep the fill, alignment and width of the spec so tables stay aligned; ignore the
        # rest (precision, type, grouping), which only makes sense for numbers.
        m = _SPEC.match(spec)
        fill, align, width = (
            (m.group(1) or "", m.group(2) or ">", m.group(3)) if m else ("", "", "")
        )
        return format("N/A", f"{fill}{align}{width}") if width else "N/A"

    def __bool__(self) -> bool:
        return False

    def __float__(self) -> float:
        return math.nan

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return 0x4E41

    def __lt__(self, other: object) -> bool:
        return False

    __le__ = __gt__ = __ge__ = __lt__

    def _na(self, *_: Any) -> NaType:
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _na
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __neg__ = _na

    def __reduce__(self) -> str:
        return "NA"


NA: Final = NaType()


def to_json(value: object) -> object:
    """NA -> None; everything else unchanged."""
    return None if isinstance(value, NaType) else value
