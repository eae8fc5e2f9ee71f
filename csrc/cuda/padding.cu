// The device half of zero_padding2d and cropping2d (padding.cpp), NHWC over the whole batch,
// with the node's FrameGeom (padding.h). Every launch is a gather over its output: `frame`
// (padding forward, cropping backward) reads the small image or writes 0 outside it, `window`
// (padding backward, cropping forward) reads the window of the large image.
#include <cstdint>

#include "cuda/device_op.h"
#include "padding.h"

PYCNN_DEVICE_NAMESPACE_BEGIN
namespace {

// big (N, BH, BW, C) = zeros with small (N, SH, SW, C) at row T, column L.
void frame(float* big, const float* small, int64_t N, int64_t SH, int64_t SW, int64_t C, int64_t BH, int64_t BW,
           int64_t T, int64_t L, const char* what) {
  for_each(N * BH * BW * C, what, PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % C, x = (i / C) % BW - L, y = (i / (C * BW)) % BH - T, n = i / (C * BW * BH);
    big[i] = (y >= 0 && y < SH && x >= 0 && x < SW) ? small[((n * SH + y) * SW + x) * C + c] : 0.f;
  });
}

// small (N, SH, SW, C) = big (N, BH, BW, C) at rows [T, T + SH), columns [L, L + SW).
void window(float* small, const float* big, int64_t N, int64_t SH, int64_t SW, int64_t C, int64_t BH, int64_t BW,
            int64_t T, int64_t L, const char* what) {
  for_each(N * SH * SW * C, what, PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % C, x = (i / C) % SW, y = (i / (C * SW)) % SH, n = i / (C * SW * SH);
    small[i] = big[((n * BH + T + y) * BW + L + x) * C + c];
  });
}

void padding_forward(const DeviceArgs& a) {
  const FrameGeom& d = a.node->geom<FrameGeom>();
  frame(a.out, a.in[0], a.N, d.H, d.W, d.C, d.T + d.H + d.B, d.L + d.W + d.R, d.T, d.L, "zero_padding2d_forward");
}

// "out[T + y, L + x] = inp[y, x]", the frame constant: dinp[y, x] = dout[T + y, L + x].
void padding_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const FrameGeom& d = a.node->geom<FrameGeom>();
  if (dinp[0])
    window(dinp[0], dout, a.N, d.H, d.W, d.C, d.T + d.H + d.B, d.L + d.W + d.R, d.T, d.L, "zero_padding2d_backward");
}

void cropping_forward(const DeviceArgs& a) {
  const FrameGeom& d = a.node->geom<FrameGeom>();
  window(a.out, a.in[0], a.N, d.H - d.T - d.B, d.W - d.L - d.R, d.C, d.H, d.W, d.T, d.L, "cropping2d_forward");
}

// "out[y, x] = inp[T + y, L + x]": dinp is dout at that place, 0 on the cropped border.
void cropping_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const FrameGeom& d = a.node->geom<FrameGeom>();
  if (dinp[0])
    frame(dinp[0], dout, a.N, d.H - d.T - d.B, d.W - d.L - d.R, d.C, d.H, d.W, d.T, d.L, "cropping2d_backward");
}

const DeviceOpDef zero_padding2d_device = {"zero_padding2d", nullptr, nullptr, padding_forward, padding_backward};
const DeviceOpDef cropping2d_device = {"cropping2d", nullptr, nullptr, cropping_forward, cropping_backward};

PYCNN_REGISTER_DEVICE_OP(zero_padding2d_device);
PYCNN_REGISTER_DEVICE_OP(cropping2d_device);

}  // namespace
PYCNN_DEVICE_NAMESPACE_END
