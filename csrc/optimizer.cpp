// In-place optimizer updates (see optimizer.h).
#include "optimizer.h"

#include <cmath>

namespace pycnn {

// GCC clones this loop for AVX-512, AVX2 and the baseline and picks one at load time from
// the CPU (the sqrt and division dominate, so wide vectors pay off).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void adam_update(float* __restrict w, float* __restrict m, float* __restrict v, const float* __restrict g, int64_t n,
                 float alpha, float b1, float b2, float eps) {
  const float c1 = 1.f - b1, c2 = 1.f - b2;
  for (int64_t i = 0; i < n; ++i) {
    m[i] = b1 * m[i] + c1 * g[i];
    v[i] = b2 * v[i] + c2 * (g[i] * g[i]);
    w[i] -= alpha * m[i] / (std::sqrt(v[i]) + eps);
  }
}

}  // namespace pycnn
