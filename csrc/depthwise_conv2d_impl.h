// The row kernels of depthwise_conv2d.cpp, compiled once per instruction set: that file
// includes this header three times under different `#pragma GCC target`s with
// PYCNN_DW_NS naming the copy. Every inner loop runs along the contiguous channel axis, so
// the compiler vectorises it with the copy's vector width. No include guard on purpose.
//
// Shapes as in depthwise_conv2d.h; CM = C * M. "Row" means one output row (n, oh) or, for
// the input gradient, one input row (n, ih).

namespace pycnn {
namespace PYCNN_DW_NS {

// acc[j] += x[j / M] * w[j] for j < C*M.
inline void madd(float* __restrict acc, const float* __restrict x, const float* __restrict w, int64_t C,
                 int64_t M) {
  if (M == 1) {
    for (int64_t c = 0; c < C; ++c) acc[c] += x[c] * w[c];
  } else {
    for (int64_t c = 0; c < C; ++c) {
      const float xc = x[c];
      for (int64_t m = 0; m < M; ++m) acc[c * M + m] += xc * w[c * M + m];
    }
  }
}

// orow (OW, CM) = bias + the taps of output row oh of one image img (H, W, C); no activation.
void forward_row(float* orow, const float* img, const float* weight, const float* bias, const DepthwiseShape& d,
                 int64_t oh) {
  const ConvShape& s = d.s;
  const int64_t CM = s.F;
  for (int64_t ow = 0; ow < s.OW; ++ow) {
    float* __restrict o = orow + ow * CM;
    if (bias)
      for (int64_t j = 0; j < CM; ++j) o[j] = bias[j];
    else
      for (int64_t j = 0; j < CM; ++j) o[j] = 0.f;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.SH + kh * d.DH - s.PT;
      if (ih < 0 || ih >= s.H) continue;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t iw = ow * s.SW + kw * d.DW - s.PL;
        if (iw < 0 || iw >= s.W) continue;
        madd(o, img + (ih * s.W + iw) * s.C, weight + (kh * s.KW + kw) * CM, s.C, d.M);
      }
    }
  }
}

// dw (KH*KW*CM) += sum_ow grow[ow, j] * x[tap, j / M];  db (CM) += sum_ow grow[ow, j].
// grow (OW, CM) is the pre-activation gradient of output row oh of image img.
void dweight_row(float* dw, float* db, const float* grow, const float* img, const DepthwiseShape& d, int64_t oh) {
  const ConvShape& s = d.s;
  const int64_t CM = s.F;
  for (int64_t ow = 0; ow < s.OW; ++ow) {
    const float* __restrict g = grow + ow * CM;
    for (int64_t j = 0; j < CM; ++j) db[j] += g[j];
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.SH + kh * d.DH - s.PT;
      if (ih < 0 || ih >= s.H) continue;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t iw = ow * s.SW + kw * d.DW - s.PL;
        if (iw < 0 || iw >= s.W) continue;
        // "out[j] += x[j / M] * w[tap, j]"  ->  dw[tap, j] += g[j] * x[j / M]
        madd(dw + (kh * s.KW + kw) * CM, img + (ih * s.W + iw) * s.C, g, s.C, d.M);
      }
    }
  }
}

// drow (W, C) = input row ih's gradient of one image, gathered from the output pixels
// whose windows read it: "out[oh, ow, c*M+m] += x[ih, iw, c] * w[kh, kw, c*M+m]" with
// ih = oh*SH + kh*DH - PT  ->  dx[ih, iw, c] += sum_m g[oh, ow, c*M+m] * w[kh, kw, c*M+m].
// gimg (OH, OW, CM) is the image's pre-activation gradient.
void dinp_row(float* drow, const float* gimg, const float* weight, const DepthwiseShape& d, int64_t ih) {
  const ConvShape& s = d.s;
  const int64_t CM = s.F, C = s.C, M = d.M;
  for (int64_t iw = 0; iw < s.W; ++iw) {
    float* __restrict dx = drow + iw * C;
    for (int64_t c = 0; c < C; ++c) dx[c] = 0.f;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t th = ih + s.PT - kh * d.DH;  // oh * SH
      if (th < 0 || th % s.SH != 0 || th / s.SH >= s.OH) continue;
      const int64_t oh = th / s.SH;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t tw = iw + s.PL - kw * d.DW;
        if (tw < 0 || tw % s.SW != 0 || tw / s.SW >= s.OW) continue;
        const float* __restrict g = gimg + (oh * s.OW + tw / s.SW) * CM;
        const float* __restrict w = weight + (kh * s.KW + kw) * CM;
        if (M == 1) {
          for (int64_t c = 0; c < C; ++c) dx[c] += g[c] * w[c];
        } else {
          for (int64_t c = 0; c < C; ++c) {
            float sum = 0.f;
            for (int64_t m = 0; m < M; ++m) sum += g[c * M + m] * w[c * M + m];
            dx[c] += sum;
          }
        }
      }
    }
  }
}

}  // namespace PYCNN_DW_NS
}  // namespace pycnn
