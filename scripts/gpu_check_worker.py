"""A CUDA workload with a known memory pattern, for ``scripts/gpu_check.py`` (real GPUs only).

Where it sits: outside vramtop, as one of the GPU processes vramtop watches. Run as
``python gpu_check_worker.py PATTERN START_AT``: it initialises CUDA with torch, reports
``ready``, waits for the wall time START_AT, then goes through its pattern, one state after the
other, each held until a fixed offset from START_AT. Before each hold it prints one JSON line
``{"state", "pid", "t", "until", "reserved", "allocated", ...}`` on stdout, with torch's own
figures, so the checker can compare what vramtop saw during [t, until] with what torch holds.

Patterns (offsets in seconds from START_AT):

* ``steps``: baseline (context only) to 8, then +1 GiB every 3 s to 6 GiB at 26, a plateau to
  56, a release (``empty_cache``) held to 70.
* ``spike``: 2 GiB to 30, +8 GiB for 3 s, back to 2 GiB to 70.
* ``report``: 1 GiB and ``vramtop.report()`` when this vramtop has it (deep mode), to 70.

Every tensor is written once (``fill_``) so its pages are really committed, and the baseline
launches that kernel too, so the context the checker measures includes the loaded module.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

GIB = 1 << 30
END = 70.0


def main() -> int:
    pattern, start_at = sys.argv[1], float(sys.argv[2])
    import torch  # type: ignore[import-not-found]

    def say(state: str, until: float, **extra: Any) -> None:
        torch.cuda.synchronize()
        line = {
            "state": state,
            "pid": os.getpid(),
            "t": time.time(),
            "until": start_at + until,
            "reserved": int(torch.cuda.memory_reserved()),
            "allocated": int(torch.cuda.memory_allocated()),
            **extra,
        }
        print(json.dumps(line), flush=True)

    def hold(state: str, until: float, **extra: Any) -> None:
        say(state, until, **extra)
        time.sleep(max(0.0, start_at + until - time.time()))

    def block(gib: float) -> Any:
        t = torch.empty(int(gib * GIB), dtype=torch.uint8, device="cuda")
        t.fill_(1)
        return t

    torch.cuda.init()
    keep: list[Any] = [block(1 / 1024)]  # 1 MiB: the context plus the fill kernel's module
    say("ready", 0.0, device=torch.cuda.get_device_name(0))
    time.sleep(max(0.0, start_at - time.time()))
    if pattern == "steps":
        hold("baseline", 8.0)
        for i in range(6):
            keep.append(block(1))
            hold(f"step {i + 1}", 8.0 + 3.0 * (i + 1))
        hold("plateau", 56.0)
        del keep[1:]
        torch.cuda.empty_cache()
        hold("released", END)
    elif pattern == "spike":
        keep.append(block(2))
        hold("base", 30.0)
        spike = block(8)
        hold("spike", 33.0)
        del spike
        torch.cuda.empty_cache()
        hold("after", END)
    elif pattern == "report":
        keep.append(block(1))
        try:
            import vramtop

            report = getattr(vramtop, "report", None)
            if report is None:
                note = "vramtop.report does not exist in this vramtop: skipped"
            else:
                report()
                note = "vramtop.report() returned"
        except Exception as exc:  # the checker shows it as a failed check
            note = f"vramtop.report() failed: {type(exc).__name__}: {exc}"
        hold("reporting", END, note=note)
    else:
        print(json.dumps({"state": "error", "note": f"unknown pattern {pattern!r}"}), flush=True)
        return 2
    say("done", END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
