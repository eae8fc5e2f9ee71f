// conv2d forward and backward (conv2d.h): picks one of three algorithms per layer. Also
// window_output_size and the registered `conv2d` op.
//
// Layout: NHWC input, (KH, KW, C, F) weight, NHWC output, as in Keras; formulas and output
// sizes in conv2d.h. Every algorithm computes the same function (float32 round-off apart):
//   forward:  out = act(bias + inp (*) weight)
//   backward: g = dout * act'(out); dweight = sum over output pixels of window (x) g;
//             dbias = sum of g; dinp = the adjoint of the windowing applied to g @ weight^T
//
// The algorithms, the first that applies:
//   1. direct planar (conv2d_planar.cpp): stride 1, C <= 4 and OW >= 8 (use_direct), e.g. the
//      RGB input layer. im2col would blow the input up KH*KW times for very little arithmetic;
//      each sample is converted to zero-padded planar form and convolved with vectors along
//      the output width.
//   2. direct over F (conv2d_overf.cpp): F a multiple of the SIMD width (16 floats with
//      AVX-512, 8 with AVX2, 4 baseline) and threads that own whole groups of samples
//      (use_overf): no im2col; register tiles of output pixels x vectors of output channels
//      accumulate straight from the (padded) input and the weights. Measured against
//      im2col + GEMM (bench shapes, ms, 1 thread, AVX-512, a 2-core machine; forward /
//      backward with dinp):
//        64x16x16x6   k5 ->16  valid        fwd 1.25 -> 0.42   bwd 1.97 -> 1.31
//        32x22x22x32  k7 ->64  valid        fwd 16.3 -> 11.0   bwd 37.1 -> 26.2
//        32x16x16x64  k7 ->128 valid        fwd 25.2 -> 18.7   bwd 58.1 -> 45.2
//        32x10x10x128 k7 ->256 valid        fwd 17.6 -> 14.1   bwd 41.7 -> 36.7
//        64x14x14x64  k3 ->128 same         fwd 15.7 -> 13.8   bwd 33.9 -> 27.7
//        64x26x26x32  k3 ->64  valid s2     fwd 3.90 -> 2.67   bwd 8.10 -> 7.04
//        64x10x10x128 k3 ->256 valid s2     fwd 5.64 -> 5.10   bwd 12.0 -> 11.6
//      and faster or equal on every other shape tried (1x1, 4x4x256 'same', C=3 stride 2,
//      tiny maps), with 2 threads, and with AVX2 and the baseline ISA, so there is no shape
//      rule beyond the two conditions. A batch smaller than the thread count keeps the GEMM
//      path, whose GEMMs then run in parallel.
//   3. im2col + GEMM (conv2d_im2col.cpp): everything else.
//
// Parallelism (plan_groups, for 2 and 3; the planar path is parallel over samples): samples
// are cut into groups of `nb` (so that a group has >= ~256 output rows); when there are at
// least as many groups as threads, each thread handles whole groups (its working set stays
// in its cache; weight gradients go to per-thread partial sums reduced at the end).
// Otherwise (batch smaller than the thread count) groups run one after another and the
// GEMMs themselves run in parallel.
#include "conv2d.h"

#include <algorithm>
#include <string>
#include <vector>

#include "activation.h"
#include "conv2d_grouped.h"
#include "conv2d_internal.h"
#include "op_registry.h"
#include "op_geometry.h"

namespace pycnn {

bool window_output_size(int64_t in, int64_t k, int64_t s, bool same, int64_t* out, int64_t* pad_before,
                        int64_t* pad_after) {
  if (in < 1 || k < 1 || s < 1) return false;
  if (same) {
    // Written so that nothing overflows for any positive int64 sizes: (out - 1) * s < in.
    *out = in / s + (in % s != 0);
    const int64_t covered = in - (*out - 1) * s;  // in [1, s]
    const int64_t total = std::max<int64_t>(k - covered, 0);
    *pad_before = total / 2;
    *pad_after = total - *pad_before;
  } else {
    if (in < k) return false;
    *out = (in - k) / s + 1;
    *pad_before = *pad_after = 0;
  }
  return *out >= 1;
}

namespace {

// The direct planar path: stride 1, few input channels, output rows at least a vector wide.
bool use_direct(const ConvShape& s) { return s.SH == 1 && s.SW == 1 && s.C <= 4 && s.OW >= 8; }

// Groups of nb samples with >= ~256 output rows between them but no more than N / T samples;
// threads take whole groups when there are at least as many groups as threads.
Grouping plan_groups(const ConvShape& s) {
  const int T = get_num_threads();
  const int64_t P = s.OH * s.OW;
  Grouping g{};
  g.nb = std::max<int64_t>(1, (256 + P - 1) / P);
  g.nb = std::min(g.nb, std::max<int64_t>(1, (s.N + T - 1) / T));
  g.groups = (s.N + g.nb - 1) / g.nb;
  g.outer_parallel = T > 1 && g.groups >= T;
  g.threads = g.outer_parallel ? T : 1;
  return g;
}

// Whether the over-F kernels run this layer: F % vec == 0 and threads that own whole groups
// of samples (the measurements are in the file header).
bool use_overf(const ConvShape& s, const Grouping& g, const OverFKernels& k) {
  if (s.F % k.vec != 0 || use_direct(s)) return false;
  return g.outer_parallel || get_num_threads() == 1;
}

}  // namespace

void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                    Activation act) {
  if (use_direct(s)) return conv2d_forward_planar(out, inp, weight, bias, s, act);
  const Grouping g = plan_groups(s);
  const OverFKernels vk = overf_kernels(active_isa());
  if (use_overf(s, g, vk)) return conv2d_forward_overf(out, inp, weight, bias, s, act, g, vk);
  conv2d_forward_im2col(out, inp, weight, bias, s, act, g);
}

void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, const float* out, const ConvShape& s, Activation act) {
  if (use_direct(s)) return conv2d_backward_planar(dinp, dweight, dbias, dout, inp, weight, out, s, act);
  const Grouping g = plan_groups(s);
  const OverFKernels vk = overf_kernels(active_isa());
  if (use_overf(s, g, vk)) return conv2d_backward_overf(dinp, dweight, dbias, dout, inp, weight, out, s, act, g, vk);
  conv2d_backward_im2col(dinp, dweight, dbias, dout, inp, weight, out, s, act, g);
}

// ---------------------------------------------------------------------------- the conv2d op

// conv2d: params (kernel (KH, KW, C / groups, F), bias (F) or absent); attrs strides,
// padding, dilation_rate, groups, activation; input (H, W, C) -> (OH, OW, F). Dilation 1
// with one group runs the kernels above; any other runs conv2d_grouped.cpp, which rewrites
// it onto them. An activation other than relu / sigmoid / tanh runs after the kernel.
namespace {

std::vector<int64_t> conv2d_parse(Node& node, const OpArgs& args) {
  expect_input_rank(args, 3, "(H, W, C)");
  const std::vector<int64_t>& in = args.in_shapes[0];
  const std::vector<int64_t> strides = window_pair(args, "strides");
  const std::vector<int64_t> dilation = window_pair(args, "dilation_rate");
  const int64_t G = args.attrs.i("groups");
  if (G < 1) args.fail("expected groups >= 1. Received: groups=" + std::to_string(G) + ".");
  const std::vector<int64_t>& w = args.param_shapes[0];
  if (w.size() != 4 || in[2] % G != 0 || w[2] != in[2] / G || w[0] < 1 || w[1] < 1 || w[3] < 1 || w[3] % G != 0)
    args.fail("has a kernel of shape " + shape_str(w) + " that does not fit its input of shape " + dims_str(in) +
              (G > 1 ? " with groups=" + std::to_string(G) : std::string()) + ".");
  expect_param_shape(args, 1, {w[3]});
  Conv2dGeom& g = node.geom<Conv2dGeom>();
  ConvShape& c = g.s;
  c.N = 1; c.H = in[0]; c.W = in[1]; c.C = in[2]; c.F = w[3]; c.KH = w[0]; c.KW = w[1];
  c.SH = strides[0]; c.SW = strides[1];
  g.d = {dilation[0], dilation[1], G};
  g.general = dilation[0] != 1 || dilation[1] != 1 || G != 1;
  const bool same = padding_is_same(args);
  int64_t after;
  if (!window_output_size(c.H, (c.KH - 1) * g.d.DH + 1, c.SH, same, &c.OH, &c.PT, &after) ||
      !window_output_size(c.W, (c.KW - 1) * g.d.DW + 1, c.SW, same, &c.OW, &c.PL, &after))
    args.fail("computed output size would be zero or negative for input shape " + dims_str(in) + ".");
  const std::vector<int64_t> out{c.OH, c.OW, c.F};
  g.act = parse_activation(args, out);
  node.aux_size = g.act.aux_floats(size_of(out));
  return out;
}

const float* conv2d_op_forward(const Node& node, const float* const* in, float* out, float* aux, int64_t nb) {
  const Conv2dGeom& g = node.geom<Conv2dGeom>();
  ConvShape s = g.s;
  s.N = nb;
  if (g.general)
    conv2d_grouped_forward(out, in[0], node.param[0], node.param[1], s, g.d, g.act.kernel());
  else
    conv2d_forward(out, in[0], node.param[0], node.param[1], s, g.act.kernel());
  g.act.forward(out, aux, nb * node.out_size);
  return out;
}

void conv2d_op_backward(const Node& node, float* const* dinp, float* const* dparam, const float* dout,
                        const float* const* in, const float* out, const float* aux, int64_t nb) {
  const Conv2dGeom& g = node.geom<Conv2dGeom>();
  ConvShape s = g.s;
  s.N = nb;
  const float* dz = g.act.backward(dout, out, aux, nb * node.out_size);
  float* dbias = node.param[1] ? dparam[1] : nullptr;
  if (g.general)
    conv2d_grouped_backward(dinp[0], dparam[0], dbias, dz, in[0], node.param[0], out, s, g.d, g.act.kernel());
  else
    conv2d_backward(dinp[0], dparam[0], dbias, dz, in[0], node.param[0], out, s, g.act.kernel());
}


const OpDef conv2d_op = {
    "conv2d", "2-D convolution, NHWC: (H, W, C) -> (OH, OW, F), kernel (KH, KW, C / groups, F)", 1,
    {{"kernel"}, {"bias", true}},
    {{"strides", AttrType::Ints, std::vector<int64_t>{1, 1}},
     {"padding", AttrType::Str, std::string("valid")},
     {"dilation_rate", AttrType::Ints, std::vector<int64_t>{1, 1}},
     {"groups", AttrType::Int, int64_t{1}},
     {"activation", AttrType::Str, std::string("linear")}},
    conv2d_parse, conv2d_op_forward, conv2d_op_backward};

PYCNN_REGISTER_OP(conv2d_op);

}  // namespace
}  // namespace pycnn
