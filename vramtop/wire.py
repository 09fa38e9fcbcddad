"""How messages cross process boundaries cheaply: a compact pickle for the frozen dataclasses.

Where it sits: under every message class (``messages.py``, ``gpu/snapshot.py``, the analysis,
enrichment, scrape and deep models), on both sides of every mailbox and state channel. Pickle's
default for a dataclass with ``slots=True`` (Python 3.10 and 3.11) calls
``dataclasses.fields()`` for every object when it is written and again when it is read; the
rows of 2,048 processes are ~10,000 such objects a tick, and every reader pays for them. A
class marked :func:`compact` is pickled as its constructor and its field values in order.
"""

from __future__ import annotations

import copyreg
import dataclasses
import operator
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def compact(cls: type[T]) -> type[T]:
    """Register ``cls`` (a dataclass whose fields are all ``__init__`` arguments) with pickle."""
    names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    if any(not f.init for f in dataclasses.fields(cls)):  # type: ignore[arg-type]
        raise TypeError(f"{cls.__name__}: every field must be an __init__ argument")
    reduce: Callable[[Any], tuple[Any, ...]]
    if len(names) == 1:
        one = operator.attrgetter(names[0])

        def reduce(obj: Any) -> tuple[Any, ...]:
            return cls, (one(obj),)
    else:
        get = operator.attrgetter(*names)

        def reduce(obj: Any) -> tuple[Any, ...]:
            return cls, get(obj)

    copyreg.pickle(cls, reduce)
    return cls
