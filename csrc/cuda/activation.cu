// Element-wise activations on the device; arithmetic in bodies.h.
#include "cuda/bodies.h"
#include "cuda/kernels.h"
#include "cuda/launch.cuh"

namespace pycnn {
namespace cuda {

void activation_forward(float* out, const float* inp, int64_t n, Activation act) {
  for_each(n, "activation_forward", [=] __device__(int64_t i) { out[i] = bodies::activation_forward_at(inp[i], act); });
}

// "y = act(x)": dx = dy * act'(x), written from y.
void activation_backward(float* dinp, const float* dout, const float* out, int64_t n, Activation act) {
  for_each(n, "activation_backward", [=] __device__(int64_t i) {
    dinp[i] = bodies::activation_backward_at(dout[i], out ? out[i] : 0.f, act);
  });
}

}  // namespace cuda
}  // namespace pycnn
