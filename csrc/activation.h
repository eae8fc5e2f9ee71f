// Element-wise activations over n contiguous floats. Backward takes the forward *output*
// y (relu' = y > 0, sigmoid' = y (1 - y), tanh' = 1 - y^2), so layers cache only y.
#pragma once
#include <cstdint>

namespace pycnn {

void relu_forward(float* out, const float* inp, int64_t n);
void relu_backward(float* dinp, const float* dout, const float* out, int64_t n);
void sigmoid_forward(float* out, const float* inp, int64_t n);
void sigmoid_backward(float* dinp, const float* dout, const float* out, int64_t n);
void tanh_forward(float* out, const float* inp, int64_t n);
void tanh_backward(float* dinp, const float* dout, const float* out, int64_t n);

// Leaky ReLU (keras.layers.LeakyReLU): y = x > 0 ? x : negative_slope * x, slope >= 0 (so
// y > 0 exactly where x > 0 and backward can take y: dx = y > 0 ? dy : negative_slope * dy).
// Not a fused conv/dense activation: it runs as its own op.
void leaky_relu_forward(float* out, const float* inp, int64_t n, float negative_slope);
void leaky_relu_backward(float* dinp, const float* dout, const float* out, int64_t n, float negative_slope);

}  // namespace pycnn
