#!/usr/bin/env bash
# The one prepared check for a machine with a real NVIDIA GPU (the lent H200, or yours): vramtop
# beside CUDA workloads with known memory patterns (scripts/gpu_check.py says what is checked).
# Without a GPU it runs a dry mode on simulated GPUs and says so. Logs go under $OUT when set.
#
#   scripts/gpu_check.sh [--dry] [--wheels DIR]
#
# PYTHON (default python3; may carry flags, e.g. PYTHON="python3 -I") must have numpy, psutil,
# requests, nvidia-ml-py (and torch for the CUDA part). What else is missing (blessed, wcwidth,
# setproctitle, pexpect, ptyprocess, pyte) is installed from DIR, a folder of wheels made by
# scripts/gpu_check_wheels.sh on a machine with registry access, with pip --no-index into a
# temporary directory that is removed at the end: nothing is installed into the interpreter and
# no network is needed. vramtop itself runs from this source tree.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
read -r -a py <<<"${PYTHON:-python3}"
wheels=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) [ $# -ge 2 ] || { echo "gpu_check: --wheels needs a folder" >&2; exit 2; }
                  wheels=$2; shift 2 ;;
        --wheels=*) wheels=${1#--wheels=}; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$1"); shift ;;
    esac
done
if ! command -v "${py[0]}" >/dev/null 2>&1; then
    echo "gpu_check: no Python interpreter '${py[0]}' (set PYTHON)" >&2
    exit 2
fi
site_args=()
if [ -n "$wheels" ]; then
    [ -d "$wheels" ] || { echo "gpu_check: --wheels $wheels: not a folder" >&2; exit 2; }
    missing=$("${py[@]}" "$root/scripts/gpu_check.py" --root "$root" --missing) || exit 2
    if [ -n "$missing" ]; then
        site=$(mktemp -d "${TMPDIR:-/tmp}/vramtop-gpu-check-site.XXXXXX")
        trap 'rm -rf "$site"' EXIT
        if ! "${py[@]}" -m pip --version >/dev/null 2>&1; then
            echo "gpu_check: --wheels needs pip in ${py[*]} (missing: $missing)" >&2
            exit 2
        fi
        # shellcheck disable=SC2086  # $missing is a list of distribution names
        if ! "${py[@]}" -m pip install --quiet --no-index --disable-pip-version-check \
                --find-links "$wheels" --target "$site" $missing >"$site.log" 2>&1; then
            echo "gpu_check: cannot install $missing from $wheels: $(grep -m1 -E 'ERROR|error' "$site.log")" >&2
            rm -f "$site.log"
            exit 2
        fi
        rm -f "$site.log"
        echo "gpu_check: installed from $wheels into a temporary directory: $missing" >&2
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
        site_args=(--site "$site")
    fi
fi
# The check promises to end within 3 minutes; a hang anywhere is cut there, with one line.
limit=()
command -v timeout >/dev/null 2>&1 && limit=(timeout --foreground -k 10 150)
"${limit[@]}" "${py[@]}" "$root/scripts/gpu_check.py" --root "$root" "${site_args[@]}" "${args[@]}"
rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "gpu_check: did not finish within 150 s (logs so far in ${OUT:-the directory named above})" >&2
fi
# Deep mode with real torch on CUDA (scripts/gpu_check_deep.py): within the 3 minutes as well.
if "${py[@]}" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "== deep mode: vramtop.report() with real torch on CUDA"
    deep_log="${OUT:-${TMPDIR:-/tmp}}/gpu_check_deep.txt"
    mkdir -p "$(dirname "$deep_log")"
    "${limit[@]/150/25}" "${py[@]}" "$root/scripts/gpu_check_deep.py" 2>&1 | tee "$deep_log"
    [ "${PIPESTATUS[0]}" = 0 ] || rc=1
else
    echo "gpu_check: no torch with CUDA here: the deep-mode check was skipped"
fi
exit "$rc"
