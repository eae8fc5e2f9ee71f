// Element-wise activations, forward and backward. Backward uses the forward output y.
#include "activation.h"
#include "network.h"

#include <cstring>

#include <cmath>
#include <string>
#include <vector>

#include "runtime.h"

namespace pycnn {
namespace {
constexpr int64_t kParallelMin = 1 << 15;  // below this, waking threads costs more than the loop
}

void relu_forward(float* out, const float* inp, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = inp[i] < 0.f ? 0.f : inp[i];  // keeps NaN
}

// "y = max(x, 0)": dx = dy where y > 0, else 0 (the derivative at 0 is taken as 0, as Keras does).
void relu_backward(float* dinp, const float* dout, const float* out, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) dinp[i] = out[i] > 0.f ? dout[i] : 0.f;
}

void sigmoid_forward(float* out, const float* inp, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = 1.f / (1.f + std::exp(-inp[i]));
}

// "y = 1 / (1 + exp(-x))": dx = dy * y * (1 - y).
void sigmoid_backward(float* dinp, const float* dout, const float* out, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) dinp[i] = dout[i] * out[i] * (1.f - out[i]);
}

void tanh_forward(float* out, const float* inp, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = std::tanh(inp[i]);
}

// "y = tanh(x)": dx = dy * (1 - y^2).
void tanh_backward(float* dinp, const float* dout, const float* out, int64_t n) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) dinp[i] = dout[i] * (1.f - out[i] * out[i]);
}

void leaky_relu_forward(float* out, const float* inp, int64_t n, float negative_slope) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) out[i] = inp[i] > 0.f ? inp[i] : negative_slope * inp[i];  // keeps NaN
}

// "y = x > 0 ? x : a x" with a >= 0: dx = dy where y > 0, else a dy (at 0 the slope a, as Keras).
void leaky_relu_backward(float* dinp, const float* dout, const float* out, int64_t n, float negative_slope) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (n > kParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) dinp[i] = out[i] > 0.f ? dout[i] : negative_slope * dout[i];
}

// ---------------------------------------------------------------------------- network step

// strs (activation): 'relu', 'sigmoid', 'tanh' or 'linear', element-wise, any shape.
namespace {

std::vector<int64_t> activation_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 0, 0, 1);
  node.act = net_activation(args, args.strs[0]);
  return args.in_shapes[0];
}

const float* activation_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  std::memcpy(out, in[0], sizeof(float) * nb * node.out_size);
  apply_activation(out, nb * node.out_size, node.act);
  return out;
}

void activation_net_backward(const NetNode& node, float* const* dinp, float* const*, const float* dout,
                             const float* const*, const float* out, const int32_t*, int64_t nb) {
  std::memcpy(dinp[0], dout, sizeof(float) * nb * node.out_size);
  activation_grad_inplace(dinp[0], out, nb * node.out_size, node.act);
}

}  // namespace

extern const NetOp activation_net_op = {"activation", activation_net_parse, activation_net_forward,
                                        activation_net_backward};

// leaky_relu: params (negative_slope as a (1,) array, >= 0), element-wise, any shape. The
// slope is a constant: its gradient buffer is never written.
namespace {

std::vector<int64_t> leaky_relu_net_parse(NetNode&, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 1, 0, 0);
  if (!args.params[0] || args.param_shapes[0] != std::vector<int64_t>{1})
    net_error(args, "expected negative_slope as a parameter of shape (1,). Received: " +
                        (args.params[0] ? net_shape_str(args.param_shapes[0]) : std::string("None")) + ".");
  if (!(args.params[0][0] >= 0.f))
    net_error(args, "expected negative_slope >= 0. Received: " + std::to_string(args.params[0][0]) + ".");
  return args.in_shapes[0];
}

const float* leaky_relu_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  leaky_relu_forward(out, in[0], nb * node.out_size, node.param[0][0]);
  return out;
}

void leaky_relu_net_backward(const NetNode& node, float* const* dinp, float* const*, const float* dout,
                             const float* const*, const float* out, const int32_t*, int64_t nb) {
  leaky_relu_backward(dinp[0], dout, out, nb * node.out_size, node.param[0][0]);
}

}  // namespace

extern const NetOp leaky_relu_net_op = {"leaky_relu", leaky_relu_net_parse, leaky_relu_net_forward,
                                        leaky_relu_net_backward};

}  // namespace pycnn
