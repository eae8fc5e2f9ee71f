// Softmax over rows, forward and backward, registered as an activation, and the fused softmax
// + sparse categorical cross-entropy registered as a loss component. Rows are independent.
#include "softmax.h"

#include <algorithm>
#include <cmath>

#include "activation.h"
#include "executor.h"
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

// ---------------------------------------------------------------------------- registered

namespace {

// Softmax as an activation: over the last axis (cols) of the rows. Backward from the output.
const ActivationDef softmax_def = {
    "softmax", "exp(x) / sum(exp(x)) over the last axis", Activation::linear, false, true,
    [](float* y, const float* x, int64_t rows, int64_t cols) { softmax_forward(y, x, rows, cols); },
    [](float* dx, const float* dy, const float* y, const float*, int64_t rows, int64_t cols) {
      softmax_backward(dx, dy, y, rows, cols);
    }};
PYCNN_REGISTER_ACTIVATION(softmax_def);

// The training loss of a softmax classifier, fused: the network's output is the logits (its
// final softmax left out). With label smoothing s (Keras's formula, as CategoricalCrossentropy:
// targets y = (1 - s) onehot + s / C), loss_r = logsumexp(z_r) - sum_c y_c z_rc and the gradient
// (softmax(z_r) - y_r) * w_r / N, computed from the probabilities in one pass.
double sparse_softmax_ce_rows(float* grad, const float* out, const void* targets, const float* weights, int64_t r0,
                              int64_t n, int64_t cols, float scale, const double* hyper, int64_t* hits) {
  const int64_t* labels = static_cast<const int64_t*>(targets) + r0;
  const float* w = weights ? weights + r0 : nullptr;
  const double smoothing = hyper[0];
  const float off = static_cast<float>(smoothing / static_cast<double>(cols));  // every class's share
  const float on = static_cast<float>(1.0 - smoothing) + off;                   // the label's target
  float* probs = grad ? grad : scratch(slot_base(), static_cast<std::size_t>(cols), kScratchActivation);
  double total = 0.0;
  int64_t correct = 0;
  for (int64_t r = 0; r < n; ++r) {
    const float* z = out + r * cols;
    float* p = grad ? probs + r * cols : probs;
    float log_sum;
    const float m = softmax_row(p, z, cols, &log_sum);
    // (max - z_y) is exact-ish for large logits, where max + log_sum would round first.
    double loss = static_cast<double>(m - z[labels[r]]);
    if (smoothing != 0.0) {
      double spread = 0.0;  // sum_c (max - z_c)
      for (int64_t j = 0; j < cols; ++j) spread += static_cast<double>(m - z[j]);
      loss = (1.0 - smoothing) * loss + smoothing / static_cast<double>(cols) * spread;
    }
    loss += static_cast<double>(log_sum);
    total += w ? static_cast<double>(w[r]) * loss : loss;
    correct += (std::max_element(z, z + cols) - z) == labels[r];
    if (!grad) continue;
    const float row_scale = w ? scale * w[r] : scale;  // "loss = sum_r w_r loss_r / N"
    if (smoothing != 0.0) {
      for (int64_t j = 0; j < cols; ++j) p[j] = (p[j] - off) * row_scale;
      p[labels[r]] -= (on - off) * row_scale;
    } else {
      for (int64_t j = 0; j < cols; ++j) p[j] *= scale;
      p[labels[r]] -= scale;
      if (w)
        for (int64_t j = 0; j < cols; ++j) p[j] *= w[r];
    }
  }
  *hits += correct;
  return total;
}

const LossDef sparse_softmax_ce = {
    "sparse_softmax_crossentropy",
    "mean sparse categorical cross-entropy of softmax(logits) against int64 class indices (N,)", true,
    {"label_smoothing"}, sparse_softmax_ce_rows,
    [](const double* h) -> std::string {
      if (h[0] >= 0.0 && h[0] <= 1.0) return std::string();
      return "expected label_smoothing in [0, 1]. Received: label_smoothing=" + std::to_string(h[0]) + ".";
    }};
PYCNN_REGISTER_LOSS(sparse_softmax_ce);

}  // namespace
}  // namespace pycnn
