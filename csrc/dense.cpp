// Dense (fully connected) forward and backward on the shared GEMM, with the activation
// fused into the epilogue (forward) and the prologue (backward).
//   forward:  out = act(inp @ weight + bias)
//   backward: g = dout * act'(out); dweight = inp^T @ g; dbias = sum_rows g; dinp = g @ weight^T
#include "dense.h"
#include "activation.h"
#include "op_registry.h"
#include "op_geometry.h"

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

// ---------------------------------------------------------------------------- the dense op

// dense: params (kernel (IN, OUT), bias (OUT) or absent), attrs activation; input (..., IN)
// -> (..., OUT): every leading position of a sample is a row, as in Keras.
namespace {

std::vector<int64_t> dense_parse(Node& node, const OpArgs& args) {
  const std::vector<int64_t>& in = args.in_shapes[0];
  const std::vector<int64_t>& w = args.param_shapes[0];
  if (in.empty() || w.size() != 2 || w[0] != in.back() || w[1] < 1)
    args.fail("has a kernel of shape " + shape_str(w) + " that does not fit its input of shape " + dims_str(in) + ".");
  expect_param_shape(args, 1, {w[1]});
  DenseGeom& g = node.geom<DenseGeom>();
  g.IN = w[0];
  g.OUT = w[1];
  g.rows = size_of(in) / w[0];
  std::vector<int64_t> out = in;
  out.back() = w[1];
  g.act = parse_activation(args, out);
  node.aux_size = g.act.aux_floats(size_of(out));
  return out;
}

const float* dense_op_forward(const Node& node, const float* const* in, float* out, float* aux, int64_t nb) {
  const DenseGeom& g = node.geom<DenseGeom>();
  dense_forward(out, in[0], node.param[0], node.param[1], nb * g.rows, g.IN, g.OUT, g.act.kernel());
  g.act.forward(out, aux, nb * node.out_size);
  return out;
}

void dense_op_backward(const Node& node, float* const* dinp, float* const* dparam, const float* dout,
                       const float* const* in, const float* out, const float* aux, int64_t nb) {
  const DenseGeom& g = node.geom<DenseGeom>();
  const float* dz = g.act.backward(dout, out, aux, nb * node.out_size);
  dense_backward(dinp[0], dparam[0], node.param[1] ? dparam[1] : nullptr, dz, in[0], node.param[0], out,
                 nb * g.rows, g.IN, g.OUT, g.act.kernel());
}


const OpDef dense_op = {"dense", "x @ kernel + bias over the last axis: (..., IN) -> (..., OUT)", 1,
                        {{"kernel"}, {"bias", true}},
                        {{"activation", AttrType::Str, std::string("linear")}},
                        dense_parse, dense_op_forward, dense_op_backward};

PYCNN_REGISTER_OP(dense_op);

}  // namespace
}  // namespace pycnn
