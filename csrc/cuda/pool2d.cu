// Max and average pooling on the device, NHWC; geometry as pool2d.h. Backward gathers over
// the windows containing each input element (no atomics). Arithmetic in bodies.h.
#include "cuda/bodies.h"
#include "cuda/kernels.h"
#include "cuda/launch.cuh"

namespace pycnn {
namespace cuda {

// out, argmax (N, OH, OW, C); argmax as the CPU kernel's: (ih * W + iw) * C + c.
void maxpool2d_forward(float* out, int32_t* argmax, const float* inp, const PoolShape& s) {
  const PoolShape g = s;
  for_each(s.N * s.OH * s.OW * s.C, "maxpool2d_forward", [=] __device__(int64_t i) {
    out[i] = bodies::maxpool2d_forward_at(argmax + i, inp, g, i);
  });
}

// dinp (N, H, W, C): dout routed through argmax.
void maxpool2d_backward(float* dinp, const float* dout, const int32_t* argmax, const PoolShape& s) {
  const PoolShape g = s;
  for_each(s.N * s.H * s.W * s.C, "maxpool2d_backward", [=] __device__(int64_t i) {
    dinp[i] = bodies::maxpool2d_backward_at(dout, argmax, g, i);
  });
}

void avgpool2d_forward(float* out, const float* inp, const PoolShape& s) {
  const PoolShape g = s;
  for_each(s.N * s.OH * s.OW * s.C, "avgpool2d_forward", [=] __device__(int64_t i) {
    out[i] = bodies::avgpool2d_forward_at(inp, g, i);
  });
}

void avgpool2d_backward(float* dinp, const float* dout, const PoolShape& s) {
  const PoolShape g = s;
  for_each(s.N * s.H * s.W * s.C, "avgpool2d_backward", [=] __device__(int64_t i) {
    dinp[i] = bodies::avgpool2d_backward_at(dout, g, i);
  });
}

}  // namespace cuda
}  // namespace pycnn
