// Activations by name, and how an op with an `activation` attribute applies one.
//
// Every activation is an ActivationDef registered by the file that computes it (the
// element-wise ones in activation.cpp, softmax in softmax.cpp). Forward maps the (rows, cols)
// pre-activation x to y; backward maps dy to dx from the output y, and also reads x when the
// derivative needs it (needs_input). Softmax runs over the last axis (cols); the element-wise
// ones ignore the split into rows and cols.
//
// Ops with an `activation` attribute (conv2d, dense, batchnorm, ...) resolve it at parse into
// a NodeActivation: relu, sigmoid and tanh run inside their kernels (Activation, runtime.h);
// any other runs after the kernel in forward and before it in backward, keeping x in the
// node's aux cells when its derivative needs it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "op_registry.h"
#include "runtime.h"

namespace pycnn {

struct ActivationDef {
  const char* name;
  const char* doc;
  Activation fused;    // the kernels' own form of it; linear: none
  bool needs_input;    // backward reads x
  bool over_last_axis; // softmax: rows are independent, cols are coupled
  void (*forward)(float* y, const float* x, int64_t rows, int64_t cols);  // y may be x
  void (*backward)(float* dx, const float* dy, const float* y, const float* x, int64_t rows,
                   int64_t cols);  // dx may be dy
};

bool register_activation(const ActivationDef* def);
const ActivationDef* find_activation(const std::string& name);
std::vector<const ActivationDef*> registered_activations();  // sorted by name
#define PYCNN_REGISTER_ACTIVATION(def) \
  [[maybe_unused]] static const bool pycnn_registered_activation_##def = ::pycnn::register_activation(&def)

// An op's activation, as its parse resolved it (trivially copyable: it lives in geometry).
struct NodeActivation {
  const ActivationDef* def = nullptr;
  int64_t cols = 1;  // the output's last axis

  // What the op's kernel applies itself (linear when the activation runs after the kernel).
  Activation kernel() const;
  // Aux cells per sample the activation keeps (the pre-activation x, when needed).
  int64_t aux_floats(int64_t out_size) const;
  // After the kernel wrote x into out (n values): out = act(x), keeping x in `kept`.
  void forward(float* out, float* kept, int64_t n) const;
  // Before the kernel's backward: the gradient w.r.t. the kernel's output x. Returns dout
  // itself when the kernel handles the activation, else a per-thread scratch buffer.
  const float* backward(const float* dout, const float* out, const float* kept, int64_t n) const;
};

// Resolves the attribute `attr` (a name from the registry) for an output of `out_shape`.
NodeActivation parse_activation(const OpArgs& args, const std::vector<int64_t>& out_shape,
                                const char* attr = "activation");

}  // namespace pycnn
