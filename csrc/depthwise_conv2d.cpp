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

#include "network.h"

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

int thread_id() {
#ifdef PYCNN_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
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
    float* xe = scratch(slot_base() + thread_id(), static_cast<std::size_t>(s.F), kScratchCol);
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
    float* part = partial[thread_id()];
    float* xe = scratch(slot_base() + thread_id(), static_cast<std::size_t>(CM), kScratchCol);
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
    float* prod = scratch(slot_base() + thread_id(), static_cast<std::size_t>(CM), kScratchCol);
    k.dinp_row(dinp + r * s.W * s.C, g + n * s.OH * row_size, weight, d, ih, prod);
  }
}

// ---------------------------------------------------------------------------- network step

namespace {

// The depthwise geometry of a node: input (H, W, C), depthwise weight (KH, KW, C, M), ints
// (SH, SW, DH, DW), padding; node.conv gets it with F = C * M, dims[0..2] = M, DH, DW.
void parse_depthwise(NetNode& node, const NetArgs& args, const std::vector<int64_t>& w) {
  const std::vector<int64_t>& in = args.in_shapes[0];
  if (in.size() != 3) net_error(args, "needs (H, W, C) input. Received: " + net_dims_str(in) + ".");
  if (!args.params[0] || w.size() != 4 || w[2] != in[2] || w[0] < 1 || w[1] < 1 || w[3] < 1)
    net_error(args, "has a depthwise kernel of shape " + net_shape_str(w) +
                        " that does not fit its input of shape " + net_dims_str(in) + ".");
  const int64_t DH = args.ints[2], DW = args.ints[3];
  if (args.ints[0] < 1 || args.ints[1] < 1 || DH < 1 || DW < 1)
    net_error(args, "expected positive strides and dilation_rate.");
  ConvShape& c = node.conv;
  c.N = 1; c.H = in[0]; c.W = in[1]; c.C = in[2]; c.F = in[2] * w[3]; c.KH = w[0]; c.KW = w[1];
  c.SH = args.ints[0]; c.SW = args.ints[1];
  const bool same = net_padding_same(args, args.strs[0]);
  int64_t after;
  if (!window_output_size(c.H, (c.KH - 1) * DH + 1, c.SH, same, &c.OH, &c.PT, &after) ||
      !window_output_size(c.W, (c.KW - 1) * DW + 1, c.SW, same, &c.OW, &c.PL, &after))
    net_error(args, "computed output size would be zero or negative for input shape " + net_dims_str(in) + ".");
  node.dims[0] = w[3]; node.dims[1] = DH; node.dims[2] = DW;
  node.act = net_activation(args, args.strs[1]);
}

DepthwiseShape depthwise_of(const NetNode& node, int64_t nb) {
  DepthwiseShape d{node.conv, node.dims[0], node.dims[1], node.dims[2]};
  d.s.N = nb;
  return d;
}

// "depthwise_conv2d": params (depthwise kernel (KH, KW, C, M), bias (C*M) or None), ints
// (SH, SW, DH, DW), strs (padding, activation); input (H, W, C) -> (OH, OW, C*M).
std::vector<int64_t> depthwise_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 2, 4, 2);
  parse_depthwise(node, args, args.param_shapes[0]);
  const int64_t CM = node.conv.F;
  if (args.params[1] && (args.param_shapes[1].size() != 1 || args.param_shapes[1][0] != CM))
    net_error(args, "expected a bias of shape (" + std::to_string(CM) + ",).");
  return {node.conv.OH, node.conv.OW, CM};
}

const float* depthwise_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  depthwise_conv2d_forward(out, in[0], node.param[0], node.param[1], depthwise_of(node, nb), node.act);
  return out;
}

void depthwise_net_backward(const NetNode& node, float* const* dinp, float* const* dparam, const float* dout,
                            const float* const* in, const float* out, const int32_t*, int64_t nb) {
  depthwise_conv2d_backward(dinp[0], dparam[0], node.param[1] ? dparam[1] : nullptr, dout, in[0], node.param[0], out,
                            depthwise_of(node, nb), node.act);
}

// "separable_conv2d": params (depthwise kernel (KH, KW, C, M), pointwise kernel
// (1, 1, C*M, F), bias (F) or None), ints (SH, SW, DH, DW), strs (padding, activation);
// input (H, W, C) -> (OH, OW, F). The depthwise output (OH, OW, C*M) is kept in the node's
// aux cells (float-sized) for backward; the activation applies after the pointwise conv.
ConvShape pointwise_of(const NetNode& node, int64_t nb) {
  const ConvShape& c = node.conv;
  ConvShape p{};
  p.N = nb; p.H = c.OH; p.W = c.OW; p.C = c.F; p.F = node.dims[3];
  p.KH = p.KW = p.SH = p.SW = 1;
  p.OH = c.OH; p.OW = c.OW;
  return p;
}

std::vector<int64_t> separable_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 3, 4, 2);
  parse_depthwise(node, args, args.param_shapes[0]);
  const int64_t CM = node.conv.F;
  const std::vector<int64_t>& p = args.param_shapes[1];
  if (!args.params[1] || p.size() != 4 || p[0] != 1 || p[1] != 1 || p[2] != CM || p[3] < 1)
    net_error(args, "expected a pointwise kernel of shape (1, 1, " + std::to_string(CM) +
                        ", filters). Received: " + net_shape_str(p) + ".");
  if (args.params[2] && (args.param_shapes[2].size() != 1 || args.param_shapes[2][0] != p[3]))
    net_error(args, "expected a bias of shape (" + std::to_string(p[3]) + ",).");
  node.dims[3] = p[3];
  node.aux_size = node.conv.OH * node.conv.OW * CM;
  return {node.conv.OH, node.conv.OW, p[3]};
}

const float* separable_net_forward(const NetNode& node, const float* const* in, float* out, int32_t* aux,
                                   int64_t nb) {
  float* mid = reinterpret_cast<float*>(aux);
  depthwise_conv2d_forward(mid, in[0], node.param[0], nullptr, depthwise_of(node, nb), Activation::linear);
  conv2d_forward(out, mid, node.param[1], node.param[2], pointwise_of(node, nb), node.act);
  return out;
}

void separable_net_backward(const NetNode& node, float* const* dinp, float* const* dparam, const float* dout,
                            const float* const* in, const float* out, const int32_t* aux, int64_t nb) {
  const float* mid = reinterpret_cast<const float*>(aux);
  float* dmid = scratch(slot_base(), static_cast<std::size_t>(nb * node.aux_size), kScratchSeparable);
  conv2d_backward(dmid, dparam[1], node.param[2] ? dparam[2] : nullptr, dout, mid, node.param[1], out,
                  pointwise_of(node, nb), node.act);
  depthwise_conv2d_backward(dinp[0], dparam[0], nullptr, dmid, in[0], node.param[0], nullptr,
                            depthwise_of(node, nb), Activation::linear);
}

}  // namespace

extern const NetOp depthwise_conv2d_net_op = {"depthwise_conv2d", depthwise_net_parse, depthwise_net_forward,
                                              depthwise_net_backward};
extern const NetOp separable_conv2d_net_op = {"separable_conv2d", separable_net_parse, separable_net_forward,
                                              separable_net_backward};

}  // namespace pycnn
