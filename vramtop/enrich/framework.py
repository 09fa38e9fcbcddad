"""Which ML framework a process runs, from what it shows to /proc: title, argv, loaded libraries.

Data flow: ``Enricher`` reads a process's command line and maps (same UID only) and passes them
here; this module is pure (bytes and strings in, :class:`Detection` out) and never touches /proc.

Matching is anchored on tokens, case-insensitive: the program that runs (``vllm``,
``llama-server``, the module after ``python -m``) or a process title prefix (``VLLM::Worker``,
``sglang::scheduler``). A path that merely contains a framework's name (``my_vllm_notes.py``,
``/home/vllm/train.py``) is not that framework.

Serving frameworks (vLLM, SGLang, TGI, Ollama, llama.cpp) are preferred to the libraries they
run on (PyTorch, JAX, TensorFlow): a vLLM worker also loads libtorch, and it is a vLLM worker.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from vramtop.sanitize import clean

VLLM = "vLLM"
SGLANG = "SGLang"
OLLAMA = "Ollama"
LLAMA_CPP = "llama.cpp"
TGI = "TGI"
PYTORCH = "PyTorch"
JAX = "JAX"
TENSORFLOW = "TensorFlow"

SERVING = frozenset({VLLM, SGLANG, OLLAMA, LLAMA_CPP, TGI})
LIBRARIES = frozenset({PYTORCH, JAX, TENSORFLOW})

# Program basenames (lower case) and the framework each one is.
_PROGRAMS: dict[str, str] = {
    "vllm": VLLM,
    "sglang": SGLANG,
    "ollama": OLLAMA,
    "ollama_llama_server": OLLAMA,
    "text-generation-launcher": TGI,
    "text-generation-server": TGI,
    "text-generation-router": TGI,
    "torchrun": PYTORCH,
    "deepspeed": PYTORCH,
    **{
        f"llama-{tool}": LLAMA_CPP
        for tool in (
            "server",
            "cli",
            "bench",
            "run",
            "simple",
            "embedding",
            "perplexity",
            "speculative",
            "batched",
            "parallel",
            "mtmd-cli",
            "llava-cli",
        )
    },
}

# Top-level package after ``python -m`` and the framework it is.
_MODULES: dict[str, str] = {
    "vllm": VLLM,
    "sglang": SGLANG,
    "llama_cpp": LLAMA_CPP,
    "text_generation_server": TGI,
    "torch": PYTORCH,
    "jax": JAX,
    "tensorflow": TENSORFLOW,
}

# Process-title prefixes the servers set on their own processes (setproctitle).
_TITLES: tuple[tuple[str, str], ...] = (("vllm::", VLLM), ("sglang::", SGLANG))

_INTERPRETER = re.compile(r"^(python|pypy)(\d+(\.\d+)*)?[a-z]?$")
_OPTS_WITH_VALUE = frozenset({"-W", "-X", "-Q"})

# Markers in /proc/PID/maps, checked in order. Serving packages first, then libraries; within
# the libraries, the first list is the CUDA half (a JAX job that imports torch for its data
# loader is JAX: only JAX's CUDA plugin is loaded).
_SERVING_MAPS: tuple[tuple[bytes, str], ...] = (
    (b"/site-packages/vllm/", VLLM),
    (b"/dist-packages/vllm/", VLLM),
    (b"/site-packages/sglang/", SGLANG),
    (b"/dist-packages/sglang/", SGLANG),
    (b"/sgl_kernel/", SGLANG),
    (b"/text_generation_server/", TGI),
    (b"/lib/ollama/", OLLAMA),
    (b"/libllama.so", LLAMA_CPP),
    (b"/llama_cpp/", LLAMA_CPP),
)
_LIBRARY_MAPS: tuple[tuple[str, tuple[bytes, ...], tuple[bytes, ...]], ...] = (
    (PYTORCH, (b"/libtorch_cuda.so", b"/libc10_cuda.so"), (b"/libtorch_cpu.so", b"/libtorch.so")),
    (
        JAX,
        (b"jax_cuda", b"xla_cuda_plugin", b"/jaxlib/cuda/"),
        (b"/jaxlib/", b"/libxla", b"xla_extension"),
    ),
    (
        TENSORFLOW,
        (b"libtensorflow_framework.so", b"_pywrap_tensorflow_internal"),
        (b"libtensorflow_cc.so", b"libtensorflow.so"),
    ),
)

# Distribution names whose dist-info/egg-info directory gives each framework's version.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    VLLM: ("vllm",),
    SGLANG: ("sglang",),
    TGI: ("text_generation_server",),
    LLAMA_CPP: ("llama_cpp_python",),
    PYTORCH: ("torch",),
    JAX: ("jax", "jaxlib"),
    TENSORFLOW: ("tensorflow", "tensorflow_cpu", "tf_nightly"),
}

_FALSY = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True, slots=True)
class Detection:
    framework: str
    evidence: str  # sanitised: "argv: vllm serve", "maps: libtorch_cuda.so", ...

    @property
    def serving(self) -> bool:
        return self.framework in SERVING


def tokens(argv: Sequence[str]) -> list[str]:
    """Whitespace tokens of a command line; a title set with setproctitle is one argument."""
    return [t for arg in argv for t in arg.split()]


def _evidence(kind: str, words: Iterable[str]) -> str:
    return clean(f"{kind}: {' '.join(words)}", 80)


def from_argv(argv: Sequence[str], comm: str = "") -> Detection | None:
    """The framework a command line (and ``comm``, the kernel's short name) names, if any."""
    toks = tokens(argv)
    for tok in [*toks, comm]:
        low = tok.lower()
        for prefix, framework in _TITLES:
            if low.startswith(prefix):
                return Detection(framework, _evidence("title", [tok]))
    if not toks:
        return None
    first = os.path.basename(toks[0]).lower()
    rest = toks[1:]
    if _INTERPRETER.match(first):
        skip = False
        for i, tok in enumerate(rest):
            if skip:
                skip = False
                continue
            if tok == "-m" or (tok.startswith("-m") and len(tok) > 2):
                module = rest[i + 1] if tok == "-m" and i + 1 < len(rest) else tok[2:]
                by_module = _MODULES.get(module.split(".")[0].lower())
                if by_module is None:
                    return None
                return Detection(by_module, _evidence("argv", ["-m", module]))
            if tok in ("-c", "-"):
                return None  # inline code: the title (checked above) is all there is
            if tok in _OPTS_WITH_VALUE:
                skip = True
                continue
            if tok.startswith("-"):
                continue
            first, rest = os.path.basename(tok).lower(), rest[i + 1 :]
            break
        else:
            return None
    by_program = _PROGRAMS.get(first)
    if by_program is None:
        return None
    return Detection(by_program, _evidence("argv", [first, *rest[:1]]))


def _line_basename(blob: bytes, at: int) -> str:
    end = blob.find(b"\n", at)
    start = blob.rfind(b"/", 0, end if end >= 0 else len(blob)) + 1
    name = blob[start : end if end >= 0 else len(blob)]
    return clean(name.split(b" (deleted)")[0], 60)


def from_maps(maps: bytes) -> tuple[Detection | None, Detection | None]:
    """(serving framework, library framework) from a process's memory map, each if found.

    Only substring searches over the whole text (done in C): cheap even for a few MB of maps.
    """
    serving = None
    for marker, framework in _SERVING_MAPS:
        at = maps.find(marker)
        if at >= 0:
            serving = Detection(framework, _evidence("maps", [_line_basename(maps, at)]))
            break
    library = None
    fallback = None
    for framework, cuda, other in _LIBRARY_MAPS:
        for marker in cuda:
            at = maps.find(marker)
            if at >= 0:
                library = Detection(framework, _evidence("maps", [_line_basename(maps, at)]))
                break
        if library is not None:
            break
        if fallback is None:
            for marker in other:
                at = maps.find(marker)
                if at >= 0:
                    fallback = Detection(framework, _evidence("maps", [_line_basename(maps, at)]))
                    break
    return serving, library or fallback


def site_packages(maps: bytes, limit: int = 4, steps: int = 512) -> list[str]:
    """Python package directories (``.../site-packages``) that the process loads code from.

    ``steps`` bounds the scan: every library of one environment names the same directory.
    """
    found: list[str] = []
    for marker in (b"/site-packages/", b"/dist-packages/"):
        at = maps.find(marker)
        while at >= 0 and len(found) < limit and steps > 0:
            steps -= 1
            line_start = maps.rfind(b"\n", 0, at) + 1
            # The path column is the first " /" of the line (the other columns hold no "/").
            path_start = maps.find(b" /", line_start, at + 1)
            if path_start >= 0:
                directory = maps[path_start + 1 : at + len(marker) - 1].decode("utf-8", "replace")
                if directory not in found:
                    found.append(directory)
            at = maps.find(marker, at + len(marker))
    return found


def version_from_listing(names: Iterable[str], framework: str) -> str:
    """The framework's version from the entries of a site-packages directory, or ""."""
    wanted = DISTRIBUTIONS.get(framework, ())
    if not wanted:
        return ""
    versions: dict[str, str] = {}
    for name in names:
        low = name.lower()
        for suffix in (".dist-info", ".egg-info"):
            if low.endswith(suffix):
                dist, sep, version = name[: -len(suffix)].partition("-")
                dist = dist.lower().replace("-", "_").replace(".", "_")
                if sep and dist in wanted:
                    # egg-info: name-1.2.3-py3.11.egg-info
                    versions[dist] = version.split("-py")[0]
    for dist in wanted:
        if dist in versions:
            return clean(versions[dist], 40)
    return ""


def preallocates(framework: str, environ: Mapping[str, str] | None) -> bool:
    """Whether the framework grabs most of the GPU's memory up front (so growth is not a leak).

    vLLM, SGLang and TGI size their KV cache at start; JAX preallocates 75% unless told not to
    (``XLA_PYTHON_CLIENT_PREALLOCATE=false`` or the platform allocator). ``environ`` is None when
    it may not be read: JAX's default is assumed then.
    """
    if framework in (VLLM, SGLANG, TGI):
        return True
    if framework != JAX:
        return False
    env = environ or {}
    if env.get("XLA_PYTHON_CLIENT_PREALLOCATE", "").strip().lower() in _FALSY:
        return False
    return env.get("XLA_PYTHON_CLIENT_ALLOCATOR", "").strip().lower() != "platform"
