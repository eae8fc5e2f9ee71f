// Dense (fully connected) forward and backward on the shared GEMM, with the activation
// fused into the epilogue (forward) and the prologue (backward).
//   forward:  out = act(inp @ weight + bias)
//   backward: g = dout * act'(out); dweight = inp^T @ g; dbias = sum_rows g; dinp = g @ weight^T
#include "dense.h"
#include "network.h"

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

// ---------------------------------------------------------------------------- network step

// params (weight (IN, OUT), bias (OUT) or None), strs (activation); input (..., IN) ->
// (..., OUT): every leading position of a sample is a row, as in Keras.
namespace {

std::vector<int64_t> dense_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 2, 0, 1);
  const std::vector<int64_t>& in = args.in_shapes[0];
  const std::vector<int64_t>& w = args.param_shapes[0];
  if (in.empty() || !args.params[0] || w.size() != 2 || w[0] != in.back() || w[1] < 1)
    net_error(args, "has a weight of shape " + net_shape_str(w) +
                        " that does not fit its input of shape " + net_dims_str(in) + ".");
  if (args.params[1] && (args.param_shapes[1].size() != 1 || args.param_shapes[1][0] != w[1]))
    net_error(args, "expected a bias of shape (" + std::to_string(w[1]) + ",).");
  node.dims[0] = w[0];                   // IN
  node.dims[1] = w[1];                   // OUT
  node.dims[2] = net_size(in) / w[0];    // rows per sample
  node.act = net_activation(args, args.strs[0]);
  std::vector<int64_t> out = in;
  out.back() = w[1];
  return out;
}

const float* dense_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  dense_forward(out, in[0], node.param[0], node.param[1], nb * node.dims[2], node.dims[0], node.dims[1], node.act);
  return out;
}

void dense_net_backward(const NetNode& node, float* const* dinp, float* const* dparam, const float* dout,
                        const float* const* in, const float* out, const int32_t*, int64_t nb) {
  dense_backward(dinp[0], dparam[0], node.param[1] ? dparam[1] : nullptr, dout, in[0], node.param[0], out,
                 nb * node.dims[2], node.dims[0], node.dims[1], node.act);
}

}  // namespace

extern const NetOp dense_net_op = {"dense", dense_net_parse, dense_net_forward, dense_net_backward};

}  // namespace pycnn
