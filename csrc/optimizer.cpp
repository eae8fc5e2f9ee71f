// In-place optimizer updates (see optimizer.h).
#include "optimizer.h"

#include <cmath>

namespace pycnn {

void adam_update(float* w, float* m, float* v, const float* g, int64_t n, float alpha, float b1, float b2,
                 float eps) {
  const float c1 = 1.f - b1, c2 = 1.f - b2;
  for (int64_t i = 0; i < n; ++i) {
    m[i] = b1 * m[i] + c1 * g[i];
    v[i] = b2 * v[i] + c2 * (g[i] * g[i]);
    w[i] -= alpha * m[i] / (std::sqrt(v[i]) + eps);
  }
}

}  // namespace pycnn
