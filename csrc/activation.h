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

}  // namespace pycnn
