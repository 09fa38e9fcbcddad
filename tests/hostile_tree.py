"""A real inference-server-shaped process tree whose API server misbehaves on purpose.

``python tests/hostile_tree.py MODE COUNT_FILE``: this process takes the title of a vLLM API
server, serves /metrics from a :class:`scrape_helpers.ThreadServer` in ``MODE`` on a free port
of 127.0.0.1 (every accepted connection is counted into ``COUNT_FILE``), and starts a
``VLLM::EngineCore`` child (the GPU process). It prints one JSON line per process, like
``vramtop.gpu.fakeserver``, dies with its parent and after two minutes.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scrape_helpers import VLLM_NEW, ThreadServer

from vramtop.gpu.fakeserver import _title

# A long-running server's page: its gauges, then ~100 KB of latency histograms.
BUCKETS = "# TYPE vllm:e2e_request_latency_seconds histogram\n" + "".join(
    f'vllm:e2e_request_latency_seconds_bucket{{engine="0",le="{i}.0",model_name="m"}} {i}\n'
    for i in range(1500)
)

MODES = {
    "ok": ("ok", 200, "text/plain", VLLM_NEW.replace("PREEMPT", "0")),
    "redirect": ("redirect", "http://example.com/metrics"),
    "huge": ("endless",),
    "trickle": ("trickle", 0.25),
    "big": ("ok", 200, "text/plain", VLLM_NEW.replace("PREEMPT", "0") + BUCKETS),
    "html": ("ok", 200, "text/html", "<html><body><h1>It works!</h1></body></html>"),
    "malformed": ("ok", 200, "text/plain", 'vllm:kv_cache_usage_perc{model_name="x 0.5\n'),
}


def main() -> None:
    mode, count_file = sys.argv[1], sys.argv[2]
    libc = ctypes.CDLL(None)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)
    signal.signal(signal.SIGALRM, lambda *_: os._exit(0))
    signal.alarm(120)
    server = ThreadServer({"/metrics": MODES[mode]})
    counted = server.server.get_request

    def get_request():  # type: ignore[no-untyped-def]
        got = counted()
        with open(count_file, "a") as f:
            f.write("x")
        return got

    server.server.get_request = get_request  # type: ignore[method-assign]
    _title(f"vllm serve hostile/model --port {server.port}")
    child = {"name": "engine", "title": "VLLM::EngineCore", "port": None, "max_seconds": 120}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramtop.gpu.fakeserver", json.dumps(child)],
        env=dict(os.environ, VRAMTOP_FAKESERVER_PARENT=str(os.getpid())),
    )
    line = json.dumps({"name": "api", "pid": os.getpid(), "port": server.port})
    os.write(1, (line + "\n").encode())
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    while proc.poll() is None:
        signal.pause()


if __name__ == "__main__":
    main()
