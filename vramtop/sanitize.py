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
# Invisible characters that change how the rest of a line is shown: bidi embeddings, overrides
# and isolates (U+202A-U+202E, U+2066-U+2069: "Trojan Source" reorders a row with them), bidi
# marks, zero-width spaces and joiners, word joiner, invisible operators and the BOM.
_INVISIBLE = re.compile("[\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# Lone surrogates: psutil and os decode undecodable bytes of a command line into them, and no
# terminal encoding can write them.
_SURROGATES = re.compile("[\ud800-\udfff]")
_TO_SPACE = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def clean(text: str | bytes, limit: int = MAX_LEN) -> str:
    """Strip ANSI sequences, control characters (NULs included), bidi overrides and zero-width
    characters, fold tabs and newlines to spaces, drop trailing spaces (setproctitle pads titles
    with NULs or spaces), replace undecodable bytes (lone surrogates) with U+FFFD, cap the length
    at ``limit`` characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = _ESCAPES.sub("", text[: limit * 8])
    text = text.translate(_TO_SPACE)
    text = _CONTROLS.sub("", text)
    text = _INVISIBLE.sub("", text).rstrip()
    text = _SURROGATES.sub("\ufffd", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
