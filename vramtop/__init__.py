"""vramtop: the htop for GPU memory.

The package is split into a UI-free library layer (``gpu``, ``shm``, ``analysis``, ``enrich``,
``export``) and the process shell that runs it (``actors``) with its terminal face (``render``).

``import vramtop`` is loaded into users' training processes for :func:`report`, so this module
imports nothing beyond the standard library's basics: the reporter is loaded on the first call.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "report"]


def report() -> "str | None":
    """Let vramtop monitors read this process's PyTorch allocator figures (deep mode).

    Two lines in a training script: ``import vramtop; vramtop.report()``. Idempotent, never
    raises, never imports torch or initialises CUDA; returns the socket path, or None when deep
    mode cannot start here (the reason is printed once to stderr).
    """
    from vramtop.deep.reporter import report as start

    return start()
