// Rescaling (rescaling.h), forward and backward, and its network-step op. It is usually the
// first layer of a model (uint8 pixels to [0, 1]), so it is a kernel, not NumPy.
#include "rescaling.h"

#include <string>
#include <vector>

#include "network.h"
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

// ---------------------------------------------------------------------------- network step

// rescaling: params (scale, offset), both (1,) or both (C,) with C the input's last axis;
// any input shape -> the same. dims[0] = K (1 or C). The parameters are constants: their
// gradient buffers are never written.
namespace {

std::vector<int64_t> rescaling_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 2, 0, 0);
  const std::vector<int64_t>& in = args.in_shapes[0];
  const int64_t C = in.empty() ? 1 : in.back();
  const std::vector<int64_t>& s = args.param_shapes[0];
  const std::vector<int64_t>& o = args.param_shapes[1];
  const bool ok = args.params[0] && args.params[1] && s.size() == 1 && o.size() == 1 && s[0] == o[0] &&
                  (s[0] == 1 || s[0] == C);
  if (!ok)
    net_error(args, "expected scale and offset of shape (1,) or (" + std::to_string(C) +
                        ",) (the input's last axis), both the same. Received: scale " + net_shape_str(s) +
                        ", offset " + net_shape_str(o) + ", input shape " + net_dims_str(in) + ".");
  node.dims[0] = s[0];
  return in;
}

const float* rescaling_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  const int64_t K = node.dims[0];
  rescaling_forward(out, in[0], node.param[0], node.param[1], nb * node.out_size / K, K);
  return out;
}

void rescaling_net_backward(const NetNode& node, float* const* dinp, float* const*, const float* dout,
                            const float* const*, const float*, const int32_t*, int64_t nb) {
  const int64_t K = node.dims[0];
  rescaling_backward(dinp[0], dout, node.param[0], nb * node.out_size / K, K);
}

}  // namespace

extern const NetOp rescaling_net_op = {"rescaling", rescaling_net_parse, rescaling_net_forward,
                                       rescaling_net_backward};

}  // namespace pycnn
