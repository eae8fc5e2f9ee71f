// Dilated and/or grouped conv2d (conv2d_grouped.h), in two ways.
//
// Phase path (every case Keras's Conv2D can ask for: no axis with both stride and dilation
// above 1): exact rewritings onto conv2d.h's optimised kernels, which are called unchanged;
// see "phase path" below. Groups become one ordinary convolution per group, dilation becomes
// TensorFlow's space-to-batch (atrous) rewriting into DH*DW undilated convolutions batched
// together. Costs copies of the input, output and weight per group, a few percent of the
// convolution.
//
// im2col path (an axis with stride > 1 and dilation > 1, reachable only through the binding
// and the network op): a per-group im2col over the dilated window + the GEMM of gemm.h.
// For group g, with K = KH*KW*Cg:
//   col_g  (rows, K)   = the dilated windows of input channels [g*Cg, (g+1)*Cg), (kh, kw, c) order
//   W_g    (K, Fg)     = weight[:, :, :, g*Fg:(g+1)*Fg] (row stride F: no copy)
//   forward:  out[:, g*Fg:(g+1)*Fg] = col_g @ W_g              (+ bias, activation)
//   backward: dweight[..., g*Fg:]  = col_g^T @ g_g,  dcol_g = g_g @ W_g^T,  dinp += col2im_g(dcol_g)
// where g_g is the pre-activation gradient's group-g columns. Parallel as conv2d.cpp:
// samples are cut into blocks of >= ~256 output rows; with at least as many blocks as
// threads each thread takes whole blocks (serial GEMMs, per-thread partial weight gradients
// reduced at the end, static schedule so results do not depend on timing); otherwise blocks
// run one after another with parallel GEMMs.
#include "conv2d_grouped.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv2d_partials.h"
#include "gemm.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

namespace pycnn {
namespace {

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

void forward_im2col(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                    const ConvDilation& d, Activation act) {
  const int64_t Cg = s.C / d.G, Fg = s.F / d.G, K = s.KH * s.KW * Cg, P = s.OH * s.OW, F = s.F;
  const Blocks b = plan_blocks(s);
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(b.threads) if (b.outer)
#endif
  for (int64_t bi = 0; bi < b.count; ++bi) {
    const int64_t n0 = bi * b.nb, nb = std::min(b.nb, s.N - n0), rows = nb * P;
    float* col = scratch(slot_base() + team_thread(), static_cast<std::size_t>(rows * K), kScratchCol);
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

void backward_im2col(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, const float* out, const ConvShape& s, const ConvDilation& d,
                     Activation act) {
  const int64_t Cg = s.C / d.G, Fg = s.F / d.G, K = s.KH * s.KW * Cg, P = s.OH * s.OW, F = s.F;
  const int64_t KF = K * F;  // == dweight's size
  const Blocks b = plan_blocks(s);
  const int T = b.threads;
  GradPartials parts(T, KF, F);  // per-thread partial dweight and dbias (conv2d_partials.h)
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T) if (b.outer)
#endif
  for (int64_t bi = 0; bi < b.count; ++bi) {
    const int t = team_thread();
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
    add_column_sums(parts.bias_of(t), gr, rows, F);
    float* col = scratch(slot, static_cast<std::size_t>(rows * K), kScratchCol);
    float* dcol = dinp ? scratch(slot, static_cast<std::size_t>(rows * K), kScratchOut) : nullptr;
    float* di = dinp ? dinp + n0 * s.H * s.W * s.C : nullptr;
    if (di) std::memset(di, 0, sizeof(float) * nb * s.H * s.W * s.C);
    for (int64_t g = 0; g < d.G; ++g) {
      im2col_group(col, inp + n0 * s.H * s.W * s.C, nb, s, d, g * Cg, Cg);
      // dweight[:, g*Fg:] (K x Fg, row stride F) (+)= col^T @ g_g   (col^T: element (k, r) at col[r*K + k])
      sgemm(K, Fg, rows, col, 1, K, gr + g * Fg, F, 1, parts.partial[t] + g * Fg, F, 1, parts.used[t], !b.outer);
      if (di) {
        // dcol (rows x K) = g_g @ W_g^T   (W_g^T: element (f, k) at weight[k*F + g*Fg + f])
        sgemm(rows, K, Fg, gr + g * Fg, F, 1, weight + g * Fg, 1, F, dcol, K, 1, false, !b.outer);
        col2im_group_add(di, dcol, nb, s, d, g * Cg, Cg);
      }
    }
    parts.used[t] = true;
  }
  parts.reduce(dweight, dbias);
}

// ---------------------------------------------------------------------------- phase path
//
// Everything except an axis with both stride and dilation above 1 (which Keras's Conv2D
// never asks for) runs on conv2d.h's optimised kernels, unchanged, through two exact
// rewritings:
//  * groups: group g is an ordinary convolution of input channels [g*Cg, (g+1)*Cg) with
//    weight[..., g*Fg:(g+1)*Fg] (copied contiguous) into output channels [g*Fg, (g+1)*Fg);
//  * dilation (TensorFlow's atrous convolution by space-to-batch): with the input padded
//    for the dilated extent, output row oh = a + DH*i reads padded rows a + DH*(i + kh),
//    so phase a of the padded input (its rows a, a + DH, ...) convolved 'valid' with the
//    undilated kernel gives phase a of the output. The DH*DW phases of every sample form one
//    batch of Nb = N*DH*DW images of Hs = ceil(Hpad / DH) rows (the phases are zero-padded to
//    a common size; the extra outputs they produce are dropped, and get a zero gradient).
// An undilated axis has one phase of Hpad rows and keeps its stride.
// Forward: gather (pad + phases + channels) -> conv2d_forward -> scatter; backward: gather
// dout (and out) the same way -> conv2d_backward -> scatter dinp. Every padded input pixel
// lies in exactly one phase, so the input-gradient scatter assigns, never adds.

struct Phases {
  ConvShape inner;      // the 'valid' conv on the phase batch: N = Nb, H = Hs, W = Ws, C = Cg, F = Fg
  int64_t PH, PW;       // phases per axis (the dilation, or 1)
  int64_t Cg, Fg;
  int64_t x_size, y_size, w_size;  // floats of one group's phase input, phase output, weight
};

bool use_phases(const ConvShape& s, const ConvDilation& d) {
  return !((d.DH > 1 && s.SH > 1) || (d.DW > 1 && s.SW > 1));
}

Phases plan_phases(const ConvShape& s, const ConvDilation& d) {
  Phases p{};
  p.Cg = s.C / d.G;
  p.Fg = s.F / d.G;
  p.PH = d.DH;
  p.PW = d.DW;
  // padded extents: (OH - 1) * SH + (KH - 1) * DH + 1 rows are read
  const int64_t Hpad = (s.OH - 1) * s.SH + (s.KH - 1) * d.DH + 1, Wpad = (s.OW - 1) * s.SW + (s.KW - 1) * d.DW + 1;
  ConvShape& c = p.inner;
  c.N = s.N * p.PH * p.PW;
  c.H = (Hpad + p.PH - 1) / p.PH;
  c.W = (Wpad + p.PW - 1) / p.PW;
  c.C = p.Cg;
  c.F = p.Fg;
  c.KH = s.KH; c.KW = s.KW;
  c.SH = s.SH; c.SW = s.SW;  // 1 on a dilated axis
  c.PT = c.PL = 0;
  c.OH = (c.H - c.KH) / c.SH + 1;
  c.OW = (c.W - c.KW) / c.SW + 1;
  p.x_size = c.N * c.H * c.W * c.C;
  p.y_size = c.N * c.OH * c.OW * c.F;
  p.w_size = c.KH * c.KW * c.C * c.F;
  return p;
}

int threads_for_copy(int64_t rows) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), rows / 16)));
}

// xb (Nb, Hs, Ws, Cg) = phases of the zero-padded channels [c0, c0 + Cg) of inp (N, H, W, C).
// Phase image (n, a, b), pixel (r, q) is padded pixel (a + PH*r, b + PW*q), i.e. input pixel
// (a + PH*r - PT, b + PW*q - PL).
void gather_input(float* xb, const float* inp, const ConvShape& s, const Phases& p, int64_t c0) {
  const ConvShape& c = p.inner;
  const int64_t rows = c.N * c.H;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(threads_for_copy(rows)) if (threads_for_copy(rows) > 1)
#endif
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t img = row / c.H, r = row % c.H;
    const int64_t n = img / (p.PH * p.PW), a = img / p.PW % p.PH, b = img % p.PW;
    const int64_t ih = a + p.PH * r - s.PT;
    float* dst = xb + row * c.W * c.C;
    for (int64_t q = 0; q < c.W; ++q) {
      const int64_t iw = b + p.PW * q - s.PL;
      float* o = dst + q * c.C;
      if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) {
        for (int64_t k = 0; k < c.C; ++k) o[k] = 0.f;
      } else {
        const float* src = inp + ((n * s.H + ih) * s.W + iw) * s.C + c0;
        for (int64_t k = 0; k < c.C; ++k) o[k] = src[k];
      }
    }
  }
}

// The adjoint of gather_input restricted to the image: channels [c0, c0 + Cg) of dinp
// (N, H, W, C) = dxb at the positions gather_input read them from (each exactly once;
// pixels past the last window are in no phase and left to the caller).
void scatter_input(float* dinp, const float* dxb, const ConvShape& s, const Phases& p, int64_t c0) {
  const ConvShape& c = p.inner;
  const int64_t rows = c.N * c.H;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(threads_for_copy(rows)) if (threads_for_copy(rows) > 1)
#endif
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t img = row / c.H, r = row % c.H;
    const int64_t n = img / (p.PH * p.PW), a = img / p.PW % p.PH, b = img % p.PW;
    const int64_t ih = a + p.PH * r - s.PT;
    if (ih < 0 || ih >= s.H) continue;
    const float* src = dxb + row * c.W * c.C;
    for (int64_t q = 0; q < c.W; ++q) {
      const int64_t iw = b + p.PW * q - s.PL;
      if (iw < 0 || iw >= s.W) continue;
      float* o = dinp + ((n * s.H + ih) * s.W + iw) * s.C + c0;
      for (int64_t k = 0; k < c.C; ++k) o[k] = src[q * c.C + k];
    }
  }
}

// Phase (n, a, b) pixel (i, j) of the phase output (Nb, OHs, OWs, Fg) is output pixel
// (a + PH*i, b + PW*j) of (N, OH, OW, F), channels [f0, f0 + Fg), when that is inside the
// output; the offset of its first channel there, or -1 for a dropped position.
int64_t output_offset(const ConvShape& s, const Phases& p, int64_t row, int64_t j, int64_t f0) {
  const ConvShape& c = p.inner;
  const int64_t img = row / c.OH, i = row % c.OH;
  const int64_t n = img / (p.PH * p.PW), a = img / p.PW % p.PH, b = img % p.PW;
  const int64_t oh = a + p.PH * i, ow = b + p.PW * j;
  return oh < s.OH && ow < s.OW ? ((n * s.OH + oh) * s.OW + ow) * s.F + f0 : -1;
}

// yb (Nb, OHs, OWs, Fg) = those channels of out in phase layout, 0 at the dropped positions.
void output_to_phases(float* yb, const float* out, const ConvShape& s, const Phases& p, int64_t f0) {
  const ConvShape& c = p.inner;
  const int64_t rows = c.N * c.OH;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(threads_for_copy(rows)) if (threads_for_copy(rows) > 1)
#endif
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t j = 0; j < c.OW; ++j) {
      const int64_t off = output_offset(s, p, row, j, f0);
      float* y = yb + (row * c.OW + j) * c.F;
      for (int64_t k = 0; k < c.F; ++k) y[k] = off >= 0 ? out[off + k] : 0.f;
    }
}

// The inverse on the kept positions: those channels of out = yb.
void phases_to_output(float* out, const float* yb, const ConvShape& s, const Phases& p, int64_t f0) {
  const ConvShape& c = p.inner;
  const int64_t rows = c.N * c.OH;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(threads_for_copy(rows)) if (threads_for_copy(rows) > 1)
#endif
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t j = 0; j < c.OW; ++j) {
      const int64_t off = output_offset(s, p, row, j, f0);
      if (off < 0) continue;
      const float* y = yb + (row * c.OW + j) * c.F;
      for (int64_t k = 0; k < c.F; ++k) out[off + k] = y[k];
    }
}

// wg (KH, KW, Cg, Fg) = weight[..., f0:f0 + Fg] of weight (KH, KW, Cg, F), and back.
void weight_to_group(float* wg, const float* weight, const ConvShape& s, const Phases& p, int64_t f0) {
  for (int64_t r = 0; r < s.KH * s.KW * p.Cg; ++r)
    for (int64_t k = 0; k < p.Fg; ++k) wg[r * p.Fg + k] = weight[r * s.F + f0 + k];
}

void group_to_weight(float* weight, const float* wg, const ConvShape& s, const Phases& p, int64_t f0) {
  for (int64_t r = 0; r < s.KH * s.KW * p.Cg; ++r)
    for (int64_t k = 0; k < p.Fg; ++k) weight[r * s.F + f0 + k] = wg[r * p.Fg + k];
}

void forward_phases(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                    const ConvDilation& d, Activation act) {
  const Phases p = plan_phases(s, d);
  const bool dilated = p.PH > 1 || p.PW > 1;
  float* buf = scratch(slot_base(), static_cast<std::size_t>(p.x_size + p.y_size + p.w_size), kScratchGroupedConv);
  float *xb = buf, *yb = buf + p.x_size, *wg = yb + p.y_size;
  for (int64_t g = 0; g < d.G; ++g) {
    gather_input(xb, inp, s, p, g * p.Cg);
    const float* w = weight;
    if (d.G > 1) {
      weight_to_group(wg, weight, s, p, g * p.Fg);
      w = wg;
    }
    // one group and no dilation: the inner conv writes `out` directly
    float* y = (d.G > 1 || dilated) ? yb : out;
    conv2d_forward(y, xb, w, bias ? bias + g * p.Fg : nullptr, p.inner, act);
    if (y != out) phases_to_output(out, yb, s, p, g * p.Fg);
  }
}

void backward_phases(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, const float* out, const ConvShape& s, const ConvDilation& d,
                     Activation act) {
  const Phases p = plan_phases(s, d);
  const bool dilated = p.PH > 1 || p.PW > 1;
  const bool moved = d.G > 1 || dilated;  // dout / out need gathering into phase layout
  const bool need_out = act != Activation::linear;
  const int64_t size = 2 * p.x_size + (moved ? (need_out ? 2 : 1) * p.y_size : 0) + 2 * p.w_size;
  float* buf = scratch(slot_base(), static_cast<std::size_t>(size), kScratchGroupedConv);
  float* xb = buf;
  float* dxb = xb + p.x_size;
  float* gb = dxb + p.x_size;
  float* ob = gb + (moved ? p.y_size : 0);
  float* wg = ob + (moved && need_out ? p.y_size : 0);
  float* dwg = wg + p.w_size;
  // With strides, trailing input rows or columns may be read by no window: their gradient is
  // zero, and no phase holds them.
  const int64_t rows_read = (s.OH - 1) * s.SH + (s.KH - 1) * d.DH + 1 - s.PT;
  const int64_t cols_read = (s.OW - 1) * s.SW + (s.KW - 1) * d.DW + 1 - s.PL;
  if (dinp && (rows_read < s.H || cols_read < s.W)) std::memset(dinp, 0, sizeof(float) * s.N * s.H * s.W * s.C);
  for (int64_t g = 0; g < d.G; ++g) {
    gather_input(xb, inp, s, p, g * p.Cg);
    const float* w = weight;
    float* dw = dweight;
    if (d.G > 1) {
      weight_to_group(wg, weight, s, p, g * p.Fg);
      w = wg;
      dw = dwg;
    }
    const float* gr = dout;
    const float* o = out;
    if (moved) {
      output_to_phases(gb, dout, s, p, g * p.Fg);
      gr = gb;
      if (need_out) {
        output_to_phases(ob, out, s, p, g * p.Fg);
        o = ob;
      }
    }
    conv2d_backward(dinp ? dxb : nullptr, dw, dbias ? dbias + g * p.Fg : nullptr, gr, xb, w, o, p.inner, act);
    if (d.G > 1) group_to_weight(dweight, dwg, s, p, g * p.Fg);
    if (dinp) scatter_input(dinp, dxb, s, p, g * p.Cg);
  }
}

}  // namespace

void conv2d_grouped_forward(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                            const ConvDilation& d, Activation act) {
  if (use_phases(s, d)) return forward_phases(out, inp, weight, bias, s, d, act);
  forward_im2col(out, inp, weight, bias, s, d, act);
}

void conv2d_grouped_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                             const float* weight, const float* out, const ConvShape& s, const ConvDilation& d,
                             Activation act) {
  if (use_phases(s, d)) return backward_phases(dinp, dweight, dbias, dout, inp, weight, out, s, d, act);
  backward_im2col(dinp, dweight, dbias, dout, inp, weight, out, s, d, act);
}

}  // namespace pycnn
