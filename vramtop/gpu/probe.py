"""Start-up check of the real driver, run in a short-lived child process.

The supervisor must know the GPU count to size shared memory, and must fail fast with one line
when there is no driver, yet it may not initialise NVML itself (NVML belongs to the sampler,
after fork). So a forked child opens the backend, reports the count or the error line, and exits.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection

from vramtop.gpu.backend import BackendUnavailable
from vramtop.gpu.factory import BackendSpec, make_backend


def _probe(spec: BackendSpec, conn: Connection) -> None:
    try:
        backend = make_backend(spec)
        backend.open()
        try:
            conn.send(len(backend.sample().gpus))
        finally:
            backend.close()
    except BackendUnavailable as exc:
        conn.send(str(exc))
    except Exception as exc:  # any driver surprise still becomes one line
        conn.send(f"cannot read the GPUs: {type(exc).__name__}: {exc}")
    finally:
        conn.close()


def probe_gpu_count(spec: BackendSpec, timeout: float = 30.0) -> int | str:
    """The GPU count, or the one-line reason the backend cannot start."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_probe, args=(spec, child), name="vramtop: probe")
    proc.start()
    child.close()
    try:
        if parent.poll(timeout):
            result: int | str = parent.recv()
            return result
        return f"the NVIDIA driver did not answer within {timeout:.0f} s"
    except EOFError:
        return "the driver probe died while reading the GPUs"
    finally:
        proc.join(1)
        if proc.is_alive():
            proc.kill()
            proc.join()
