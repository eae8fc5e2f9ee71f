// Rescaling (keras.layers.Rescaling): out = inp * scale + offset, float32, with scale and
// offset broadcast over the last axis.
//
// inp and out are (M, K) row-major: K = C (per-channel scale and offset, each (C,)) or
// K = 1 (one scale and one offset for every value; then M is the total size). The
// layer passes K = 1 whenever both are scalars so that the loop runs flat.
#pragma once
#include <cstdint>

namespace pycnn {

// The geometry the rescaling op stores in its node (node.geom<RescaleGeom>()): K = 1 or C;
// node.constants holds scale (K values), then offset (K values).
struct RescaleGeom {
  int64_t K;
};

void rescaling_forward(float* out, const float* inp, const float* scale, const float* offset, int64_t M, int64_t K);
// dout (M, K) -> dinp (M, K) = dout * scale (the offset and scale are constants).
void rescaling_backward(float* dinp, const float* dout, const float* scale, int64_t M, int64_t K);

}  // namespace pycnn
