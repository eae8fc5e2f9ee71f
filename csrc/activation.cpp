// The element-wise activations (linear, relu, sigmoid, tanh, leaky_relu, gelu), the activation
// registry, NodeActivation, and two ops:
//   activation  attrs (activation); any input shape -> the same: y = act(x)
//   leaky_relu  attrs (negative_slope >= 0); any shape -> the same: y = x > 0 ? x : slope x
#include "activation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "executor.h"
#include "op_geometry.h"

namespace pycnn {

// ---------------------------------------------------------------------------- registry

namespace {
using ActivationRegistry = Registry<ActivationDef, &ActivationDef::name>;
}  // namespace

bool register_activation(const ActivationDef* def) { return ActivationRegistry::add(def, "activation"); }
const ActivationDef* find_activation(const std::string& name) { return ActivationRegistry::find(name); }
std::vector<const ActivationDef*> registered_activations() { return ActivationRegistry::all(); }

NodeActivation parse_activation(const OpArgs& args, const std::vector<int64_t>& out_shape, const char* attr) {
  const std::string& name = args.attrs.s(attr);
  NodeActivation act;
  act.def = find_activation(name);
  if (!act.def) {
    std::string names;
    for (const ActivationDef* d : registered_activations()) names += (names.empty() ? "'" : ", '") + std::string(d->name) + "'";
    args.fail(std::string("expected ") + attr + " to be one of " + names + ". Received: " + attr + "='" + name + "'.");
  }
  act.cols = out_shape.empty() ? 1 : out_shape.back();
  return act;
}

Activation NodeActivation::kernel() const { return def->fused; }

int64_t NodeActivation::aux_floats(int64_t out_size) const {
  return def->fused == Activation::linear && def->needs_input ? out_size : 0;
}

void NodeActivation::forward(float* out, float* kept, int64_t n) const {
  if (def->fused != Activation::linear || def->forward == nullptr) return;  // the kernel applied it
  if (def->needs_input) std::memcpy(kept, out, sizeof(float) * n);
  def->forward(out, out, n / cols, cols);
}

const float* NodeActivation::backward(const float* dout, const float* out, const float* kept, int64_t n) const {
  if (def->fused != Activation::linear || def->backward == nullptr) return dout;
  float* dz = scratch(slot_base(), static_cast<std::size_t>(n), kScratchActivation);
  def->backward(dz, dout, out, kept, n / cols, cols);
  return dz;
}

// ---------------------------------------------------------------------------- element-wise

namespace {

// The fused kinds run the kernels' own loops (runtime.cpp), so a relu is the same float
// operations whether a conv applies it or an Activation layer does.
template <Activation A>
void fused_forward(float* y, const float* x, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  if (y != x) std::memcpy(y, x, sizeof(float) * n);
  apply_activation(y, n, A);
}

template <Activation A>
void fused_backward(float* dx, const float* dy, const float* y, const float*, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  if (dx != dy) std::memcpy(dx, dy, sizeof(float) * n);
  activation_grad_inplace(dx, y, n, A);
}

// Keras's activation default slope (keras.activations.leaky_relu); the LeakyReLU layer's
// default, 0.3, goes through the leaky_relu op's attribute.
constexpr float kLeakySlope = 0.2f;

void leaky_forward(float* y, const float* x, int64_t n, float slope) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : slope * x[i];  // keeps NaN
}

// "y = x > 0 ? x : a x" with a >= 0: y > 0 exactly where x > 0, so dx = y > 0 ? dy : a dy
// (at 0 the slope a, as Keras).
void leaky_backward(float* dx, const float* dy, const float* y, int64_t n, float slope) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.f ? dy[i] : slope * dy[i];
}

const ActivationDef linear_def = {"linear", "the identity (activation=None)", Activation::linear, false, false,
                                  nullptr, nullptr};
const ActivationDef relu_def = {"relu", "max(x, 0)", Activation::relu, false, false,
                                fused_forward<Activation::relu>, fused_backward<Activation::relu>};
const ActivationDef sigmoid_def = {"sigmoid", "1 / (1 + exp(-x))", Activation::sigmoid, false, false,
                                   fused_forward<Activation::sigmoid>, fused_backward<Activation::sigmoid>};
const ActivationDef tanh_def = {"tanh", "tanh(x)", Activation::tanh, false, false, fused_forward<Activation::tanh>,
                                fused_backward<Activation::tanh>};
const ActivationDef leaky_relu_def = {
    "leaky_relu", "x > 0 ? x : 0.2 x (Keras's activation default; layers.LeakyReLU sets the slope)",
    Activation::linear, false, false,
    [](float* y, const float* x, int64_t rows, int64_t cols) { leaky_forward(y, x, rows * cols, kLeakySlope); },
    [](float* dx, const float* dy, const float* y, const float*, int64_t rows, int64_t cols) {
      leaky_backward(dx, dy, y, rows * cols, kLeakySlope);
    }};

// GELU, x * P(X <= x) for a standard normal X, in Keras's two forms. The derivative needs x
// (the output does not determine it), so ops that apply GELU keep the pre-activation.
//   exact:       y = 0.5 x (1 + erf(x / sqrt(2))) = 0.5 x erfc(-x / sqrt(2))
//                dy/dx = 0.5 erfc(-x / sqrt(2)) + x exp(-x^2 / 2) / sqrt(2 pi)
//                (erfc, as TensorFlow: 1 + erf(x / sqrt(2)) cancels to a few digits for x < -2)
//   approximate: y = 0.5 x (1 + tanh(k (x + c x^3))), k = sqrt(2 / pi), c = 0.044715
//                dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2), t = tanh(k (x + c x^3))
constexpr float kInvSqrt2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kGeluK = 0.79788456080286536f, kGeluC = 0.044715f;

// exp(v) for v <= 0 in float arithmetic without branches (Cephes's expf: 2^n times a degree-6
// polynomial of the remainder), so that GCC vectorises the loops below; 0 below -87.
inline float exp_nonpositive(float v) {
  v = v > -87.0f ? v : -87.0f;  // NaN too: the callers multiply the result by what was NaN
  v = v < 0.0f ? v : 0.0f;
  // Round to nearest by adding and removing 1.5 * 2^23 (|v log2 e| < 2^22): nearbyint would
  // keep GCC from vectorising the loop (it may set errno).
  const float n = (v * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = v - n * 0.693359375f;  // ln 2 in two parts: the product with n stays exact
  r -= n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 0]
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return p * two_n;
}

// erfc(z) with a fractional error of about 1e-7 before float rounding (Numerical Recipes'
// erfcc, a Chebyshev fit of erfc(|z|) e^{z^2}), and erfc(z) = 2 - erfc(-z) for z < 0.
inline float erfc_approx(float z) {
  const float a = std::fabs(z);
  const float t = 1.0f / (1.0f + 0.5f * a);
  float q = 0.17087277f;
  q = q * t - 0.82215223f;
  q = q * t + 1.48851587f;
  q = q * t - 1.13520398f;
  q = q * t + 0.27886807f;
  q = q * t - 0.18628806f;
  q = q * t + 0.09678418f;
  q = q * t + 0.37409196f;
  q = q * t + 1.00002368f;
  q = q * t - 1.26551223f;
  const float tail = t * exp_nonpositive(q - a * a);
  return z >= 0.0f ? tail : 2.0f - tail;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define PYCNN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PYCNN_CLONES
#endif

PYCNN_CLONES void gelu_forward(float* y, const float* x, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows * cols; ++i) y[i] = 0.5f * x[i] * erfc_approx(-x[i] * kInvSqrt2);
}

// d/dx [x Phi(x)] = Phi(x) + x phi(x).
PYCNN_CLONES void gelu_backward(float* dx, const float* dy, const float*, const float* x, int64_t rows,
                                int64_t cols) {
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = x[i];
    dx[i] = dy[i] * (0.5f * erfc_approx(-v * kInvSqrt2) + v * exp_nonpositive(-0.5f * v * v) * kInvSqrt2Pi);
  }
}

void gelu_approximate_forward(float* y, const float* x, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.f + std::tanh(kGeluK * (v + kGeluC * v * v * v)));
  }
}

void gelu_approximate_backward(float* dx, const float* dy, const float*, const float* x, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = x[i], t = std::tanh(kGeluK * (v + kGeluC * v * v * v));
    dx[i] = dy[i] * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * kGeluK * (1.f + 3.f * kGeluC * v * v));
  }
}

const ActivationDef gelu_def = {"gelu", "x * P(X <= x) = 0.5 x (1 + erf(x / sqrt(2))), Keras's exact GELU",
                                Activation::linear, true, false, gelu_forward, gelu_backward};
const ActivationDef gelu_approximate_def = {
    "gelu_approximate", "0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), Keras's gelu(approximate=True)",
    Activation::linear, true, false, gelu_approximate_forward, gelu_approximate_backward};

PYCNN_REGISTER_ACTIVATION(linear_def);
PYCNN_REGISTER_ACTIVATION(relu_def);
PYCNN_REGISTER_ACTIVATION(sigmoid_def);
PYCNN_REGISTER_ACTIVATION(tanh_def);
PYCNN_REGISTER_ACTIVATION(leaky_relu_def);
PYCNN_REGISTER_ACTIVATION(gelu_def);
PYCNN_REGISTER_ACTIVATION(gelu_approximate_def);

// ---------------------------------------------------------------------------- ops

// activation: out = act(in); the kept input (aux) when the derivative needs it.
std::vector<int64_t> activation_parse(Node& node, const OpArgs& args) {
  NodeActivation& act = node.geom<NodeActivation>() = parse_activation(args, args.in_shapes[0]);
  node.view = act.def->forward == nullptr;  // linear
  node.aux_size = act.def->needs_input ? size_of(args.in_shapes[0]) : 0;
  return args.in_shapes[0];
}

const float* activation_forward(const Node& node, const float* const* in, float* out, float* aux, int64_t nb) {
  const NodeActivation& act = node.geom<NodeActivation>();
  if (node.view) return in[0];
  const int64_t n = nb * node.out_size;
  if (act.def->needs_input) std::memcpy(aux, in[0], sizeof(float) * n);
  act.def->forward(out, in[0], n / act.cols, act.cols);
  return out;
}

void activation_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const* in,
                         const float* out, const float* aux, int64_t nb) {
  const NodeActivation& act = node.geom<NodeActivation>();
  const int64_t n = nb * node.out_size;
  if (node.view) {
    std::memcpy(dinp[0], dout, sizeof(float) * n);
    return;
  }
  act.def->backward(dinp[0], dout, out, aux, n / act.cols, act.cols);
}


const OpDef activation_op = {
    "activation", "y = act(x) element-wise (softmax: over the last axis); any shape -> the same", 1, {},
    {{"activation", AttrType::Str, std::string("linear")}},
    activation_parse, activation_forward, activation_backward};

std::vector<int64_t> leaky_relu_parse(Node& node, const OpArgs& args) {
  const double slope = args.attrs.f("negative_slope");
  if (!(slope >= 0.0) || !std::isfinite(slope))
    args.fail("expected negative_slope to be a finite number >= 0. Received: negative_slope=" + std::to_string(slope) + ".");
  node.geom<LeakyGeom>().slope = static_cast<float>(slope);
  return args.in_shapes[0];
}

const float* leaky_relu_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  leaky_forward(out, in[0], nb * node.out_size, node.geom<LeakyGeom>().slope);
  return out;
}

void leaky_relu_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                         const float* out, const float*, int64_t nb) {
  leaky_backward(dinp[0], dout, out, nb * node.out_size, node.geom<LeakyGeom>().slope);
}

const OpDef leaky_relu_op = {"leaky_relu", "y = x > 0 ? x : negative_slope * x; any shape -> the same", 1, {},
                             {{"negative_slope", AttrType::Float, 0.3}},
                             leaky_relu_parse, leaky_relu_forward, leaky_relu_backward};

PYCNN_REGISTER_OP(activation_op);
PYCNN_REGISTER_OP(leaky_relu_op);

}  // namespace
}  // namespace pycnn
