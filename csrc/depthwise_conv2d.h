// Depthwise 2-D convolution, NHWC, as keras.layers.DepthwiseConv2D (and the first half of
// SeparableConv2D): every input channel is convolved with its own M filters.
//
//   inp    (N, H, W, C)           weight (KH, KW, C, M)        bias (C * M) or null
//   out    (N, OH, OW, C * M)     output channel c * M + m (Keras / TensorFlow order):
//   out[n, oh, ow, c*M + m] = act(bias[c*M + m] + sum_{kh, kw}
//       inp[n, oh*SH + kh*DH - PT, ow*SW + kw*DW - PL, c] * weight[kh, kw, c, m])
//
// The weight viewed as (KH, KW, C*M) is indexed exactly like the output's channels, so
// every inner loop runs along the contiguous channel axis (vectorised, one copy per ISA).
// Output size: window_output_size (conv2d.h) with the dilated extent (K - 1) * D + 1.
#pragma once
#include <cstdint>

#include "activation.h"
#include "conv2d.h"

namespace pycnn {

// s describes the geometry with s.F == s.C * M; DH, DW are the dilation.
struct DepthwiseShape {
  ConvShape s;
  int64_t M, DH, DW;
};

// out (N, OH, OW, C*M); bias may be null.
void depthwise_conv2d_forward(float* out, const float* inp, const float* weight, const float* bias,
                              const DepthwiseShape& d, Activation act);

// dout (N, OH, OW, C*M) w.r.t. the activation's output `out` (may be null when linear).
// dinp (N, H, W, C) and dbias (C*M) may be null. Written, not accumulated.
void depthwise_conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* out, const DepthwiseShape& d, Activation act);

// The geometry the depthwise_conv2d and separable_conv2d ops store in their node
// (node.geom<DepthwiseGeom>()): input (H, W, C), depthwise kernel (KH, KW, C, M), attrs
// strides, dilation_rate, padding; d.s.N is 1 (the executor's share sets it).
struct DepthwiseGeom {
  DepthwiseShape d;  // d.s.F = C * M
  int64_t F;         // separable: the pointwise filters
  NodeActivation act;
};

}  // namespace pycnn
