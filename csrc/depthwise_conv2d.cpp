// Depthwise conv2d forward and backward (depthwise_conv2d.h), and the network-step ops of
// DepthwiseConv2D and SeparableConv2D (depthwise, then a 1x1 conv2d with bias + activation).
//
// Forward, the weight gradient and the input gradient each run over rows in parallel:
//   forward:  out row (n, oh) = bias + sum over its taps of x * w       (writes disjoint rows)
//   dweight:  per-thread partial sums over output rows (n, oh), reduced at the end (static
//             schedule: the same summation order on every run)
//   dinp:     gathered per input row (n, ih) from the output pixels that read it, so threads
//             write disjoint rows and nothing is scattered
// The row kernels live in depthwise_conv2d_impl.h, compiled for AVX-512, AVX2+FMA and the
// baseline and picked at run time from active_isa(), as conv2d_direct.cpp does.
#include "depthwise_conv2d.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "activation.h"
#include "op_registry.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

#define PYCNN_DW_NS dw_portable
#include "depthwise_conv2d_impl.h"
#undef PYCNN_DW_NS

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define PYCNN_DW_NS dw_avx2
#include "depthwise_conv2d_impl.h"
#undef PYCNN_DW_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f")
#define PYCNN_DW_NS dw_avx512
#include "depthwise_conv2d_impl.h"
#undef PYCNN_DW_NS
#pragma GCC pop_options
#define PYCNN_DW_HAVE_X86 1
#endif

namespace pycnn {
namespace {

struct DwKernels {
  void (*forward_row)(float*, const float*, const float*, const float*, const DepthwiseShape&, int64_t, float*);
  void (*dweight_row)(float*, float*, const float*, const float*, const DepthwiseShape&, int64_t, float*);
  void (*dinp_row)(float*, const float*, const float*, const DepthwiseShape&, int64_t, float*);
};

DwKernels dw_kernels() {
#ifdef PYCNN_DW_HAVE_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512) return {dw_avx512::forward_row, dw_avx512::dweight_row, dw_avx512::dinp_row};
  if (isa == Isa::avx2) return {dw_avx2::forward_row, dw_avx2::dweight_row, dw_avx2::dinp_row};
#endif
  return {dw_portable::forward_row, dw_portable::dweight_row, dw_portable::dinp_row};
}

// Threads for `rows` independent rows of about `work` multiply-adds each: one thread when
// the whole call is too small to pay for waking the others.
int threads_for(int64_t rows, int64_t work) {
  const int T = get_num_threads();
  if (rows * work < (1 << 15)) return 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(T, rows)));
}

}  // namespace

void depthwise_conv2d_forward(float* out, const float* inp, const float* weight, const float* bias,
                              const DepthwiseShape& d, Activation act) {
  const ConvShape& s = d.s;
  const DwKernels k = dw_kernels();
  const int64_t rows = s.N * s.OH, row_size = s.OW * s.F;
  const int T = threads_for(rows, row_size * s.KH * s.KW);
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / s.OH, oh = r % s.OH;
    float* orow = out + r * row_size;
    float* xe = scratch(slot_base() + team_thread(), static_cast<std::size_t>(s.F), kScratchCol);
    k.forward_row(orow, inp + n * s.H * s.W * s.C, weight, bias, d, oh, xe);
    apply_activation(orow, row_size, act);
  }
}

void depthwise_conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* out, const DepthwiseShape& d, Activation act) {
  const ConvShape& s = d.s;
  const DwKernels k = dw_kernels();
  const int64_t CM = s.F, rows = s.N * s.OH, row_size = s.OW * CM, taps = s.KH * s.KW;
  const int T = threads_for(rows, row_size * taps);
  // g = dout * act'(out), the pre-activation gradient (dout itself when linear).
  const float* g = dout;
  if (act != Activation::linear) {
    float* buf = scratch(slot_base(), static_cast<std::size_t>(rows * row_size), kScratchGrad);
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
#endif
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(buf + r * row_size, dout + r * row_size, sizeof(float) * row_size);
      activation_grad_inplace(buf + r * row_size, out + r * row_size, row_size, act);
    }
    g = buf;
  }
  // Per-thread partials: dweight (taps * CM) then dbias (CM), zeroed by their owner.
  const int64_t psize = taps * CM + CM;
  std::vector<float*> partial(T);
  for (int t = 0; t < T; ++t) partial[t] = scratch(slot_base() + t, static_cast<std::size_t>(psize), kScratchPartial);
#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(T) if (T > 1)
#endif
  {
    float* part = partial[team_thread()];
    float* xe = scratch(slot_base() + team_thread(), static_cast<std::size_t>(CM), kScratchCol);
    std::memset(part, 0, sizeof(float) * psize);
#ifdef PYCNN_OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      k.dweight_row(part, part + taps * CM, g + r * row_size, inp + n * s.H * s.W * s.C, d, oh, xe);
    }
  }
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && psize * T > (1 << 16))
#endif
  for (int64_t i = 0; i < taps * CM; ++i) {
    float sum = 0.f;
    for (int t = 0; t < T; ++t) sum += partial[t][i];
    dweight[i] = sum;
  }
  if (dbias)
    for (int64_t j = 0; j < CM; ++j) {
      float sum = 0.f;
      for (int t = 0; t < T; ++t) sum += partial[t][taps * CM + j];
      dbias[j] = sum;
    }
  if (!dinp) return;
  const int64_t in_rows = s.N * s.H;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
#endif
  for (int64_t r = 0; r < in_rows; ++r) {
    const int64_t n = r / s.H, ih = r % s.H;
    float* prod = scratch(slot_base() + team_thread(), static_cast<std::size_t>(CM), kScratchCol);
    k.dinp_row(dinp + r * s.W * s.C, g + n * s.OH * row_size, weight, d, ih, prod);
  }
}

// ---------------------------------------------------------------------------- the ops

namespace {

void parse_depthwise(DepthwiseGeom& g, const OpArgs& args, const std::vector<int64_t>& w) {
  expect_input_rank(args, 3, "(H, W, C)");
  const std::vector<int64_t>& in = args.in_shapes[0];
  if (w.size() != 4 || w[2] != in[2] || w[0] < 1 || w[1] < 1 || w[3] < 1)
    args.fail("has a depthwise kernel of shape " + shape_str(w) + " that does not fit its input of shape " +
              dims_str(in) + ".");
  const std::vector<int64_t> strides = window_pair(args, "strides");
  const std::vector<int64_t> dilation = window_pair(args, "dilation_rate");
  ConvShape& c = g.d.s;
  c.N = 1; c.H = in[0]; c.W = in[1]; c.C = in[2]; c.F = in[2] * w[3]; c.KH = w[0]; c.KW = w[1];
  c.SH = strides[0]; c.SW = strides[1];
  g.d.M = w[3]; g.d.DH = dilation[0]; g.d.DW = dilation[1];
  const bool same = padding_is_same(args);
  int64_t after;
  if (!window_output_size(c.H, (c.KH - 1) * g.d.DH + 1, c.SH, same, &c.OH, &c.PT, &after) ||
      !window_output_size(c.W, (c.KW - 1) * g.d.DW + 1, c.SW, same, &c.OW, &c.PL, &after))
    args.fail("computed output size would be zero or negative for input shape " + dims_str(in) + ".");
}

DepthwiseShape depthwise_of(const DepthwiseGeom& g, int64_t nb) {
  DepthwiseShape d = g.d;
  d.s.N = nb;
  return d;
}

const std::vector<AttrDef> kWindowAttrs = {{"strides", AttrType::Ints, std::vector<int64_t>{1, 1}},
                                           {"padding", AttrType::Str, std::string("valid")},
                                           {"dilation_rate", AttrType::Ints, std::vector<int64_t>{1, 1}},
                                           {"activation", AttrType::Str, std::string("linear")}};

// depthwise_conv2d: params (depthwise kernel (KH, KW, C, M), bias (C*M) or absent);
// input (H, W, C) -> (OH, OW, C*M).
std::vector<int64_t> depthwise_parse(Node& node, const OpArgs& args) {
  DepthwiseGeom& g = node.geom<DepthwiseGeom>();
  parse_depthwise(g, args, args.param_shapes[0]);
  const ConvShape& c = g.d.s;
  expect_param_shape(args, 1, {c.F});
  const std::vector<int64_t> out{c.OH, c.OW, c.F};
  g.act = parse_activation(args, out);
  node.aux_size = g.act.aux_floats(size_of(out));
  return out;
}

const float* depthwise_forward(const Node& node, const float* const* in, float* out, float* aux, int64_t nb) {
  const DepthwiseGeom& g = node.geom<DepthwiseGeom>();
  depthwise_conv2d_forward(out, in[0], node.param[0], node.param[1], depthwise_of(g, nb), g.act.kernel());
  g.act.forward(out, aux, nb * node.out_size);
  return out;
}

void depthwise_backward(const Node& node, float* const* dinp, float* const* dparam, const float* dout,
                        const float* const* in, const float* out, const float* aux, int64_t nb) {
  const DepthwiseGeom& g = node.geom<DepthwiseGeom>();
  const float* dz = g.act.backward(dout, out, aux, nb * node.out_size);
  depthwise_conv2d_backward(dinp[0], dparam[0], node.param[1] ? dparam[1] : nullptr, dz, in[0], node.param[0], out,
                            depthwise_of(g, nb), g.act.kernel());
}

// separable_conv2d: params (depthwise kernel (KH, KW, C, M), pointwise kernel (1, 1, C*M, F),
// bias (F) or absent); input (H, W, C) -> (OH, OW, F). The depthwise output (OH, OW, C*M) is
// kept in the node's aux cells for backward (then the activation's); the activation applies
// after the pointwise conv.
ConvShape pointwise_of(const DepthwiseGeom& g, int64_t nb) {
  const ConvShape& c = g.d.s;
  ConvShape p{};
  p.N = nb; p.H = c.OH; p.W = c.OW; p.C = c.F; p.F = g.F;
  p.KH = p.KW = p.SH = p.SW = 1;
  p.OH = c.OH; p.OW = c.OW;
  return p;
}

int64_t mid_size(const DepthwiseGeom& g) { return g.d.s.OH * g.d.s.OW * g.d.s.F; }

std::vector<int64_t> separable_parse(Node& node, const OpArgs& args) {
  DepthwiseGeom& g = node.geom<DepthwiseGeom>();
  parse_depthwise(g, args, args.param_shapes[0]);
  const ConvShape& c = g.d.s;
  const std::vector<int64_t>& p = args.param_shapes[1];
  if (p.size() != 4 || p[0] != 1 || p[1] != 1 || p[2] != c.F || p[3] < 1)
    args.fail("expected a pointwise kernel of shape (1, 1, " + std::to_string(c.F) + ", filters). Received: " +
              shape_str(p) + ".");
  expect_param_shape(args, 2, {p[3]});
  g.F = p[3];
  const std::vector<int64_t> out{c.OH, c.OW, g.F};
  g.act = parse_activation(args, out);
  node.aux_size = mid_size(g) + g.act.aux_floats(size_of(out));
  return out;
}

const float* separable_forward(const Node& node, const float* const* in, float* out, float* aux, int64_t nb) {
  const DepthwiseGeom& g = node.geom<DepthwiseGeom>();
  float* mid = aux;
  depthwise_conv2d_forward(mid, in[0], node.param[0], nullptr, depthwise_of(g, nb), Activation::linear);
  conv2d_forward(out, mid, node.param[1], node.param[2], pointwise_of(g, nb), g.act.kernel());
  g.act.forward(out, aux + nb * mid_size(g), nb * node.out_size);
  return out;
}

void separable_backward(const Node& node, float* const* dinp, float* const* dparam, const float* dout,
                        const float* const* in, const float* out, const float* aux, int64_t nb) {
  const DepthwiseGeom& g = node.geom<DepthwiseGeom>();
  const float* mid = aux;
  const float* dz = g.act.backward(dout, out, aux + nb * mid_size(g), nb * node.out_size);
  float* dmid = scratch(slot_base(), static_cast<std::size_t>(nb * mid_size(g)), kScratchSeparable);
  conv2d_backward(dmid, dparam[1], node.param[2] ? dparam[2] : nullptr, dz, mid, node.param[1], out,
                  pointwise_of(g, nb), g.act.kernel());
  depthwise_conv2d_backward(dinp[0], dparam[0], nullptr, dmid, in[0], node.param[0], nullptr, depthwise_of(g, nb),
                            Activation::linear);
}

const OpDef depthwise_conv2d_op = {
    "depthwise_conv2d", "depthwise 2-D convolution: (H, W, C) -> (OH, OW, C * M), kernel (KH, KW, C, M)", 1,
    {{"kernel"}, {"bias", true}}, kWindowAttrs, depthwise_parse, depthwise_forward, depthwise_backward};

const OpDef separable_conv2d_op = {
    "separable_conv2d",
    "depthwise then 1x1 convolution: (H, W, C) -> (OH, OW, F), kernels (KH, KW, C, M) and (1, 1, C * M, F)", 1,
    {{"depthwise_kernel"}, {"pointwise_kernel"}, {"bias", true}}, kWindowAttrs, separable_parse, separable_forward,
    separable_backward};

PYCNN_REGISTER_OP(depthwise_conv2d_op);
PYCNN_REGISTER_OP(separable_conv2d_op);

}  // namespace
}  // namespace pycnn
