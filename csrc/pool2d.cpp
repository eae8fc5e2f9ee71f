// Max and average pooling, NHWC; forward and backward side by side. Each output pixel
// scans its window row-major and vectorises over channels (the contiguous axis). Windows
// are clipped to the image, so 'same' padding never contributes a value.
#include "pool2d.h"
#include "conv2d.h"
#include "op_registry.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "runtime.h"

namespace pycnn {
namespace {

struct Clip {
  int64_t h0, h1, w0, w1;  // real input rows [h0, h1) and columns [w0, w1) under the window
};

inline Clip clip_window(const PoolShape& s, int64_t oh, int64_t ow) {
  const int64_t h = oh * s.SH - s.PT, w = ow * s.SW - s.PL;
  return {std::max<int64_t>(h, 0), std::min<int64_t>(h + s.KH, s.H), std::max<int64_t>(w, 0),
          std::min<int64_t>(w + s.KW, s.W)};
}

}  // namespace

// out[n, oh, ow, c] = max over the window; argmax holds (ih * W + iw) * C + c of the first max.
void maxpool2d_forward(float* out, int32_t* argmax, const float* inp, const PoolShape& s) {
  const int64_t C = s.C, rows = s.N * s.OH;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads())
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / s.OH, oh = r % s.OH;
    const float* img = inp + n * s.H * s.W * C;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      float* o = out + (r * s.OW + ow) * C;
      int32_t* a = argmax + (r * s.OW + ow) * C;
      const Clip w = clip_window(s, oh, ow);
      // Start from the window's first element, then replace only on a strictly greater
      // value: ties keep the first maximum in scan order. Branch-free so it vectorises
      // over channels.
      const int64_t first = (w.h0 * s.W + w.w0) * C;
      for (int64_t c = 0; c < C; ++c) {
        o[c] = img[first + c];
        a[c] = static_cast<int32_t>(first + c);
      }
      for (int64_t ih = w.h0; ih < w.h1; ++ih)
        for (int64_t iw = (ih == w.h0 ? w.w0 + 1 : w.w0); iw < w.w1; ++iw) {
          const int32_t base = static_cast<int32_t>((ih * s.W + iw) * C);
          const float* v = img + base;
          for (int32_t c = 0; c < static_cast<int32_t>(C); ++c) {
            // A NaN wins over every number and keeps its place (the first NaN), as NumPy's
            // max / argmax and PyTorch do.
            // Bitwise, not short-circuit: every compare is evaluated, so the loop vectorises.
            const bool greater = (v[c] > o[c]) | ((v[c] != v[c]) & (o[c] == o[c]));
            const int32_t take = -static_cast<int32_t>(greater);  // all ones when taken
            o[c] = greater ? v[c] : o[c];
            a[c] = (a[c] & ~take) | ((base + c) & take);
          }
        }
    }
  }
}

// dinp[argmax[i]] += dout[i] within each sample; everything else is zero.
void maxpool2d_backward(float* dinp, const float* dout, const int32_t* argmax, const PoolShape& s) {
  const int64_t plane = s.H * s.W * s.C, per_out = s.OH * s.OW * s.C;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads())
#endif
  for (int64_t n = 0; n < s.N; ++n) {
    float* di = dinp + n * plane;
    std::memset(di, 0, sizeof(float) * plane);
    const float* d = dout + n * per_out;
    const int32_t* a = argmax + n * per_out;
    for (int64_t i = 0; i < per_out; ++i) di[a[i]] += d[i];
  }
}

// out[n, oh, ow, c] = mean of the real (unpadded) elements under the window.
void avgpool2d_forward(float* out, const float* inp, const PoolShape& s) {
  const int64_t C = s.C, rows = s.N * s.OH;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads())
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / s.OH, oh = r % s.OH;
    const float* img = inp + n * s.H * s.W * C;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      float* o = out + (r * s.OW + ow) * C;
      const Clip w = clip_window(s, oh, ow);
      for (int64_t c = 0; c < C; ++c) o[c] = 0.f;
      for (int64_t ih = w.h0; ih < w.h1; ++ih)
        for (int64_t iw = w.w0; iw < w.w1; ++iw) {
          const float* v = img + (ih * s.W + iw) * C;
          for (int64_t c = 0; c < C; ++c) o[c] += v[c];
        }
      const float inv = 1.f / static_cast<float>((w.h1 - w.h0) * (w.w1 - w.w0));
      for (int64_t c = 0; c < C; ++c) o[c] *= inv;
    }
  }
}

// "o = sum(window) / count" gives dinp[window] += dout / count for each real element.
void avgpool2d_backward(float* dinp, const float* dout, const PoolShape& s) {
  const int64_t C = s.C, plane = s.H * s.W * C;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads())
#endif
  for (int64_t n = 0; n < s.N; ++n) {
    float* img = dinp + n * plane;
    std::memset(img, 0, sizeof(float) * plane);
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const float* d = dout + ((n * s.OH + oh) * s.OW + ow) * C;
        const Clip w = clip_window(s, oh, ow);
        const float inv = 1.f / static_cast<float>((w.h1 - w.h0) * (w.w1 - w.w0));
        for (int64_t ih = w.h0; ih < w.h1; ++ih)
          for (int64_t iw = w.w0; iw < w.w1; ++iw) {
            float* v = img + (ih * s.W + iw) * C;
            for (int64_t c = 0; c < C; ++c) v[c] += d[c] * inv;
          }
      }
  }
}

// out[n, oh, ow, c] = max over the window's real bytes. Windows side by side without padding
// (the usual 2x2 / 2): the max over the window's rows first, along whole input rows (long
// vectorised runs even when C is small), then over each window's columns; otherwise window
// by window, vectorised over channels.
void maxpool2d_u8_forward(uint8_t* out, const uint8_t* inp, const PoolShape& s) {
  const int64_t C = s.C, rows = s.N * s.OH;
  constexpr int64_t kLine = 4096;
  const int64_t piece = kLine / (s.KW * C) * (s.KW * C);  // whole windows per piece of a row
  const bool tiled = s.PT == 0 && s.PL == 0 && s.SH == s.KH && s.SW == s.KW && s.OH * s.KH <= s.H &&
                     s.OW * s.KW <= s.W && piece > 0;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (rows * s.OW * C > (1 << 16))
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / s.OH, oh = r % s.OH;
    const uint8_t* img = inp + n * s.H * s.W * C;
    uint8_t* o = out + r * s.OW * C;
    if (tiled) {
      const int64_t span = s.OW * s.KW * C;
      uint8_t line[kLine];
      for (int64_t x0 = 0; x0 < span; x0 += piece) {
        const int64_t len = std::min(piece, span - x0);
        const uint8_t* first = img + oh * s.KH * s.W * C + x0;
        std::memcpy(line, first, static_cast<size_t>(len));
        for (int64_t kh = 1; kh < s.KH; ++kh) {
          const uint8_t* v = first + kh * s.W * C;
          for (int64_t j = 0; j < len; ++j) line[j] = v[j] > line[j] ? v[j] : line[j];
        }
        // line holds window columns [x0 / (KW C), ...): reduce each window's KW pixels.
        for (int64_t j = 0; j < len; j += s.KW * C) {
          uint8_t* dst = o + (x0 + j) / s.KW;
          std::memcpy(dst, line + j, static_cast<size_t>(C));
          for (int64_t kw = 1; kw < s.KW; ++kw)
            for (int64_t c = 0; c < C; ++c) dst[c] = line[j + kw * C + c] > dst[c] ? line[j + kw * C + c] : dst[c];
        }
      }
      continue;
    }
    for (int64_t ow = 0; ow < s.OW; ++ow, o += C) {
      const Clip w = clip_window(s, oh, ow);
      std::memcpy(o, img + (w.h0 * s.W + w.w0) * C, static_cast<size_t>(C));
      for (int64_t ih = w.h0; ih < w.h1; ++ih)
        for (int64_t iw = w.w0; iw < w.w1; ++iw) {
          const uint8_t* v = img + (ih * s.W + iw) * C;
          for (int64_t c = 0; c < C; ++c) o[c] = v[c] > o[c] ? v[c] : o[c];
        }
    }
  }
}

// out[n, oh, ow, c] = (sum of the window's real bytes + count / 2) / count, in integers.
void avgpool2d_u8_forward(uint8_t* out, const uint8_t* inp, const PoolShape& s) {
  const int64_t C = s.C, rows = s.N * s.OH;
#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(get_num_threads()) if (rows * s.OW * C > (1 << 16))
#endif
  {
    std::vector<int64_t> sum(static_cast<size_t>(C));  // one per thread, not per row
#ifdef PYCNN_OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      const uint8_t* img = inp + n * s.H * s.W * C;
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        uint8_t* o = out + (r * s.OW + ow) * C;
        const Clip w = clip_window(s, oh, ow);
        std::fill(sum.begin(), sum.end(), 0);
        for (int64_t ih = w.h0; ih < w.h1; ++ih)
          for (int64_t iw = w.w0; iw < w.w1; ++iw) {
            const uint8_t* v = img + (ih * s.W + iw) * C;
            for (int64_t c = 0; c < C; ++c) sum[c] += v[c];
          }
        const int64_t count = (w.h1 - w.h0) * (w.w1 - w.w0);
        for (int64_t c = 0; c < C; ++c) o[c] = static_cast<uint8_t>((sum[c] + count / 2) / count);
      }
    }
  }
}

// ---------------------------------------------------------------------------- the ops

// maxpool2d / avgpool2d: attrs pool_size, strides, padding; input (H, W, C) -> (OH, OW, C).
// Max pooling keeps its argmax in the node's aux cells (int32).
// global_maxpool2d / global_avgpool2d: attrs keepdims; (H, W, C) -> (C,), or (1, 1, C) with
// keepdims: the same kernels with one window covering the whole image.
// maxpool2d_int8, avgpool2d_int8, global_maxpool2d_int8, global_avgpool2d_int8: the same on
// uint8 values (inference only).
namespace {

std::vector<int64_t> window_parse(Node& node, const OpArgs& args) {
  expect_input_rank(args, 3, "(H, W, C)");
  const std::vector<int64_t>& in = args.in_shapes[0];
  const std::vector<int64_t> size = window_pair(args, "pool_size");
  const std::vector<int64_t> strides = window_pair(args, "strides");
  PoolShape& p = node.geom<PoolShape>();
  p.N = 1; p.H = in[0]; p.W = in[1]; p.C = in[2];
  p.KH = size[0]; p.KW = size[1]; p.SH = strides[0]; p.SW = strides[1];
  const bool same = padding_is_same(args);
  int64_t after;
  if (!window_output_size(p.H, p.KH, p.SH, same, &p.OH, &p.PT, &after) ||
      !window_output_size(p.W, p.KW, p.SW, same, &p.OW, &p.PL, &after))
    args.fail("computed output size would be zero or negative for input shape " + dims_str(in) + ".");
  return {p.OH, p.OW, p.C};
}

std::vector<int64_t> global_parse(Node& node, const OpArgs& args) {
  expect_input_rank(args, 3, "(H, W, C)");
  const std::vector<int64_t>& in = args.in_shapes[0];
  PoolShape& p = node.geom<PoolShape>();
  p.N = 1; p.H = in[0]; p.W = in[1]; p.C = in[2];
  p.KH = p.SH = in[0]; p.KW = p.SW = in[1];
  p.PT = p.PL = 0;
  p.OH = p.OW = 1;
  if (args.attrs.i("keepdims")) return {1, 1, p.C};
  return {p.C};
}

template <std::vector<int64_t> (*Parse)(Node&, const OpArgs&)>
std::vector<int64_t> with_argmax(Node& node, const OpArgs& args) {
  std::vector<int64_t> out = Parse(node, args);
  node.aux_size = size_of(out);
  return out;
}

PoolShape pool_of(const Node& node, int64_t nb) {
  PoolShape s = node.geom<PoolShape>();
  s.N = nb;
  return s;
}

// The argmax is int32 in the aux cells (4 bytes each, as int32).
const float* maxpool_forward(const Node& node, const float* const* in, float* out, float* aux, int64_t nb) {
  maxpool2d_forward(out, reinterpret_cast<int32_t*>(aux), in[0], pool_of(node, nb));
  return out;
}

void maxpool_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                      const float*, const float* aux, int64_t nb) {
  maxpool2d_backward(dinp[0], dout, reinterpret_cast<const int32_t*>(aux), pool_of(node, nb));
}

const float* avgpool_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  avgpool2d_forward(out, in[0], pool_of(node, nb));
  return out;
}

void avgpool_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                      const float*, const float*, int64_t nb) {
  avgpool2d_backward(dinp[0], dout, pool_of(node, nb));
}

// uint8 (quantized networks): the same parse, an output of bytes, no backward.
template <std::vector<int64_t> (*Parse)(Node&, const OpArgs&)>
std::vector<int64_t> on_bytes(Node& node, const OpArgs& args) {
  std::vector<int64_t> out = Parse(node, args);
  node.out_type = ElemType::uint8;
  return out;
}

const float* maxpool_u8_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  maxpool2d_u8_forward(reinterpret_cast<uint8_t*>(out), reinterpret_cast<const uint8_t*>(in[0]), pool_of(node, nb));
  return out;
}

const float* avgpool_u8_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  avgpool2d_u8_forward(reinterpret_cast<uint8_t*>(out), reinterpret_cast<const uint8_t*>(in[0]), pool_of(node, nb));
  return out;
}

const std::vector<AttrDef> kWindowAttrs = {{"pool_size", AttrType::Ints, std::vector<int64_t>{2, 2}},
                                           {"strides", AttrType::Ints, std::vector<int64_t>{2, 2}},
                                           {"padding", AttrType::Str, std::string("valid")}};
const std::vector<AttrDef> kGlobalAttrs = {{"keepdims", AttrType::Int, int64_t{0}}};

const OpDef maxpool2d_op = {"maxpool2d", "max over each window: (H, W, C) -> (OH, OW, C)", 1, {}, kWindowAttrs,
                            with_argmax<window_parse>, maxpool_forward, maxpool_backward};
const OpDef avgpool2d_op = {"avgpool2d", "mean over each window (padding not counted): (H, W, C) -> (OH, OW, C)", 1,
                            {}, kWindowAttrs, window_parse, avgpool_forward, avgpool_backward};
const OpDef global_maxpool2d_op = {"global_maxpool2d", "max over H and W: (H, W, C) -> (C,) or (1, 1, C)", 1, {},
                                   kGlobalAttrs, with_argmax<global_parse>, maxpool_forward, maxpool_backward};
const OpDef global_avgpool2d_op = {"global_avgpool2d", "mean over H and W: (H, W, C) -> (C,) or (1, 1, C)", 1, {},
                                   kGlobalAttrs, global_parse, avgpool_forward, avgpool_backward};

const OpDef maxpool2d_int8_op = {"maxpool2d_int8", "max over each window of uint8: (H, W, C) -> (OH, OW, C)", 1,
                                 {}, kWindowAttrs, on_bytes<window_parse>, maxpool_u8_forward, nullptr,
                                 nullptr, Reads::uint8};
const OpDef avgpool2d_int8_op = {"avgpool2d_int8",
                                 "rounded mean over each window of uint8 (padding not counted): (H, W, C) -> (OH, OW, C)",
                                 1, {}, kWindowAttrs, on_bytes<window_parse>, avgpool_u8_forward, nullptr,
                                 nullptr, Reads::uint8};
const OpDef global_maxpool2d_int8_op = {"global_maxpool2d_int8", "max over H and W of uint8: (H, W, C) -> (C,) or "
                                        "(1, 1, C)", 1, {}, kGlobalAttrs, on_bytes<global_parse>, maxpool_u8_forward,
                                        nullptr, nullptr, Reads::uint8};
const OpDef global_avgpool2d_int8_op = {"global_avgpool2d_int8", "rounded mean over H and W of uint8: (H, W, C) -> "
                                        "(C,) or (1, 1, C)", 1, {}, kGlobalAttrs, on_bytes<global_parse>,
                                        avgpool_u8_forward, nullptr, nullptr, Reads::uint8};
PYCNN_REGISTER_OP(maxpool2d_op);
PYCNN_REGISTER_OP(avgpool2d_op);
PYCNN_REGISTER_OP(global_maxpool2d_op);
PYCNN_REGISTER_OP(global_avgpool2d_op);
PYCNN_REGISTER_OP(maxpool2d_int8_op);
PYCNN_REGISTER_OP(avgpool2d_int8_op);
PYCNN_REGISTER_OP(global_maxpool2d_int8_op);
PYCNN_REGISTER_OP(global_avgpool2d_int8_op);

}  // namespace
}  // namespace pycnn
