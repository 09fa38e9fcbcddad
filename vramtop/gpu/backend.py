"""The protocol every GPU backend implements, and the error it raises when it cannot start.

``open()`` runs in the process that will sample (NVML must be initialised after fork, in the
sampler); ``sample()`` is called once per tick and never raises for a per-field or per-GPU failure
(those become NA / a lost GPU); ``close()`` releases the driver and any child processes.
"""

from __future__ import annotations

from typing import Protocol

from vramtop.gpu.snapshot import Snapshot


class BackendUnavailable(Exception):
    """The backend cannot start at all: one user-facing line, no traceback.

    ``str(exc)`` is the line printed to the user (e.g. "NVIDIA driver not loaded").
    """


class GpuBackend(Protocol):
    name: str

    def open(self) -> None:
        """Initialise the driver / scenario. Raises :class:`BackendUnavailable`."""

    def sample(self) -> Snapshot:
        """One tick. Per-field and per-GPU failures are NA / lost, not exceptions."""

    def close(self) -> None:
        """Release everything; safe to call twice."""
