"""Model files: real processes that open and mmap weight files; which names count, how files
open twice or mapped in many segments are counted once, and their sizes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_enricher import Spawned, procs, spawn  # noqa: F401  (procs is a fixture)

from vramtop.enrich.enricher import Enricher
from vramtop.enrich.models import mapped_files, model_kind


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/models/llama/model-00001-of-00030.safetensors", "safetensors"),
        ("/root/.ollama/models/q4_K_M.GGUF", "gguf"),
        ("/ckpt/step_1000.pt", "pt"),
        ("/data/resnet.pth", "pth"),
        ("/runs/last.ckpt", "ckpt"),
        ("/srv/yolo.onnx", "onnx"),
        ("/srv/keras_model.h5", "h5"),
        ("/srv/mobile.tflite", "tflite"),
        ("/data/models/llama/pytorch_model.bin", "bin"),
        ("/root/.cache/huggingface/hub/models--gpt2/snapshots/abc/pytorch_model.bin", "bin"),
        ("/data/llama-checkpoints/shard.bin", "bin"),
        ("/models/deleted.safetensors (deleted)", "safetensors"),
        ("/usr/lib/firmware/nvidia/gsp.bin", None),
        ("/tmp/cache/kernel.bin", None),
        ("/usr/local/cuda/lib64/libcublas.so.12", None),
        ("/tmp/kernels/sm_90.ptx", None),
        ("/dev/nvidia0", None),
        ("socket:[12345]", None),
    ],
)
def test_which_files_are_model_files(path: str, kind: str | None) -> None:
    assert model_kind(path) == kind


def test_mapped_segments_of_one_file_are_one_mapping() -> None:
    maps = (
        b"7f0000000000-7f0000100000 r--s 00000000 fd:01 42    /m/w.safetensors\n"
        b"7f0000100000-7f0000300000 r--s 00100000 fd:01 42    /m/w.safetensors\n"
        b"7f0000400000-7f0000401000 r-xp 00000000 fd:01 43    /usr/lib/libc.so.6\n"
        b"7f0000500000-7f0000501000 r--p 00000000 fd:01 44    /tmp/x.ptx\n"
    )
    (m,) = mapped_files(maps)
    assert (m.path, m.ino, m.dev, m.extent) == (
        "/m/w.safetensors",
        42,
        os.makedev(0xFD, 1),
        0x300000,
    )


def _weights(directory: Path, name: str, size: int) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: sizes are real, the disk is not used
    return str(path)


def test_open_and_mapped_files_with_sizes(
    procs: list[Spawned],  # noqa: F811
    tmp_path: Path,
) -> None:
    models = tmp_path / "models" / "llama"
    st = _weights(models, "model-00001.safetensors", 5 * 2**20)
    gguf = _weights(tmp_path / "gguf", "q4.gguf", 3 * 2**20)
    both = _weights(tmp_path, "adapter.pt", 2 * 2**20)
    shard = _weights(models, "pytorch_model.bin", 4 * 2**20)
    firmware = _weights(tmp_path / "firmware", "blob.bin", 6 * 2**20)
    link = str(tmp_path / "same-inode.pt")
    os.link(both, link)
    procs.append(
        spawn(
            open=[st, both, link, both, shard, firmware, "/dev/null"],
            mmap=[gguf, both],
            title="python3 serve.py",
        )
    )
    (e,) = Enricher().update([procs[-1].row()])
    found = {(m.path, m.size_bytes, m.kind, m.via) for m in e.model_files}
    # adapter.pt: open twice, once through a hard link, and mapped: one file, both ways.
    assert found in (
        {
            (st, 5 * 2**20, "safetensors", "fd"),
            (shard, 4 * 2**20, "bin", "fd"),
            (gguf, 3 * 2**20, "gguf", "mmap"),
            (path, 2 * 2**20, "pt", "fd+mmap"),
        }
        for path in (both, link)
    )
    assert [m.size_bytes for m in e.model_files] == sorted(
        (m.size_bytes for m in e.model_files), reverse=True
    )


def test_deleted_files_still_count(
    procs: list[Spawned],  # noqa: F811
    tmp_path: Path,
) -> None:
    path = _weights(tmp_path / "models", "tmp.safetensors", 2**20)
    procs.append(spawn(mmap=[path]))
    os.unlink(path)
    (e,) = Enricher().update([procs[-1].row()])
    (m,) = e.model_files
    assert (m.path, m.via, m.size_bytes) == (path + " (deleted)", "mmap", 2**20)


def test_no_model_files_for_a_plain_process(procs: list[Spawned]) -> None:  # noqa: F811
    procs.append(spawn(open=["/etc/hostname"] if os.path.exists("/etc/hostname") else []))
    (e,) = Enricher().update([procs[-1].row()])
    assert e.model_files == ()
