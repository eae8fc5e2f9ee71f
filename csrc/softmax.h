// Softmax over the last axis of a (rows, cols) matrix (registered as the activation
// 'softmax'), and the fused softmax cross-entropy loss component (softmax.cpp). Stable: the
// row maximum is subtracted before exp.
#pragma once
#include <cstdint>

namespace pycnn {

// out[r, j] = exp(inp[r, j] - max_r) / sum_k exp(inp[r, k] - max_r)
void softmax_forward(float* out, const float* inp, int64_t rows, int64_t cols);
// dinp[r, j] = out[r, j] * (dout[r, j] - sum_k dout[r, k] out[r, k])
void softmax_backward(float* dinp, const float* dout, const float* out, int64_t rows, int64_t cols);

}  // namespace pycnn
