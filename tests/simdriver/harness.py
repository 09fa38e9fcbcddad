"""Test helpers around the simulated driver: build it, run vramtop against it, real children.

Where it sits: tests -> this module -> ``build.py`` (the compiled ``libnvidia-ml.so.1``) and
``vramtop`` subprocesses whose ``LD_LIBRARY_PATH`` starts with it, or, in-process, ``pynvml``
pointed at it by :func:`loaded`.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pynvml
from simdriver.build import LIBRARY, SCENARIO_ENV, build, env, write_scenario

VRAMTOP = [sys.executable, "-m", "vramtop"]

__all__ = ["Children", "Driver", "loaded", "write_scenario"]


class Driver:
    """One built variant and one scenario file: the environment a vramtop run needs."""

    def __init__(self, tmp: Path, variant: str = "current", scenario: str = "") -> None:
        self.libdir = build(variant)
        self.scenario = tmp / "gpus.scenario"
        self.write(scenario)
        home = tmp / "home"
        (home / ".config").mkdir(parents=True, exist_ok=True)
        self.home = home
        self.env = env(self.libdir, self.scenario)
        self.env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})

    def write(self, text: str) -> None:
        write_scenario(self.scenario, text)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*VRAMTOP, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )


class Children:
    """Real processes for the scenario to put on the GPUs, each with a recognisable command
    line (``exec -a NAME``) so /proc enrichment and the screen can be checked against it."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str) -> int:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec -a {name} sleep 600"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc.pid

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@contextmanager
def loaded(variant: str, scenario: Path) -> Iterator[ctypes.CDLL]:
    """pynvml, in this process, on the simulated driver of ``variant`` reading ``scenario``."""
    lib = ctypes.CDLL(str(build(variant) / LIBRARY))
    saved_lib = pynvml.nvmlLib
    saved_env = os.environ.get(SCENARIO_ENV)
    os.environ[SCENARIO_ENV] = str(scenario)
    pynvml.nvmlLib = lib
    pynvml._nvmlGetFunctionPointer_cache.clear()
    try:
        yield lib
    finally:
        pynvml.nvmlLib = saved_lib
        pynvml._nvmlGetFunctionPointer_cache.clear()
        if saved_env is None:
            os.environ.pop(SCENARIO_ENV, None)
        else:
            os.environ[SCENARIO_ENV] = saved_env
