"""The demo's fake vLLM server as the child pool starts it: the PID handed to the simulated
backend is the engine's, its parent answers vLLM's /metrics on 127.0.0.1 with figures that move,
and closing the pool ends both processes."""

from __future__ import annotations

import psutil
import pytest
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
