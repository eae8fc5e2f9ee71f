// In-place optimizer updates (optimizer.h) and their registration as update components.
#include "optimizer.h"

#include <cmath>

#include "executor.h"

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

void sgd_update(float* __restrict w, float* __restrict v, const float* __restrict g, int64_t n, float lr,
                float momentum, bool nesterov) {
  if (momentum == 0.f || !v) {
    for (int64_t i = 0; i < n; ++i) w[i] -= lr * g[i];
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    v[i] = momentum * v[i] - lr * g[i];
    w[i] += nesterov ? momentum * v[i] - lr * g[i] : v[i];
  }
}

namespace {

// hyper: alpha (bias-corrected rate), beta_1, beta_2, epsilon; slots m, v.
const UpdateDef adam_def = {
    "adam", "Adam (Keras 3), the bias correction folded into alpha", {"alpha", "beta_1", "beta_2", "epsilon"}, 2,
    [](float* w, float* const* slots, const float* g, int64_t n, const double* h) {
      adam_update(w, slots[0], slots[1], g, n, static_cast<float>(h[0]), static_cast<float>(h[1]),
                  static_cast<float>(h[2]), static_cast<float>(h[3]));
    }};

// hyper: learning_rate, momentum, nesterov (0 or 1); slot: the velocity.
const UpdateDef sgd_def = {
    "sgd", "SGD with optional (Nesterov) momentum (Keras 3)", {"learning_rate", "momentum", "nesterov"}, 1,
    [](float* w, float* const* slots, const float* g, int64_t n, const double* h) {
      sgd_update(w, slots[0], g, n, static_cast<float>(h[0]), static_cast<float>(h[1]), h[2] != 0.0);
    }};

PYCNN_REGISTER_UPDATE(adam_def);
PYCNN_REGISTER_UPDATE(sgd_def);

}  // namespace
}  // namespace pycnn
