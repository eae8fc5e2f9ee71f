// Softmax fused with sparse categorical cross-entropy on the device: one thread per row
// forward (rows are short: the class count), one per element backward. Arithmetic in bodies.h.
#include "cuda/bodies.h"
#include "cuda/kernels.h"
#include "cuda/launch.cuh"

namespace pycnn {
namespace cuda {

// probs (rows, cols), row_loss (rows); labels in [0, cols) (the caller checks).
void softmax_crossentropy_forward(float* probs, float* row_loss, const float* logits, const int64_t* labels,
                                  int64_t rows, int64_t cols) {
  for_each(rows, "softmax_crossentropy_forward", [=] __device__(int64_t r) {
    row_loss[r] = bodies::softmax_crossentropy_forward_row(probs, logits, labels[r], cols, r);
  });
}

// dlogits (rows, cols) = (probs - onehot(labels)) * scale.
void softmax_crossentropy_backward(float* dlogits, const float* probs, const int64_t* labels, int64_t rows,
                                   int64_t cols, float scale) {
  for_each(rows * cols, "softmax_crossentropy_backward", [=] __device__(int64_t i) {
    dlogits[i] = bodies::softmax_crossentropy_backward_at(probs, labels, cols, scale, i);
  });
}

}  // namespace cuda
}  // namespace pycnn
