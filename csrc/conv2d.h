// 2-D convolution (cross-correlation, as in Keras), NHWC.
//
//   inp    (N, H, W, C)          weight (KH, KW, C, F)     bias (F) or null
//   out    (N, OH, OW, F)        out[n, oh, ow, f] = act(bias[f] + sum_{kh,kw,c}
//            inp[n, oh*SH + kh - PT, ow*SW + kw - PL, c] * weight[kh, kw, c, f])
//   with zero padding outside the image.
//
// Output size: 'valid': OH = (H - KH) / SH + 1;  'same': OH = ceil(H / SH),
// total padding max((OH - 1) * SH + KH - H, 0), PT = total / 2, PB = total - PT
// (the odd pixel goes bottom/right, as in TensorFlow). Same for W.
#pragma once
#include <cstdint>
#include "runtime.h"

namespace pycnn {

struct ConvShape {
  int64_t N, H, W, C, F;
  int64_t KH, KW, SH, SW;
  int64_t PT, PL;   // padding before (top / left); padding after is implied by OH, OW
  int64_t OH, OW;
};

// Output size and padding of one spatial axis; returns false if the output would be < 1.
// same == true follows TensorFlow's 'same' arithmetic above.
bool window_output_size(int64_t in, int64_t k, int64_t s, bool same,
                        int64_t* out, int64_t* pad_before, int64_t* pad_after);

// out (N, OH, OW, F); bias may be null.
void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const ConvShape& s, Activation act);

// dout (N, OH, OW, F) is the gradient w.r.t. the activation's output `out` (needed unless
// act == linear; may be null then). dinp (N, H, W, C) may be null to skip it (first layer);
// dbias (F) may be null. All outputs are written, not accumulated.
void conv2d_backward(float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, const float* weight,
                     const float* out, const ConvShape& s, Activation act);

}  // namespace pycnn
