// A whole Sequential network run natively, one parallel region per batch.
//
// Training a small CNN layer by layer pays, at every layer, for crossing into C++ and for
// waking the OpenMP threads (with passive waiting, tens of microseconds each, about a
// millisecond per LeNet step). Here each thread takes a contiguous share of the batch and
// runs every layer's forward, the fused softmax cross-entropy and every layer's backward on
// it with the serial kernels; weight gradients go to per-thread buffers that are summed at
// the end. Results match the layer-by-layer path up to float32 summation order.
#pragma once
#include <cstdint>
#include <vector>

#include "conv2d.h"
#include "pool2d.h"
#include "runtime.h"

namespace pycnn {

enum class NetKind { conv2d, maxpool2d, avgpool2d, flatten, dense, activation };

struct NetLayer {
  NetKind kind;
  Activation act = Activation::linear;  // fused activation (conv2d, dense) or the activation layer's
  // Parameters (conv2d, dense; bias may be null) and where their gradients go (train only).
  const float* weight = nullptr;
  const float* bias = nullptr;
  float* dweight = nullptr;
  float* dbias = nullptr;
  // With a fused Adam step (network_train_step's `adam`): the parameters, updated in place,
  // and their first and second moments, shaped like them.
  float* weight_rw = nullptr;
  float* bias_rw = nullptr;
  float *m_weight = nullptr, *v_weight = nullptr, *m_bias = nullptr, *v_bias = nullptr;
  int64_t weight_size = 0, bias_size = 0;
  // Geometry per sample; N is set per thread.
  ConvShape conv{};
  PoolShape pool{};
  int64_t in_size = 0, out_size = 0;  // floats per sample in and out
};

// Adam's step for one batch (optimizer.h): alpha already holds the bias correction.
struct AdamStep {
  float alpha, beta_1, beta_2, epsilon;
};

// Forward + mean sparse categorical cross-entropy of softmax(logits) + backward for x
// (N, in_size of layer 0) and labels (N) in [0, classes); the last layer's output is the
// logits (N, classes). Writes every dweight/dbias. Returns the mean loss; *correct counts
// the rows whose largest logit is the label. With `adam` (may be null), each thread also
// applies the Adam update to its slice of every parameter right after summing its gradient,
// in the same parallel region (layers then carry weight_rw/bias_rw and the moments).
double network_train_step(const std::vector<NetLayer>& layers, const float* x, const int64_t* labels, int64_t N,
                          int64_t classes, int64_t* correct, const AdamStep* adam = nullptr);

// Forward only: out (N, out_size of the last layer). softmax_cols > 0 applies a softmax over
// each run of softmax_cols values (the output's last axis).
void network_predict(const std::vector<NetLayer>& layers, const float* x, int64_t N, float* out,
                     int64_t softmax_cols);

}  // namespace pycnn
