// Fully connected layer: out (N, OUT) = act(inp (N, IN) @ weight (IN, OUT) + bias (OUT)).
#pragma once
#include <cstdint>
#include "runtime.h"

namespace pycnn {

// bias may be null.
void dense_forward(float* out, const float* inp, const float* weight, const float* bias,
                   int64_t N, int64_t IN, int64_t OUT, Activation act);

// dout is the gradient w.r.t. the activation's output `out` (needed unless act == linear).
// dinp (N, IN) and dbias (OUT) may be null to skip them; dweight (IN, OUT) is always written.
void dense_backward(float* dinp, float* dweight, float* dbias,
                    const float* dout, const float* inp, const float* weight, const float* out,
                    int64_t N, int64_t IN, int64_t OUT, Activation act);

}  // namespace pycnn
