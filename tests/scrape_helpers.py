"""Shared by the ``test_scrape_*`` files: real HTTP servers on 127.0.0.1 and real process trees.

* :class:`ThreadServer`: an HTTP server in a thread of the test process, with hostile behaviours
  (redirect, endless body, trickle) and a count of the connections it accepted.
* :func:`process_tree`: a tree of real processes from a ``vramtop.gpu.fakeserver`` spec (titles,
  listeners, other UIDs), stopped when the test ends (and by themselves after a minute).
* Server bodies as each server's documentation and sources show them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vramtop.gpu.fakeserver import count_nodes
from vramtop.messages import ProcessIdentity, ProcessRow, ProcessRows

VLLM_NEW = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.42
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} PREEMPT
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",num_gpu_blocks="2048"} 1.0
"""

VLLM_OLD = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="Qwen/Qwen2.5-7B"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="Qwen/Qwen2.5-7B"} 0.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="Qwen/Qwen2.5-7B"} 0.17
"""

SGLANG_NEW = """\
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="Qwen/Qwen3-8B",tp_rank="0"} 0.61
sglang:token_usage{model_name="Qwen/Qwen3-8B",tp_rank="1"} 0.61
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="Qwen/Qwen3-8B",tp_rank="0"} 12.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="Qwen/Qwen3-8B",tp_rank="0"} 5.0
# TYPE sglang:max_total_num_tokens gauge
sglang:max_total_num_tokens{model_name="Qwen/Qwen3-8B",tp_rank="0"} 480000.0
# TYPE sglang:num_retracted_requests counter
sglang:num_retracted_requests_total{model_name="Qwen/Qwen3-8B",tp_rank="0"} 4.0
"""

SGLANG_OLD = """\
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="mistral-7b"} 0.25
# TYPE sglang:num_requests_running gauge
sglang:num_requests_running{model_name="mistral-7b"} 3.0
# TYPE sglang:num_requests_waiting gauge
sglang:num_requests_waiting{model_name="mistral-7b"} 1.0
# TYPE sglang:num_retracted_reqs gauge
sglang:num_retracted_reqs{model_name="mistral-7b"} 2.0
"""

LLAMA_SLOTS = json.dumps(
    [
        {"id": 0, "n_ctx": 4096, "is_processing": True, "n_prompt_tokens": 900,
         "next_token": [{"has_next_token": True, "n_remain": -1, "n_decoded": 124}]},
        {"id": 1, "n_ctx": 4096, "is_processing": False},
    ]
)  # fmt: skip

LLAMA_METRICS = """\
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 2
"""

TGI_METRICS = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 6
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 9
# TYPE tgi_batch_current_max_tokens gauge
tgi_batch_current_max_tokens 12000
# TYPE tgi_batch_max_total_tokens gauge
tgi_batch_max_total_tokens 16000
"""
TGI_INFO = json.dumps({"model_id": "bigscience/bloom-560m", "max_total_tokens": 2048})

DIGEST = "6a0746a1ec1aef3e7ec53868f220ff6e389f6f8ef87a01d77c96807de94ca2aa"


def ollama_ps(digest: str = DIGEST, name: str = "llama3.2:3b") -> str:
    return json.dumps(
        {
            "models": [
                {
                    "name": name,
                    "model": name,
                    "size": 3_400_000_000,
                    "digest": digest,
                    "details": {"format": "gguf", "family": "llama"},
                    "expires_at": "2026-12-01T10:00:00Z",
                    "size_vram": 3_400_000_000,
                    "context_length": 8192,
                }
            ]
        }
    )


def route(body: str, status: int = 200, ctype: str = "text/plain") -> dict[str, Any]:
    return {"status": status, "type": ctype, "body": body}


# --- servers in a thread ------------------------------------------------------------------


class ThreadServer:
    """An HTTP server on 127.0.0.1 (port 0: the kernel picks) in a daemon thread.

    ``mode`` per path: ("ok", status, ctype, body) | ("redirect", location) | ("endless",) |
    ("trickle", seconds_per_byte). ``connections`` counts accepted connections.
    """

    def __init__(self, routes: dict[str, tuple[Any, ...]], host: str = "127.0.0.1") -> None:
        self.routes = routes
        self.connections = 0
        self.requests: list[str] = []
        self.stopped = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                mode = owner.routes.get(self.path, ("ok", 404, "text/plain", "not found"))
                with contextlib.suppress(OSError):
                    owner._serve(self, mode)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                got = super().get_request()
                owner.connections += 1
                return got

        self.server = Server((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _serve(self, h: BaseHTTPRequestHandler, mode: tuple[Any, ...]) -> None:
        if mode[0] == "redirect":
            h.send_response(302)
            h.send_header("Location", mode[1])
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif mode[0] == "endless":
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.end_headers()
            chunk = b"x" * 8192  # one 10 MB line of junk, if anyone reads it all
            for _ in range(10 * 1024 * 1024 // len(chunk) + 1):
                if self.stopped.is_set():
                    return
                h.wfile.write(chunk)
        elif mode[0] == "trickle":
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.end_headers()
            for byte in VLLM_NEW.encode():
                if self.stopped.wait(mode[1]):
                    return
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
        else:
            _, status, ctype, body = mode
            data = body.encode()
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

    def close(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def thread_server(
    routes: dict[str, tuple[Any, ...]], host: str = "127.0.0.1"
) -> Iterator[ThreadServer]:
    server = ThreadServer(routes, host)
    try:
        yield server
    finally:
        server.close()


# --- process trees ------------------------------------------------------------------------


@dataclass
class Tree:
    procs: dict[str, tuple[int, int | None]]  # name -> (pid, port)
    popen: subprocess.Popen[bytes]

    def pid(self, name: str) -> int:
        return self.procs[name][0]

    def port(self, name: str) -> int:
        port = self.procs[name][1]
        assert port is not None, f"{name} does not listen"
        return port


@contextlib.contextmanager
def process_tree(spec: dict[str, Any], timeout: float = 30.0) -> Iterator[Tree]:
    """Start the fakeserver tree, wait for every node's report line, stop it all at the end."""
    spec = {"max_seconds": 120, **spec}
    argv = [sys.executable, "-m", "vramtop.gpu.fakeserver", json.dumps(spec)]
    with _reporting(argv, count_nodes(spec), timeout) as tree:
        yield tree


@contextlib.contextmanager
def hostile_tree(mode: str, count_file: str) -> Iterator[Tree]:
    """A vLLM-shaped tree ("api" listens and misbehaves, "engine" is the GPU process)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_tree.py")
    with _reporting([sys.executable, script, mode, count_file], 2, 30.0) as tree:
        yield tree


@contextlib.contextmanager
def _reporting(argv: list[str], want: int, timeout: float) -> Iterator[Tree]:
    popen = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=dict(os.environ, VRAMTOP_FAKESERVER_PARENT=str(os.getpid())),
    )
    assert popen.stdout is not None
    procs: dict[str, tuple[int, int | None]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(procs) < want and time.monotonic() < deadline:
            line = popen.stdout.readline()
            if not line:
                break
            got = json.loads(line)
            assert "error" not in got, got
            procs[got["name"]] = (got["pid"], got["port"])
        assert len(procs) == want, f"tree came up with {sorted(procs)} of {want} nodes"
        # Titles are set and listeners bound before each report line.
        yield Tree(procs, popen)
    finally:
        for pid, _ in procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 9)
        popen.kill()
        popen.wait(timeout=10)
        popen.stdout.close()


def node(
    name: str,
    title: str,
    port: Any = None,
    routes: dict[str, Any] | None = None,
    children: list[dict[str, Any]] | None = None,
    uid: int | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "title": title, "port": port, "routes": routes or {}}
    if children:
        out["children"] = children
    if uid is not None:
        out["uid"] = uid
    return out


def identity(pid: int) -> ProcessIdentity:
    import psutil

    return ProcessIdentity(pid, psutil.Process(pid).create_time())


def sample(*pids_on_gpus: tuple[int, int]) -> ProcessRows:
    """The sampler's rows message for the given (pid, gpu index) GPU processes."""
    rows = tuple(
        ProcessRow(identity(pid), gpu, slot, "root", "", True)
        for slot, (pid, gpu) in enumerate(pids_on_gpus)
    )
    return ProcessRows(1, time.time(), rows)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
