// conv2d forward and backward as a direct convolution on NHWC vectorised over the output
// channels ("over F"): the algorithm for layers whose F is a multiple of the SIMD width (16
// floats with AVX-512, 8 with AVX2, 4 baseline) when threads own whole groups of samples; the
// choice, and the measurements behind it, are in conv2d.cpp.
//
// Layout: the API's NHWC input, (KH, KW, C, F) weight and NHWC output (conv2d.h); no im2col.
// The kernels (conv2d_vf_impl.h, layouts there; compiled per instruction set in
// conv2d_direct.cpp, picked by overf_kernels(active_isa()) in conv2d.cpp) keep register tiles
// of output pixels x vectors of output channels and accumulate straight from the input
// (zero-padded here when a window leaves the image) and from the weights (their F columns
// channel-blocked here). With x the padded input:
//   forward:  out[n, oh, ow, f] = act(bias[f] + sum_{kh,kw,c} x[n, oh*SH + kh, ow*SW + kw, c] * w[kh, kw, c, f])
//   backward: g = dout * act'(out);
//             dweight[kh, kw, c, f] = sum_{n,oh,ow} x[n, oh*SH + kh, ow*SW + kw, c] * g[n, oh, ow, f]
//             dinp, stride 1 (use_overf_dinp): the forward kernel over g zero-padded by
//                   (KH - 1 - PT, KW - 1 - PL) with the rotated kernel
//                   wrot[kh][kw][f][c] = w[KH-1-kh][KW-1-kw][c][f] (for C an odd multiple
//                   of half a vector, the pixel-pair kernel: 64 -> 24 channels with AVX-512);
//             dinp, otherwise: dcol = g @ weight^T on packed operands (gemm.h) and col2im
//                   (conv2d_im2col.cpp).
//
// Parallelism: threads take whole groups of samples (the Grouping of conv2d.cpp); weight
// gradients go to per-thread partial sums (conv2d_partials.h) reduced at the end.
#include "conv2d_internal.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "gemm.h"

namespace pycnn {
namespace {

// Whether the over-F path computes dinp directly (forward over the padded gradient): needs
// stride 1 and C % vec == 0, and output rows not much narrower than the input, since pixel
// tiles then read mostly padding (32x10x10x128 k7 ->256 'valid', OW = 4: 33 ms direct vs 23 ms
// through GEMM + col2im; 32x16x16x64 k7, OW = 10: 25 ms vs 34 ms).
// C an odd multiple of half a vector (24 with AVX-512) runs the pixel-pair kernel instead.
bool use_overf_dinp(const ConvShape& s, const OverFKernels& k) {
  return s.SH == 1 && s.SW == 1 && (s.C % k.vec == 0 || k.pairs_fit(s.C)) && 2 * s.OW >= s.W;
}

// dst in the pixel-pair kernel's layout (conv2d_vf_impl.h): each of `rows` rows of C floats
// becomes 2C floats, the row twice (one copy per pixel of the pair).
void pair_layout(float* dst, const float* src, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * 2 * C, src + r * C, sizeof(float) * C);
    std::memcpy(dst + r * 2 * C + C, src + r * C, sizeof(float) * C);
  }
}

// dst (nb, Hp, Wp, C) = src (nb, H, W, C) placed at (top, left), zeros around it; rows and
// columns of src beyond Hp / Wp (never read by a window) are dropped.
void pad_nhwc(float* dst, const float* src, int64_t nb, int64_t H, int64_t W, int64_t C, int64_t Hp, int64_t Wp,
              int64_t top, int64_t left) {
  const int64_t cols = std::min(W, Wp - left);
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t hp = 0; hp < Hp; ++hp) {
      float* d = dst + (n * Hp + hp) * Wp * C;
      const int64_t ih = hp - top;
      if (ih < 0 || ih >= H) {
        std::memset(d, 0, sizeof(float) * Wp * C);
        continue;
      }
      std::memset(d, 0, sizeof(float) * left * C);
      std::memcpy(d + left * C, src + (n * H + ih) * W * C, sizeof(float) * cols * C);
      std::memset(d + (left + cols) * C, 0, sizeof(float) * (Wp - left - cols) * C);
    }
}

// dst = src (rows, F) channel-blocked for the over-F kernels (conv2d_vf_impl.h): block f0 of
// width fw = min(fblock, F - f0) is stored whole at dst + rows * f0, row stride fw (dst is
// 64-byte aligned scratch). Returns src itself when it is a single block already aligned to
// 64 bytes: vector loads across cache lines cost the forward 15% (256x15x15x64 k3 -> 64: 10.5
// ms with NumPy's 16-byte aligned weights, 8.9 ms aligned).
const float* channel_blocked(float* dst, const float* src, int64_t rows, int64_t F, int64_t fblock) {
  if (F <= fblock && reinterpret_cast<std::uintptr_t>(src) % 64 == 0) return src;
  for (int64_t f0 = 0; f0 < F; f0 += fblock) {
    const int64_t fw = std::min(fblock, F - f0);
    float* d = dst + rows * f0;
    for (int64_t r = 0; r < rows; ++r) std::memcpy(d + r * fw, src + r * F + f0, sizeof(float) * fw);
  }
  return dst;
}

// dst = the rotated kernel wrot[kh][kw][f][c] = w[KH-1-kh][KW-1-kw][c][f] (rows (kh, kw, f),
// columns c), channel-blocked over c in blocks of `cblock` as channel_blocked() lays them out.
// One pass in 16 x 16 tiles: a plain transpose reads w with a stride of F floats, and it and a
// second pass for the blocking took 15% of the input gradient of 256x3x3x256 k3 -> 256.
void rotated_blocked(float* dst, const float* w, const ConvShape& s, int64_t cblock) {
  const int64_t C = s.C, F = s.F, rows = s.KH * s.KW * F;
  constexpr int64_t kTile = 16;
  for (int64_t kh = 0; kh < s.KH; ++kh)
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const float* src = w + ((s.KH - 1 - kh) * s.KW + (s.KW - 1 - kw)) * C * F;
      const int64_t row0 = (kh * s.KW + kw) * F;
      for (int64_t c0 = 0; c0 < C; c0 += kTile)
        for (int64_t f0 = 0; f0 < F; f0 += kTile) {
          const int64_t c1 = std::min(C, c0 + kTile), f1 = std::min(F, f0 + kTile);
          for (int64_t c = c0; c < c1; ++c) {
            const int64_t b0 = c / cblock * cblock, cw = std::min(cblock, C - b0);
            float* d = dst + rows * b0 + row0 * cw + (c - b0);
            for (int64_t f = f0; f < f1; ++f) d[f * cw] = src[c * F + f];
          }
        }
    }
}

// The input as the over-F kernels read it: itself when every window lies inside the image
// ('valid', or 'same' without padding), else a zero-padded copy in thread t's scratch.
const float* overf_input(const float* inp, int64_t nb, const ConvShape& s, int t, VfGeom* geo) {
  const int64_t Hp = (s.OH - 1) * s.SH + s.KH, Wp = (s.OW - 1) * s.SW + s.KW;
  *geo = VfGeom{nb, s.H, s.W, s.C, s.F, s.KH, s.KW, s.SH, s.SW, s.OH, s.OW, 0, s.H, 0, s.W};
  if (s.PT == 0 && s.PL == 0 && Hp <= s.H && Wp <= s.W) return inp;
  *geo = VfGeom{nb, Hp, Wp, s.C, s.F, s.KH, s.KW, s.SH, s.SW, s.OH, s.OW, s.PT, s.PT + s.H, s.PL, s.PL + s.W};
  float* xp = scratch(slot_base() + t, static_cast<std::size_t>(nb * Hp * Wp * s.C), kScratchCol);
  pad_nhwc(xp, inp, nb, s.H, s.W, s.C, Hp, Wp, s.PT, s.PL);
  return xp;
}

}  // namespace

// out (N, OH, OW, F) = act(bias + x (*) w) by the over-F forward kernel, one group of samples
// per iteration.
void conv2d_forward_overf(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                          Activation act, const Grouping& g, const OverFKernels& k) {
  const int64_t P = s.OH * s.OW, K = s.KH * s.KW * s.C;
  const float* wb = channel_blocked(scratch(slot_base(), static_cast<std::size_t>(K * s.F), kScratchPackedW), weight,
                                    K, s.F, k.fblock);
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(g.threads)
#endif
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    const int64_t n0 = gi * g.nb, nb = std::min(g.nb, s.N - n0);
    VfGeom geo;
    const float* x = overf_input(inp + n0 * s.H * s.W * s.C, nb, s, team_thread(), &geo);
    float* o = out + n0 * P * s.F;
    k.forward(o, x, wb, bias, geo);
    apply_activation(o, nb * P * s.F, act);
  }
}

// Weight gradient by the over-F kernel. Input gradient: where use_overf_dinp, the over-F
// forward kernel applied to the zero-padded gradient with the rotated kernel (as in the
// planar direct path); otherwise dcol = g @ weight^T on packed operands and col2im, as in the
// GEMM path.
void conv2d_backward_overf(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                           const float* weight, const float* out, const ConvShape& s, Activation act,
                           const Grouping& g, const OverFKernels& k) {
  const int64_t C = s.C, F = s.F, K = s.KH * s.KW * C, P = s.OH * s.OW;
  const bool dinp_direct = dinp && use_overf_dinp(s, k);
  const float* wrotb = nullptr;
  float* wtp = nullptr;
  const GemmShape gs_dx = gemm_shape_for(g.nb * P, K);
  if (dinp_direct) {
    if (C % k.vec == 0) {
      float* wb = scratch(slot_base(), static_cast<std::size_t>(K * F), kScratchPackedW);
      rotated_blocked(wb, weight, s, k.fblock);
      wrotb = wb;
    } else {
      float* wrot = scratch(slot_base(), static_cast<std::size_t>(K * F), kScratchRotated);
      rotated_blocked(wrot, weight, s, C);
      float* wp = scratch(slot_base(), static_cast<std::size_t>(2 * K * F), kScratchPackedW);
      pair_layout(wp, wrot, s.KH * s.KW * F, C);
      wrotb = wp;
    }
  } else if (dinp) {
    wtp = scratch(slot_base(), static_cast<std::size_t>(gemm_packed_b_size(gs_dx, F, K)), kScratchPackedW);
    gemm_pack_b(wtp, weight, 1, F, F, K, gs_dx);
  }
  // The input gradient is computed over H x W with the gradient padded to (Hg, Wg), which
  // puts gradient (0, 0) at (KH - 1 - PT, KW - 1 - PL).
  const int64_t Hg = s.H + s.KH - 1, Wg = s.W + s.KW - 1;

  const int T = g.threads;
  GradPartials parts(T, K * F, F);
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T)
#endif
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    const int t = team_thread();
    const int64_t n0 = gi * g.nb, nb = std::min(g.nb, s.N - n0), rows = nb * P;
    const float* gr = preactivation_grad(dout, out, n0 * P * F, rows * F, act, t);
    VfGeom geo;
    const float* x = overf_input(inp + n0 * s.H * s.W * C, nb, s, t, &geo);
    const float* gb = channel_blocked(scratch(slot_base() + t, static_cast<std::size_t>(rows * F), kScratchPackedB), gr,
                                      rows, F, k.fblock);
    k.dweight(parts.partial[t], x, gb, geo, parts.used[t]);
    parts.used[t] = true;
    if (dbias) add_column_sums(parts.bias_of(t), gr, rows, F);
    float* di = dinp ? dinp + n0 * s.H * s.W * C : nullptr;
    if (dinp_direct) {
      float* gp = scratch(slot_base() + t, static_cast<std::size_t>(nb * Hg * Wg * F), kScratchPadGrad);
      const int64_t top = s.KH - 1 - s.PT, left = s.KW - 1 - s.PL;
      pad_nhwc(gp, gr, nb, s.OH, s.OW, F, Hg, Wg, top, left);
      const VfGeom geo_dx{nb, Hg, Wg, F, C, s.KH, s.KW, 1, 1, s.H, s.W, top, top + s.OH, left, left + s.OW};
      if (C % k.vec == 0)
        k.forward(di, gp, wrotb, nullptr, geo_dx);
      else
        k.forward_pairs(di, gp, wrotb, geo_dx);
    } else if (dinp) {
      float* ga =
          scratch(slot_base() + t, static_cast<std::size_t>(gemm_packed_a_size(gs_dx, rows, F)), kScratchPackedA);
      gemm_pack_a(ga, gr, F, 1, rows, F, gs_dx);
      float* dcol = scratch(slot_base() + t, static_cast<std::size_t>(rows * K), kScratchOut);
      gemm_packed(gs_dx, rows, K, F, ga, wtp, dcol, K, false);
      col2im(di, dcol, nb, s);
    }
  }
  parts.reduce(dweight, dbias);
}

}  // namespace pycnn
