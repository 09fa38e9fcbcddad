"""The one rule for "is this the same process?": identity is (pid, start time) (design principle 8).

Where it sits: every place that holds a remembered :class:`~vramtop.messages.ProcessIdentity`
and meets another reading of a process asks :func:`same_process` — the kill flow before each
signal, the enricher against ``/proc/PID/stat``, the tree view's parent lookup, the stale-segment
check on a segment's creator, and (vectorised, :func:`same_process_mask`) the analyzer's read of
the shared-memory slots. Identities that come from the same source (the sampler's rows, used as
dictionary keys) compare exactly; this rule is for two readings of one process.

The rule, and why:

- Different PIDs are different processes.
- Equal start times are the same process: the same record (two copies of one sampler reading),
  including "unknown" on both sides (0.0, the sampler's single name for a process it could not
  stat: it vanished, or /proc hid it).
- Otherwise both must be known (> 0) and at most :data:`START_TIME_SLACK_S` apart. psutil's
  ``create_time`` (and the enricher's own reading of ``/proc/PID/stat``) is ``btime + start
  ticks / CLK_TCK``: the ticks are exact to 10 ms, but ``btime`` in ``/proc/stat`` is whole
  seconds derived from the wall clock minus the uptime, so two processes (each caches it once)
  can disagree by one second after an NTP step. NVML reports no start time at all, so every
  start time is one of these readings. A reused PID starts after the first owner has exited and
  the PID space has wrapped, which takes far longer than a second, so one second of slack
  cannot mistake one process for another.
- A known start time against an unknown one is *not* the same process: it cannot be proved,
  and every caller's safe side is "not the same" (no signal sent, no /proc details attributed,
  no history borrowed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from vramtop.messages import ProcessIdentity

START_TIME_SLACK_S = 1.0


def same_process(identity: ProcessIdentity, other: ProcessIdentity) -> bool:
    """Whether two readings name the same process (the rule in this module's docstring)."""
    if identity.pid != other.pid:
        return False
    a, b = identity.start_time, other.start_time
    if a == b:
        return True
    return a > 0.0 and b > 0.0 and abs(a - b) <= START_TIME_SLACK_S


def same_process_mask(
    pid: npt.NDArray[Any],
    start_time: npt.NDArray[np.float64],
    other_pid: npt.NDArray[Any],
    other_start_time: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """:func:`same_process` element by element, for the analyzer's thousands of slots per tick
    (the same rule, in numpy)."""
    a, b = start_time, other_start_time
    close = (a > 0.0) & (b > 0.0) & (np.abs(a - b) <= START_TIME_SLACK_S)
    mask: npt.NDArray[np.bool_] = (pid == other_pid) & ((a == b) | close)
    return mask
