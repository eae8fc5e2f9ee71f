#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
#   bash .ci/sanitize.sh [pytest args]      (default: the whole suite, -q -x)
# Builds the extension with -DPYCNN_SANITIZE=address,undefined into build/sanitize, puts a copy
# of the package with that module in build/sanitize/pkg (the working tree's pycnn/ is left
# alone), and runs pytest on it with libasan and libstdc++ preloaded (Python is not
# instrumented). Leak checking is off: CPython's own allocations would drown the report.
# Any sanitizer report aborts the run with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPYCNN_SANITIZE=address,undefined \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" > build/sanitize-configure.log 2>&1 \
  || { cat build/sanitize-configure.log; exit 1; }
cmake --build build/sanitize
rm -rf build/sanitize/pkg && mkdir -p build/sanitize/pkg
cp -r pycnn build/sanitize/pkg/pycnn
rm -f build/sanitize/pkg/pycnn/_core*.so
cp build/sanitize/_core*.so build/sanitize/pkg/pycnn/
export LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$PWD/build/sanitize/pkg"
# pytest, not python -m pytest: the latter would put the working tree (and its pycnn/) first.
(cd / && python -c "import pycnn; assert 'build/sanitize/pkg' in pycnn.__file__, pycnn.__file__; print('sanitized:', pycnn.__file__)")
# The first test module asserts the same, so a run that imported the working tree's pycnn fails.
export PYCNN_EXPECT_PACKAGE_UNDER="$PYTHONPATH"
if [ "$#" -eq 0 ]; then set -- -q -x; fi
exec pytest -p no:cacheprovider "$@"
