"""The COMMAND column's text: the informative part of a command line first.

Where it sits: ``table.py`` (and the stacked timeline's legend) call :func:`short_command` with the
sampler's sanitised command line, or the enricher's argv when it has one; the detail panel keeps
the full command. ``/root/.pyenv/versions/3.11.7/bin/python3.11 /tmp/job-42/src/train.py --lr 3e-4``
reads ``python3.11 …/src/train.py --lr 3e-4`` when space is short: the program's basename, the
script's path shortened from the left (its file name always kept), the arguments as they are.
Widths are terminal cells (a CJK file name takes two per glyph).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from vramtop.render.grid import clip, text_width

# Programs whose first non-option argument is the script that says what the job is.
_INTERPRETER = re.compile(
    r"^(python[0-9.]*|pypy[0-9.]*|node|nodejs|deno|bun|ruby|perl|php|bash|sh|zsh|julia|Rscript"
    r"|torchrun|deepspeed|accelerate|uv|conda|java)$"
)
_TAKES_VALUE = frozenset({"-W", "-X", "--", "-Xmx", "-cp", "-classpath"})
ELLIPSIS = "…"


def _basename(word: str) -> str:
    if word.startswith("[") or "/" not in word or " " in word:
        return word  # kernel threads ("[kworker/0:1]") and bare names stay as they are
    return os.path.basename(word.rstrip("/")) or word


def _script_index(argv: Sequence[str]) -> int:
    """Index of the script argument after an interpreter, or -1."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in ("-m", "-c"):
            return -1  # a module or inline code: nothing path-like to shorten
        if arg in _TAKES_VALUE:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return i if "/" in arg else -1
    return -1


def _shorten_path(path: str, room: int) -> str:
    """``path`` in at most ``room`` cells, dropping directories from the left (never the name)."""
    if text_width(path) <= room:
        return path
    parts = path.split("/")
    name = parts[-1]
    kept = name
    for part in reversed(parts[:-1]):
        candidate = f"{part}/{kept}"
        if 2 + text_width(candidate) > room:  # "…/" takes two cells
            break
        kept = candidate
    return f"{ELLIPSIS}/{kept}"


def short_command(command: str, width: int | None = None, argv: Sequence[str] = ()) -> str:
    """The command for a narrow column: basename of the program, the script's path shortened
    from the left to fit ``width`` cells (None: only the basename rule), then cut at the end."""
    words = [w for w in argv if w] or command.split()
    if len(words) == 1 and " " in words[0]:
        words = words[0].split()  # a process that rewrote its title: one argv entry with spaces
    if not words:
        return command
    words = list(words)
    words[0] = _basename(words[0])
    if _INTERPRETER.match(words[0]):
        i = _script_index(words)
        if i > 0 and width is not None:
            rest = text_width(" ".join(words)) - text_width(words[i])
            least = text_width(os.path.basename(words[i])) + 2
            words[i] = _shorten_path(words[i], max(least, width - rest))
    text = " ".join(words)
    if width is not None and text_width(text) > width:
        text = clip(text, width - 1) + ELLIPSIS if width > 1 else clip(text, width)
    return text
