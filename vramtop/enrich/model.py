"""What the enricher learns about one process: the data it sends to the render process, the
analyzer, ``--once --json`` and the CSV. Plain frozen dataclasses; "" / () / None = unknown."""

from __future__ import annotations

from dataclasses import dataclass

from vramtop.messages import ProcessIdentity
from vramtop.wire import compact


@compact
@dataclass(frozen=True, slots=True)
class ModelFile:
    path: str  # sanitised
    size_bytes: int
    kind: str  # extension without the dot: "safetensors", "gguf", "pt", ...
    via: str  # "fd" | "mmap" | "fd+mmap"


@compact
@dataclass(frozen=True, slots=True)
class Container:
    runtime: str  # "docker" | "podman" | "containerd" | "cri-o" | "kubernetes" | "lxc"
    id: str  # full container id ("" when only the pod is known)
    pod_uid: str = ""  # Kubernetes pod UID
    pid_in_container: int | None = None  # from NSpid

    @property
    def short_id(self) -> str:
        return self.id[:12]


@compact
@dataclass(frozen=True, slots=True)
class Enrichment:
    identity: ProcessIdentity
    uid: int  # -1 unknown
    user: str
    same_user: bool  # details below are only read when True (or when vramtop runs as root)
    cmdline: tuple[str, ...] = ()
    framework: str = (
        ""  # "PyTorch", "JAX", "TensorFlow", "vLLM", "SGLang", "Ollama", "llama.cpp", "TGI"
    )
    framework_version: str = ""
    framework_evidence: str = (
        ""  # why: "argv: vllm serve", "maps: libtorch_cuda.so", "parent 1234 is vLLM"
    )
    model_files: tuple[ModelFile, ...] = ()
    container: Container | None = None
    parent_pid: int = 0
    preallocates: bool = False  # vLLM, SGLang, TGI, JAX with preallocation: judged by own signals
