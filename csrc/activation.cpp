// Element-wise activations, forward and backward. Backward uses the forward output y.
#include "activation.h"

#include <cmath>

#include "runtime.h"

namespace pycnn {
namespace {
constexpr int64_t kParallelMin = 1 << 15;  // below this, waking threads costs more than the loop
}

void relu_forward(float* out, const float* inp, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = inp[i] < 0.f ? 0.f : inp[i];  // keeps NaN
}

// "y = max(x, 0)": dx = dy where y > 0, else 0 (the derivative at 0 is taken as 0, as Keras does).
void relu_backward(float* dinp, const float* dout, const float* out, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) dinp[i] = out[i] > 0.f ? dout[i] : 0.f;
}

void sigmoid_forward(float* out, const float* inp, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = 1.f / (1.f + std::exp(-inp[i]));
}

// "y = 1 / (1 + exp(-x))": dx = dy * y * (1 - y).
void sigmoid_backward(float* dinp, const float* dout, const float* out, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) dinp[i] = dout[i] * out[i] * (1.f - out[i]);
}

void tanh_forward(float* out, const float* inp, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = std::tanh(inp[i]);
}

// "y = tanh(x)": dx = dy * (1 - y^2).
void tanh_backward(float* dinp, const float* dout, const float* out, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) dinp[i] = dout[i] * (1.f - out[i] * out[i]);
}

}  // namespace pycnn
