"""CLI process filters (--gpu, --user, --pid, --only-visible) as the render process applies them,
and the one rule (``visible_rows``) that joins them with the other-users rule."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
from tui import Tui

from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow, SampleMessage
from vramtop.render.controller import Ui
from vramtop.render.filters import ProcessFilter, add_filter_arguments, visible_rows

GiB = 1024**3


def _parse(argv: list[str], env: dict[str, str] | None = None) -> ProcessFilter:
    parser = argparse.ArgumentParser()
    add_filter_arguments(parser)
    return ProcessFilter.from_args(parser.parse_args(argv), env=env or {})


def _sample() -> SampleMessage:
    gpus = tuple(
        GpuSample(i, f"GPU-{i}abc", f"Card{i}", memory_total=24 * GiB, memory_used=GiB)
        for i in range(3)
    )
    procs = tuple(ProcessSample(200 + i, i, used_bytes=GiB) for i in range(3))
    rows = tuple(
        ProcessRow(ProcessIdentity(200 + i, 1.0), i, i, ("ann", "ben", "ann")[i], f"job{i}", True)
        for i in range(3)
    )
    return SampleMessage(1, Snapshot(0.0, "simulated", gpus, procs), rows)


def _shown(f: ProcessFilter) -> tuple[list[str], list[str]]:
    ui = Ui(filters=f)
    ui.handle(_sample())
    screen = ui.draw(160, 45).text()
    cards = [ln.split()[2] for ln in screen if ln.startswith(" GPU ") and "Card" in ln]
    jobs = [ln.split()[-1] for ln in screen if ln.rstrip().endswith(("job0", "job1", "job2"))]
    return cards, sorted(jobs)


def test_gpu_user_pid_filters() -> None:
    assert _shown(_parse([])) == (["Card0", "Card1", "Card2"], ["job0", "job1", "job2"])
    assert _shown(_parse(["--gpu", "0,2"])) == (["Card0", "Card2"], ["job0", "job2"])
    assert _shown(_parse(["--user", "ben"]))[1] == ["job1"]
    assert _shown(_parse(["--pid", "202"]))[1] == ["job2"]
    with pytest.raises(SystemExit):
        _parse(["--gpu", "x"])


def test_filters_and_other_users_are_one_rule() -> None:
    base = _sample()
    # ben's job on GPU 1 belongs to another user.
    theirs = dataclasses.replace(base.rows[1], command="", same_user=False)
    message = dataclasses.replace(base, rows=(base.rows[0], theirs, base.rows[2]))
    for argv in ([], ["--user", "ann"], ["--gpu", "0,1"], ["--gpu", "0,2"]):
        f = _parse(argv)
        seen = visible_rows(message.snapshot, message.rows, None, show_other_users=False, filters=f)
        ui = Ui(filters=f)
        ui.handle(message)
        text = ui.draw(160, 45).text()
        listed = sorted(ln.split()[-1] for ln in text if ln.rstrip().endswith(("job0", "job2")))
        assert listed == sorted(r.command for r in seen.rows), argv
        assert all(r.user != "ben" for r in seen.rows)
        # Hidden, but counted on its GPU whenever that GPU is shown, whatever --user says.
        counted = "other users: 1 process, 1.0 GiB on GPU 1" in "\n".join(text)
        assert counted == (1 in seen.gpus) == (seen.others.keys() == {1}), argv


def test_only_visible_honours_cuda_visible_devices() -> None:
    assert _shown(_parse(["--only-visible"], {"CUDA_VISIBLE_DEVICES": "1"}))[0] == ["Card1"]
    uuid = _parse(["--only-visible"], {"CUDA_VISIBLE_DEVICES": "GPU-2"})
    assert _shown(uuid)[0] == ["Card2"]
    assert _shown(_parse(["--only-visible"], {}))[0] == ["Card0", "Card1", "Card2"]
    assert "filter: gpu 0,2" in _parse(["--gpu", "0,2"]).describe()


def test_cli_gpu_filter_end_to_end(tmp_path: Path) -> None:
    (tmp_path / ".config").mkdir()
    tui = Tui(["--demo", "--gpu", "0,2"], cols=160, rows=45, home=tmp_path)
    try:
        screen = tui.wait_for("GPU 2")
        assert "GPU 1  " not in screen and "GPU 3  " not in screen
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()
