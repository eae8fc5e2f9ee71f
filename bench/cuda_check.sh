#!/usr/bin/env bash
# The CUDA check for a lent GPU, in one run of about 8 minutes: build pycnn with the CUDA backend
# from this working tree, run the CUDA tests (tests/test_cuda_executor.py runs every comparison
# with device="cuda" as well as on the emulation when a device is usable), then pycnn's CUDA
# executor against PyTorch CUDA on the same card (bench/train.py --device cuda: LeNet at batch
# 64 and 256, the heavy Fashion-MNIST model) and the speed-run recipe's epoch time. The CUDA
# tests: tests/test_cuda_executor.py, tests/test_cuda_ops.py (every device op) and the seam.
#
#   bash bench/cuda_check.sh            # writes its logs to $OUT (the device tool's) or /tmp/pycnn-cuda-check
#
# Every stage has its own time limit (590 s in all, without the fallback build: run it with the
# device tool's timeout_s=600) and the script goes on after a failing stage, so one run reports
# as much as it can; the summary at the end lists each stage's exit status and seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/pycnn-cuda-check}
mkdir -p "$OUT"
export PYCNN_DATA_DIR=${PYCNN_DATA_DIR:-/work/shared/data}
STATUS=()
stage() {  # stage NAME SECONDS COMMAND...: runs it with a time limit, its output to the terminal and $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  STATUS+=("$name: exit $rc, $((SECONDS - t0)) s")
  return "$rc"
}

stage environment 20 bash -c 'nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv;
  nvcc --version | tail -2; python -c "import sys, numpy; print(sys.version.split()[0], numpy.__version__)";
  python -c "import torch; print(\"torch\", torch.__version__, torch.cuda.is_available(), torch.version.cuda)" || true'

# The card's architecture only (a build for one is the fastest); cuBLAS from the toolkit, or from
# the nvidia-cublas wheel when the toolkit has none.
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=${ARCH:-90}
CUBLAS_ROOT=$(python -c "import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))" 2>/dev/null || true)
# (The cuBLAS path could not be compiled where this script was written: if it fails, build without.)
stage build 200 bash .ci/dev-build.sh -DPYCNN_CUDA=ON "-DPYCNN_CUDA_ARCHITECTURES=${ARCH}-real" -DPYCNN_CUBLAS=ON \
  ${CUBLAS_ROOT:+"-DPYCNN_CUBLAS_ROOT=$CUBLAS_ROOT"} ||
  stage build_without_cublas 200 bash .ci/dev-build.sh -DPYCNN_CUDA=ON "-DPYCNN_CUDA_ARCHITECTURES=${ARCH}-real" \
    -DPYCNN_CUBLAS=OFF
stage available 20 python -c "import pycnn; from pycnn import cuda; print(cuda.is_available(), cuda.why_unavailable(),
  cuda.build_info()); print(cuda.device_name()) if cuda.is_available() else None"

stage tests 100 env PYTHONPATH=. python -m pytest -q -p no:cacheprovider -rs tests/test_cuda_executor.py \
  tests/test_cuda_ops.py tests/test_cuda_seam.py

stage bench_lenet 100 env PYTHONPATH=. python bench/train.py --device cuda --models lenet --batches 64,256
stage bench_heavy 80 env PYTHONPATH=. python bench/train.py --device cuda --models heavy --batches 128

# The speed-run recipe (pycnn.recipes.speedrun) on CIFAR-10 (PYCNN_DATA_DIR; random images of its
# shape when absent, which times the same work): two epochs with compile's default device set to
# cuda, the epoch times as the recipe measures them.
stage speedrun 70 env PYTHONPATH=. python - <<'PY'
import os
import numpy as np
import pycnn
from pycnn.recipes import speedrun
folder = os.path.join(os.environ.get("PYCNN_DATA_DIR", ""), "cifar-10-batches-bin")
if os.path.isdir(folder):  # (never a download: a lent machine reaches nothing outside)
    data, what = pycnn.datasets.cifar10.load_data(folder), "CIFAR-10"
else:  # images of the same shape: the same work per epoch
    rng = np.random.default_rng(0)
    data = ((rng.integers(0, 256, (50000, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 50000)),
            (rng.integers(0, 256, (10000, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 10000)))
    what = f"random images (no {folder})"
pycnn.set_device("cuda")
result = speedrun.run(data, seed=0, epochs=2)
print(f"speed-run recipe on {what}, device cuda ({pycnn.cuda.device_name()}): epoch seconds "
      f"{[round(s, 2) for s in result['epoch_seconds']]}, {result['steps']} steps, "
      f"train {result['train_seconds']:.1f} s, accuracy after 2 epochs {result['accuracy']:.4f}")
PY

echo "=== summary"
printf '%s\n' "${STATUS[@]}" | tee "$OUT/summary.txt"
