// 2-D convolution on the device, NHWC, weight (KH, KW, C, F): direct formula, one thread
// per output element (forward), per input element (dinp), per weight (dweight), per filter
// (dbias). Arithmetic in bodies.h; geometry as conv2d.h.
#include "cuda/bodies.h"
#include "cuda/kernels.h"
#include "cuda/launch.cuh"

namespace pycnn {
namespace cuda {

// out (N, OH, OW, F); bias may be null.
void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                    Activation act) {
  const ConvShape g = s;
  for_each(s.N * s.OH * s.OW * s.F, "conv2d_forward", [=] __device__(int64_t i) {
    out[i] = bodies::conv2d_forward_at(inp, weight, bias, g, act, i);
  });
}

// dz (N, OH, OW, F) scratch = dout * act'(out); then dinp (N, H, W, C) or null,
// dweight (KH, KW, C, F), dbias (F) or null, each written (not accumulated).
void conv2d_backward(float* dinp, float* dweight, float* dbias, float* dz, const float* dout, const float* inp,
                     const float* weight, const float* out, const ConvShape& s, Activation act) {
  const ConvShape g = s;
  const int64_t rows = s.N * s.OH * s.OW;
  activation_backward(dz, dout, out, rows * s.F, act);
  if (dinp)
    for_each(s.N * s.H * s.W * s.C, "conv2d_backward (dinp)", [=] __device__(int64_t i) {
      dinp[i] = bodies::conv2d_backward_input_at(dz, weight, g, i);
    });
  for_each(s.KH * s.KW * s.C * s.F, "conv2d_backward (dweight)", [=] __device__(int64_t i) {
    dweight[i] = bodies::conv2d_backward_weight_at(dz, inp, g, i);
  });
  if (dbias) {
    const int64_t F = s.F;
    for_each(F, "conv2d_backward (dbias)", [=] __device__(int64_t f) {
      dbias[f] = bodies::column_sum_at(dz, rows, F, f);
    });
  }
}

}  // namespace cuda
}  // namespace pycnn
