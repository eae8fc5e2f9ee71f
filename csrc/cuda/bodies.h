// The per-element arithmetic of the CUDA kernels, written once for host and device.
//
// Each body computes ONE output element from its flat index; the CUDA kernels in
// csrc/cuda/*.cu run one thread per output element and call these, and each op's family
// file loops them over all outputs on the host as the op's DeviceBodies (op_registry.h), so
// that a network compiled with device bodies (pycnn.ops.OpCall(..., device_bodies=True))
// checks the same formulas against the CPU kernels and the NumPy oracle on every machine.
// Only launch, memory and synchronisation are GPU-only.
//
// Layout and shapes are those of the CPU kernels (NHWC; conv weight (KH, KW, C, F); dense
// weight (IN, OUT)); geometry comes in the same ConvShape / PoolShape structs (conv2d.h,
// pool2d.h), whose padding and output sizes follow TensorFlow's 'same' / 'valid' rules.
//
// Gradients are gathers, not scatters: every body that produces an input gradient sums
// the contributions to its own element, so no two threads write the same address and no
// atomics are needed (the result is deterministic). Activations in backward take the
// gradient w.r.t. the pre-activation, dz = dout * act'(out), computed first by
// activation_backward_at (the CPU kernels fold that step in).
#pragma once
#include <math.h>
#include <stdint.h>

#include "conv2d.h"
#include "pool2d.h"
#include "runtime.h"

#if defined(__CUDACC__)
#define PYCNN_HD __host__ __device__
#else
#define PYCNN_HD
#endif

namespace pycnn {
namespace bodies {

// ---------------------------------------------------------------------------- activations

// y = act(x).
PYCNN_HD inline float activation_forward_at(float x, Activation act) {
  switch (act) {
    case Activation::relu: return x > 0.f ? x : 0.f;
    case Activation::sigmoid: return 1.f / (1.f + expf(-x));
    case Activation::tanh: return tanhf(x);
    default: return x;
  }
}

// dz = dy * act'(x) from the output y: relu' = (y > 0), sigmoid' = y (1 - y), tanh' = 1 - y^2.
PYCNN_HD inline float activation_backward_at(float dy, float y, Activation act) {
  switch (act) {
    case Activation::relu: return y > 0.f ? dy : 0.f;
    case Activation::sigmoid: return dy * y * (1.f - y);
    case Activation::tanh: return dy * (1.f - y * y);
    default: return dy;
  }
}

// ---------------------------------------------------------------------------- conv2d

// out[i], i = ((n * OH + oh) * OW + ow) * F + f:
//   act(bias[f] + sum_{kh,kw,c} inp[n, oh*SH + kh - PT, ow*SW + kw - PL, c] * weight[kh, kw, c, f])
// inp (N, H, W, C), weight (KH, KW, C, F), bias (F) or null; zero padding outside the image.
PYCNN_HD inline float conv2d_forward_at(const float* inp, const float* weight, const float* bias,
                                        const ConvShape& s, Activation act, int64_t i) {
  const int64_t f = i % s.F, ow = (i / s.F) % s.OW, oh = (i / (s.F * s.OW)) % s.OH,
                n = i / (s.F * s.OW * s.OH);
  float acc = 0.f;
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t ih = oh * s.SH + kh - s.PT;
    if (ih < 0 || ih >= s.H) continue;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const int64_t iw = ow * s.SW + kw - s.PL;
      if (iw < 0 || iw >= s.W) continue;
      const float* x = inp + ((n * s.H + ih) * s.W + iw) * s.C;
      const float* w = weight + (kh * s.KW + kw) * s.C * s.F + f;
      for (int64_t c = 0; c < s.C; ++c) acc += x[c] * w[c * s.F];
    }
  }
  if (bias) acc += bias[f];
  return activation_forward_at(acc, act);
}

// dinp[i], i = ((n * H + ih) * W + iw) * C + c. From the forward statement
//   z[n, oh, ow, f] += inp[n, oh*SH + kh - PT, ow*SW + kw - PL, c] * weight[kh, kw, c, f]
// the input element (ih, iw) is read by every (oh, kh) with oh*SH + kh - PT == ih, so
//   dinp = sum_{kh,kw,f} dz[n, oh, ow, f] * weight[kh, kw, c, f] over those (oh, ow) in range.
// dz (N, OH, OW, F) is the gradient w.r.t. the pre-activation.
PYCNN_HD inline float conv2d_backward_input_at(const float* dz, const float* weight, const ConvShape& s, int64_t i) {
  const int64_t c = i % s.C, iw = (i / s.C) % s.W, ih = (i / (s.C * s.W)) % s.H, n = i / (s.C * s.W * s.H);
  float acc = 0.f;
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t th = ih + s.PT - kh;  // = oh * SH
    if (th < 0 || th % s.SH != 0) continue;
    const int64_t oh = th / s.SH;
    if (oh >= s.OH) continue;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const int64_t tw = iw + s.PL - kw;
      if (tw < 0 || tw % s.SW != 0) continue;
      const int64_t ow = tw / s.SW;
      if (ow >= s.OW) continue;
      const float* d = dz + ((n * s.OH + oh) * s.OW + ow) * s.F;
      const float* w = weight + ((kh * s.KW + kw) * s.C + c) * s.F;
      for (int64_t f = 0; f < s.F; ++f) acc += d[f] * w[f];
    }
  }
  return acc;
}

// dweight[i], i = ((kh * KW + kw) * C + c) * F + f:
//   sum_{n,oh,ow} dz[n, oh, ow, f] * inp[n, oh*SH + kh - PT, ow*SW + kw - PL, c] (in range).
PYCNN_HD inline float conv2d_backward_weight_at(const float* dz, const float* inp, const ConvShape& s, int64_t i) {
  const int64_t f = i % s.F, c = (i / s.F) % s.C, kw = (i / (s.F * s.C)) % s.KW, kh = i / (s.F * s.C * s.KW);
  float acc = 0.f;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const int64_t ih = oh * s.SH + kh - s.PT;
      if (ih < 0 || ih >= s.H) continue;
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t iw = ow * s.SW + kw - s.PL;
        if (iw < 0 || iw >= s.W) continue;
        acc += dz[((n * s.OH + oh) * s.OW + ow) * s.F + f] * inp[((n * s.H + ih) * s.W + iw) * s.C + c];
      }
    }
  return acc;
}

// dbias[f] = sum_{n,oh,ow} dz[n, oh, ow, f]; also dense's dbias with rows = N, cols = OUT.
PYCNN_HD inline float column_sum_at(const float* dz, int64_t rows, int64_t cols, int64_t f) {
  float acc = 0.f;
  for (int64_t r = 0; r < rows; ++r) acc += dz[r * cols + f];
  return acc;
}

// ---------------------------------------------------------------------------- pooling

// The window of output (oh, ow) clipped to the image: rows [h0, h1), columns [w0, w1).
struct PoolWindow {
  int64_t h0, h1, w0, w1;
};
PYCNN_HD inline PoolWindow pool_window(const PoolShape& s, int64_t oh, int64_t ow) {
  const int64_t h = oh * s.SH - s.PT, w = ow * s.SW - s.PL;
  PoolWindow r;
  r.h0 = h > 0 ? h : 0;
  r.h1 = h + s.KH < s.H ? h + s.KH : s.H;
  r.w0 = w > 0 ? w : 0;
  r.w1 = w + s.KW < s.W ? w + s.KW : s.W;
  return r;
}

// out[i], i = ((n * OH + oh) * OW + ow) * C + c: the window's maximum; *argmax gets its
// index within the sample, (ih * W + iw) * C + c. Ties keep the first maximum in scan order
// (replace only on strictly greater); a NaN wins and keeps its place, as on the CPU.
PYCNN_HD inline float maxpool2d_forward_at(int32_t* argmax, const float* inp, const PoolShape& s, int64_t i) {
  const int64_t c = i % s.C, ow = (i / s.C) % s.OW, oh = (i / (s.C * s.OW)) % s.OH, n = i / (s.C * s.OW * s.OH);
  const float* img = inp + n * s.H * s.W * s.C;
  const PoolWindow w = pool_window(s, oh, ow);
  int64_t best = (w.h0 * s.W + w.w0) * s.C + c;
  float m = img[best];
  for (int64_t ih = w.h0; ih < w.h1; ++ih)
    for (int64_t iw = w.w0; iw < w.w1; ++iw) {
      const int64_t k = (ih * s.W + iw) * s.C + c;
      const float v = img[k];
      if (v > m || (v != v && m == m)) {
        m = v;
        best = k;
      }
    }
  *argmax = static_cast<int32_t>(best);
  return m;
}

// The output rows (or columns) whose windows contain input row ih: [*o0, *o1).
PYCNN_HD inline void windows_containing(int64_t ih, int64_t pad, int64_t k, int64_t stride, int64_t out_size,
                                        int64_t* o0, int64_t* o1) {
  // oh*S - P <= ih < oh*S - P + K  <=>  (ih + P - K) / S < oh <= (ih + P) / S
  const int64_t t = ih + pad - k + 1;  // smallest oh*S allowed
  int64_t lo = t <= 0 ? 0 : (t + stride - 1) / stride;
  int64_t hi = (ih + pad) / stride + 1;
  if (hi > out_size) hi = out_size;
  *o0 = lo;
  *o1 = hi;
}

// dinp[i], i = ((n * H + ih) * W + iw) * C + c: from "dinp[argmax[j]] += dout[j]", the sum of
// dout over the windows containing this element whose argmax is this element, in the CPU
// scatter's order (oh, then ow, ascending), so the result is bit-identical to it.
PYCNN_HD inline float maxpool2d_backward_at(const float* dout, const int32_t* argmax, const PoolShape& s, int64_t i) {
  const int64_t c = i % s.C, iw = (i / s.C) % s.W, ih = (i / (s.C * s.W)) % s.H, n = i / (s.C * s.W * s.H);
  const int64_t self = (ih * s.W + iw) * s.C + c;
  int64_t oh0, oh1, ow0, ow1;
  windows_containing(ih, s.PT, s.KH, s.SH, s.OH, &oh0, &oh1);
  windows_containing(iw, s.PL, s.KW, s.SW, s.OW, &ow0, &ow1);
  float acc = 0.f;
  for (int64_t oh = oh0; oh < oh1; ++oh)
    for (int64_t ow = ow0; ow < ow1; ++ow) {
      const int64_t j = ((n * s.OH + oh) * s.OW + ow) * s.C + c;
      if (argmax[j] == self) acc += dout[j];
    }
  return acc;
}

// out[i] = mean of the real (unpadded) elements under the window (Keras's count).
PYCNN_HD inline float avgpool2d_forward_at(const float* inp, const PoolShape& s, int64_t i) {
  const int64_t c = i % s.C, ow = (i / s.C) % s.OW, oh = (i / (s.C * s.OW)) % s.OH, n = i / (s.C * s.OW * s.OH);
  const float* img = inp + n * s.H * s.W * s.C;
  const PoolWindow w = pool_window(s, oh, ow);
  float acc = 0.f;
  for (int64_t ih = w.h0; ih < w.h1; ++ih)
    for (int64_t iw = w.w0; iw < w.w1; ++iw) acc += img[(ih * s.W + iw) * s.C + c];
  return acc * (1.f / static_cast<float>((w.h1 - w.h0) * (w.w1 - w.w0)));
}

// dinp[i]: "o = sum(window) / count" gives the sum of dout / count over the windows
// containing the element.
PYCNN_HD inline float avgpool2d_backward_at(const float* dout, const PoolShape& s, int64_t i) {
  const int64_t c = i % s.C, iw = (i / s.C) % s.W, ih = (i / (s.C * s.W)) % s.H, n = i / (s.C * s.W * s.H);
  int64_t oh0, oh1, ow0, ow1;
  windows_containing(ih, s.PT, s.KH, s.SH, s.OH, &oh0, &oh1);
  windows_containing(iw, s.PL, s.KW, s.SW, s.OW, &ow0, &ow1);
  float acc = 0.f;
  for (int64_t oh = oh0; oh < oh1; ++oh)
    for (int64_t ow = ow0; ow < ow1; ++ow) {
      const PoolWindow w = pool_window(s, oh, ow);
      const float inv = 1.f / static_cast<float>((w.h1 - w.h0) * (w.w1 - w.w0));
      acc += dout[((n * s.OH + oh) * s.OW + ow) * s.C + c] * inv;
    }
  return acc;
}

// ---------------------------------------------------------------------------- softmax cross-entropy

// One row r of logits (rows, cols): writes probs[r, :] = softmax(logits[r, :]) (row maximum
// subtracted before exp) and returns -log softmax(logits[r, :])[label] computed as
// (max - logit[label]) + log(sum exp(z - max)), never the log of a rounded probability.
// The mean over rows is the caller's (the CPU kernel sums rows in double).
PYCNN_HD inline float softmax_crossentropy_forward_row(float* probs, const float* logits, int64_t label,
                                                      int64_t cols, int64_t r) {
  const float* z = logits + r * cols;
  float* p = probs + r * cols;
  float m = z[0];
  for (int64_t j = 1; j < cols; ++j) m = z[j] > m ? z[j] : m;
  float sum = 0.f;
  for (int64_t j = 0; j < cols; ++j) {
    p[j] = expf(z[j] - m);
    sum += p[j];
  }
  const float inv = 1.f / sum;
  for (int64_t j = 0; j < cols; ++j) p[j] *= inv;
  return (m - z[label]) + logf(sum);
}

// dlogits[i], i = r * cols + j: "loss = mean_r (logsumexp(z_r) - z_r[y_r])" gives
// (probs - onehot(labels)) * scale, scale = 1 / rows for the mean loss.
PYCNN_HD inline float softmax_crossentropy_backward_at(const float* probs, const int64_t* labels, int64_t cols,
                                                       float scale, int64_t i) {
  const int64_t r = i / cols, j = i % cols;
  return (probs[i] - (labels[r] == j ? 1.f : 0.f)) * scale;
}

// ---------------------------------------------------------------------------- dense

// out[i], i = n * OUT + o: act(bias[o] + sum_k inp[n, k] * weight[k, o]); bias may be null.
PYCNN_HD inline float dense_forward_at(const float* inp, const float* weight, const float* bias, int64_t IN,
                                       int64_t OUT, Activation act, int64_t i) {
  const int64_t o = i % OUT, n = i / OUT;
  float acc = 0.f;
  for (int64_t k = 0; k < IN; ++k) acc += inp[n * IN + k] * weight[k * OUT + o];
  if (bias) acc += bias[o];
  return activation_forward_at(acc, act);
}

// dinp[i], i = n * IN + k: sum_o dz[n, o] * weight[k, o].
PYCNN_HD inline float dense_backward_input_at(const float* dz, const float* weight, int64_t IN, int64_t OUT,
                                              int64_t i) {
  const int64_t k = i % IN, n = i / IN;
  float acc = 0.f;
  for (int64_t o = 0; o < OUT; ++o) acc += dz[n * OUT + o] * weight[k * OUT + o];
  return acc;
}

// dweight[i], i = k * OUT + o: sum_n inp[n, k] * dz[n, o].
PYCNN_HD inline float dense_backward_weight_at(const float* dz, const float* inp, int64_t N, int64_t IN,
                                               int64_t OUT, int64_t i) {
  const int64_t o = i % OUT, k = i / OUT;
  float acc = 0.f;
  for (int64_t n = 0; n < N; ++n) acc += inp[n * IN + k] * dz[n * OUT + o];
  return acc;
}

}  // namespace bodies
}  // namespace pycnn
