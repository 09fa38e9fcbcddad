#!/usr/bin/env bash
# The one prepared check to run on a machine with a real NVIDIA GPU (the lent H200, or yours).
# It reads the real driver through vramtop's NVML backend and writes what it saw under $OUT
# (default ./gpu_check_out). Needs vramtop's dependencies importable by $PYTHON; no network.
set -u
PYTHON=${PYTHON:-python3}
OUT=${OUT:-./gpu_check_out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

echo "== nvidia-smi" | tee "$OUT/summary.txt"
(nvidia-smi --query-gpu=index,name,memory.total,memory.used,memory.reserved,driver_version \
    --format=csv 2>&1 || true) | tee -a "$OUT/summary.txt"

echo "== vramtop --once --json" | tee -a "$OUT/summary.txt"
if timeout 60 "$PYTHON" -m vramtop --once --json >"$OUT/once.json" 2>"$OUT/once.err"; then
    "$PYTHON" - "$OUT/once.json" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
from vramtop.export.document import schema_text
doc = json.load(open(sys.argv[1]))
try:
    import jsonschema
    jsonschema.validate(doc, json.loads(schema_text()))
    print("schema: valid")
except ImportError:
    print("schema: jsonschema not installed, not validated")
for g in doc["gpus"]:
    m = g["memory"]
    print(g["index"], g["name"], g["state"], "total", m["total_bytes"], "used", m["used_bytes"],
          "reserved", m["reserved_bytes"], "free", m["free_bytes"], "procs", len(g["processes"]))
print("notes:", doc["notes"])
PY
else
    status=1
    cat "$OUT/once.err" | tee -a "$OUT/summary.txt"
fi

echo "== backend ticks (timing, call paths)" | tee -a "$OUT/summary.txt"
timeout 120 "$PYTHON" - <<'PY' 2>&1 | tee -a "$OUT/summary.txt" || status=1
import logging, time
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
from vramtop.gpu.nvml import NvmlBackend
b = NvmlBackend(slow_interval=1.0)
b.open()
times = []
for _ in range(20):
    t = time.process_time(); s = b.sample(); times.append(time.process_time() - t)
    time.sleep(0.1)
times.sort()
print(f"{len(s.gpus)} GPUs, {len(s.processes)} processes; CPU per tick median "
      f"{times[len(times)//2]*1e3:.2f} ms, max {times[-1]*1e3:.2f} ms")
for g in s.gpus:
    print(g)
# What the simulated drivers can only assume: which process-record stride this driver writes
# (measured from a marker-filled buffer) against what its exports imply and the binding's struct.
import ctypes, pynvml
from vramtop.gpu.nvml import ProcessGetter, expected_record_size
binding = ctypes.sizeof(pynvml.c_nvmlProcessInfo_v3_t)
for api, fn in sorted(b._api.items()):
    if isinstance(fn, ProcessGetter):
        print(f"{api}: measured {fn.record_size} bytes, exports imply "
              f"{expected_record_size(api)}, binding's v3 struct {binding}")
print("slowest NVML calls (mean ms, max ms, calls):")
for c in b.call_stats()[:8]:
    print(f"  {c.function}: {c.mean_ms:.3f} {c.max_ms:.3f} {c.calls}")
b.close()
PY

echo "== live monitor for 5 s in a pty" | tee -a "$OUT/summary.txt"
timeout 60 "$PYTHON" - "$OUT/screen.txt" <<'PY' 2>&1 | tee -a "$OUT/summary.txt" || status=1
import sys, time
import pexpect, pyte
screen = pyte.Screen(160, 45); stream = pyte.ByteStream(screen)
child = pexpect.spawn(sys.executable, ["-m", "vramtop"], dimensions=(45, 160))
def pump(seconds):
    stop = time.time() + seconds
    while time.time() < stop:
        try:
            data = child.read_nonblocking(65536, timeout=0.2)
        except pexpect.TIMEOUT:
            continue
        except pexpect.EOF:
            return
        if b"\x1b[6n" in data:
            child.send("\x1b[1;1R")  # answer the cursor query as a terminal does
        stream.feed(data)
pump(5)
child.send("q"); pump(10); child.close()
open(sys.argv[1], "w").write("\n".join(screen.display))
print("exit status", child.exitstatus)
PY
exit $status
