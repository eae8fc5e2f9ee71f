// The row kernels of depthwise_conv2d.cpp, compiled once per instruction set: that file
// includes this header three times under different `#pragma GCC target`s with
// PYCNN_DW_NS naming the copy. Every inner loop runs along the contiguous channel axis, so
// the compiler vectorises it with the copy's vector width. No include guard on purpose.
//
// Shapes as in depthwise_conv2d.h; CM = C * M. "Row" means one output row (n, oh) or, for
// the input gradient, one input row (n, ih).

namespace pycnn {
namespace PYCNN_DW_NS {

// acc[j] += x[j / M] * w[j] for j < C*M. M = 1 is one contiguous vector loop; M = 2, 3, 4
// are unrolled with M known at compile time (the compiler interleaves the broadcast x[c]
// across the M lanes); a larger M spreads the pixel to xe[j] = x[j / M] (xe: CM floats of
// scratch) and then runs one vector loop. A loop over a run-time M inside the loop over c
// vectorises badly: measured 10x slower per multiply-add than M = 1.
template <int MM>
inline void madd_fixed(float* __restrict acc, const float* __restrict x, const float* __restrict w, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    const float xc = x[c];
    for (int m = 0; m < MM; ++m) acc[c * MM + m] += xc * w[c * MM + m];
  }
}

inline void madd(float* __restrict acc, const float* __restrict x, const float* __restrict w, int64_t C,
                 int64_t M, float* __restrict xe) {
  switch (M) {
    case 1:
      for (int64_t c = 0; c < C; ++c) acc[c] += x[c] * w[c];
      return;
    case 2: return madd_fixed<2>(acc, x, w, C);
    case 3: return madd_fixed<3>(acc, x, w, C);
    case 4: return madd_fixed<4>(acc, x, w, C);
    default: break;
  }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t m = 0; m < M; ++m) xe[c * M + m] = x[c];
  const int64_t CM = C * M;
  for (int64_t j = 0; j < CM; ++j) acc[j] += xe[j] * w[j];
}

// dx[c] += sum_m g[c*M + m] * w[c*M + m], unrolled as madd for small M.
template <int MM>
inline void dot_fixed(float* __restrict dx, const float* __restrict g, const float* __restrict w, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    float sum = 0.f;
    for (int m = 0; m < MM; ++m) sum += g[c * MM + m] * w[c * MM + m];
    dx[c] += sum;
  }
}

inline void dot_m(float* __restrict dx, const float* __restrict g, const float* __restrict w, int64_t C, int64_t M,
                  float* __restrict prod) {
  switch (M) {
    case 1:
      for (int64_t c = 0; c < C; ++c) dx[c] += g[c] * w[c];
      return;
    case 2: return dot_fixed<2>(dx, g, w, C);
    case 3: return dot_fixed<3>(dx, g, w, C);
    case 4: return dot_fixed<4>(dx, g, w, C);
    default: break;
  }
  const int64_t CM = C * M;
  for (int64_t j = 0; j < CM; ++j) prod[j] = g[j] * w[j];
  for (int64_t c = 0; c < C; ++c) {
    float sum = 0.f;
    for (int64_t m = 0; m < M; ++m) sum += prod[c * M + m];
    dx[c] += sum;
  }
}

// Output columns [*lo, *hi) whose tap kw reads a column inside the image:
// 0 <= ow*SW + kw*DW - PL < W.
inline void tap_columns(const ConvShape& s, int64_t DW, int64_t kw, int64_t* lo, int64_t* hi) {
  const int64_t off = kw * DW - s.PL;  // iw = ow * SW + off
  *lo = off >= 0 ? 0 : (-off + s.SW - 1) / s.SW;
  *hi = off >= s.W ? 0 : std::min<int64_t>(s.OW, (s.W - 1 - off) / s.SW + 1);
}

// orow (OW, CM) = bias + the taps of output row oh of one image img (H, W, C); no activation.
// Tap by tap over the row (the row stays in L1), so no pixel tests its own bounds.
void forward_row(float* orow, const float* img, const float* weight, const float* bias, const DepthwiseShape& d,
                 int64_t oh, float* xe) {
  const ConvShape& s = d.s;
  const int64_t CM = s.F;
  for (int64_t ow = 0; ow < s.OW; ++ow) {
    float* __restrict o = orow + ow * CM;
    if (bias)
      for (int64_t j = 0; j < CM; ++j) o[j] = bias[j];
    else
      for (int64_t j = 0; j < CM; ++j) o[j] = 0.f;
  }
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t ih = oh * s.SH + kh * d.DH - s.PT;
    if (ih < 0 || ih >= s.H) continue;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      int64_t lo, hi;
      tap_columns(s, d.DW, kw, &lo, &hi);
      const float* w = weight + (kh * s.KW + kw) * CM;
      const float* x = img + (ih * s.W + kw * d.DW - s.PL) * s.C;
      for (int64_t ow = lo; ow < hi; ++ow) madd(orow + ow * CM, x + ow * s.SW * s.C, w, s.C, d.M, xe);
    }
  }
}

// dw (KH*KW*CM) += sum_ow grow[ow, j] * x[tap, j / M];  db (CM) += sum_ow grow[ow, j].
// grow (OW, CM) is the pre-activation gradient of output row oh of image img.
void dweight_row(float* dw, float* db, const float* grow, const float* img, const DepthwiseShape& d, int64_t oh,
                 float* xe) {
  const ConvShape& s = d.s;
  const int64_t CM = s.F;
  for (int64_t ow = 0; ow < s.OW; ++ow) {
    const float* __restrict g = grow + ow * CM;
    for (int64_t j = 0; j < CM; ++j) db[j] += g[j];
  }
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t ih = oh * s.SH + kh * d.DH - s.PT;
    if (ih < 0 || ih >= s.H) continue;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      int64_t lo, hi;
      tap_columns(s, d.DW, kw, &lo, &hi);
      float* dwt = dw + (kh * s.KW + kw) * CM;
      const float* x = img + (ih * s.W + kw * d.DW - s.PL) * s.C;
      // "out[j] += x[j / M] * w[tap, j]"  ->  dw[tap, j] += g[j] * x[j / M]
      for (int64_t ow = lo; ow < hi; ++ow) madd(dwt, x + ow * s.SW * s.C, grow + ow * CM, s.C, d.M, xe);
    }
  }
}

// *o = t / stride when t is a multiple of stride in [0, stride * out); stride 1 skips the
// division, which would otherwise cost more than a tap's vector work for small C.
inline bool output_index(int64_t t, int64_t stride, int64_t out, int64_t* o) {
  if (t < 0) return false;
  if (stride == 1) {
    *o = t;
    return t < out;
  }
  if (t % stride != 0) return false;
  *o = t / stride;
  return *o < out;
}

// drow (W, C) = input row ih's gradient of one image, gathered from the output pixels
// whose windows read it: "out[oh, ow, c*M+m] += x[ih, iw, c] * w[kh, kw, c*M+m]" with
// ih = oh*SH + kh*DH - PT  ->  dx[ih, iw, c] += sum_m g[oh, ow, c*M+m] * w[kh, kw, c*M+m].
// gimg (OH, OW, CM) is the image's pre-activation gradient; prod is CM floats of scratch
// (dot_m).
void dinp_row(float* drow, const float* gimg, const float* weight, const DepthwiseShape& d, int64_t ih,
              float* prod) {
  const ConvShape& s = d.s;
  const int64_t CM = s.F, C = s.C, M = d.M;
  for (int64_t iw = 0; iw < s.W; ++iw) {
    float* __restrict dx = drow + iw * C;
    for (int64_t c = 0; c < C; ++c) dx[c] = 0.f;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t th = ih + s.PT - kh * d.DH;  // oh * SH
      int64_t oh;
      if (!output_index(th, s.SH, s.OH, &oh)) continue;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        int64_t ow;
        if (!output_index(iw + s.PL - kw * d.DW, s.SW, s.OW, &ow)) continue;
        const float* __restrict g = gimg + (oh * s.OW + ow) * CM;
        const float* __restrict w = weight + (kh * s.KW + kw) * CM;
        dot_m(dx, g, w, C, M, prod);
      }
    }
  }
}

}  // namespace PYCNN_DW_NS
}  // namespace pycnn
