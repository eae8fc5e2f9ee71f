// Optimizer updates, in place over n contiguous floats, each registered as an update
// component (executor.h) that a training step applies to every weight slice.
#pragma once
#include <cstdint>

namespace pycnn {

// Adam with the bias correction folded into alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) (Keras):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= alpha m / (sqrt(v) + eps)
void adam_update(float* w, float* m, float* v, const float* g, int64_t n, float alpha, float b1, float b2, float eps);

// SGD as Keras 3: momentum 0: w -= lr g; else v = momentum v - lr g, then w += v, or with
// Nesterov w += momentum v - lr g. Each product rounded to float32, as NumPy's float32 ops.
void sgd_update(float* w, float* v, const float* g, int64_t n, float lr, float momentum, bool nesterov);

}  // namespace pycnn
