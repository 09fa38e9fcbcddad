"""Which deep-mode report belongs to which table row: by process identity, then by GPU UUID.

Used by every reader of :class:`~vramtop.messages.DeepStateMessage` (the render model, the JSON
document and CSV, ``--once``): a report is attributed to the PID ``SO_PEERCRED`` gave, and only
while that PID is still the same process (same start time: a reused PID gets nothing); within a
process, a CUDA device is the NVML GPU with the same UUID (``CUDA_VISIBLE_DEVICES`` renumbers
devices, so indexes cannot be compared).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vramtop.deep.protocol import DeviceStats, Report, normalize_uuid
from vramtop.identity import same_process
from vramtop.messages import DeepProcess, ProcessIdentity

DeepIndex = Mapping[int, DeepProcess]


def index(processes: Iterable[DeepProcess]) -> dict[int, DeepProcess]:
    return {p.identity.pid: p for p in processes}


def lookup(deep: DeepIndex | None, identity: ProcessIdentity) -> DeepProcess | None:
    """The deep-mode state of exactly this process, or None."""
    found = deep.get(identity.pid) if deep else None
    return found if found is not None and same_process(found.identity, identity) else None


def device_for(report: Report, gpu_uuid: str) -> DeviceStats | None:
    """The reported CUDA device that is this NVML GPU; a lone device without a UUID (an older
    PyTorch) is taken as the process's only GPU."""
    want = normalize_uuid(gpu_uuid)
    for device in report.devices:
        if device.gpu_uuid and normalize_uuid(device.gpu_uuid) == want:
            return device
    if len(report.devices) == 1 and not report.devices[0].gpu_uuid:
        return report.devices[0]
    return None
