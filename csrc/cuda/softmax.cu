// Device half of the registered loss components (softmax.cpp): sparse_softmax_crossentropy,
// softmax over each row of logits and the cross-entropy against an int64 class index, with
// Keras's label smoothing s (targets (1 - s) onehot + s / C) and per-row weights w_r:
//   loss_r = (max - z_y) [(1 - s) + s / C * sum_c (max - z_c) for the smoothed part] + log sum exp(z - max)
//   grad   = (softmax(z) - target) * scale * w_r
// One thread per row (rows are the class count long); the loss is formed in double as the CPU's
// rows are, and stored per row as w_r * loss_r for the executor's sum.
#include "cuda/device_common.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

namespace {

void sparse_softmax_ce_rows(float* grad, float* row_loss, float* row_hit, const float* out, const void* targets,
                            const float* weights, int64_t N, int64_t cols, float scale,
                            const std::vector<double>& hyper) {
  const int64_t* labels = static_cast<const int64_t*>(targets);
  const double smoothing = hyper.empty() ? 0.0 : hyper[0];
  const float off = static_cast<float>(smoothing / static_cast<double>(cols));  // every class's share
  const float on = static_cast<float>(1.0 - smoothing) + off;                   // the label's target
  for_each(N, "sparse softmax cross-entropy", PYCNN_DEVICE_LAMBDA(int64_t r) {
    const float* z = out + r * cols;
    const int64_t y = labels[r];
    float m = z[0];
    int64_t arg = 0;  // the first maximum, as std::max_element
    for (int64_t j = 1; j < cols; ++j)
      if (z[j] > m) {
        m = z[j];
        arg = j;
      }
    float sum = 0.f;
    for (int64_t j = 0; j < cols; ++j) sum += expf(z[j] - m);
    double loss = static_cast<double>(m - z[y]);
    if (smoothing != 0.0) {
      double spread = 0.0;
      for (int64_t j = 0; j < cols; ++j) spread += static_cast<double>(m - z[j]);
      loss = (1.0 - smoothing) * loss + smoothing / static_cast<double>(cols) * spread;
    }
    loss += static_cast<double>(logf(sum));
    const float w = weights ? weights[r] : 1.f;
    row_loss[r] = static_cast<float>(weights ? static_cast<double>(w) * loss : loss);
    row_hit[r] = arg == y ? 1.f : 0.f;
    if (!grad) return;
    const float inv = 1.f / sum, row_scale = scale * w;
    float* g = grad + r * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const float p = expf(z[j] - m) * inv;
      g[j] = (p - (j == y ? on : off)) * row_scale;
    }
  });
}

const DeviceLossDef sparse_softmax_ce_device = {"sparse_softmax_crossentropy", sparse_softmax_ce_rows};

}  // namespace

PYCNN_REGISTER_DEVICE_LOSS(sparse_softmax_ce_device);

PYCNN_DEVICE_NAMESPACE_END
