"""Model weight files a process holds: open file descriptors and memory-mapped files.

Data flow: ``Enricher`` -> :func:`collect` (reads ``/proc/PID/fd`` and the maps text it already
read, through :class:`~vramtop.enrich.procfs.ProcFS`) -> ``Enrichment.model_files`` -> the detail
panel, ``--once --json`` and the CSV. Same-UID processes only (the caller decides).

A file counts when its extension is a weights format (.safetensors, .gguf, .pt, .pth, .ckpt,
.onnx, .h5, .tflite); ``.bin`` is too common a name (firmware, caches) and counts only under a
model-like directory (``models/``, ``checkpoints/``, ``weights/``, a Hugging Face cache
``hub/models--org--name/snapshots/...``). Files are deduplicated by device and inode: a file
both open and mapped, or mapped in many segments, is one entry (``via = "fd+mmap"``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from vramtop.enrich.model import ModelFile
from vramtop.enrich.procfs import ProcFS
from vramtop.sanitize import clean

EXTENSIONS = ("safetensors", "gguf", "pt", "pth", "ckpt", "onnx", "h5", "tflite", "bin")
ALWAYS = frozenset(EXTENSIONS) - {"bin"}
MAX_FILES = 64  # per process: a sharded checkpoint has tens of files, not thousands

_MODELISH = frozenset(
    {
        "model",
        "models",
        "checkpoint",
        "checkpoints",
        "ckpt",
        "ckpts",
        "weights",
        "huggingface",
        "hf",
        "hub",
        "snapshots",
        "llm",
        "llms",
        "lora",
        "gguf",
    }
)
_WORDS = re.compile(r"[-_.\s]+")
_DELETED = " (deleted)"
_MAPPED = re.compile(
    rb"\.(?:" + "|".join(EXTENSIONS).encode() + rb")(?: \(deleted\))?$",
    re.MULTILINE | re.IGNORECASE,
)
_SKIP_PREFIXES = ("/dev/", "/proc/", "/sys/", "/memfd:", "anon_inode:", "socket:", "pipe:")


def model_kind(path: str) -> str | None:
    """The weights format of ``path`` ("safetensors", "gguf", ...) or None if not a model file."""
    if path.endswith(_DELETED):
        path = path[: -len(_DELETED)]
    if not path.startswith("/") or path.startswith(_SKIP_PREFIXES):
        return None
    directory, _, name = path.rpartition("/")
    _, dot, ext = name.rpartition(".")
    ext = ext.lower()
    if not dot or ext not in EXTENSIONS:
        return None
    if ext in ALWAYS:
        return ext
    for part in directory.lower().split("/"):
        if part.startswith("models--") or any(w in _MODELISH for w in _WORDS.split(part)):
            return ext
    return None


@dataclass(slots=True)
class _Found:
    path: str
    kind: str
    size: int
    fd: bool = False
    mmap: bool = False

    def to_model(self) -> ModelFile:
        via = "fd+mmap" if self.fd and self.mmap else ("fd" if self.fd else "mmap")
        return ModelFile(clean(self.path), self.size, self.kind, via)


@dataclass(frozen=True, slots=True)
class Mapping:
    """One mapped model file as /proc/PID/maps names it (all its segments together)."""

    path: str
    dev: int
    ino: int
    extent: int  # highest file offset mapped: the size when the file cannot be stat'ed


def mapped_files(maps: bytes) -> list[Mapping]:
    """Model files in a maps text. One regex search for the extensions at line ends (in C)
    instead of parsing every line: a CUDA process has thousands of lines, a few weight files."""
    found: dict[str, Mapping] = {}
    for match in _MAPPED.finditer(maps):
        line_start = maps.rfind(b"\n", 0, match.start()) + 1
        _add_mapping(maps[line_start : match.end()], found)
    return list(found.values())


def _add_mapping(line: bytes, found: dict[str, Mapping]) -> None:
    fields = line.split(None, 5)
    if len(fields) < 6:
        return
    path = fields[5].decode("utf-8", "replace")
    if model_kind(path) is None:
        return
    try:
        lo, hi = (int(x, 16) for x in fields[0].split(b"-"))
        offset = int(fields[2], 16)
        major, minor = (int(x, 16) for x in fields[3].split(b":"))
        ino = int(fields[4])
    except ValueError:
        return
    extent = offset + hi - lo
    old = found.get(path)
    if old is not None:
        extent = max(extent, old.extent)
    found[path] = Mapping(path, os.makedev(major, minor), ino, extent)


def collect(procfs: ProcFS, pid: int, maps: bytes | None) -> tuple[ModelFile, ...]:
    """Model files ``pid`` has open or mapped, largest first (at most :data:`MAX_FILES`)."""
    by_id: dict[tuple[int, int], _Found] = {}
    for fd_path, target in procfs.fd_targets(pid):
        kind = model_kind(target)
        if kind is None:
            continue
        fid = procfs.file_id(fd_path)  # follows the descriptor: works for deleted files too
        if fid is None:
            continue
        entry = by_id.setdefault((fid.dev, fid.ino), _Found(target, kind, fid.size))
        entry.fd = True
    for mapping in mapped_files(maps or b""):
        kind = model_kind(mapping.path) or ""
        key, size = (mapping.dev, mapping.ino), mapping.extent
        if not mapping.path.endswith(_DELETED):
            # Through the process's own root: a container's /models is not the host's.
            fid = procfs.file_id(procfs.in_root(pid, mapping.path))
            if fid is not None:
                key, size = (fid.dev, fid.ino), fid.size
        # overlayfs reports the lower layer's device in maps: match by path as well.
        found = by_id.get(key) or next((f for f in by_id.values() if f.path == mapping.path), None)
        if found is None:
            found = by_id[key] = _Found(mapping.path, kind, size)
        found.mmap = True
    ordered = sorted(by_id.values(), key=lambda f: (-f.size, f.path))
    return tuple(f.to_model() for f in ordered[:MAX_FILES])
