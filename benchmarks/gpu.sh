#!/usr/bin/env bash
# The GPU check of issue 14 in one command, for a machine lent for minutes: torch and torchvision
# installed, no network, this tree copied as it is. Nothing is installed; resizelab runs from src/.
#
#   benchmarks/gpu.sh [--device cuda|cuda:N|cpu] [--budget SECONDS] [OUTDIR]
#
# OUTDIR (default $OUT) receives gpu.json (every figure, the targets met or missed, and which CUDA
# default to change), bench.json and bench.txt (resizelab bench), and logs/. About 7.5 minutes on one
# H100 (--budget, default 450 s, is a hard limit: steps that would not fit are skipped and say so).
# --device cpu is a smoke test of the script itself on a tiny synthetic set (tests/test_gpu_check.py).
# What each figure means, the targets, and which default to flip on which result: BENCHMARKS.md, "GPU".
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

device=cuda
out="${OUT:-}"
budget=()
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="${2:?--device needs a value}"; shift 2 ;;
        --device=*) device="${1#*=}"; shift ;;
        --budget) budget=(--budget "${2:?--budget needs a value}"); shift 2 ;;
        --budget=*) budget=(--budget "${1#*=}"); shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "gpu.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) out="$1"; shift ;;
    esac
done
if [ -z "$out" ]; then
    echo "gpu.sh: give the output folder as an argument or in \$OUT" >&2
    exit 2
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
# The first interpreter that has torch: $PYTHON if set, else python3, else python.
python=""
for candidate in ${PYTHON:-} python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch, torchvision" >/dev/null 2>&1; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    echo "gpu.sh: no python with torch and torchvision found (set PYTHON=/path/to/python)" >&2
    exit 2
fi

mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$root"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# Every step's progress bars would go to its log; none is on a terminal.
exec "$python" benchmarks/gpu_check.py --device "$device" --out "$out" ${budget[@]+"${budget[@]}"}
