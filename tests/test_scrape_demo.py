"""The demo's fake vLLM server as the child pool starts it: the PID handed to the simulated
backend is the engine's, its parent answers vLLM's /metrics on 127.0.0.1 with figures that move,
and closing the pool ends both processes; ``vramtop exporter --demo`` serves its KV cache use."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scrape_helpers import wait_for

from vramtop.gpu.children import ChildPool, ChildSpec, process_alive
from vramtop.gpu.scenario import ScenarioError, parse_scenario
from vramtop.scrape.fetch import fetch
from vramtop.scrape.parsers import parse_vllm


def test_served_child_is_the_engine_under_a_listening_api_server() -> None:
    pool = ChildPool()
    spec = ChildSpec(
        "vllm", ("VLLM::EngineCore",), serve="vllm",
        serve_argv=("vllm", "serve", "org/model", "--port", "{port}"), serve_ports=(0,),
    )  # fmt: skip
    try:
        pids = pool.start([spec])
        engine = psutil.Process(pids["vllm"])
        api = engine.parent()
        assert api is not None and pool.pid("vllm") == engine.pid
        assert engine.cmdline() == ["VLLM::EngineCore"]
        words = api.cmdline()
        assert words[:3] == ["vllm", "serve", "org/model"]
        port = int(words[words.index("--port") + 1])
        assert any(c.laddr.port == port for c in api.net_connections() if c.status == "LISTEN")
        first = parse_vllm(fetch("127.0.0.1", port, "/metrics", 2.0).body.decode())
        assert first.model == "org/model" and first.tokens_total == 27000 * 16
        # The cache fills over time (a cosine over two minutes): the figure moves.
        assert wait_for(
            lambda: (
                parse_vllm(fetch("127.0.0.1", port, "/metrics", 2.0).body.decode()).kv_cache_usage
                != first.kv_cache_usage
            ),
            timeout=15,
        )
    finally:
        pool.close()
    assert wait_for(lambda: not process_alive(engine.pid) and not process_alive(api.pid))


BASE = """
[[gpu]]
name = "H100"
memory_gib = 80
[[process]]
name = "vllm"
gpu = 0
memory = { curve = "constant", mib = 1000 }
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('argv = ["x"]\nserve = "tgi"', "process[0].serve: unknown server 'tgi' (known: vllm)"),
        ('serve = "vllm"', "process[0].serve: needs argv"),
        ('argv = ["x"]\nserve = "vllm"\nserve_ports = [0]', "process[0].serve_ports: expected"),
    ],
)
def test_bad_serve_keys_are_one_line_errors(extra: str, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(BASE + extra + "\n", "x.toml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_serve_keys_reach_the_child_spec() -> None:
    s = parse_scenario(BASE + 'argv = ["VLLM::EngineCore"]\nserve = "vllm"\n', "x.toml")
    (spec,) = s.child_specs()
    assert spec.serve == "vllm" and spec.serve_ports[0] == 8000
    assert spec.serve_argv[:2] == ("vllm", "serve")


def test_vramtop_exporter_serves_the_fake_servers_kv_cache(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vramtop", "exporter", "--demo", "--listen", f"127.0.0.1:{port}",
         "--refresh-rate", "0.5", "--config", str(cfg)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def kv_series() -> list[tuple[dict[str, str], float]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return []
        return [
            (dict(x.labels), x.value)
            for family in text_string_to_metric_families(text)
            for x in family.samples
            if x.name == "vramtop_process_kv_cache_usage_ratio"
        ]

    try:
        assert wait_for(lambda: any(lb["framework"] == "vLLM" for lb, _ in kv_series()), 40)
        ((labels, value),) = kv_series()
        assert labels["command"] == "VLLM::EngineCore" and 0.0 <= value <= 1.0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
