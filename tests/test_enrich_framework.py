"""Framework detection: real processes with crafted titles and argv, real mapped libraries, the
parent chain, versions from dist-info, and the look-alikes that must not be detected."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_enricher import Spawned, procs, spawn  # noqa: F401  (procs is a fixture)

from vramtop.enrich import framework
from vramtop.enrich.enricher import Enricher
from vramtop.enrich.framework import from_argv, from_maps, preallocates, version_from_listing


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["vllm", "serve", "meta-llama/Llama-3-70B"], "vLLM"),
        (["/venv/bin/python3", "/venv/bin/vllm", "serve", "x"], "vLLM"),
        (["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "x"], "vLLM"),
        (["python", "-u", "-X", "dev", "-mvllm.entrypoints.api_server"], "vLLM"),
        (["VLLM::EngineCore"], "vLLM"),
        (["VLLM::Worker_TP1"], "vLLM"),
        (["VLLM serve /m"], "vLLM"),
        (["sglang::scheduler_TP0"], "SGLang"),
        (["python3", "-m", "sglang.launch_server", "--model-path", "x"], "SGLang"),
        (["/usr/bin/ollama", "runner", "--model", "/root/.ollama/models/blobs/sha256-1"], "Ollama"),
        (["ollama", "serve"], "Ollama"),
        (["/app/llama-server", "-m", "/models/q4.gguf"], "llama.cpp"),
        (["python3", "-m", "llama_cpp.server", "--model", "x.gguf"], "llama.cpp"),
        (["text-generation-launcher", "--model-id", "bigscience/bloom"], "TGI"),
        (["/opt/conda/bin/python", "/opt/conda/bin/text-generation-server", "serve"], "TGI"),
        (["torchrun", "--nproc-per-node", "8", "train.py"], "PyTorch"),
        (["python", "-m", "torch.distributed.run", "train.py"], "PyTorch"),
    ],
)
def test_argv_and_titles_name_the_framework(argv: list[str], expected: str) -> None:
    found = from_argv(argv)
    assert found is not None and found.framework == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["python3", "my_vllm_notes.py"],
        ["python3", "/home/vllm/train.py", "--tp", "2"],
        ["python3", "-m", "vllm_tools.report"],
        ["python3", "-c", "import vllm; vllm.serve()"],
        ["vim", "vllm", "serve"],  # an editor opening a file named vllm
        ["/srv/llama-server-backup/run.sh"],
        ["python3", "serve_sglang.py", "--tgi", "ollama"],
    ],
)
def test_lookalikes_are_not_frameworks(argv: list[str]) -> None:
    assert from_argv(argv) is None


def test_comm_carries_a_title_when_argv_does_not() -> None:
    found = from_argv(["python3", "-c", "..."], comm="VLLM::Worker")
    assert found is not None and found.framework == "vLLM"


def _maps(*paths: str) -> bytes:
    lines = [
        f"7f{i:04x}000-7f{i:04x}fff r-xp 00000000 fd:01 {1000 + i}    {p}"
        for i, p in enumerate(paths)
    ]
    return ("\n".join(lines) + "\n").encode()


SP = "/venv/lib/python3.11/site-packages"


@pytest.mark.parametrize(
    ("paths", "serving", "library"),
    [
        ([f"{SP}/torch/lib/libtorch_cuda.so", f"{SP}/torch/lib/libc10.so"], None, "PyTorch"),
        ([f"{SP}/jaxlib/xla_extension.so"], None, "JAX"),
        ([f"{SP}/tensorflow/libtensorflow_framework.so.2"], None, "TensorFlow"),
        # A JAX job that imports torch (CPU) for data loading is a JAX job.
        (
            [f"{SP}/torch/lib/libtorch_cpu.so", f"{SP}/jax_cuda12_plugin/xla_cuda_plugin.so"],
            None,
            "JAX",
        ),
        ([f"{SP}/torch/lib/libtorch_cuda.so", f"{SP}/vllm/_C.abi3.so"], "vLLM", "PyTorch"),
        (["/usr/lib/x86_64-linux-gnu/libc.so.6", "/home/vllm/libfoo.so"], None, None),
    ],
)
def test_loaded_libraries_name_the_framework(
    paths: list[str], serving: str | None, library: str | None
) -> None:
    s, lib = from_maps(_maps(*paths))
    assert (s.framework if s else None) == serving
    assert (lib.framework if lib else None) == library


def test_versions_come_from_dist_info_names() -> None:
    names = ["torchvision-0.18.0.dist-info", "torch-2.3.1+cu121.dist-info", "numpy"]
    assert version_from_listing(names, "PyTorch") == "2.3.1+cu121"
    assert version_from_listing(["jaxlib-0.4.30.dist-info"], "JAX") == "0.4.30"
    assert version_from_listing(["vllm-0.6.3.post1-py3.11.egg-info"], "vLLM") == "0.6.3.post1"
    assert version_from_listing(names, "vLLM") == ""
    assert framework.site_packages(_maps(f"{SP}/torch/lib/libtorch_cuda.so")) == [SP]


def test_preallocation_by_framework_and_environment() -> None:
    assert preallocates("vLLM", None) and preallocates("SGLang", {}) and preallocates("TGI", {})
    assert not preallocates("PyTorch", None) and not preallocates("", None)
    assert preallocates("JAX", {})
    assert not preallocates("JAX", {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    assert not preallocates("JAX", {"XLA_PYTHON_CLIENT_ALLOCATOR": "platform"})


# -- real processes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "expected", "evidence"),
    [
        ("vllm serve /models/Llama-3-70B", "vLLM", "argv: vllm serve"),
        ("VLLM::EngineCore", "vLLM", "title: VLLM::EngineCore"),
        ("sglang::scheduler", "SGLang", "title: sglang::scheduler"),
        ("/usr/bin/ollama runner --model /m/blob", "Ollama", "argv: ollama runner"),
        ("/app/llama-server -m /models/q4.gguf", "llama.cpp", "argv: llama-server -m"),
        ("text-generation-launcher --model-id x", "TGI", "argv: text-generation-launcher"),
        ("python3 my_vllm_notes.py", "", ""),
    ],
)
def test_real_process_titles(
    procs: list[Spawned],  # noqa: F811
    title: str,
    expected: str,
    evidence: str,
) -> None:
    procs.append(spawn(title=title))
    (e,) = Enricher().update([procs[-1].row()])
    assert e.framework == expected
    assert e.framework_evidence.startswith(evidence)
    assert e.preallocates == (expected in ("vLLM", "SGLang", "TGI"))


def _fake_env(tmp_path: Path, lib: str, dist: str) -> Path:
    """A site-packages directory with one (fake) shared library and its dist-info."""
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    so = site / lib
    so.parent.mkdir(parents=True)
    so.write_bytes(b"\x7fELF" + b"\0" * 4092)
    (site / dist).mkdir()
    return so


def test_real_mapped_library_and_version(
    procs: list[Spawned],  # noqa: F811
    tmp_path: Path,
) -> None:
    so = _fake_env(tmp_path, "torch/lib/libtorch_cuda.so", "torch-2.3.1+cu121.dist-info")
    procs.append(spawn(mmap=[str(so)], title="python3 train.py --epochs 3"))
    (e,) = Enricher().update([procs[-1].row()])
    assert (e.framework, e.framework_version) == ("PyTorch", "2.3.1+cu121")
    assert e.framework_evidence == "maps: libtorch_cuda.so"
    assert not e.preallocates


def test_worker_of_a_vllm_server_is_vllm(
    procs: list[Spawned],  # noqa: F811
    tmp_path: Path,
) -> None:
    so = _fake_env(tmp_path, "torch/lib/libtorch_cuda.so", "vllm-0.6.3.dist-info")
    procs.append(
        spawn(
            title="vllm serve /models/llama",
            child={"mmap": [str(so)], "title": "python3 -c from multiprocessing.spawn import"},
        )
    )
    worker = procs[-1].row(1)
    (e,) = Enricher().update([worker])
    assert e.framework == "vLLM"
    assert e.framework_evidence == f"parent {procs[-1].pid} is vLLM"
    assert e.parent_pid == procs[-1].pid
    assert e.framework_version == "0.6.3"  # vLLM's dist-info next to the torch it loads
    assert e.preallocates


@pytest.mark.parametrize(
    ("env", "expected"), [({}, True), ({"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}, False)]
)
def test_jax_preallocation_read_from_environ(
    procs: list[Spawned],  # noqa: F811
    tmp_path: Path,
    env: dict[str, str],
    expected: bool,
) -> None:
    so = _fake_env(tmp_path, "jaxlib/xla_extension.so", "jax-0.4.30.dist-info")
    procs.append(spawn(env=env, mmap=[str(so)], title="python3 fit.py"))
    (e,) = Enricher().update([procs[-1].row()])
    assert (e.framework, e.framework_version, e.preallocates) == ("JAX", "0.4.30", expected)
