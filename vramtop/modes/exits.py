"""Exit statuses and the one-line failure every mode reports (never a traceback).

Where it sits: ``cli.py`` and every ``modes/`` module return these codes from ``main``:
0 fine, 1 the GPUs (or the recording) cannot be read or the output cannot be written (a full
disk, an I/O error), 2 bad input (a flag, the config file, a scenario, an output file that is
not ours or cannot be written at all).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vramtop.gpu.backend import GpuBackend
    from vramtop.gpu.factory import BackendSpec

EXIT_OK, EXIT_GPU, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input (a flag, the config file, a scenario): one line on stderr, exit 2."""


def fail(message: str, code: int) -> int:
    """Print ``vramtop: message`` on stderr and return ``code`` for ``main`` to exit with."""
    print(f"vramtop: {message}", file=sys.stderr)
    return code


class OutputError(Exception):
    """stdout cannot be written (``> /dev/full``, an I/O error): one line on stderr, exit 1."""


def emit(text: str | bytes) -> None:
    """Write ``text`` (a line, or NDJSON bytes) to stdout now; OutputError if it cannot be.

    Flushed here, not at exit: a failure at interpreter shutdown would be a traceback."""
    try:
        if isinstance(text, bytes):
            sys.stdout.buffer.write(text)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
    except BrokenPipeError:
        raise  # the reader went away (`| head`): cli.main ends quietly
    except OSError as exc:
        raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from None


def silence_stdout() -> None:
    """Point fd 1 at /dev/null, so what is still buffered can be dropped at exit quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def open_backend(spec: BackendSpec) -> GpuBackend | None:
    """The backend ``spec`` names, opened; None after saying in one line why it cannot be
    (the caller exits with :data:`EXIT_GPU`)."""
    from vramtop.gpu.backend import BackendUnavailable
    from vramtop.gpu.factory import make_backend

    backend = make_backend(spec)
    try:
        backend.open()
    except BackendUnavailable as exc:
        fail(str(exc), EXIT_GPU)
        return None
    return backend
