// Rescaling (rescaling.h), forward and backward, and its op. It is usually the
// first layer of a model (uint8 pixels to [0, 1]), so it is a kernel, not NumPy.
#include "rescaling.h"

#include <string>
#include <vector>

#include "op_registry.h"
#include "runtime.h"

namespace pycnn {
namespace {
constexpr int64_t kParallelMin = 1 << 15;  // below this, waking threads costs more than the loop
}

void rescaling_forward(float* out, const float* inp, const float* scale, const float* offset, int64_t M, int64_t K) {
  if (K == 1) {
    const float s = scale[0], o = offset[0];
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (M > kParallelMin)
#endif
    for (int64_t i = 0; i < M; ++i) out[i] = inp[i] * s + o;
    return;
  }
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (M * K > kParallelMin)
#endif
  for (int64_t m = 0; m < M; ++m) {
    const float* x = inp + m * K;
    float* y = out + m * K;
    for (int64_t k = 0; k < K; ++k) y[k] = x[k] * scale[k] + offset[k];
  }
}

// "y = x * s + o": dx = dy * s.
void rescaling_backward(float* dinp, const float* dout, const float* scale, int64_t M, int64_t K) {
  if (K == 1) {
    const float s = scale[0];
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (M > kParallelMin)
#endif
    for (int64_t i = 0; i < M; ++i) dinp[i] = dout[i] * s;
    return;
  }
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (M * K > kParallelMin)
#endif
  for (int64_t m = 0; m < M; ++m) {
    const float* d = dout + m * K;
    float* g = dinp + m * K;
    for (int64_t k = 0; k < K; ++k) g[k] = d[k] * scale[k];
  }
}

// ---------------------------------------------------------------------------- the op

// rescaling: attrs scale and offset, each 1 value or C (the input's last axis), both the same
// length; any input shape -> the same: out = x * scale + offset.
namespace {

std::vector<int64_t> rescaling_parse(Node& node, const OpArgs& args) {
  const std::vector<int64_t>& in = args.in_shapes[0];
  const int64_t C = in.empty() ? 1 : in.back();
  const std::vector<double>& s = args.attrs.floats("scale");
  const std::vector<double>& o = args.attrs.floats("offset");
  const int64_t K = static_cast<int64_t>(s.size());
  if (s.size() != o.size() || (K != 1 && K != C))
    args.fail("expected scale and offset of 1 value or " + std::to_string(C) +
              " (the input's last axis), both the same length. Received: " + std::to_string(s.size()) + " and " +
              std::to_string(o.size()) + " values for input shape " + dims_str(in) + ".");
  node.geom<RescaleGeom>().K = K;
  node.constants.resize(static_cast<size_t>(2 * K));
  for (int64_t k = 0; k < K; ++k) {
    node.constants[k] = static_cast<float>(s[k]);
    node.constants[K + k] = static_cast<float>(o[k]);
  }
  return in;
}

const float* rescaling_op_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const RescaleGeom& g = node.geom<RescaleGeom>();
  rescaling_forward(out, in[0], node.constants.data(), node.constants.data() + g.K, nb * node.out_size / g.K, g.K);
  return out;
}

void rescaling_op_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                           const float*, const float*, int64_t nb) {
  const RescaleGeom& g = node.geom<RescaleGeom>();
  rescaling_backward(dinp[0], dout, node.constants.data(), nb * node.out_size / g.K, g.K);
}

const OpDef rescaling_op = {"rescaling", "x * scale + offset (one value, or one per channel of the last axis)", 1, {},
                            {{"scale", AttrType::Floats, std::vector<double>{1.0}},
                             {"offset", AttrType::Floats, std::vector<double>{0.0}}},
                            rescaling_parse, rescaling_op_forward, rescaling_op_backward};

PYCNN_REGISTER_OP(rescaling_op);

}  // namespace
}  // namespace pycnn
