// Dilated and/or grouped conv2d (conv2d_grouped.h) as a per-group im2col over the dilated
// window + the GEMM of gemm.h. For group g, with K = KH*KW*Cg:
//   col_g  (rows, K)   = the dilated windows of input channels [g*Cg, (g+1)*Cg), (kh, kw, c) order
//   W_g    (K, Fg)     = weight[:, :, :, g*Fg:(g+1)*Fg] (row stride F: no copy)
//   forward:  out[:, g*Fg:(g+1)*Fg] = col_g @ W_g              (+ bias, activation)
//   backward: dweight[..., g*Fg:]  = col_g^T @ g_g,  dcol_g = g_g @ W_g^T,  dinp += col2im_g(dcol_g)
// where g_g is the pre-activation gradient's group-g columns.
//
// Parallelism as conv2d.cpp: samples are cut into blocks of >= ~256 output rows; with at
// least as many blocks as threads each thread takes whole blocks (serial GEMMs, per-thread
// partial weight gradients reduced at the end, static schedule so results do not depend on
// timing); otherwise blocks run one after another with parallel GEMMs.
#include "conv2d_grouped.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "network.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

namespace pycnn {
namespace {

int thread_id() {
#ifdef PYCNN_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

struct Blocks {
  int64_t nb, count;
  bool outer;  // threads take whole blocks
  int threads;
};

Blocks plan_blocks(const ConvShape& s) {
  const int T = get_num_threads();
  const int64_t P = s.OH * s.OW;
  Blocks b{};
  b.nb = std::max<int64_t>(1, (256 + P - 1) / P);
  b.nb = std::min(b.nb, std::max<int64_t>(1, (s.N + T - 1) / T));
  b.count = (s.N + b.nb - 1) / b.nb;
  b.outer = T > 1 && b.count >= T;
  b.threads = b.outer ? T : 1;
  return b;
}

// col (nb * OH * OW, KH * KW * Cg) from channels [c0, c0 + Cg) of inp (nb, H, W, C); zero
// where a dilated tap leaves the image.
void im2col_group(float* col, const float* inp, int64_t nb, const ConvShape& s, const ConvDilation& d, int64_t c0,
                  int64_t Cg) {
  const int64_t K = s.KH * s.KW * Cg;
  for (int64_t n = 0; n < nb; ++n) {
    const float* img = inp + n * s.H * s.W * s.C + c0;
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        float* row = col + ((n * s.OH + oh) * s.OW + ow) * K;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.SH + kh * d.DH - s.PT;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t iw = ow * s.SW + kw * d.DW - s.PL;
            float* dst = row + (kh * s.KW + kw) * Cg;
            if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) {
              for (int64_t c = 0; c < Cg; ++c) dst[c] = 0.f;
            } else {
              const float* src = img + (ih * s.W + iw) * s.C;
              for (int64_t c = 0; c < Cg; ++c) dst[c] = src[c];
            }
          }
        }
      }
  }
}

// The adjoint of im2col_group: adds dcol's rows into channels [c0, c0 + Cg) of dinp
// (nb, H, W, C), which the caller has zeroed.
void col2im_group_add(float* dinp, const float* dcol, int64_t nb, const ConvShape& s, const ConvDilation& d,
                      int64_t c0, int64_t Cg) {
  const int64_t K = s.KH * s.KW * Cg;
  for (int64_t n = 0; n < nb; ++n) {
    float* img = dinp + n * s.H * s.W * s.C + c0;
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const float* row = dcol + ((n * s.OH + oh) * s.OW + ow) * K;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.SH + kh * d.DH - s.PT;
          if (ih < 0 || ih >= s.H) continue;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t iw = ow * s.SW + kw * d.DW - s.PL;
            if (iw < 0 || iw >= s.W) continue;
            const float* src = row + (kh * s.KW + kw) * Cg;
            float* dst = img + (ih * s.W + iw) * s.C;
            for (int64_t c = 0; c < Cg; ++c) dst[c] += src[c];
          }
        }
      }
  }
}

}  // namespace

void conv2d_grouped_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                            const ConvDilation& d, Activation act) {
  const int64_t Cg = s.C / d.G, Fg = s.F / d.G, K = s.KH * s.KW * Cg, P = s.OH * s.OW, F = s.F;
  const Blocks b = plan_blocks(s);
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(b.threads) if (b.outer)
#endif
  for (int64_t bi = 0; bi < b.count; ++bi) {
    const int64_t n0 = bi * b.nb, nb = std::min(b.nb, s.N - n0), rows = nb * P;
    float* col = scratch(slot_base() + thread_id(), static_cast<std::size_t>(rows * K), kScratchCol);
    float* o = out + n0 * P * F;
    for (int64_t g = 0; g < d.G; ++g) {
      im2col_group(col, inp + n0 * s.H * s.W * s.C, nb, s, d, g * Cg, Cg);
      sgemm(rows, Fg, K, col, K, 1, weight + g * Fg, F, 1, o + g * Fg, F, 1, false, !b.outer);
    }
    if (bias)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t f = 0; f < F; ++f) o[r * F + f] += bias[f];
    apply_activation(o, rows * F, act);
  }
}

void conv2d_grouped_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                             const float* weight, const float* out, const ConvShape& s, const ConvDilation& d,
                             Activation act) {
  const int64_t Cg = s.C / d.G, Fg = s.F / d.G, K = s.KH * s.KW * Cg, P = s.OH * s.OW, F = s.F;
  const int64_t KF = K * F;  // == dweight's size
  const Blocks b = plan_blocks(s);
  const int T = b.threads;
  // Per-thread partial dweight (KF floats) and dbias (double: a sum of N*OH*OW terms).
  std::vector<float*> partial(T);
  std::vector<char> used(T, 0);
  std::vector<double> bias_part(static_cast<std::size_t>(T * F), 0.0);
  for (int t = 0; t < T; ++t) partial[t] = scratch(slot_base() + t, static_cast<std::size_t>(KF), kScratchPartial);
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T) if (b.outer)
#endif
  for (int64_t bi = 0; bi < b.count; ++bi) {
    const int t = thread_id();
    const int slot = slot_base() + t;
    const int64_t n0 = bi * b.nb, nb = std::min(b.nb, s.N - n0), rows = nb * P;
    // g = dout * act'(out) for this block's rows
    const float* gr = dout + n0 * P * F;
    if (act != Activation::linear) {
      float* buf = scratch(slot, static_cast<std::size_t>(rows * F), kScratchGrad);
      std::memcpy(buf, gr, sizeof(float) * rows * F);
      activation_grad_inplace(buf, out + n0 * P * F, rows * F, act);
      gr = buf;
    }
    double* bp = &bias_part[static_cast<std::size_t>(t * F)];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t f = 0; f < F; ++f) bp[f] += gr[r * F + f];
    float* col = scratch(slot, static_cast<std::size_t>(rows * K), kScratchCol);
    float* dcol = dinp ? scratch(slot, static_cast<std::size_t>(rows * K), kScratchOut) : nullptr;
    float* di = dinp ? dinp + n0 * s.H * s.W * s.C : nullptr;
    if (di) std::memset(di, 0, sizeof(float) * nb * s.H * s.W * s.C);
    for (int64_t g = 0; g < d.G; ++g) {
      im2col_group(col, inp + n0 * s.H * s.W * s.C, nb, s, d, g * Cg, Cg);
      // dweight[:, g*Fg:] (K x Fg, row stride F) (+)= col^T @ g_g   (col^T: element (k, r) at col[r*K + k])
      sgemm(K, Fg, rows, col, 1, K, gr + g * Fg, F, 1, partial[t] + g * Fg, F, 1, used[t] != 0, !b.outer);
      if (di) {
        // dcol (rows x K) = g_g @ W_g^T   (W_g^T: element (f, k) at weight[k*F + g*Fg + f])
        sgemm(rows, K, Fg, gr + g * Fg, F, 1, weight + g * Fg, 1, F, dcol, K, 1, false, !b.outer);
        col2im_group_add(di, dcol, nb, s, d, g * Cg, Cg);
      }
    }
    used[t] = 1;
  }
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (KF * T > (1 << 16))
#endif
  for (int64_t i = 0; i < KF; ++i) {
    float sum = 0.f;
    for (int t = 0; t < T; ++t)
      if (used[t]) sum += partial[t][i];
    dweight[i] = sum;
  }
  if (dbias)
    for (int64_t f = 0; f < F; ++f) {
      double sum = 0.0;
      for (int t = 0; t < T; ++t) sum += bias_part[static_cast<std::size_t>(t * F + f)];
      dbias[f] = static_cast<float>(sum);
    }
}

// ---------------------------------------------------------------------------- network step

// params (weight (KH, KW, C / G, F), bias (F) or None), ints (SH, SW, DH, DW, G),
// strs (padding, activation); input (H, W, C) -> (OH, OW, F). dims[0..2] = DH, DW, G.
namespace {

std::vector<int64_t> conv2d_grouped_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 2, 5, 2);
  const std::vector<int64_t>& in = args.in_shapes[0];
  if (in.size() != 3) net_error(args, "needs (H, W, C) input. Received: " + net_dims_str(in) + ".");
  const int64_t DH = args.ints[2], DW = args.ints[3], G = args.ints[4];
  if (args.ints[0] < 1 || args.ints[1] < 1 || DH < 1 || DW < 1 || G < 1)
    net_error(args, "expected positive strides, dilation_rate and groups.");
  const std::vector<int64_t>& w = args.param_shapes[0];
  if (!args.params[0] || w.size() != 4 || in[2] % G != 0 || w[2] != in[2] / G || w[0] < 1 || w[1] < 1 || w[3] < 1 ||
      w[3] % G != 0)
    net_error(args, "has a weight of shape " + net_shape_str(w) + " that does not fit its input of shape " +
                        net_dims_str(in) + " with groups=" + std::to_string(G) + ".");
  if (args.params[1] && (args.param_shapes[1].size() != 1 || args.param_shapes[1][0] != w[3]))
    net_error(args, "expected a bias of shape (" + std::to_string(w[3]) + ",).");
  ConvShape& c = node.conv;
  c.N = 1; c.H = in[0]; c.W = in[1]; c.C = in[2]; c.F = w[3]; c.KH = w[0]; c.KW = w[1];
  c.SH = args.ints[0]; c.SW = args.ints[1];
  const bool same = net_padding_same(args, args.strs[0]);
  int64_t after;
  if (!window_output_size(c.H, (c.KH - 1) * DH + 1, c.SH, same, &c.OH, &c.PT, &after) ||
      !window_output_size(c.W, (c.KW - 1) * DW + 1, c.SW, same, &c.OW, &c.PL, &after))
    net_error(args, "computed output size would be zero or negative for input shape " + net_dims_str(in) + ".");
  node.dims[0] = DH; node.dims[1] = DW; node.dims[2] = G;
  node.act = net_activation(args, args.strs[1]);
  return {c.OH, c.OW, c.F};
}

const float* conv2d_grouped_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*,
                                        int64_t nb) {
  ConvShape s = node.conv;
  s.N = nb;
  conv2d_grouped_forward(out, in[0], node.param[0], node.param[1], s, {node.dims[0], node.dims[1], node.dims[2]},
                         node.act);
  return out;
}

void conv2d_grouped_net_backward(const NetNode& node, float* const* dinp, float* const* dparam, const float* dout,
                                 const float* const* in, const float* out, const int32_t*, int64_t nb) {
  ConvShape s = node.conv;
  s.N = nb;
  conv2d_grouped_backward(dinp[0], dparam[0], node.param[1] ? dparam[1] : nullptr, dout, in[0], node.param[0], out,
                          s, {node.dims[0], node.dims[1], node.dims[2]}, node.act);
}

}  // namespace

extern const NetOp conv2d_grouped_net_op = {"conv2d_grouped", conv2d_grouped_net_parse, conv2d_grouped_net_forward,
                                            conv2d_grouped_net_backward};

}  // namespace pycnn
