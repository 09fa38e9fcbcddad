#!/usr/bin/env python3
"""CPU cost of ``vramtop exporter``'s scrape and of the fleet view, in-process.

Where it sits: outside the data flow; ``scripts/bench.py`` calls :func:`fleet_rows` and adds the
rows to its report. One sample of 8 simulated GPUs x 256 processes (synthetic PIDs, no child
processes) with its analysis is the exporter's frame; a scrape is what the metrics actor does in
its HTTP thread (the document of the frame, the metric families, the text exposition). The fleet
view's cost is one refresh at 16 hosts: parsing 16 such expositions (``--remote``) and building
the fleet snapshot, rows and analysis from the series. CPU time (``time.process_time``), median.

Compare the rows with each other, not with other machines.

Usage: ``.venv/bin/python scripts/bench_fleet.py [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramtop.actors.metrics import Frame, MetricsCore  # noqa: E402
from vramtop.analysis.stream import StreamAnalyzer  # noqa: E402
from vramtop.config import Config  # noqa: E402
from vramtop.enrich.procinfo import ProcessTable, build_rows  # noqa: E402
from vramtop.export.prometheus import exposition  # noqa: E402
from vramtop.gpu.fleet import Series, build  # noqa: E402
from vramtop.gpu.scenario import parse_scenario  # noqa: E402
from vramtop.gpu.simulated import SimulatedBackend  # noqa: E402
from vramtop.messages import SampleMessage  # noqa: E402

HOSTS = 16
GPU = '[[gpu]]\nname = "NVIDIA H100 80GB HBM3"\nmemory_mib = 81559\npower_limit_w = 700\n'
SCENARIO = (
    'name = "bench-fleet"\ndescription = "8 x 256"\nseed = 9\n'
    + GPU * 8
    + '[[process_group]]\ncount = 256\nname = "worker"\ngpu = [0, 1, 2, 3, 4, 5, 6, 7]\n'
    "sm_util = 5\nsize_mib = [64, 512]\n"
)


def _cpu_ms(fn: Callable[[], object], repeats: int) -> float:
    costs = []
    for _ in range(repeats):
        before = time.process_time()
        fn()
        costs.append(1000.0 * (time.process_time() - before))
    return statistics.median(costs)


def _frame() -> MetricsCore:
    backend = SimulatedBackend(parse_scenario(SCENARIO, "bench-fleet.toml"), real_children=False)
    backend.open()
    analyzer = StreamAnalyzer(Config())
    table = ProcessTable()
    for _ in range(30):  # enough history for phases
        snapshot = backend.sample()
        rows = build_rows(snapshot, table.update(p.pid for p in snapshot.processes), {})
        result = analyzer.step(snapshot, rows, {})
    backend.close()
    core = MetricsCore(hostname="bench")
    core.frame = Frame(SampleMessage(1, snapshot, rows), result)
    return core


def fleet_rows(quick: bool) -> list[dict[str, object]]:
    repeats = 3 if quick else 15
    core = _frame()
    scrape = _cpu_ms(lambda: exposition(core.collect()), repeats)
    text = exposition(core.collect()).decode()
    from prometheus_client.parser import text_string_to_metric_families

    def fleet_refresh() -> object:
        series = []
        for h in range(HOSTS):
            page = text.replace('hostname="bench"', f'hostname="node-{h:02d}"')
            for family in text_string_to_metric_families(page):
                series += [Series(s.name, s.labels, s.value) for s in family.samples]
        return build(series)

    fleet = _cpu_ms(fleet_refresh, max(2, repeats // 3))
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    # --prometheus: the same series as an instant query's JSON answer.
    import json

    samples = [
        {"metric": {"__name__": s.name, **s.labels}, "value": [0, repr(s.value)]}
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    answer = json.dumps(
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [
                {**x, "metric": {**x["metric"], "hostname": f"node-{h:02d}"}}
                for h in range(HOSTS) for x in samples
            ]},
        }
    )  # fmt: skip

    def prometheus_refresh() -> object:
        doc = json.loads(answer)
        return build(
            Series(m["metric"].pop("__name__"), m["metric"], float(m["value"][1]))
            for m in doc["data"]["result"]
        )

    through_prometheus = _cpu_ms(prometheus_refresh, max(2, repeats // 3))
    return [
        {"case": "exporter: one scrape, 8 GPUs x 256 processes", "series": series,
         "cpu_ms": scrape, "bytes": len(text)},
        {"case": f"fleet view: one refresh, {HOSTS} hosts (--remote)", "series": series * HOSTS,
         "cpu_ms": fleet, "bytes": len(text) * HOSTS},
        {"case": f"fleet view: one refresh, {HOSTS} hosts (--prometheus)",
         "series": series * HOSTS, "cpu_ms": through_prometheus, "bytes": len(answer)},
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    for row in fleet_rows(args.quick):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
