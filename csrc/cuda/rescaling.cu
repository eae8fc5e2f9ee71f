// The device half of rescaling (rescaling.cpp): out = inp * scale + offset over (M, K) rows,
// K = 1 or C, with the node's RescaleGeom (rescaling.h).
//
// scale and offset are per-node constants (node.constants, host memory): the kernels take
// them by value as launch arguments, kChunk channels per launch (one launch for K <= kChunk,
// the usual 1 or 3), so no host-to-device copy runs inside the step.
#include <cstdint>

#include "cuda/device_op.h"
#include "rescaling.h"

PYCNN_DEVICE_NAMESPACE_BEGIN
namespace {

constexpr int64_t kChunk = 64;
struct Constants {
  float scale[kChunk], offset[kChunk];
};

// y[m, k0 + j] = x[m, k0 + j] * scale[k0 + j] + offset[k0 + j] for j < count, every row m
// (`with_offset` false: y = x * scale, the backward).
void rescale(float* y, const float* x, const Node& node, int64_t N, bool with_offset, const char* what) {
  const int64_t K = node.geom<RescaleGeom>().K, M = N * node.out_size / K;
  const float* scale = node.constants.data();
  const float* offset = scale + K;
  for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
    const int64_t count = K - k0 < kChunk ? K - k0 : kChunk;
    Constants c{};
    for (int64_t j = 0; j < count; ++j) {
      c.scale[j] = scale[k0 + j];
      c.offset[j] = with_offset ? offset[k0 + j] : 0.f;
    }
    if (with_offset)
      for_each(M * count, what, PYCNN_DEVICE_LAMBDA(int64_t i) {
        const int64_t j = i % count, e = (i / count) * K + k0 + j;
        y[e] = x[e] * c.scale[j] + c.offset[j];
      });
    else
      for_each(M * count, what, PYCNN_DEVICE_LAMBDA(int64_t i) {
        const int64_t j = i % count, e = (i / count) * K + k0 + j;
        y[e] = x[e] * c.scale[j];
      });
  }
}

void rescaling_forward(const DeviceArgs& a) { rescale(a.out, a.in[0], *a.node, a.N, true, "rescaling_forward"); }

// "y = x * s + o": dx = dy * s.
void rescaling_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  if (dinp[0]) rescale(dinp[0], dout, *a.node, a.N, false, "rescaling_backward");
}

const DeviceOpDef rescaling_device = {"rescaling", nullptr, nullptr, rescaling_forward, rescaling_backward};

PYCNN_REGISTER_DEVICE_OP(rescaling_device);

}  // namespace
PYCNN_DEVICE_NAMESPACE_END
