"""Stand-in inference servers: real process trees that answer real HTTP on loopback.

Where it sits: ``vramtop --demo`` starts one through :class:`~vramtop.gpu.children.ChildPool`
for a scenario process with ``serve = "vllm"`` (a ``vllm serve`` API server on 127.0.0.1 whose
child, ``VLLM::EngineCore``, is the simulated GPU process), so the scraper actor reads a server
exactly as it would read a real one; the tests build other shapes (a sibling listener, a runner
on a random port, listeners of other users) from the same spec.

Run as ``python -m vramtop.gpu.fakeserver SPEC_JSON``. A spec is a tree of nodes::

    {"name": "api", "title": "vllm serve m --port {port}", "port": [8000, 30000] | 0 | null,
     "routes": {"/metrics": {"status": 200, "type": "text/plain", "body": "..."}
                            | {"dynamic": "vllm"}},
     "uid": 65534, "children": [...], "max_seconds": 600}

Every node process dies with its parent (``PR_SET_PDEATHSIG``) and after ``max_seconds``, binds
127.0.0.1 only, takes ``title`` as its command line (``{port}`` replaced by the port it got), and
writes one JSON line ``{"name", "pid", "port"}`` to its stdout, which its children share; the
caller reads one line per node. Standard library plus setproctitle only.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STARTED = time.monotonic()


def vllm_metrics(t: float, model: str = "demo-model") -> str:
    """vLLM's /metrics at ``t`` seconds: the KV cache fills and drains over two minutes, and a
    queue builds while it is nearly full."""
    kv = 0.3 + 0.68 * (0.5 - 0.5 * math.cos(2 * math.pi * t / 120.0))
    waiting = max(0, round((kv - 0.9) * 200))
    running = 4 + round(kv * 28)
    preempted = max(0.0, t - 40.0) * 0.05
    labels = f'engine="0",model_name="{model}"'
    return (
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f"vllm:kv_cache_usage_perc{{{labels}}} {kv:.4f}\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f"vllm:num_requests_running{{{labels}}} {running}\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f"vllm:num_requests_waiting{{{labels}}} {waiting}\n"
        "# TYPE vllm:num_preemptions counter\n"
        f"vllm:num_preemptions_total{{{labels}}} {int(preempted)}\n"
        "# TYPE vllm:cache_config_info gauge\n"
        f'vllm:cache_config_info{{block_size="16",engine="0",num_gpu_blocks="27000"}} 1.0\n'
    )


DYNAMIC = {"vllm": vllm_metrics}


def _handler(routes: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                self.send_error(404)
                return
            if "dynamic" in route:
                t = time.monotonic() - STARTED
                body = DYNAMIC[route["dynamic"]](t, str(route.get("model", "demo"))).encode()
            else:
                body = str(route.get("body", "")).encode()
            self.send_response(int(route.get("status", 200)))
            self.send_header("Content-Type", str(route.get("type", "text/plain")))
            self.send_header("Content-Length", str(len(body)))
            for key, value in route.get("headers", {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the demo's terminal belongs to the render process

    return Handler


def _bind(port: Any, routes: dict[str, Any]) -> ThreadingHTTPServer | None:
    tries = port if isinstance(port, list) else [port]
    for p in tries:
        with contextlib.suppress(OSError):
            server = ThreadingHTTPServer(("127.0.0.1", int(p)), _handler(routes))
            server.daemon_threads = True
            return server
    return None


def _title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)
    # As in children.py: make the kernel report the title up to its first NUL, so the argv
    # tokens read back from /proc/PID/cmdline are the title's words.
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])
    if len(title.encode()) < end - start - 1 and ctypes.string_at(end - 1, 1) == b"\0":
        ctypes.memmove(end - 1, b" ", 1)
    libc = ctypes.CDLL(None)
    first = title.split(" ", 1)[0]
    libc.prctl(15, os.path.basename(first).encode()[:15], 0, 0, 0)


def run(spec: dict[str, Any], parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, lambda *_: os._exit(0))
    signal.alarm(int(spec.get("max_seconds", 600)))
    if spec.get("uid") is not None:
        # Loaded while the files are still readable: the socket code looks the codec up lazily.
        import encodings.idna  # noqa: F401

        os.setgroups([])
        os.setgid(int(spec["uid"]))
        os.setuid(int(spec["uid"]))
    server = None
    if spec.get("port") is not None:
        server = _bind(spec["port"], spec.get("routes", {}))
    port = server.server_address[1] if server is not None else None
    title = str(spec.get("title", "fakeserver"))
    _title(title.replace("{port}", str(port)))
    children = []
    for child in spec.get("children", []):
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "vramtop.gpu.fakeserver", json.dumps(child)],
                stdin=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=dict(os.environ, VRAMTOP_FAKESERVER_PARENT=str(os.getpid()), SPT_NOENV="1"),
            )
        )
    line = json.dumps({"name": spec.get("name", ""), "pid": os.getpid(), "port": port})
    os.write(1, (line + "\n").encode())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    if server is not None:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGCHLD, lambda *_: [p.poll() for p in children])
    while True:
        signal.pause()


def demo_tree(
    kind: str,
    name: str,
    argv: tuple[str, ...],
    api_argv: tuple[str, ...],
    ports: tuple[int, ...],
) -> dict[str, Any]:
    """The spec of a demo server: the API process (``api_argv``, on the first free port of
    ``ports``) whose child ``name`` (titled ``argv``) is the GPU process."""
    if kind != "vllm":
        raise ValueError(f"no fake server of kind {kind!r}")
    return {
        "name": f"{name}:api",
        "title": " ".join(api_argv),
        "port": list(ports),
        "routes": {"/metrics": {"dynamic": "vllm", "model": _model(api_argv)}},
        "children": [{"name": name, "title": " ".join(argv), "port": None}],
        "max_seconds": 7 * 24 * 3600,
    }


def _model(argv: tuple[str, ...]) -> str:
    words = [w for w in argv if not w.startswith("-") and "{" not in w]
    return words[2] if len(words) > 2 and words[1] == "serve" else "demo-model"


def count_nodes(spec: dict[str, Any]) -> int:
    return 1 + sum(count_nodes(c) for c in spec.get("children", []))


if __name__ == "__main__":
    try:
        run(json.loads(sys.argv[1]), int(os.environ.get("VRAMTOP_FAKESERVER_PARENT", "0")))
    except Exception as exc:
        with contextlib.suppress(OSError):
            os.write(1, (json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
        os._exit(1)
