"""The deep-mode wire protocol: one line of JSON per connection, and its typed reading.

Data flow: the reporter (``reporter.py``, inside the user's process) builds a plain dict with
:func:`encode`; the monitor's reader (``reader.py``) turns the bytes back into a :class:`Report`
with :func:`decode`, which trusts nothing: every field is type-checked and bounded, every string
cleaned, and anything unexpected raises :class:`ProtocolError` with a one-line reason. The peer's
PID is deliberately not in the message: the monitor takes it from ``SO_PEERCRED``.

A connection carries exactly one line (the reporter writes its current figures and closes), at
most :data:`MAX_LINE` bytes including the newline. ``v`` is the protocol version; a reader
refuses versions it does not know rather than guessing at their fields.

Line (version 1)::

    {"v": 1, "state": "ok" | "no_torch" | "cuda_not_initialized" | "error",
     "error": "..." (state "error" only), "torch_version": "2.3.1" | null, "sent_at": <epoch s>,
     "devices": [{"index", "gpu_uuid", "allocated_bytes", "allocated_peak_bytes",
                  "reserved_bytes", "reserved_peak_bytes", "active_bytes",
                  "inactive_split_bytes", "allocations", "segments", "num_alloc_retries",
                  "num_ooms", "num_device_alloc", "num_device_free",
                  "device_free_bytes", "device_total_bytes"}],
     "ooms": [{"at", "device", "requested_bytes", "free_bytes", "total_bytes"}]}

``devices`` is empty unless the state is ``ok``; ``num_device_alloc``/``num_device_free`` (newer
PyTorch) and the ``device_*`` figures (``torch.cuda.mem_get_info``) may be null.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from vramtop.sanitize import clean
from vramtop.wire import compact

VERSION = 1
MAX_LINE = 16 * 1024
MAX_DEVICES = 64
MAX_OOMS = 8  # the newest OOM moments a reporter keeps and sends
MAX_INT = 2**63 - 1

OK, NO_TORCH, CUDA_NOT_INITIALIZED, ERROR = "ok", "no_torch", "cuda_not_initialized", "error"
STATES = (OK, NO_TORCH, CUDA_NOT_INITIALIZED, ERROR)
STATE_TEXT = {
    OK: "reporting",
    NO_TORCH: "torch not installed",
    CUDA_NOT_INITIALIZED: "CUDA not initialised yet",
    ERROR: "error",
}

DEVICE_COUNTS = (
    "allocated_bytes",
    "allocated_peak_bytes",
    "reserved_bytes",
    "reserved_peak_bytes",
    "active_bytes",
    "inactive_split_bytes",
    "allocations",
    "segments",
    "num_alloc_retries",
    "num_ooms",
)
DEVICE_OPTIONAL = ("num_device_alloc", "num_device_free", "device_free_bytes", "device_total_bytes")


class ProtocolError(Exception):
    """A line that is not a version-1 deep-mode report; the message says why, in one line."""


@compact
@dataclass(frozen=True, slots=True)
class DeviceStats:
    """One CUDA device as the process's caching allocator sees it (bytes and counts)."""

    index: int  # the CUDA index inside the process (CUDA_VISIBLE_DEVICES renumbers)
    gpu_uuid: str  # "GPU-..." as NVML spells it; "" when torch could not tell
    allocated_bytes: int
    allocated_peak_bytes: int
    reserved_bytes: int
    reserved_peak_bytes: int
    active_bytes: int
    inactive_split_bytes: int
    allocations: int
    segments: int
    num_alloc_retries: int
    num_ooms: int
    num_device_alloc: int | None = None
    num_device_free: int | None = None
    device_free_bytes: int | None = None  # the whole device, all processes (mem_get_info)
    device_total_bytes: int | None = None

    @property
    def fragmentation_bytes(self) -> int:
        """Reserved by the allocator but holding no tensor: cache and split blocks."""
        return max(0, self.reserved_bytes - self.allocated_bytes)


@compact
@dataclass(frozen=True, slots=True)
class OomEvent:
    """The moment the allocator failed: when, on which device, for how much."""

    at: float  # seconds since the epoch
    device: int
    requested_bytes: int
    free_bytes: int | None
    total_bytes: int | None


@compact
@dataclass(frozen=True, slots=True)
class Report:
    state: str  # one of STATES
    error: str
    torch_version: str | None
    devices: tuple[DeviceStats, ...]
    ooms: tuple[OomEvent, ...]
    sent_at: float


def normalize_uuid(text: str) -> str:
    """``GPU-ab12...`` (NVML) and ``ab12...`` (torch) name the same GPU."""
    t = text.strip().lower()
    return t[4:] if t.startswith("gpu-") else t


def encode(payload: dict[str, Any]) -> bytes:
    """One line, newline-terminated; a payload that would exceed :data:`MAX_LINE` drops its
    devices and OOM list and says so (a reader must never see a half line)."""
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    if len(data) <= MAX_LINE:
        return data
    small = {
        "v": VERSION,
        "state": ERROR,
        "error": "report too large",
        "torch_version": payload.get("torch_version"),
        "sent_at": payload.get("sent_at", 0.0),
        "devices": [],
        "ooms": [],
    }
    return json.dumps(small, separators=(",", ":")).encode() + b"\n"


def _int(obj: dict[str, Any], key: str, optional: bool = False) -> int | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT:
        raise ProtocolError(f"{key} is not a non-negative integer")
    return value


def _time(obj: dict[str, Any], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{key} is not a time")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ProtocolError(f"{key} is not a time")
    return value


def _device(obj: object) -> DeviceStats:
    if not isinstance(obj, dict):
        raise ProtocolError("a device is not an object")
    counts = [_int(obj, k) for k in DEVICE_COUNTS]
    optional = [_int(obj, k, optional=True) for k in DEVICE_OPTIONAL]
    uuid = obj.get("gpu_uuid", "")
    if not isinstance(uuid, str):
        raise ProtocolError("gpu_uuid is not a string")
    index = _int(obj, "index")
    assert index is not None
    return DeviceStats(index, clean(uuid, 80), *counts, *optional)  # type: ignore[arg-type]


def _oom(obj: object) -> OomEvent:
    if not isinstance(obj, dict):
        raise ProtocolError("an OOM record is not an object")
    device, requested = _int(obj, "device"), _int(obj, "requested_bytes")
    assert device is not None and requested is not None
    return OomEvent(
        _time(obj, "at"),
        device,
        requested,
        _int(obj, "free_bytes", optional=True),
        _int(obj, "total_bytes", optional=True),
    )


def decode(line: bytes) -> Report:
    """The :class:`Report` in one line (without or with its newline)."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes")
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object")
    version = obj.get("v")
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError(f"unsupported protocol version {clean(str(version), 16)}")
    state = obj.get("state")
    if state not in STATES:
        raise ProtocolError(f"unknown state {clean(str(state), 32)}")
    error = obj.get("error", "")
    torch_version = obj.get("torch_version")
    if not isinstance(error, str) or not (torch_version is None or isinstance(torch_version, str)):
        raise ProtocolError("error or torch_version is not a string")
    devices, ooms = obj.get("devices", []), obj.get("ooms", [])
    if not isinstance(devices, list) or not isinstance(ooms, list):
        raise ProtocolError("devices or ooms is not a list")
    if len(devices) > MAX_DEVICES or len(ooms) > MAX_OOMS:
        raise ProtocolError("too many devices or OOM records")
    parsed = tuple(_device(d) for d in devices)
    if state != OK and parsed:
        raise ProtocolError(f"device figures with state {state}")
    return Report(
        state=str(state),
        error=clean(error, 200),
        torch_version=None if torch_version is None else clean(torch_version, 40),
        devices=parsed,
        ooms=tuple(_oom(o) for o in ooms),
        sent_at=_time(obj, "sent_at"),
    )
