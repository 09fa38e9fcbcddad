"""Exit statuses and the one-line failure every mode reports (never a traceback).

Where it sits: ``cli.py`` and every ``modes/`` module return these codes from ``main``:
0 fine, 1 the GPUs (or the recording) cannot be read, 2 bad input (a flag, the config file, a
scenario, an output file that is not ours).
"""

from __future__ import annotations

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
