// The machine's FP32 peak as the benchmarks measure it: every thread runs independent chains
// of fused multiply-adds on registers (no memory traffic) at the widest SIMD level the kernels
// use, for a fixed count; GFLOP/s = 2 * lanes * FMAs / seconds. Kernels' "% of peak" figures
// divide by this, measured in the same sitting (the second core is at times shared).
#include "peak.h"

#include <chrono>

#include "runtime.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PYCNN_X86 1
#endif
#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

namespace pycnn {
namespace {

constexpr int kChains = 12;  // enough independent FMAs to cover latency 4 x 2 pipes and more

#ifdef PYCNN_X86
__attribute__((target("avx512f"))) float chains_avx512(int64_t iters) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  float out[16];
  _mm512_storeu_ps(out, s);
  float total = 0.f;
  for (float v : out) total += v;
  return total;
}

__attribute__((target("avx2,fma"))) float chains_avx2(int64_t iters) {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(static_cast<float>(c) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  __m256 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

float chains_scalar(int64_t iters) {
  float acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = static_cast<float>(c) * 1e-3f;
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * 0.999999f + 1e-7f;
  float s = 0.f;
  for (int c = 0; c < kChains; ++c) s += acc[c];
  return s;
}

}  // namespace

PeakResult measure_fma_peak(int64_t iters) {
  const Isa isa = active_isa();
  const int lanes = isa == Isa::avx512 ? 16 : isa == Isa::avx2 ? 8 : 1;
  const int threads = get_num_threads();
  volatile float sink = 0.f;  // keeps the chains from being optimised away
  const auto start = std::chrono::steady_clock::now();
#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
    float r;
#ifdef PYCNN_X86
    if (isa == Isa::avx512) r = chains_avx512(iters);
    else if (isa == Isa::avx2) r = chains_avx2(iters);
    else r = chains_scalar(iters);
#else
    r = chains_scalar(iters);
#endif
    if (r == 12345.f) sink = r;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (void)sink;
  PeakResult out;
  out.threads = threads;
  out.lanes = lanes;
  out.seconds = seconds;
  out.gflops = 2.0 * lanes * kChains * static_cast<double>(iters) * threads / seconds / 1e9;
  return out;
}

}  // namespace pycnn
