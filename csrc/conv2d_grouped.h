// Dilated and/or grouped 2-D convolution (cross-correlation, as in Keras), NHWC: the general
// path of Conv2D(dilation_rate=..., groups=...). Dilation 1 with one group stays on
// conv2d.h's kernels (their fast paths are untouched); these take every other case.
//
//   inp    (N, H, W, C)           weight (KH, KW, C / G, F)     bias (F) or null
//   out    (N, OH, OW, F)         with Cg = C / G input and Fg = F / G output channels per
//                                 group, output channel f belongs to group g = f / Fg:
//   out[n, oh, ow, f] = act(bias[f] + sum_{kh, kw, c < Cg}
//       inp[n, oh*SH + kh*DH - PT, ow*SW + kw*DW - PL, g*Cg + c] * weight[kh, kw, c, f])
//   with zero padding outside the image.
//
// Output size: window_output_size (conv2d.h) with the dilated kernel extent
// (KH - 1) * DH + 1 (and likewise for W), which is TensorFlow's arithmetic for 'same'.
#pragma once
#include <cstdint>

#include "conv2d.h"

namespace pycnn {

// Dilation and groups of a general convolution; s.KH, s.KW are the kernel's taps, s.C the
// input's channels (all groups), s.F the output's.
struct ConvDilation {
  int64_t DH, DW, G;
};

// out (N, OH, OW, F); bias may be null.
void conv2d_grouped_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                            const ConvDilation& d, Activation act);

// dout (N, OH, OW, F) is the gradient w.r.t. the activation's output `out` (may be null when
// act == linear). dinp (N, H, W, C) and dbias (F) may be null to skip them. Written, not
// accumulated.
void conv2d_grouped_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                             const float* weight, const float* out, const ConvShape& s, const ConvDilation& d,
                             Activation act);

}  // namespace pycnn
