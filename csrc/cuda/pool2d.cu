// Device half of the pooling ops (pool2d.cpp): maxpool2d, avgpool2d, global_maxpool2d,
// global_avgpool2d, on the geometry their parse stored (PoolShape; a global pool is one window
// over the whole image). Windows are clipped to the image ('same' padding never counts).
//   max forward  one thread per output element: the first maximum in scan order (a NaN wins and
//                keeps its place, as on the CPU); its index within the sample, (ih * W + iw) * C + c,
//                goes to aux as int32
//   max backward one thread per input element: the sum of dout over the windows whose argmax it is,
//                in the CPU scatter's order
//   avg          the mean of the real elements; backward sums dout / count over the windows
//                containing the element
#include "cuda/device_common.h"
#include "pool2d.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

namespace {

struct Window {
  int64_t h0, h1, w0, w1;
};

PYCNN_HD inline Window window_of(const PoolShape& s, int64_t oh, int64_t ow) {
  const int64_t h = oh * s.SH - s.PT, w = ow * s.SW - s.PL;
  Window r;
  r.h0 = h > 0 ? h : 0;
  r.h1 = h + s.KH < s.H ? h + s.KH : s.H;
  r.w0 = w > 0 ? w : 0;
  r.w1 = w + s.KW < s.W ? w + s.KW : s.W;
  return r;
}

// Output rows (or columns) whose windows contain input row i: [*o0, *o1).
// oh*S - P <= i < oh*S - P + K  <=>  (i + P - K) / S < oh <= (i + P) / S
PYCNN_HD inline void containing(int64_t i, int64_t pad, int64_t k, int64_t stride, int64_t out, int64_t* o0,
                                int64_t* o1) {
  const int64_t t = i + pad - k + 1;
  *o0 = t <= 0 ? 0 : (t + stride - 1) / stride;
  const int64_t hi = (i + pad) / stride + 1;
  *o1 = hi < out ? hi : out;
}

PoolShape shape_of(const DeviceArgs& a) {
  PoolShape s = a.node->geom<PoolShape>();
  s.N = a.N;
  return s;
}

void maxpool_forward(const DeviceArgs& a) {
  const PoolShape s = shape_of(a);
  const float* inp = a.in[0];
  float* out = a.out;
  int32_t* argmax = reinterpret_cast<int32_t*>(a.aux);
  for_each(s.N * s.OH * s.OW * s.C, "maxpool2d", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % s.C, ow = (i / s.C) % s.OW, oh = (i / (s.C * s.OW)) % s.OH, n = i / (s.C * s.OW * s.OH);
    const float* img = inp + n * s.H * s.W * s.C;
    const Window w = window_of(s, oh, ow);
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
    argmax[i] = static_cast<int32_t>(best);
    out[i] = m;
  });
}

void maxpool_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const PoolShape s = shape_of(a);
  const int32_t* argmax = reinterpret_cast<const int32_t*>(a.aux);
  float* dx = dinp[0];
  for_each(s.N * s.H * s.W * s.C, "maxpool2d backward", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % s.C, iw = (i / s.C) % s.W, ih = (i / (s.C * s.W)) % s.H, n = i / (s.C * s.W * s.H);
    const int64_t self = (ih * s.W + iw) * s.C + c;
    int64_t oh0, oh1, ow0, ow1;
    containing(ih, s.PT, s.KH, s.SH, s.OH, &oh0, &oh1);
    containing(iw, s.PL, s.KW, s.SW, s.OW, &ow0, &ow1);
    float acc = 0.f;
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const int64_t j = ((n * s.OH + oh) * s.OW + ow) * s.C + c;
        if (argmax[j] == self) acc += dout[j];
      }
    dx[i] = acc;
  });
}

void avgpool_forward(const DeviceArgs& a) {
  const PoolShape s = shape_of(a);
  const float* inp = a.in[0];
  float* out = a.out;
  for_each(s.N * s.OH * s.OW * s.C, "avgpool2d", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % s.C, ow = (i / s.C) % s.OW, oh = (i / (s.C * s.OW)) % s.OH, n = i / (s.C * s.OW * s.OH);
    const float* img = inp + n * s.H * s.W * s.C;
    const Window w = window_of(s, oh, ow);
    float acc = 0.f;
    for (int64_t ih = w.h0; ih < w.h1; ++ih)
      for (int64_t iw = w.w0; iw < w.w1; ++iw) acc += img[(ih * s.W + iw) * s.C + c];
    out[i] = acc * (1.f / static_cast<float>((w.h1 - w.h0) * (w.w1 - w.w0)));
  });
}

// "o = sum(window) / count": each element gets dout / count of every window containing it.
void avgpool_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const PoolShape s = shape_of(a);
  float* dx = dinp[0];
  for_each(s.N * s.H * s.W * s.C, "avgpool2d backward", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % s.C, iw = (i / s.C) % s.W, ih = (i / (s.C * s.W)) % s.H, n = i / (s.C * s.W * s.H);
    int64_t oh0, oh1, ow0, ow1;
    containing(ih, s.PT, s.KH, s.SH, s.OH, &oh0, &oh1);
    containing(iw, s.PL, s.KW, s.SW, s.OW, &ow0, &ow1);
    float acc = 0.f;
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const Window w = window_of(s, oh, ow);
        acc += dout[((n * s.OH + oh) * s.OW + ow) * s.C + c] * (1.f / static_cast<float>((w.h1 - w.h0) * (w.w1 - w.w0)));
      }
    dx[i] = acc;
  });
}

const DeviceOpDef maxpool2d_device_op = {"maxpool2d", nullptr, nullptr, maxpool_forward, maxpool_backward};
const DeviceOpDef avgpool2d_device_op = {"avgpool2d", nullptr, nullptr, avgpool_forward, avgpool_backward};
const DeviceOpDef global_maxpool2d_device_op = {"global_maxpool2d", nullptr, nullptr, maxpool_forward,
                                                maxpool_backward};
const DeviceOpDef global_avgpool2d_device_op = {"global_avgpool2d", nullptr, nullptr, avgpool_forward,
                                                avgpool_backward};

}  // namespace

PYCNN_REGISTER_DEVICE_OP(maxpool2d_device_op);
PYCNN_REGISTER_DEVICE_OP(avgpool2d_device_op);
PYCNN_REGISTER_DEVICE_OP(global_maxpool2d_device_op);
PYCNN_REGISTER_DEVICE_OP(global_avgpool2d_device_op);

PYCNN_DEVICE_NAMESPACE_END
