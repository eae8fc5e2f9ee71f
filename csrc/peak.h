// The FP32 peak the benchmarks divide by (peak.cpp).
#pragma once
#include <cstdint>

namespace pycnn {

struct PeakResult {
  double gflops = 0.0;   // 2 * lanes * FMAs per second, all threads together, / 1e9
  double seconds = 0.0;  // wall time of the run
  int threads = 0;
  int lanes = 0;         // floats per FMA at the active SIMD level
};

// Every thread runs `iters` rounds of independent register FMA chains at the active ISA.
PeakResult measure_fma_peak(int64_t iters);

}  // namespace pycnn
