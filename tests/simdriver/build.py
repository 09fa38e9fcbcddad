"""Build the simulated ``libnvidia-ml.so.1`` (simdriver.c) with the system C compiler.

Where it sits: the tests' fixtures and ``scripts/bench.py`` call :func:`build` and put the
directory it returns first on ``LD_LIBRARY_PATH`` (see :func:`env`), so that nvidia-ml-py's
``CDLL("libnvidia-ml.so.1")`` loads the simulation in every vramtop process.

A build is cached per variant and per source text in a per-user directory under the temp dir,
so a test session compiles each variant once (about 0.3 s) and later sessions reuse it; the
binary is never committed. A variant is the set of symbols and record layouts the driver has,
which a library cannot change at run time:

* ``current``: ``_v3`` process getters writing 24-byte records (``nvmlProcessInfo_v2_t``), with
  ``nvmlDeviceGetRunningProcessDetailList``, as drivers since R545 do;
* ``r535``: ``_v3`` writing the 32-byte record with ``usedGpuCcProtectedMemory`` and no detail
  list, as the first R535 drivers did;
* ``r470``: no ``_v3`` symbol; ``_v2`` (24 bytes) and the unversioned v1 (16 bytes) only;
* ``stride16``: ``_v3`` writing 16-byte records with neither export: the combination no
  export-based rule can tell apart (reported against R525).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("simdriver.c")
LIBRARY = "libnvidia-ml.so.1"
SCENARIO_ENV = "VRAMTOP_SIMDRIVER_SCENARIO"
STATS_ENV = "VRAMTOP_SIMDRIVER_STATS"

VARIANTS: dict[str, dict[str, int]] = {
    "current": {"SIM_V3_RECORD": 24, "SIM_CC_EXPORTS": 1, "SIM_DETAIL_LIST": 1},
    "r535": {"SIM_V3_RECORD": 32, "SIM_CC_EXPORTS": 1, "SIM_DETAIL_LIST": 0},
    "r470": {"SIM_V3_RECORD": 0, "SIM_CC_EXPORTS": 0, "SIM_DETAIL_LIST": 0},
    "stride16": {"SIM_V3_RECORD": 16, "SIM_CC_EXPORTS": 0, "SIM_DETAIL_LIST": 0},
}


class BuildError(RuntimeError):
    """No C compiler, or the source did not compile."""


def compiler() -> str | None:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def cache_root() -> Path:
    return Path(tempfile.gettempdir()) / f"vramtop-simdriver-{os.geteuid()}"


def build(variant: str = "current", root: Path | None = None) -> Path:
    """The directory holding ``libnvidia-ml.so.1`` for ``variant``, compiled if needed."""
    defines = VARIANTS[variant]
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + repr(sorted(defines.items())).encode()).hexdigest()[:16]
    out = (root or cache_root()) / f"{variant}-{key}"
    lib = out / LIBRARY
    if lib.exists():
        return out
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler (cc, gcc or clang) to build the simulated driver")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = out / f".{LIBRARY}.{os.getpid()}"
    flags = [f"-D{name}={value}" for name, value in defines.items()]
    cmd = [cc, "-shared", "-fPIC", "-O2", "-Wall", "-pthread", *flags, "-o", str(tmp), str(SOURCE)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"building the simulated driver failed:\n{done.stderr.strip()}")
    os.replace(tmp, lib)  # atomic: a concurrent build never loads a half-written library
    return out


def env(
    libdir: Path, scenario: Path | None = None, base: dict[str, str] | None = None
) -> dict[str, str]:
    """An environment whose processes load the simulated driver (and read ``scenario``)."""
    out = dict(os.environ if base is None else base)
    previous = out.get("LD_LIBRARY_PATH", "")
    out["LD_LIBRARY_PATH"] = str(libdir) + (os.pathsep + previous if previous else "")
    if scenario is not None:
        out[SCENARIO_ENV] = str(scenario)
    return out


def write_scenario(path: Path, text: str) -> None:
    """Replace the scenario atomically, so the driver never reads half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["current"]:
        print(build(name) / LIBRARY)
