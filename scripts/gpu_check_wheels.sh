#!/usr/bin/env bash
# Prepare the wheel folder for scripts/gpu_check.sh --wheels DIR, on a machine with registry
# access, for a machine without (the lent H200: x86-64, Python 3.12, no network).
#
#   scripts/gpu_check_wheels.sh DIR [--python-version 3.12] [--all] [--vramtop]
#
# Downloads binary wheels only, for the target's Python and manylinux x86-64, of what the GPU
# machine lacks: blessed, wcwidth, setproctitle, pyte, pexpect, ptyprocess and their
# dependencies. --all adds what it already has (numpy, psutil, requests, nvidia-ml-py), for a
# bare interpreter. --vramtop also builds vramtop itself as a wheel into DIR; gpu_check.sh does
# not need it (it runs vramtop from the source tree it lives in). PIP (default "python3 -m pip")
# is the pip that downloads; any pip >= 20.3 will do, whatever its own Python version.
set -eu
[ $# -ge 1 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
dest=$1; shift
version=3.12
all=0
with_vramtop=0
while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) version=$2; shift 2 ;;
        --all) all=1; shift ;;
        --vramtop) with_vramtop=1; shift ;;
        *) echo "gpu_check_wheels: unknown option $1" >&2; exit 2 ;;
    esac
done
read -r -a pip <<<"${PIP:-python3 -m pip}"
abi="cp${version/./}"
packages=(blessed wcwidth setproctitle pyte pexpect ptyprocess)
[ "$all" = 1 ] && packages+=(numpy psutil requests nvidia-ml-py)
mkdir -p "$dest"
"${pip[@]}" download --quiet --dest "$dest" --only-binary=:all: \
    --python-version "$version" --implementation cp --abi "$abi" --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
    "${packages[@]}"
if [ "$with_vramtop" = 1 ]; then
    root=$(cd "$(dirname "$0")/.." && pwd)
    "${pip[@]}" wheel --quiet --no-deps --wheel-dir "$dest" "$root"
fi
echo "gpu_check_wheels: $(ls "$dest" | wc -l) wheels in $dest for Python $version x86-64:"
ls "$dest"
