// Softmax over rows and the fused softmax + sparse categorical cross-entropy, forward and
// backward. Rows are independent, so threads split rows.
#include "softmax.h"

#include <algorithm>
#include <cmath>

#include "runtime.h"

namespace pycnn {
namespace {

// out = softmax(z) for one row; returns the row maximum and sets *log_sum to
// log(sum(exp(z - max))), so logsumexp(z) = max + *log_sum without rounding the sum first.
inline float softmax_row(float* out, const float* z, int64_t cols, float* log_sum) {
  float m = z[0];
  for (int64_t j = 1; j < cols; ++j) m = std::max(m, z[j]);
  float sum = 0.f;
  for (int64_t j = 0; j < cols; ++j) {
    out[j] = std::exp(z[j] - m);
    sum += out[j];
  }
  const float inv = 1.f / sum;
  for (int64_t j = 0; j < cols; ++j) out[j] *= inv;
  *log_sum = std::log(sum);
  return m;
}

}  // namespace

void softmax_forward(float* out, const float* inp, int64_t rows, int64_t cols) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (rows * cols > 8192)
#endif
  for (int64_t r = 0; r < rows; ++r) {
    float log_sum;
    softmax_row(out + r * cols, inp + r * cols, cols, &log_sum);
  }
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
    float log_sum;
    const float m = softmax_row(probs + r * cols, logits + r * cols, cols, &log_sum);
    // (max - z_y) is exact-ish for large logits, where max + log_sum would round first.
    total += static_cast<double>(m - logits[r * cols + labels[r]]) + static_cast<double>(log_sum);
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
