"""Cleaning of every string that comes from outside vramtop (design: "every string is hostile").

Process names, command lines, paths, HTTP bodies and socket messages pass through
:func:`clean` before they are stored in a snapshot, a message or a cell of the screen grid.
"""

from __future__ import annotations

import re

MAX_LEN = 256

# CSI / OSC / other escape sequences first, then any remaining C0/C1 control character.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL/ST
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS/SOS/PM/APC
    r"|\x1b[@-Z\\-_]?"  # two-byte escapes or a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str | bytes, limit: int = MAX_LEN) -> str:
    """Strip ANSI sequences and control characters, fold tabs/newlines to spaces, cap length."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = _ESCAPES.sub("", text[: limit * 8])
    text = text.replace("\t", " ").replace("\n", " ").replace("\r", " ")
    text = _CONTROLS.sub("", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
