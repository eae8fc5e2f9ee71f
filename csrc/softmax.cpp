// Softmax over rows and the fused softmax + sparse categorical cross-entropy, forward and
// backward. Rows are independent, so threads split rows.
#include "softmax.h"

#include <algorithm>
#include <cmath>

#include "runtime.h"

namespace pycnn {
namespace {

// out = softmax(z) for one row; returns log(sum(exp(z - max))) + max, the row's logsumexp.
inline float softmax_row(float* out, const float* z, int64_t cols) {
  float m = z[0];
  for (int64_t j = 1; j < cols; ++j) m = std::max(m, z[j]);
  float sum = 0.f;
  for (int64_t j = 0; j < cols; ++j) {
    out[j] = std::exp(z[j] - m);
    sum += out[j];
  }
  const float inv = 1.f / sum;
  for (int64_t j = 0; j < cols; ++j) out[j] *= inv;
  return m + std::log(sum);
}

}  // namespace

void softmax_forward(float* out, const float* inp, int64_t rows, int64_t cols) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (rows * cols > 8192)
#endif
  for (int64_t r = 0; r < rows; ++r) softmax_row(out + r * cols, inp + r * cols, cols);
}

// "y = softmax(x)" has Jacobian dy_i/dx_j = y_i (delta_ij - y_j), so
// dx_j = y_j (dy_j - sum_i dy_i y_i).
void softmax_backward(float* dinp, const float* dout, const float* out, int64_t rows, int64_t cols) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (rows * cols > 8192)
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const float* y = out + r * cols;
    const float* dy = dout + r * cols;
    float dot = 0.f;
    for (int64_t j = 0; j < cols; ++j) dot += dy[j] * y[j];
    float* dx = dinp + r * cols;
    for (int64_t j = 0; j < cols; ++j) dx[j] = y[j] * (dy[j] - dot);
  }
}

double softmax_crossentropy_forward(float* probs, const float* logits, const int64_t* labels, int64_t rows,
                                    int64_t cols) {
  // The batch sum is accumulated in double: it adds `rows` terms of similar size and is
  // reported to the user, so float round-off would show in the printed loss.
  double total = 0.0;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) reduction(+ : total) if (rows * cols > 8192)
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const float lse = softmax_row(probs + r * cols, logits + r * cols, cols);
    total += static_cast<double>(lse) - static_cast<double>(logits[r * cols + labels[r]]);
  }
  return total / static_cast<double>(rows);
}

// "loss = mean_r (logsumexp(z_r) - z_r[y_r])" gives dz_r = (softmax(z_r) - onehot(y_r)) / rows.
void softmax_crossentropy_backward(float* dlogits, const float* probs, const int64_t* labels, int64_t rows,
                                   int64_t cols, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = probs + r * cols;
    float* d = dlogits + r * cols;
    for (int64_t j = 0; j < cols; ++j) d[j] = p[j] * scale;
    d[labels[r]] -= scale;
  }
}

}  // namespace pycnn
