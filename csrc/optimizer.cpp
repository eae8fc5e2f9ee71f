// In-place optimizer updates (optimizer.h) and their registration as update components.
#include "optimizer.h"

#include <cmath>
#include <initializer_list>
#include <string>

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

std::string expect(const char* name, double v, bool ok, const char* want) {
  if (ok) return std::string();
  return std::string("expected ") + name + " " + want + ". Received: " + name + "=" + std::to_string(v) + ".";
}

std::string first_error(std::initializer_list<std::string> errors) {
  for (const std::string& e : errors)
    if (!e.empty()) return e;
  return std::string();
}

// hyper: alpha (bias-corrected rate), beta_1, beta_2, epsilon; slots m, v.
const UpdateDef adam_def = {
    "adam", "Adam (Keras 3), the bias correction folded into alpha", {"alpha", "beta_1", "beta_2", "epsilon"}, 2,
    [](float* w, float* const* slots, const float* g, int64_t n, const double* h) {
      adam_update(w, slots[0], slots[1], g, n, static_cast<float>(h[0]), static_cast<float>(h[1]),
                  static_cast<float>(h[2]), static_cast<float>(h[3]));
    },
    [](const double* h) {
      return first_error({expect("alpha", h[0], std::isfinite(h[0]) && h[0] >= 0, "to be a finite number >= 0"),
                          expect("beta_1", h[1], h[1] >= 0 && h[1] < 1, "in [0, 1)"),
                          expect("beta_2", h[2], h[2] >= 0 && h[2] < 1, "in [0, 1)"),
                          expect("epsilon", h[3], std::isfinite(h[3]) && h[3] >= 0, "to be a finite number >= 0")});
    }};

// hyper: learning_rate, momentum, nesterov (0 or 1); slot: the velocity.
const UpdateDef sgd_def = {
    "sgd", "SGD with optional (Nesterov) momentum (Keras 3)", {"learning_rate", "momentum", "nesterov"}, 1,
    [](float* w, float* const* slots, const float* g, int64_t n, const double* h) {
      sgd_update(w, slots[0], g, n, static_cast<float>(h[0]), static_cast<float>(h[1]), h[2] != 0.0);
    },
    [](const double* h) {
      return first_error({expect("learning_rate", h[0], std::isfinite(h[0]) && h[0] >= 0, "to be a finite number >= 0"),
                          expect("momentum", h[1], h[1] >= 0 && h[1] <= 1, "in [0, 1]"),
                          expect("nesterov", h[2], h[2] == 0 || h[2] == 1, "to be 0 or 1")});
    }};

PYCNN_REGISTER_UPDATE(adam_def);
PYCNN_REGISTER_UPDATE(sgd_def);

}  // namespace
}  // namespace pycnn
