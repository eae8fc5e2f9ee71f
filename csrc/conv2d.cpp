// conv2d forward and backward as im2col + GEMM over groups of samples.
//
// Layout: NHWC input, (KH, KW, C, F) weight, NHWC output, as in Keras. One im2col row per
// output pixel holds the KH*KW*C window in (kh, kw, c) order, which is exactly the row order
// of the weight viewed as a (KH*KW*C, F) matrix, so no layout conversion is needed anywhere:
//   forward:  out[rows, F]   = col[rows, K] @ weight[K, F]           (+ bias, activation)
//   backward: dweight[K, F]  = col^T @ g,   dcol = g @ weight^T,  dinp = col2im(dcol)
// where K = KH*KW*C and g = dout * act'(out).
//
// Stride-1 layers with few input channels (C <= 4, e.g. the RGB input layer) take a direct
// path instead (conv2d_direct_impl.h): im2col would blow the input up KH*KW times for very
// little arithmetic. It converts each sample to zero-padded planar form, convolves with
// vectors along the output width, and computes the input gradient as the forward
// convolution of the padded gradient with the rotated kernel.
//
// Layers whose F is a multiple of the SIMD width (16 floats with AVX-512) take a third, direct
// NHWC path (conv2d_vf_impl.h) when threads own whole groups of samples: no im2col; register
// tiles of output pixels x vectors of output channels accumulate straight from the (padded)
// input and the weights. It computes the weight gradient the same way, and the input
// gradient, for stride 1, as its forward over the padded gradient with the rotated kernel;
// for other strides through dcol = g @ weight^T and col2im. See use_overf for the numbers.
//
// Parallelism: samples are cut into groups of `nb` (so that a group has >= ~256 output rows);
// when there are at least as many groups as threads, each thread handles whole groups
// (im2col, GEMM and epilogue stay in its cache; weight gradients go to per-thread partial
// sums reduced at the end). Otherwise (batch smaller than the thread count) groups run one
// after another and the GEMMs themselves run in parallel.
#include "conv2d.h"
#include "conv2d_partials.h"
#include "activation.h"
#include "conv2d_grouped.h"
#include "cuda/bodies.h"
#include "op_registry.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv2d_direct.h"
#include "gemm.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

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

int thread_id() {
#ifdef PYCNN_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

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

struct Grouping {
  int64_t nb;       // samples per group
  int64_t groups;
  bool outer_parallel;  // threads take whole groups (else the GEMMs run in parallel)
  int threads;
};

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

void bias_activation(float* out, const float* bias, int64_t rows, int64_t F, Activation act) {
  if (bias)
    for (int64_t r = 0; r < rows; ++r) {
      float* o = out + r * F;
      for (int64_t f = 0; f < F; ++f) o[f] += bias[f];
    }
  apply_activation(out, rows * F, act);
}


// The gradient w.r.t. the pre-activation for `count` values starting at `offset`:
// dout itself when the activation is linear, else dout * act'(out) in thread t's scratch.
const float* preactivation_grad(const float* dout, const float* out, int64_t offset, int64_t count, Activation act,
                                int t) {
  if (act == Activation::linear) return dout + offset;
  float* g = scratch(slot_base() + t, static_cast<std::size_t>(count), kScratchGrad);
  std::memcpy(g, dout + offset, sizeof(float) * count);
  activation_grad_inplace(g, out + offset, count, act);
  return g;
}

bool use_direct(const ConvShape& s) { return s.SH == 1 && s.SW == 1 && s.C <= 4 && s.OW >= 8; }

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

void conv2d_forward_direct(float* out, const float* inp, const float* weight, const float* bias,
                           const ConvShape& s, Activation act) {
  const DirectPlan p = plan_direct(s);
  const int64_t F = s.F, P = s.OH * s.OW;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads())
#endif
  for (int64_t n = 0; n < s.N; ++n) {
    const int t = thread_id();
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

void conv2d_backward_direct(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
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
    const int t = thread_id();
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

// ---- Direct convolution over F (conv2d_vf_impl.h) ----------------------------------------

// Whether the over-F kernels run this layer. They need F % vec == 0 and threads that own
// whole groups of samples (a batch smaller than the thread count keeps the GEMM path, whose
// GEMMs run in parallel). Measured against im2col + GEMM (bench shapes, ms, 1 thread,
// AVX-512, this 2-core machine; forward / backward with dinp):
//   64x16x16x6   k5 ->16  valid        fwd 1.25 -> 0.42   bwd 1.97 -> 1.31
//   32x22x22x32  k7 ->64  valid        fwd 16.3 -> 11.0   bwd 37.1 -> 26.2
//   32x16x16x64  k7 ->128 valid        fwd 25.2 -> 18.7   bwd 58.1 -> 45.2
//   32x10x10x128 k7 ->256 valid        fwd 17.6 -> 14.1   bwd 41.7 -> 36.7
//   64x14x14x64  k3 ->128 same         fwd 15.7 -> 13.8   bwd 33.9 -> 27.7
//   64x26x26x32  k3 ->64  valid s2     fwd 3.90 -> 2.67   bwd 8.10 -> 7.04
//   64x10x10x128 k3 ->256 valid s2     fwd 5.64 -> 5.10   bwd 12.0 -> 11.6
// and faster or equal on every other shape tried (1x1, 4x4x256 'same', C=3 stride 2, tiny
// maps), with 2 threads, and with AVX2 and the baseline ISA, so there is no shape rule
// beyond the two conditions.
bool use_overf(const ConvShape& s, const Grouping& g, const OverFKernels& k) {
  if (s.F % k.vec != 0 || use_direct(s)) return false;
  return g.outer_parallel || get_num_threads() == 1;
}

// Whether the over-F path computes dinp directly (forward over the padded gradient): needs
// stride 1 and C % vec == 0, and output rows not much narrower than the input, since pixel
// tiles then read mostly padding (32x10x10x128 k7 ->256 'valid', OW = 4: 33 ms direct vs 23 ms
// through GEMM + col2im; 32x16x16x64 k7, OW = 10: 25 ms vs 34 ms).
bool use_overf_dinp(const ConvShape& s, const OverFKernels& k) {
  return s.SH == 1 && s.SW == 1 && s.C % k.vec == 0 && 2 * s.OW >= s.W;
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
// width fw = min(fblock, F - f0) is stored whole at dst + rows * f0, row stride fw. Returns
// src itself when it is a single block.
const float* channel_blocked(float* dst, const float* src, int64_t rows, int64_t F, int64_t fblock) {
  if (F <= fblock) return src;
  for (int64_t f0 = 0; f0 < F; f0 += fblock) {
    const int64_t fw = std::min(fblock, F - f0);
    float* d = dst + rows * f0;
    for (int64_t r = 0; r < rows; ++r) std::memcpy(d + r * fw, src + r * F + f0, sizeof(float) * fw);
  }
  return dst;
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
    const float* x = overf_input(inp + n0 * s.H * s.W * s.C, nb, s, thread_id(), &geo);
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
    // wrot[kh][kw][f][c] = w[KH-1-kh][KW-1-kw][c][f], then channel-blocked over c
    float* wrot = scratch(slot_base(), static_cast<std::size_t>(K * F), kScratchRotated);
    for (int64_t kh = 0; kh < s.KH; ++kh)
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const float* src = weight + ((s.KH - 1 - kh) * s.KW + (s.KW - 1 - kw)) * C * F;
        float* dst = wrot + (kh * s.KW + kw) * F * C;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t f = 0; f < F; ++f) dst[f * C + c] = src[c * F + f];
      }
    wrotb = channel_blocked(scratch(slot_base(), static_cast<std::size_t>(K * F), kScratchPackedW), wrot,
                            s.KH * s.KW * F, C, k.fblock);
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
    const int t = thread_id();
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
      k.forward(di, gp, wrotb, nullptr,
                VfGeom{nb, Hg, Wg, F, C, s.KH, s.KW, 1, 1, s.H, s.W, top, top + s.OH, left, left + s.OW});
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

}  // namespace

void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                    Activation act) {
  if (use_direct(s)) return conv2d_forward_direct(out, inp, weight, bias, s, act);
  const Grouping g = plan_groups(s);
  const OverFKernels vk = overf_kernels(active_isa());
  if (use_overf(s, g, vk)) return conv2d_forward_overf(out, inp, weight, bias, s, act, g, vk);
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
      float* ap = scratch(slot_base() + thread_id(), static_cast<std::size_t>(gemm_packed_a_size(gs, rows, K)), kScratchPackedA);
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
      float* buf = scratch(slot_base() + thread_id(), static_cast<std::size_t>(nb * P * K), kScratchCol);
      im2col(buf, img, nb, s);
      col = buf;
    }
    float* o = out + n0 * P * s.F;
    sgemm(nb * P, s.F, K, col, K, 1, weight, s.F, 1, o, s.F, 1, false, !g.outer_parallel);
    bias_activation(o, bias, nb * P, s.F, act);
  }
}

void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, const float* out, const ConvShape& s, Activation act) {
  if (use_direct(s)) return conv2d_backward_direct(dinp, dweight, dbias, dout, inp, weight, out, s, act);
  const Grouping g = plan_groups(s);
  const OverFKernels vk = overf_kernels(active_isa());
  if (use_overf(s, g, vk)) return conv2d_backward_overf(dinp, dweight, dbias, dout, inp, weight, out, s, act, g, vk);
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
      const int t = thread_id();
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
    const int t = g.outer_parallel ? thread_id() : 0;
    const int64_t n0 = gi * g.nb, nb = std::min(g.nb, s.N - n0), rows = nb * P;
    const float* img = inp + n0 * s.H * s.W * s.C;
    const float* gr = preactivation_grad(dout, out, n0 * P * F, rows * F, act, thread_id());
    const float* col = img;
    if (!pointwise) {
      float* buf = scratch(slot_base() + thread_id(), static_cast<std::size_t>(rows * K), kScratchCol);
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
        float* dcol = scratch(slot_base() + thread_id(), static_cast<std::size_t>(rows * K), kScratchOut);
        sgemm(rows, K, F, gr, F, 1, weight, 1, F, dcol, K, 1, false, !g.outer_parallel);
        col2im(di, dcol, nb, s);
      }
    }
  }

  parts.reduce(dweight, dbias);
}

// ---------------------------------------------------------------------------- the conv2d op

// conv2d: params (kernel (KH, KW, C / groups, F), bias (F) or absent); attrs strides,
// padding, dilation_rate, groups, activation; input (H, W, C) -> (OH, OW, F). Dilation 1
// with one group runs the kernels above; any other runs conv2d_grouped.cpp, which rewrites
// it onto them. An activation other than relu / sigmoid / tanh runs after the kernel.
namespace {

struct Conv2dGeom {
  ConvShape s;
  ConvDilation d;
  bool general;  // dilated or grouped
  NodeActivation act;
};

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

// The CUDA bodies: one output element per iteration; backward as gathers from dz.
const char* conv2d_unsupported(const Node& node) {
  const Conv2dGeom& g = node.geom<Conv2dGeom>();
  if (g.general) return "dilated and grouped convolutions have no CUDA bodies yet";
  if (g.act.kernel() == Activation::linear && g.act.def->forward) return "only relu, sigmoid and tanh are fused there";
  return nullptr;
}

const float* conv2d_device_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const Conv2dGeom& g = node.geom<Conv2dGeom>();
  ConvShape s = g.s;
  s.N = nb;
  for (int64_t i = 0; i < nb * node.out_size; ++i)
    out[i] = bodies::conv2d_forward_at(in[0], node.param[0], node.param[1], s, g.act.kernel(), i);
  return out;
}

void conv2d_device_backward(const Node& node, float* const* dinp, float* const* dparam, const float* dout,
                            const float* const* in, const float* out, const float*, int64_t nb) {
  const Conv2dGeom& g = node.geom<Conv2dGeom>();
  ConvShape s = g.s;
  s.N = nb;
  const int64_t rows = nb * s.OH * s.OW;
  float* dz = scratch(slot_base(), static_cast<std::size_t>(rows * s.F), kScratchGrad);
  for (int64_t i = 0; i < rows * s.F; ++i) dz[i] = bodies::activation_backward_at(dout[i], out[i], g.act.kernel());
  if (dinp[0])
    for (int64_t i = 0; i < nb * s.H * s.W * s.C; ++i) dinp[0][i] = bodies::conv2d_backward_input_at(dz, node.param[0], s, i);
  for (int64_t i = 0; i < s.KH * s.KW * s.C * s.F; ++i) dparam[0][i] = bodies::conv2d_backward_weight_at(dz, in[0], s, i);
  if (node.param[1])
    for (int64_t f = 0; f < s.F; ++f) dparam[1][f] = bodies::column_sum_at(dz, rows, s.F, f);
}

const DeviceBodies conv2d_device = {conv2d_unsupported, conv2d_device_forward, conv2d_device_backward};

const OpDef conv2d_op = {
    "conv2d", "2-D convolution, NHWC: (H, W, C) -> (OH, OW, F), kernel (KH, KW, C / groups, F)", 1,
    {{"kernel"}, {"bias", true}},
    {{"strides", AttrType::Ints, std::vector<int64_t>{1, 1}},
     {"padding", AttrType::Str, std::string("valid")},
     {"dilation_rate", AttrType::Ints, std::vector<int64_t>{1, 1}},
     {"groups", AttrType::Int, int64_t{1}},
     {"activation", AttrType::Str, std::string("linear")}},
    conv2d_parse, conv2d_op_forward, conv2d_op_backward, nullptr, &conv2d_device};

PYCNN_REGISTER_OP(conv2d_op);

}  // namespace
}  // namespace pycnn
