#!/usr/bin/env bash
# One prepared check of the GPU path (CUDA head kernel, FP16 error, benchmarks, GPU-marked tests) for a
# machine with an NVIDIA GPU. Uses the machine's own python3 (override with PYTHON=...), not a venv:
# the repository is put on PYTHONPATH, nothing is installed. Missing components are reported as SKIP.
#
#   tools/gpu_check.sh                      # everything, trains a tiny model on the GPU for the FP16 check
#   tools/gpu_check.sh --quick --json "$OUT/gpu_check.json"
#   tools/gpu_check.sh --model runs/bottle.pt --onnx engines/bottle.onnx
#
# Options are those of tools/gpu_check.py (--help). Exit code 0 unless a check found a wrong result.
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu_check: $PY not found (set PYTHON=/path/to/python3)" >&2
    exit 2
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
cd "$REPO" || exit 2
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
exec "$PY" "$REPO/tools/gpu_check.py" "$@"
