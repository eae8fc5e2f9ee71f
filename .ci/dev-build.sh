#!/usr/bin/env bash
# Developer build: compiles the extension into build/dev and drops it into pycnn/ so that
# `PYTHONPATH=. pytest` runs against the working tree. Serialised with flock because
# several shells may rebuild at once. Usage: bash .ci/dev-build.sh [extra cmake -D args]
# (-DPYCNN_CUDA=ON also builds and copies pycnn/_cuda; the cache keeps options until changed,
# so go back with -DPYCNN_CUDA=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/pycnn-dev-build.lock
flock 9
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" "$@" > build-dev-configure.log 2>&1 \
  || { cat build-dev-configure.log; exit 1; }
rm -f build-dev-configure.log
cmake --build build/dev
so=$(ls build/dev/_core*.so)
cp "$so" pycnn/.core.tmp
mv -f pycnn/.core.tmp "pycnn/$(basename "$so")"
echo "built pycnn/$(basename "$so")"
# The CUDA module only when this build directory is configured with -DPYCNN_CUDA=ON; a stale
# copy from an earlier CUDA configuration would make pycnn report a backend it was not built with.
if grep -q "^PYCNN_CUDA:BOOL=ON" build/dev/CMakeCache.txt; then
  cuda_so=$(ls build/dev/_cuda*.so)
  cp "$cuda_so" pycnn/.cuda.tmp
  mv -f pycnn/.cuda.tmp "pycnn/$(basename "$cuda_so")"
  echo "built pycnn/$(basename "$cuda_so")"
else
  rm -f pycnn/_cuda*.so
fi
