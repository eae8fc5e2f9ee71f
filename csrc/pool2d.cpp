// Max and average pooling, NHWC; forward and backward side by side. Each output pixel
// scans its window row-major and vectorises over channels (the contiguous axis). Windows
// are clipped to the image, so 'same' padding never contributes a value.
#include "pool2d.h"
#include "network.h"

#include <algorithm>
#include <cstring>
#include <limits>

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

// ---------------------------------------------------------------------------- network step

// maxpool2d / avgpool2d: ints (KH, KW, SH, SW), strs (padding); input (H, W, C) ->
// (OH, OW, C). Max pooling keeps its argmax as the node's aux.
namespace {

std::vector<int64_t> pool2d_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 0, 4, 1);
  const std::vector<int64_t>& in = args.in_shapes[0];
  if (in.size() != 3) net_error(args, "needs (H, W, C) input. Received: " + net_dims_str(in) + ".");
  PoolShape& p = node.pool;
  p.N = 1; p.H = in[0]; p.W = in[1]; p.C = in[2];
  p.KH = args.ints[0]; p.KW = args.ints[1]; p.SH = args.ints[2]; p.SW = args.ints[3];
  if (p.KH < 1 || p.KW < 1 || p.SH < 1 || p.SW < 1) net_error(args, "expected a positive pool size and strides.");
  const bool same = net_padding_same(args, args.strs[0]);
  int64_t after;
  if (!window_output_size(p.H, p.KH, p.SH, same, &p.OH, &p.PT, &after) ||
      !window_output_size(p.W, p.KW, p.SW, same, &p.OW, &p.PL, &after))
    net_error(args, "computed output size would be zero or negative for input shape " + net_dims_str(in) + ".");
  return {p.OH, p.OW, p.C};
}

std::vector<int64_t> maxpool2d_net_parse(NetNode& node, const NetArgs& args) {
  std::vector<int64_t> out = pool2d_net_parse(node, args);
  node.aux_size = net_size(out);
  return out;
}

const float* maxpool2d_net_forward(const NetNode& node, const float* const* in, float* out, int32_t* aux, int64_t nb) {
  PoolShape s = node.pool;
  s.N = nb;
  maxpool2d_forward(out, aux, in[0], s);
  return out;
}

void maxpool2d_net_backward(const NetNode& node, float* const* dinp, float* const*, const float* dout,
                            const float* const*, const float*, const int32_t* aux, int64_t nb) {
  PoolShape s = node.pool;
  s.N = nb;
  maxpool2d_backward(dinp[0], dout, aux, s);
}

const float* avgpool2d_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  PoolShape s = node.pool;
  s.N = nb;
  avgpool2d_forward(out, in[0], s);
  return out;
}

void avgpool2d_net_backward(const NetNode& node, float* const* dinp, float* const*, const float* dout,
                            const float* const*, const float*, const int32_t*, int64_t nb) {
  PoolShape s = node.pool;
  s.N = nb;
  avgpool2d_backward(dinp[0], dout, s);
}

// global_maxpool2d / global_avgpool2d: no ints or strs; (H, W, C) -> (C,). The 2-D pooling
// kernels with one window covering the whole image.
std::vector<int64_t> global_pool_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 0, 0, 0);
  const std::vector<int64_t>& in = args.in_shapes[0];
  if (in.size() != 3) net_error(args, "needs (H, W, C) input. Received: " + net_dims_str(in) + ".");
  PoolShape& p = node.pool;
  p.N = 1; p.H = in[0]; p.W = in[1]; p.C = in[2];
  p.KH = p.SH = in[0]; p.KW = p.SW = in[1];
  p.PT = p.PL = 0;
  p.OH = p.OW = 1;
  return {p.C};
}

std::vector<int64_t> global_maxpool2d_net_parse(NetNode& node, const NetArgs& args) {
  std::vector<int64_t> out = global_pool_net_parse(node, args);
  node.aux_size = out[0];
  return out;
}

}  // namespace

extern const NetOp global_maxpool2d_net_op = {"global_maxpool2d", global_maxpool2d_net_parse, maxpool2d_net_forward,
                                              maxpool2d_net_backward};
extern const NetOp global_avgpool2d_net_op = {"global_avgpool2d", global_pool_net_parse, avgpool2d_net_forward,
                                              avgpool2d_net_backward};
extern const NetOp maxpool2d_net_op = {"maxpool2d", maxpool2d_net_parse, maxpool2d_net_forward,
                                       maxpool2d_net_backward};
extern const NetOp avgpool2d_net_op = {"avgpool2d", pool2d_net_parse, avgpool2d_net_forward, avgpool2d_net_backward};

}  // namespace pycnn
