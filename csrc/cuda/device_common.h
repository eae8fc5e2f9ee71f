// Helpers the device ops (csrc/cuda/<family>.cu) share: an op's fused activation on the
// device (activation.cu) and column sums over rows (dense.cu), as launches on the current
// stream over device pointers.
//
// Activations run as an epilogue after the op's own kernel, whatever the kind: the CPU kernels
// fuse relu / sigmoid / tanh into their loops and run the others after, but the arithmetic of
// every kind is the same formula element by element (softmax: per row of the last axis).
#pragma once
#include <math.h>

#include <cstdint>

#include "activation.h"
#include "cuda/device_op.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

// The activation kinds the device kernels compute.
enum class DeviceAct : int { linear, relu, sigmoid, tanh, leaky_relu, gelu, gelu_approximate, softmax, unknown };

// `act`'s kind (unknown: an activation registered without device arithmetic).
DeviceAct device_act(const NodeActivation& act);
// Why the device cannot apply `act`, or null.
const char* device_act_unsupported(const NodeActivation& act);

// The slope of the `leaky_relu` activation kind (Keras's activation default; activation.cpp).
constexpr float kDeviceLeakySlope = 0.2f;

// y = act(x) for the element-wise kinds (softmax is per row: see activation.cu).
PYCNN_HD inline float device_act_forward(DeviceAct a, float x, float slope) {
  switch (a) {
    case DeviceAct::relu: return x < 0.f ? 0.f : x;  // keeps NaN, as the CPU kernels do
    case DeviceAct::sigmoid: return 1.f / (1.f + expf(-x));
    case DeviceAct::tanh: return tanhf(x);
    case DeviceAct::leaky_relu: return x > 0.f ? x : slope * x;
    case DeviceAct::gelu: return 0.5f * x * erfcf(-x * 0.70710678118654752f);
    case DeviceAct::gelu_approximate:
      return 0.5f * x * (1.f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    default: return x;
  }
}

// dx = dy * act'(x) from the output y (and the input x for the GELUs), as activation.cpp.
PYCNN_HD inline float device_act_backward(DeviceAct a, float dy, float y, float x, float slope) {
  switch (a) {
    case DeviceAct::relu: return y > 0.f ? dy : 0.f;
    case DeviceAct::sigmoid: return dy * (y * (1.f - y));
    case DeviceAct::tanh: return dy * (1.f - y * y);
    case DeviceAct::leaky_relu: return y > 0.f ? dy : slope * dy;
    case DeviceAct::gelu:
      // d/dx [x Phi(x)] = Phi(x) + x phi(x)
      return dy * (0.5f * erfcf(-x * 0.70710678118654752f) + x * expf(-0.5f * x * x) * 0.39894228040143268f);
    case DeviceAct::gelu_approximate: {
      const float k = 0.79788456080286536f, c = 0.044715f, t = tanhf(k * (x + c * x * x * x));
      return dy * (0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * k * (1.f + 3.f * c * x * x));
    }
    default: return dy;
  }
}

// The epilogue of an op whose kernel wrote z into out (rows, cols): out = act(z + bias) in
// place (bias (cols) or null), with z + bias kept in `kept` (rows * cols) when the derivative
// needs the input (act.def->needs_input); `slope` is leaky_relu's.
void activation_epilogue(const NodeActivation& act, float* out, const float* bias, float* kept, int64_t rows,
                         int64_t cols, float slope = kDeviceLeakySlope);
// The gradient w.r.t. the pre-activation from dout (n values of rows of act.cols): dout itself
// for linear, else written into `dz` (n floats) and returned.
const float* activation_gradient(const NodeActivation& act, float* dz, const float* dout, const float* out,
                                 const float* kept, int64_t n, float slope = kDeviceLeakySlope);
// Floats of `dz` activation_gradient needs for n values (0 for linear).
inline int64_t activation_gradient_floats(const NodeActivation& act, int64_t n) {
  return act.def->forward ? n : 0;
}

// sums (cols) = the column sums of x (rows, cols), in two deterministic passes (partial sums
// over blocks of rows, then over the blocks); `work` holds column_sums_floats(rows, cols).
int64_t column_sums_floats(int64_t rows, int64_t cols);
void column_sums(float* sums, const float* x, int64_t rows, int64_t cols, float* work);

PYCNN_DEVICE_NAMESPACE_END
