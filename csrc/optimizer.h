// Optimizer updates, in place over n contiguous floats. One call updates one variable;
// the binding loops over all of a model's variables with the GIL released.
#pragma once
#include <cstdint>

namespace pycnn {

// Adam with the bias correction folded into alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) (Keras):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= alpha m / (sqrt(v) + eps)
void adam_update(float* w, float* m, float* v, const float* g, int64_t n, float alpha, float b1, float b2, float eps);

}  // namespace pycnn
