// conv2d forward and backward as im2col + GEMM over groups of samples: the algorithm for every
// layer that the two direct paths (conv2d_planar.cpp, conv2d_overf.cpp) do not take; the
// choice is made in conv2d.cpp. Also col2im, which the over-F path uses for strided input
// gradients.
//
// Layout: NHWC input, (KH, KW, C, F) weight, NHWC output, as in Keras. One im2col row per
// output pixel holds the KH*KW*C window in (kh, kw, c) order, which is exactly the row order
// of the weight viewed as a (KH*KW*C, F) matrix, so no layout conversion is needed anywhere:
//   forward:  out[rows, F]   = col[rows, K] @ weight[K, F]           (+ bias, activation)
//   backward: dweight[K, F]  = col^T @ g,   dcol = g @ weight^T,  dinp = col2im(dcol)
// where K = KH*KW*C and g = dout * act'(out). A 1x1 stride-1 unpadded layer uses the input
// itself as col.
//
// Parallelism (the Grouping of conv2d.cpp): samples are cut into groups of `nb` (so that a
// group has >= ~256 output rows); when there are at least as many groups as threads, each
// thread handles whole groups (im2col, GEMM and epilogue stay in its cache; weight gradients
// go to per-thread partial sums reduced at the end). There, and on one thread, im2col is
// written straight into the GEMM's packed panels and the weights are packed once, unless the
// layer is 1x1 or the GEMM shape packs badly (gemm.h efficiency < 0.7).
// Otherwise (batch smaller than the thread count) groups run one after another and the GEMMs
// themselves run in parallel.
#include "conv2d_internal.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"

namespace pycnn {
namespace {

bool is_pointwise(const ConvShape& s) {
  return s.KH == 1 && s.KW == 1 && s.SH == 1 && s.SW == 1 && s.PT == 0 && s.PL == 0;
}

// col (nb * OH * OW, KH * KW * C) from inp (nb, H, W, C); zeros where the window leaves the image.
void im2col(float* col, const float* inp, int64_t nb, const ConvShape& s) {
  const int64_t K = s.KH * s.KW * s.C;
  for (int64_t n = 0; n < nb; ++n) {
    const float* img = inp + n * s.H * s.W * s.C;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        float* row = col + ((n * s.OH + oh) * s.OW + ow) * K;
        const int64_t iw0 = ow * s.SW - s.PL;
        // kw range whose iw is inside the image; the window row is contiguous there.
        const int64_t kw_lo = std::max<int64_t>(0, -iw0), kw_hi = std::min<int64_t>(s.KW, s.W - iw0);
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.SH + kh - s.PT;
          float* dst = row + kh * s.KW * s.C;
          if (ih < 0 || ih >= s.H || kw_lo >= kw_hi) {
            std::memset(dst, 0, sizeof(float) * s.KW * s.C);
            continue;
          }
          if (kw_lo > 0) std::memset(dst, 0, sizeof(float) * kw_lo * s.C);
          std::memcpy(dst + kw_lo * s.C, img + (ih * s.W + iw0 + kw_lo) * s.C, sizeof(float) * (kw_hi - kw_lo) * s.C);
          if (kw_hi < s.KW) std::memset(dst + kw_hi * s.C, 0, sizeof(float) * (s.KW - kw_hi) * s.C);
        }
      }
    }
  }
}

}  // namespace

// dinp (nb, H, W, C) = sum of dcol rows scattered back to their windows (the adjoint of im2col).
void col2im(float* dinp, const float* dcol, int64_t nb, const ConvShape& s) {
  const int64_t K = s.KH * s.KW * s.C;
  std::memset(dinp, 0, sizeof(float) * nb * s.H * s.W * s.C);
  for (int64_t n = 0; n < nb; ++n) {
    float* img = dinp + n * s.H * s.W * s.C;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const float* row = dcol + ((n * s.OH + oh) * s.OW + ow) * K;
        const int64_t iw0 = ow * s.SW - s.PL;
        const int64_t kw_lo = std::max<int64_t>(0, -iw0), kw_hi = std::min<int64_t>(s.KW, s.W - iw0);
        if (kw_lo >= kw_hi) continue;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.SH + kh - s.PT;
          if (ih < 0 || ih >= s.H) continue;
          const float* src = row + (kh * s.KW + kw_lo) * s.C;
          float* dst = img + (ih * s.W + iw0 + kw_lo) * s.C;
          const int64_t len = (kw_hi - kw_lo) * s.C;
          for (int64_t i = 0; i < len; ++i) dst[i] += src[i];
        }
      }
    }
  }
}

namespace {


// Visits every (row, k) element of the im2col matrix of nb samples, row by row, calling
// put(row, k0, src, len) for each run of `len` window elements k0.. that are inside the image
// (src points at them) and put(row, k0, nullptr, len) for runs of zero padding.
template <class Put>
void for_each_window_run(const float* inp, int64_t nb, const ConvShape& s, Put put) {
  for (int64_t n = 0; n < nb; ++n) {
    const float* img = inp + n * s.H * s.W * s.C;
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t row = (n * s.OH + oh) * s.OW + ow;
        const int64_t iw0 = ow * s.SW - s.PL;
        const int64_t kw_lo = std::max<int64_t>(0, -iw0), kw_hi = std::min<int64_t>(s.KW, s.W - iw0);
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.SH + kh - s.PT;
          const int64_t k0 = kh * s.KW * s.C;
          if (ih < 0 || ih >= s.H || kw_lo >= kw_hi) {
            put(row, k0, nullptr, s.KW * s.C);
            continue;
          }
          if (kw_lo > 0) put(row, k0, nullptr, kw_lo * s.C);
          put(row, k0 + kw_lo * s.C, img + (ih * s.W + iw0 + kw_lo) * s.C, (kw_hi - kw_lo) * s.C);
          if (kw_hi < s.KW) put(row, k0 + kw_hi * s.C, nullptr, (s.KW - kw_hi) * s.C);
        }
      }
  }
}

// im2col written straight into the packed-A layout of gemm.h (rows are GEMM rows): element
// (row, k) at Ap[((row / mr) * K + k) * mr + row % mr]; rows past the end are zero. Works one
// sliver of mr rows at a time so that the writes are sequential; `zeros` holds C zeros and
// stands in for window positions outside the image.
void im2col_packed_rows(float* Ap, const float* inp, int64_t nb, const ConvShape& s, int64_t mr,
                        const float* zeros) {
  const int64_t K = s.KH * s.KW * s.C, rows = nb * s.OH * s.OW, C = s.C;
  const float* img[16];
  int64_t ih0[16], iw0[16];
  const float* src[16];
  for (int64_t r0 = 0; r0 < rows; r0 += mr) {
    for (int64_t j = 0; j < mr; ++j) {
      const int64_t row = r0 + j;
      if (row < rows) {
        const int64_t n = row / (s.OH * s.OW), pix = row % (s.OH * s.OW);
        img[j] = inp + n * s.H * s.W * C;
        ih0[j] = (pix / s.OW) * s.SH - s.PT;
        iw0[j] = (pix % s.OW) * s.SW - s.PL;
      } else {
        img[j] = nullptr;  // padding row of the last sliver
      }
    }
    float* dst = Ap + (r0 / mr) * K * mr;
    for (int64_t kh = 0; kh < s.KH; ++kh)
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        for (int64_t j = 0; j < mr; ++j) {
          const int64_t ih = img[j] ? ih0[j] + kh : -1, iw = img[j] ? iw0[j] + kw : -1;
          src[j] = (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) ? img[j] + (ih * s.W + iw) * C : zeros;
        }
        for (int64_t c = 0; c < C; ++c)
          for (int64_t j = 0; j < mr; ++j) dst[c * mr + j] = src[j][c];
        dst += C * mr;
      }
  }
}

// The transposed im2col (K x rows, window index as the GEMM row) in packed-A layout: element
// (k, row) at Ap[((k / mr) * rows + row) * mr + k % mr]; window indices past K are zero.
void im2col_packed_cols(float* Ap, const float* inp, int64_t nb, const ConvShape& s, int64_t mr) {
  const int64_t K = s.KH * s.KW * s.C, rows = nb * s.OH * s.OW;
  for_each_window_run(inp, nb, s, [&](int64_t row, int64_t k0, const float* src, int64_t len) {
    // The run is cut where it crosses a sliver boundary; each piece is a contiguous copy.
    int64_t lane = k0 % mr;
    float* dst = Ap + ((k0 / mr) * rows + row) * mr + lane;
    while (len > 0) {
      const int64_t piece = std::min(len, mr - lane);
      if (src) {
        for (int64_t i = 0; i < piece; ++i) dst[i] = src[i];
        src += piece;
      } else {
        for (int64_t i = 0; i < piece; ++i) dst[i] = 0.f;
      }
      len -= piece;
      dst += rows * mr - lane;
      lane = 0;
    }
  });
  const int64_t tail = K % mr;
  if (tail)
    for (int64_t row = 0; row < rows; ++row) {
      float* dst = Ap + ((K / mr) * rows + row) * mr;
      for (int64_t i = tail; i < mr; ++i) dst[i] = 0.f;
    }
}

void bias_activation(float* out, const float* bias, int64_t rows, int64_t F, Activation act) {
  if (bias)
    for (int64_t r = 0; r < rows; ++r) {
      float* o = out + r * F;
      for (int64_t f = 0; f < F; ++f) o[f] += bias[f];
    }
  apply_activation(out, rows * F, act);
}

}  // namespace

// out (N, OH, OW, F) = act(col @ weight + bias), one group of samples at a time.
void conv2d_forward_im2col(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                           Activation act, const Grouping& g) {
  const int64_t K = s.KH * s.KW * s.C, P = s.OH * s.OW;
  const bool pointwise = is_pointwise(s);
  // Usual case: threads own groups of samples; the weights are packed once and each group's
  // im2col is written straight into the GEMM's packed layout.
  const GemmShape gs = gemm_shape_for(g.nb * P, s.F);
  if ((g.outer_parallel || get_num_threads() == 1) && !pointwise && gs.efficiency >= 0.7) {
    float* wp = scratch(slot_base(), static_cast<std::size_t>(gemm_packed_b_size(gs, K, s.F)), kScratchPackedW);
    gemm_pack_b(wp, weight, s.F, 1, K, s.F, gs);
    const std::vector<float> zeros(static_cast<std::size_t>(s.C), 0.f);
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(g.threads)
#endif
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const int64_t n0 = gi * g.nb, nb = std::min(g.nb, s.N - n0), rows = nb * P;
      float* ap = scratch(slot_base() + team_thread(), static_cast<std::size_t>(gemm_packed_a_size(gs, rows, K)), kScratchPackedA);
      im2col_packed_rows(ap, inp + n0 * s.H * s.W * s.C, nb, s, gs.mr, zeros.data());
      float* o = out + n0 * P * s.F;
      gemm_packed(gs, rows, s.F, K, ap, wp, o, s.F, false);
      bias_activation(o, bias, rows, s.F, act);
    }
    return;
  }
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(g.threads) if (g.outer_parallel)
#endif
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    const int64_t n0 = gi * g.nb, nb = std::min(g.nb, s.N - n0);
    const float* img = inp + n0 * s.H * s.W * s.C;
    const float* col = img;
    if (!pointwise) {
      float* buf = scratch(slot_base() + team_thread(), static_cast<std::size_t>(nb * P * K), kScratchCol);
      im2col(buf, img, nb, s);
      col = buf;
    }
    float* o = out + n0 * P * s.F;
    sgemm(nb * P, s.F, K, col, K, 1, weight, s.F, 1, o, s.F, 1, false, !g.outer_parallel);
    bias_activation(o, bias, nb * P, s.F, act);
  }
}

// dweight = col^T @ g, dbias = column sums of g, dinp = col2im(g @ weight^T), with
// g = dout * act'(out); one group of samples at a time, as in forward.
void conv2d_backward_im2col(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const float* out, const ConvShape& s, Activation act,
                            const Grouping& g) {
  const int64_t K = s.KH * s.KW * s.C, P = s.OH * s.OW, F = s.F;
  const bool pointwise = is_pointwise(s);

  // Per-thread partial sums of dweight (K x F) and dbias (F), reduced below. Static
  // scheduling keeps the summation order, and so the result, the same from run to run.
  const int T = g.threads;
  GradPartials parts(T, K * F, F);

  // Usual case, as in forward: per-group products on packed operands, weights packed once.
  //   dweight (K x F) += col^T @ g     A = col^T written by im2col_packed_cols, B = g
  //   dcol (rows x K)  = g @ weight^T  A = g, B = weight^T packed once
  const GemmShape gs_dw = gemm_shape_for(K, F), gs_dx = gemm_shape_for(g.nb * P, K);
  if ((g.outer_parallel || get_num_threads() == 1) && !pointwise && gs_dw.efficiency >= 0.7 &&
      gs_dx.efficiency >= 0.7) {
    float* wtp = nullptr;
    if (dinp) {
      wtp = scratch(slot_base(), static_cast<std::size_t>(gemm_packed_b_size(gs_dx, F, K)), kScratchPackedW);
      gemm_pack_b(wtp, weight, 1, F, F, K, gs_dx);
    }
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T)
#endif
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const int t = team_thread();
      const int64_t n0 = gi * g.nb, nb = std::min(g.nb, s.N - n0), rows = nb * P;
      const float* gr = preactivation_grad(dout, out, n0 * P * F, rows * F, act, t);
      float* colt = scratch(slot_base() + t, static_cast<std::size_t>(gemm_packed_a_size(gs_dw, K, rows)), kScratchPackedA);
      im2col_packed_cols(colt, inp + n0 * s.H * s.W * s.C, nb, s, gs_dw.mr);
      float* gb = scratch(slot_base() + t, static_cast<std::size_t>(gemm_packed_b_size(gs_dw, rows, F)), kScratchPackedB);
      gemm_pack_b(gb, gr, F, 1, rows, F, gs_dw);
      gemm_packed(gs_dw, K, F, rows, colt, gb, parts.partial[t], F, parts.used[t]);
      add_column_sums(parts.bias_of(t), gr, rows, F);
      parts.used[t] = true;
      if (dinp) {
        float* ga =
          scratch(slot_base() + t, static_cast<std::size_t>(gemm_packed_a_size(gs_dx, rows, F)), kScratchPackedA);
        gemm_pack_a(ga, gr, F, 1, rows, F, gs_dx);
        float* dcol = scratch(slot_base() + t, static_cast<std::size_t>(rows * K), kScratchOut);
        gemm_packed(gs_dx, rows, K, F, ga, wtp, dcol, K, false);
        col2im(dinp + n0 * s.H * s.W * s.C, dcol, nb, s);
      }
    }
    parts.reduce(dweight, dbias);
    return;
  }

#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T) if (g.outer_parallel)
#endif
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    const int t = g.outer_parallel ? team_thread() : 0;
    const int64_t n0 = gi * g.nb, nb = std::min(g.nb, s.N - n0), rows = nb * P;
    const float* img = inp + n0 * s.H * s.W * s.C;
    const float* gr = preactivation_grad(dout, out, n0 * P * F, rows * F, act, team_thread());
    const float* col = img;
    if (!pointwise) {
      float* buf = scratch(slot_base() + team_thread(), static_cast<std::size_t>(rows * K), kScratchCol);
      im2col(buf, img, nb, s);
      col = buf;
    }
    // dweight += col^T @ g   (col^T is K x rows: element (k, r) at col[r * K + k])
    sgemm(K, F, rows, col, 1, K, gr, F, 1, parts.partial[t], F, 1, parts.used[t], !g.outer_parallel);
    add_column_sums(parts.bias_of(t), gr, rows, F);
    parts.used[t] = true;
    if (dinp) {
      float* di = dinp + n0 * s.H * s.W * s.C;
      // dcol = g @ weight^T   (weight^T is F x K: element (f, k) at weight[k * F + f])
      if (pointwise) {
        sgemm(rows, K, F, gr, F, 1, weight, 1, F, di, K, 1, false, !g.outer_parallel);
      } else {
        float* dcol = scratch(slot_base() + team_thread(), static_cast<std::size_t>(rows * K), kScratchOut);
        sgemm(rows, K, F, gr, F, 1, weight, 1, F, dcol, K, 1, false, !g.outer_parallel);
        col2im(di, dcol, nb, s);
      }
    }
  }

  parts.reduce(dweight, dbias);
}

}  // namespace pycnn
