"""scripts/bench.py: vramtop beside nvitop, and the ratio check CI runs (``--quick``).

The figures themselves are not judged here (a noisy machine): the comparison logic is, on made
up ratios, and one real short run shows that both monitors were measured end to end, that the
check passes on that run's own ratios and fails on a doctored baseline, and that nothing the
bench started (monitors, sleepers) outlives it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench.py"
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402

MARK = "VRAMTOP_BENCH_TEST_RUN"
ACTORS = ("vramtop", "vramtop: sampler", "vramtop: render", "vramtop: analyzer")


def _marked(mark: str) -> list[int]:
    """Processes that inherited our bench run's environment (others on this machine do not
    count)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARK) == mark:
                found.append(proc.pid)
    return found


def _bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=900,  # the first run installs nvitop from PyPI
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def _table(stdout: str) -> dict[str, list[str]]:
    """Main-table rows by measure: [nvitop, vramtop, ratio]."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[1] in {words for _, words, _ in bench.METRICS}:
            rows[cells[1]] = cells[2:]
    return rows


def test_only_a_ratio_more_than_half_worse_is_a_regression() -> None:
    baseline = {"1x16": {"cpu": 2.0, "key_ms": 0.5, "pss_mib": 6.0, "idle_bytes_per_s": 0.0}}
    fine = {"1x16": {"cpu": 2.9, "key_ms": 0.1, "pss_mib": math.nan, "nvml_calls_per_s": 9.0}}
    assert bench.regressions(fine, baseline) == []  # 45% worse, better, NaN, not in baseline
    assert bench.regressions({"8x256": {"cpu": 99.0}}, baseline) == []  # a scale not in it
    worse = {"1x16": {"cpu": 3.1, "key_ms": 0.76, "pss_mib": 6.0}}
    found = bench.regressions(worse, baseline)
    assert len(found) == 2
    assert found[0].startswith("1x16: CPU (s per s): ratio 3.10, baseline 2.00")
    assert "key to redraw" in found[1]
    # vramtop wrote nothing on constant values at the baseline: any byte now is a regression.
    assert bench.regressions({"1x16": {"idle_bytes_per_s": 0.01}}, baseline) != []


def test_terminal_bytes_are_judged_with_room_for_a_redrawn_axis() -> None:
    # One tree measured 0.36x to 2.8x nvitop's bytes from quick run to quick run; a writer that
    # rewrote the whole frame every tick would be 20x and more.
    baseline = {"1x16": {"bytes_per_s": 0.36, "cpu": 0.36}}
    assert bench.regressions({"1x16": {"bytes_per_s": 2.82}}, baseline) == []
    assert bench.regressions({"1x16": {"bytes_per_s": 20.0}}, baseline) != []
    assert bench.regressions({"1x16": {"cpu": 0.6}}, baseline) != []  # the rest: 50%


def test_a_regression_must_show_in_both_runs() -> None:
    first = {"1x16": {"cpu": 4.0, "key_ms": 0.9}}
    again = {"1x16": {"cpu": 2.1, "key_ms": 0.95}}
    kept = bench.combine([first, again], min)
    assert kept == {"1x16": {"cpu": 2.1, "key_ms": 0.9}}
    # A baseline of several runs keeps the worst of each, so one lucky run does not set it.
    assert bench.combine([first, again], max) == {"1x16": {"cpu": 4.0, "key_ms": 0.95}}
    assert bench.combine([{"1x16": {"cpu": math.nan}}, again], max) == again
    baseline = {"1x16": {"cpu": 2.0, "key_ms": 0.5}}
    assert [r.split(":")[1].strip() for r in bench.regressions(kept, baseline)] == [
        "key to redraw (ms)"
    ]


def _doc(nvitop: dict[str, float], vramtop: dict[str, float]) -> dict[str, Any]:
    def figures(values: dict[str, float]) -> dict[str, Any]:
        out: dict[str, Any] = {key: 1.0 for key, _, _ in bench.METRICS}
        out.update(first_process_s=1.0, procs=[], notes=[], idle_changed_lines=[], failed="")
        out.update(values)
        return out

    return {
        "cpus": 2,
        "plan": {"settle_s": 1.0, "idle_s": 1.0, "window_s": 1.0, "key_presses": 1, "starts": 1},
        "tools": ["nvitop", "vramtop"],
        "cases": [{"gpus": 1, "procs": 16, "figures": {"nvitop": figures(nvitop),
                                                       "vramtop": figures(vramtop)}}],
    }  # fmt: skip


def test_judged_ratios_count_a_figure_below_its_noise_floor_as_the_floor() -> None:
    doc = _doc({"key_ms": 50.0, "cpu": 0.001}, {"key_ms": 3.0, "cpu": 0.004})
    raw, judged = bench.ratios(doc)["1x16"], bench.ratios(doc, judged=True)["1x16"]
    assert math.isclose(raw["key_ms"], 3.0 / 50.0)
    assert math.isclose(judged["key_ms"], 10.0 / 50.0)
    assert math.isclose(raw["cpu"], 4.0)
    assert math.isclose(judged["cpu"], 1.0)  # both under the floor: no difference to judge
    nothing = _doc({"idle_bytes_per_s": 0.0}, {"idle_bytes_per_s": 0.0})
    assert math.isnan(bench.ratios(nothing)["1x16"]["idle_bytes_per_s"])  # 0 / 0: not judged


def test_the_committed_baseline_judges_every_measure_of_the_quick_run() -> None:
    ratios = bench.read_baseline(bench.BASELINE)
    for gpus, procs in bench.QUICK_CASES:
        row = ratios[f"{gpus}x{procs}"]
        assert set(row) == {key for key, _, _ in bench.METRICS}
        assert all(math.isfinite(v) and v > 0 for v in row.values()), row


def test_a_short_run_measures_both_monitors_and_the_check_catches_a_worse_ratio(
    tmp_path: Path,
) -> None:
    mark = uuid.uuid4().hex
    out_json, own = tmp_path / "run.json", tmp_path / "own.json"
    done = _bench(
        "--quick", "--cases", "1x4", "--window", "3", "--json", str(out_json),
        "--write-baseline", "--baseline", str(own), env={MARK: mark},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert _marked(mark) == []  # both monitors and the sleepers are gone
    if done.stdout.startswith("nvitop comparison skipped:"):
        pytest.skip(done.stdout.strip())
    rows = _table(done.stdout)
    assert list(rows) == [words for _, words, _ in bench.METRICS]
    for words, (theirs, ours, ratio) in rows.items():
        if words == "bytes per s, constant values":
            continue  # may be 0 for either: that is the target, not a failure
        assert float(theirs.replace(",", "")) > 0 and float(ours.replace(",", "")) > 0, words
        assert ratio.endswith("×"), words
    # The breakdown names every process of both monitors by its title.
    doc = json.loads(out_json.read_text())
    (case,) = doc["cases"]
    titles = {p["title"] for p in case["figures"]["vramtop"]["procs"]}
    assert set(ACTORS) <= titles, titles
    assert [p["title"] for p in case["figures"]["nvitop"]["procs"]] == ["nvitop"]
    shown = {
        (line.split("|")[2].strip(), line.split("|")[3].strip())
        for line in done.stdout.splitlines()
        if line.startswith("| 1 × 4 ") and line.count("|") == 7
    }
    assert {("vramtop", title) for title in ACTORS} | {("nvitop", "nvitop")} <= shown, shown

    # The check passes on the run's own ratios, and fails on a baseline where vramtop's CPU
    # was 1.6 times better than now.
    same = _bench("--from-json", str(out_json), "--baseline", str(own))
    assert same.returncode == 0, same.stdout[-2000:]
    assert "every ratio within 50%" in same.stdout
    doctored = json.loads(own.read_text())
    doctored["ratios"]["1x4"]["cpu"] /= 1.6
    bad = tmp_path / "doctored.json"
    bad.write_text(json.dumps(doctored))
    worse = _bench("--from-json", str(out_json), "--baseline", str(bad))
    assert worse.returncode == 1, worse.stdout[-2000:]
    assert "1x4: CPU (s per s): ratio" in worse.stdout


def test_without_nvitop_the_bench_says_so_and_succeeds(tmp_path: Path) -> None:
    # A fresh temp dir has no nvitop venv, and pip is told there is no index to install from.
    env = {"TMPDIR": str(tmp_path), "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    done = _bench("--quick", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("nvitop comparison skipped: pip install nvitop failed")
    assert done.stdout.count("\n") == 1


def test_a_bad_baseline_is_one_line_and_a_failure(tmp_path: Path) -> None:
    run = tmp_path / "run.json"
    run.write_text(json.dumps(_doc({}, {})))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    done = _bench("--from-json", str(run), "--baseline", str(garbage))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no usable baseline" in done.stderr


def test_a_killed_bench_leaves_no_sleeper_or_monitor_behind() -> None:
    # SIGKILL: no handler, no finally. The sleepers go by PR_SET_PDEATHSIG, the monitor by the
    # hangup of its pty.
    mark = uuid.uuid4().hex
    bench_run = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--cases", "1x8", "--window", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, MARK: mark},
    )
    try:
        top = psutil.Process(bench_run.pid)
        deadline = time.monotonic() + 120  # generous: installs nvitop on a first run
        while len(top.children()) < 9 and bench_run.poll() is None:  # 8 sleepers + a monitor
            assert time.monotonic() < deadline, "the bench never started its processes"
            time.sleep(0.2)
        assert bench_run.poll() is None, "the bench ended before it could be killed"
        started = [p for p in top.children(recursive=True) if p.pid != bench_run.pid]
    finally:
        bench_run.kill()
        bench_run.wait()
    _, alive = psutil.wait_procs(started, timeout=20)
    assert alive == []
    assert _marked(mark) == []


def test_the_readme_quotes_a_full_run_between_its_markers() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split(bench.BEGIN + "\n")[1].split(bench.END)[0]
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in block.splitlines()
        if line.startswith("| ") and line.count("|") == 6
    ][1:]  # below the header
    expected = [
        (bench.scale(g, p), words) for g, p in bench.FULL_CASES for _, words, _ in bench.METRICS
    ]
    assert [(r[0], r[1]) for r in rows] == expected
    assert block.startswith("Measured on a ")


def test_readme_block_is_replaced_in_place_and_a_readme_without_markers_refused(
    tmp_path: Path,
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{bench.BEGIN}\nold table\n{bench.END}\n\nafter\n")
    bench.update_readme(readme, "new table")
    assert readme.read_text() == f"# x\n\n{bench.BEGIN}\nnew table\n{bench.END}\n\nafter\n"
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="lacks the lines"):
        bench.update_readme(readme, "new table")
    assert readme.read_text() == "# no markers\n"
