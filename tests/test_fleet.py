"""The fleet view end to end: two ``vramtop exporter --demo`` instances, a real Prometheus server
(Debian's ``prometheus`` package, which ``.ci/run`` installs) scraping both on loopback, and
``vramtop --prometheus URL`` reading them back — as JSON and in a pseudo-terminal — plus
``--remote`` straight from the exporters."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_exporter import Exporter, _free_port
from tui import Tui

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Exporter, Exporter]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = Exporter(tmp_path / "a", "host-a"), Exporter(tmp_path / "b", "host-b")
    try:
        for e in (a, b):
            e.wait(lambda m: "vramtop_process_phase" in m)
        yield a, b
    finally:
        for e in (a, b):
            if e.proc.poll() is None:
                e.stop()


@pytest.fixture
def prometheus(tmp_path: Path, fleet: tuple[Exporter, Exporter]) -> Iterator[str]:
    if PROMETHEUS is None:
        pytest.skip("no prometheus binary: `apt-get install prometheus` (.ci/run does)")
    port = _free_port()
    targets = ", ".join(f"'127.0.0.1:{e.port}'" for e in fleet)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: vramtop\n    static_configs:\n"
        f"      - targets: [{targets}]\n"
    )
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            try:
                query = urllib.parse.urlencode({"query": "count by (hostname) (vramtop_gpu_info)"})
                with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=2) as r:
                    if len(json.load(r)["data"]["result"]) == 2:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("Prometheus never scraped both exporters")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _check_both_hosts(doc: dict[str, object]) -> None:
    gpus = doc["gpus"]
    assert isinstance(gpus, list)
    names = [g["name"] for g in gpus]
    # Grouped by host, each host's cards in order, the host in every card's name.
    assert names == [f"host-a: {m}" for m in ("NVIDIA H100 80GB HBM3", "NVIDIA L4")] + [
        f"host-b: {m}" for m in ("NVIDIA H100 80GB HBM3", "NVIDIA L4")
    ]
    assert [g["index"] for g in gpus] == [0, 1, 2, 3]
    procs = [p for g in gpus for p in g["processes"]]
    commands = {p["command"] for p in procs}
    for host in ("host-a", "host-b"):
        assert f"{host}: python serve.py" in commands
    for p in procs:
        a = p["analysis"]
        assert a is not None and a["verdict"] and a["phase"]
        assert p["start_time"], "identity needs the start time"
    trainer = [p for p in procs if "train.py" in p["command"]]
    assert len(trainer) == 2 and all(p["analysis"]["phase"] == "growing" for p in trainer)
    assert all(p["analysis"]["rate_mib_s"] > 20 for p in trainer)


def _once(*source: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "vramtop", *source, "--once", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


def _wait_growing(*source: str) -> dict[str, object]:
    deadline = time.monotonic() + 40
    doc = _once(*source)
    while time.monotonic() < deadline:
        procs = [p for g in doc["gpus"] for p in g["processes"]]  # type: ignore[attr-defined]
        trainers = [p for p in procs if "train.py" in (p["command"] or "")]
        if len(trainers) == 2 and all(p["analysis"]["phase"] == "growing" for p in trainers):
            return doc
        time.sleep(1)
        doc = _once(*source)
    return doc


def test_the_fleet_through_a_real_prometheus_as_json_and_on_screen(
    prometheus: str, tmp_path: Path
) -> None:
    doc = _wait_growing("--prometheus", prometheus)
    assert doc["backend"] == "fleet"
    _check_both_hosts(doc)
    (tmp_path / ".config").mkdir()
    tui = Tui(["--prometheus", prometheus], cols=160, rows=45, home=tmp_path)
    try:
        screen = tui.wait_for(lambda s: "host-a: NVIDIA L4" in s and "host-b: NVIDIA L4" in s)
        assert "host-a: python serve.py" in screen and "host-b: python serve.py" in screen
        assert "k kill" not in screen.splitlines()[-1], "read-only: no kill key offered"
        tui.send("k")
        tui.wait_for("read-only")
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_the_fleet_straight_from_the_exporters(fleet: tuple[Exporter, Exporter]) -> None:
    urls = ",".join(f"http://127.0.0.1:{e.port}/metrics" for e in fleet)
    doc = _wait_growing("--remote", urls)
    _check_both_hosts(doc)


def test_a_fleet_source_that_cannot_be_read_is_one_line() -> None:
    port = _free_port()  # nothing listens there
    for args in (
        ["--prometheus", f"http://127.0.0.1:{port}"],
        ["--remote", f"http://127.0.0.1:{port}/metrics"],
        ["--prometheus", "ftp://example"],
        ["--prometheus", "http://127.0.0.1:1", "--demo"],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "vramtop", *args, "--once", "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode in (1, 2) and out.stderr.count("\n") == 1, (args, out.stderr)
        assert "Traceback" not in out.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes with prometheus")
def test_the_shipped_prometheus_config_and_alert_rules_are_valid() -> None:
    contrib = Path(__file__).resolve().parent.parent / "contrib"
    for args in (["check", "rules", "vramtop-alerts.yml"], ["check", "config", "prometheus.yml"]):
        out = subprocess.run(
            ["promtool", *args], cwd=contrib, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stdout + out.stderr
    json.loads((contrib / "grafana-dashboard.json").read_text())
