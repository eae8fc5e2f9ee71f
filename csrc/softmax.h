// Softmax over the last axis of a (rows, cols) matrix, and softmax fused with sparse
// categorical cross-entropy. Stable: the row maximum is subtracted before exp.
#pragma once
#include <cstdint>

namespace pycnn {

// out[r, j] = exp(inp[r, j] - max_r) / sum_k exp(inp[r, k] - max_r)
void softmax_forward(float* out, const float* inp, int64_t rows, int64_t cols);
// dinp[r, j] = out[r, j] * (dout[r, j] - sum_k dout[r, k] out[r, k])
void softmax_backward(float* dinp, const float* dout, const float* out, int64_t rows, int64_t cols);

// probs = softmax(logits); returns the mean over rows of -log softmax(logits)[r, labels[r]]
// computed as logsumexp - logit (never log of a rounded-to-zero probability).
// labels must lie in [0, cols) (the binding checks).
double softmax_crossentropy_forward(float* probs, const float* logits, const int64_t* labels,
                                    int64_t rows, int64_t cols);
// dlogits = (probs - onehot(labels)) * scale; scale = 1 / rows for the mean loss.
void softmax_crossentropy_backward(float* dlogits, const float* probs, const int64_t* labels,
                                   int64_t rows, int64_t cols, float scale);

}  // namespace pycnn
