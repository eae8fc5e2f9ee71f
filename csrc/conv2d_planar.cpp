// conv2d forward and backward as a direct convolution on planar copies: the algorithm for
// stride-1 layers with few input channels (C <= 4, OW >= 8, e.g. the RGB input layer; the
// choice is made in conv2d.cpp), where im2col would blow the input up KH*KW times for very
// little arithmetic.
//
// Layout: the API's NHWC input, (KH, KW, C, F) weight and NHWC output (conv2d.h). Each sample
// is converted here, and only here, to zero-padded planar form. The kernels
// (conv2d_direct_impl.h, compiled per instruction set in conv2d_direct.cpp, picked by
// direct_kernels(active_isa())) run vectors along the output width over the planes
// [C][OH + KH - 1][OWp + KW - 1], OWp = OW rounded up to the kernel's block; the result
// planes [F][OH][OWp] are transposed back to NHWC with bias and activation:
//   forward:  y[f][oh][ow]  = sum_{c,kh,kw} xp[c][oh + kh][ow + kw] * w[kh, kw, c, f]
//   backward: g = dout * act'(out), placed in zero-padded planes gp with g(0, 0) at
//             (KH - 1 - PT, KW - 1 - PL);
//             dweight[kh, kw, c, f] = sum_{oh,ow} xp[c][oh + kh][ow + kw] * g[f][oh][ow]
//             dinp = the forward convolution of gp with the kernel rotated by 180 degrees and
//                    its channel axes swapped, wrot[kh][kw][f][c] = w[KH-1-kh][KW-1-kw][c][f]
//
// Parallel over samples: each thread converts and convolves whole samples in its scratch;
// weight gradients go to per-thread partial sums (conv2d_partials.h) reduced at the end.
#include "conv2d_internal.h"

#include <algorithm>
#include <cstring>

namespace pycnn {
namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Geometry of the planar buffers of the direct path for one sample.
struct DirectPlan {
  DirectKernels dk;
  int64_t OWp;        // output width rounded up to the kernel's block
  int64_t x_rows, ldx;  // padded input planes [C][x_rows][ldx]
  int64_t W_p;        // input width rounded up (output width of the input-gradient convolution)
  int64_t g_rows, ldg;  // padded gradient planes [F][g_rows][ldg] for the input gradient
  int64_t g_top, g_left;  // where gradient (0, 0) sits in those planes
};

DirectPlan plan_direct(const ConvShape& s) {
  DirectPlan p{};
  p.dk = direct_kernels(active_isa());
  p.OWp = round_up(s.OW, p.dk.block);
  p.x_rows = s.OH + s.KH - 1;
  p.ldx = p.OWp + s.KW - 1;
  p.W_p = round_up(s.W, p.dk.block);
  p.g_rows = s.H + s.KH - 1;
  p.g_top = s.KH - 1 - s.PT;
  p.g_left = s.KW - 1 - s.PL;
  p.ldg = std::max(p.W_p + s.KW - 1, p.g_left + p.OWp);
  return p;
}

// xp[c][PT + ih][PL + iw] = img[ih][iw][c], zero elsewhere.
void pad_planar_input(float* xp, const float* img, const ConvShape& s, const DirectPlan& p) {
  std::memset(xp, 0, sizeof(float) * s.C * p.x_rows * p.ldx);
  for (int64_t ih = 0; ih < s.H; ++ih)
    for (int64_t iw = 0; iw < s.W; ++iw) {
      const float* px = img + (ih * s.W + iw) * s.C;
      for (int64_t c = 0; c < s.C; ++c) xp[(c * p.x_rows + s.PT + ih) * p.ldx + s.PL + iw] = px[c];
    }
}

}  // namespace

// out (N, OH, OW, F) = act(bias + convolution of each sample's planar copy), one sample per
// iteration.
void conv2d_forward_planar(float* out, const float* inp, const float* weight, const float* bias,
                           const ConvShape& s, Activation act) {
  const DirectPlan p = plan_direct(s);
  const int64_t F = s.F, P = s.OH * s.OW;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads())
#endif
  for (int64_t n = 0; n < s.N; ++n) {
    const int t = team_thread();
    float* xp = scratch(slot_base() + t, static_cast<std::size_t>(s.C * p.x_rows * p.ldx), kScratchCol);
    float* yp = scratch(slot_base() + t, static_cast<std::size_t>(F * s.OH * p.OWp), kScratchOut);
    pad_planar_input(xp, inp + n * s.H * s.W * s.C, s, p);
    p.dk.forward(yp, p.OWp, xp, p.ldx, p.x_rows, weight, s.C, F, s.KH, s.KW, s.OH, p.OWp);
    float* o = out + n * P * F;
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        float* px = o + (oh * s.OW + ow) * F;
        for (int64_t f = 0; f < F; ++f) px[f] = yp[(f * s.OH + oh) * p.OWp + ow] + (bias ? bias[f] : 0.f);
      }
    apply_activation(o, P * F, act);
  }
}

// dweight, dbias and dinp (may be null) of conv2d_forward_planar, one sample per iteration.
void conv2d_backward_planar(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const float* out, const ConvShape& s, Activation act) {
  const DirectPlan p = plan_direct(s);
  const int64_t C = s.C, F = s.F, K = s.KH * s.KW * C, P = s.OH * s.OW;
  // The input gradient is the forward convolution of the padded gradient with the kernel
  // rotated by 180 degrees and its channel axes swapped: wrot[kh][kw][f][c] = w[KH-1-kh][KW-1-kw][c][f].
  float* wrot = nullptr;
  if (dinp) {
    wrot = scratch(slot_base(), static_cast<std::size_t>(K * F), kScratchRotated);
    for (int64_t kh = 0; kh < s.KH; ++kh)
      for (int64_t kw = 0; kw < s.KW; ++kw)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t f = 0; f < F; ++f)
            wrot[((kh * s.KW + kw) * F + f) * C + c] =
                weight[(((s.KH - 1 - kh) * s.KW + (s.KW - 1 - kw)) * C + c) * F + f];
  }
  const int T = get_num_threads();
  GradPartials parts(T, K * F, F);
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T)
#endif
  for (int64_t n = 0; n < s.N; ++n) {
    const int t = team_thread();
    float* dw = parts.partial[t];
    if (!parts.used[t]) {
      std::memset(dw, 0, sizeof(float) * K * F);
      parts.used[t] = true;
    }
    float* xp = scratch(slot_base() + t, static_cast<std::size_t>(C * p.x_rows * p.ldx), kScratchCol);
    float* gp = scratch(slot_base() + t, static_cast<std::size_t>(F * p.g_rows * p.ldg), kScratchPadGrad);
    pad_planar_input(xp, inp + n * s.H * s.W * C, s, p);
    // gp[f][g_top + oh][g_left + ow] = dout * act'(out), zero elsewhere; dbias sums it.
    std::memset(gp, 0, sizeof(float) * F * p.g_rows * p.ldg);
    const float* gs = preactivation_grad(dout, out, n * P * F, P * F, act, t);
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const float* gpx = gs + (oh * s.OW + ow) * F;
        float* dst = gp + (p.g_top + oh) * p.ldg + p.g_left + ow;
        for (int64_t f = 0; f < F; ++f) dst[f * p.g_rows * p.ldg] = gpx[f];
      }
    add_column_sums(parts.bias_of(t), gs, P, F);
    p.dk.dweight(dw, xp, p.ldx, p.x_rows, gp + p.g_top * p.ldg + p.g_left, p.ldg, p.g_rows, C, F, s.KH, s.KW,
                 s.OH, p.OWp);
    if (dinp) {
      float* dxp = scratch(slot_base() + t, static_cast<std::size_t>(C * s.H * p.W_p), kScratchOut);
      p.dk.forward(dxp, p.W_p, gp, p.ldg, p.g_rows, wrot, F, C, s.KH, s.KW, s.H, p.W_p);
      float* di = dinp + n * s.H * s.W * C;
      for (int64_t ih = 0; ih < s.H; ++ih)
        for (int64_t iw = 0; iw < s.W; ++iw)
          for (int64_t c = 0; c < C; ++c) di[(ih * s.W + iw) * C + c] = dxp[(c * s.H + ih) * p.W_p + iw];
    }
  }
  parts.reduce(dweight, dbias);
}

}  // namespace pycnn
