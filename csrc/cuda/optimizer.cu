// Device half of the registered update components (optimizer.cpp), one thread per float of a
// weight: the decoupled decay w -= w * decay first (when decay != 0), then the update; nothing
// when the step's loss was not finite (*finite == 0, a device flag: the host never waits).
//   adam  hyper alpha (bias-corrected rate), beta_1, beta_2, epsilon; slots m, v
//         m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= alpha m / (sqrt(v) + eps)
//   sgd   hyper learning_rate, momentum, nesterov (0 or 1); slot: the velocity
//         momentum 0: w -= lr g; else v = mu v - lr g; w += nesterov ? mu v - lr g : v
#include <math.h>

#include "cuda/device_common.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

namespace {

void adam_apply(float* w, float* const* slots, const float* g, int64_t n, const double* h, float decay,
                const float* finite) {
  float* m = slots[0];
  float* v = slots[1];
  const float alpha = static_cast<float>(h[0]), b1 = static_cast<float>(h[1]), b2 = static_cast<float>(h[2]),
              eps = static_cast<float>(h[3]);
  const float c1 = 1.f - b1, c2 = 1.f - b2;
  for_each(n, "adam", PYCNN_DEVICE_LAMBDA(int64_t i) {
    if (*finite == 0.f) return;
    if (decay != 0.f) w[i] -= w[i] * decay;
    m[i] = b1 * m[i] + c1 * g[i];
    v[i] = b2 * v[i] + c2 * (g[i] * g[i]);
    w[i] -= alpha * m[i] / (sqrtf(v[i]) + eps);
  });
}

void sgd_apply(float* w, float* const* slots, const float* g, int64_t n, const double* h, float decay,
               const float* finite) {
  float* v = slots[0];
  const float lr = static_cast<float>(h[0]), mu = static_cast<float>(h[1]);
  const bool nesterov = h[2] != 0.0;
  for_each(n, "sgd", PYCNN_DEVICE_LAMBDA(int64_t i) {
    if (*finite == 0.f) return;
    if (decay != 0.f) w[i] -= w[i] * decay;
    if (mu == 0.f || !v) {
      w[i] -= lr * g[i];
      return;
    }
    v[i] = mu * v[i] - lr * g[i];
    w[i] += nesterov ? mu * v[i] - lr * g[i] : v[i];
  });
}

const DeviceUpdateDef adam_device = {"adam", adam_apply};
const DeviceUpdateDef sgd_device = {"sgd", sgd_apply};

}  // namespace

PYCNN_REGISTER_DEVICE_UPDATE(adam_device);
PYCNN_REGISTER_DEVICE_UPDATE(sgd_device);

PYCNN_DEVICE_NAMESPACE_END
