// Dense (fully connected) forward and backward on the shared GEMM, with the activation
// fused into the epilogue (forward) and the prologue (backward).
//   forward:  out = act(inp @ weight + bias)
//   backward: g = dout * act'(out); dweight = inp^T @ g; dbias = sum_rows g; dinp = g @ weight^T
#include "dense.h"

#include <algorithm>
#include <cstring>

#include "gemm.h"

namespace pycnn {

void dense_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IN,
                   int64_t OUT, Activation act) {
  sgemm(N, OUT, IN, inp, IN, 1, weight, OUT, 1, out, OUT, 1, false, true);
  if (bias)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OUT; ++o) out[n * OUT + o] += bias[o];
  apply_activation(out, N * OUT, act);
}

void dense_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                    const float* weight, const float* out, int64_t N, int64_t IN, int64_t OUT, Activation act) {
  const float* g = dout;
  if (act != Activation::linear) {
    float* buf = scratch(slot_base(), static_cast<std::size_t>(N * OUT), kScratchPadGrad);
    std::memcpy(buf, dout, sizeof(float) * N * OUT);
    activation_grad_inplace(buf, out, N * OUT, act);
    g = buf;
  }
  // dweight (IN x OUT) = inp^T @ g: inp^T element (i, n) at inp[n * IN + i].
  sgemm(IN, OUT, N, inp, 1, IN, g, OUT, 1, dweight, OUT, 1, false, true);
  if (dbias) {
    std::fill(dbias, dbias + OUT, 0.f);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OUT; ++o) dbias[o] += g[n * OUT + o];
  }
  // dinp (N x IN) = g @ weight^T: weight^T element (o, i) at weight[i * OUT + o].
  if (dinp) sgemm(N, IN, OUT, g, OUT, 1, weight, 1, OUT, dinp, IN, 1, false, true);
}

}  // namespace pycnn
