// Device half of the activation ops (activation.cpp) and the fused-activation helpers every
// device op calls (device_common.h):
//   activation  y = act(x) for every registered kind (softmax over the last axis); linear is a
//               view (the executor aliases it); the GELUs keep x in aux for backward
//   leaky_relu  y = x > 0 ? x : slope x, the slope from the node's LeakyGeom
#include <cstring>

#include "cuda/device_common.h"
#include "op_geometry.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

DeviceAct device_act(const NodeActivation& act) {
  static const struct {
    const char* name;
    DeviceAct kind;
  } kKinds[] = {{"linear", DeviceAct::linear},         {"relu", DeviceAct::relu},
                {"sigmoid", DeviceAct::sigmoid},       {"tanh", DeviceAct::tanh},
                {"leaky_relu", DeviceAct::leaky_relu}, {"gelu", DeviceAct::gelu},
                {"gelu_approximate", DeviceAct::gelu_approximate}, {"softmax", DeviceAct::softmax}};
  for (const auto& k : kKinds)
    if (std::strcmp(act.def->name, k.name) == 0) return k.kind;
  return DeviceAct::unknown;
}

const char* device_act_unsupported(const NodeActivation& act) {
  return device_act(act) == DeviceAct::unknown ? "its activation has no CUDA kernel" : nullptr;
}

namespace {

// Softmax of each row of x (rows, cols) into y (may be x): the row maximum subtracted first.
void softmax_rows(float* y, const float* x, int64_t rows, int64_t cols) {
  for_each(rows, "softmax", PYCNN_DEVICE_LAMBDA(int64_t r) {
    const float* z = x + r * cols;
    float* p = y + r * cols;
    float m = z[0];
    for (int64_t j = 1; j < cols; ++j) m = z[j] > m ? z[j] : m;
    float sum = 0.f;
    for (int64_t j = 0; j < cols; ++j) {
      p[j] = expf(z[j] - m);
      sum += p[j];
    }
    const float inv = 1.f / sum;
    for (int64_t j = 0; j < cols; ++j) p[j] *= inv;
  });
}

// "y = softmax(x)": dx_j = y_j (dy_j - sum_i dy_i y_i), per row.
void softmax_rows_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols) {
  for_each(rows, "softmax backward", PYCNN_DEVICE_LAMBDA(int64_t r) {
    const float* yr = y + r * cols;
    const float* d = dy + r * cols;
    float dot = 0.f;
    for (int64_t j = 0; j < cols; ++j) dot += d[j] * yr[j];
    float* o = dx + r * cols;
    for (int64_t j = 0; j < cols; ++j) o[j] = yr[j] * (d[j] - dot);
  });
}

}  // namespace

void activation_epilogue(const NodeActivation& act, float* out, const float* bias, float* kept, int64_t rows,
                         int64_t cols, float slope) {
  const DeviceAct a = device_act(act);
  const bool keep = act.def->needs_input && kept;
  const int64_t n = rows * cols;
  if (a == DeviceAct::softmax) {
    if (bias) for_each(n, "bias", PYCNN_DEVICE_LAMBDA(int64_t i) { out[i] += bias[i % cols]; });
    // softmax rows run over the activation's own last axis (act.cols), which is `cols` here
    softmax_rows(out, out, n / act.cols, act.cols);
    return;
  }
  if (a == DeviceAct::linear && !bias) return;
  for_each(n, "bias and activation", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const float z = bias ? out[i] + bias[i % cols] : out[i];
    if (keep) kept[i] = z;
    out[i] = device_act_forward(a, z, slope);
  });
}

const float* activation_gradient(const NodeActivation& act, float* dz, const float* dout, const float* out,
                                 const float* kept, int64_t n, float slope) {
  const DeviceAct a = device_act(act);
  if (a == DeviceAct::linear) return dout;
  if (a == DeviceAct::softmax) {
    softmax_rows_backward(dz, dout, out, n / act.cols, act.cols);
    return dz;
  }
  // The kept input exists only for an activation that needs it (callers pass where it would
  // be, which for the others lies past their aux cells: never read it then).
  const float* input = act.def->needs_input ? kept : nullptr;
  for_each(n, "activation backward", PYCNN_DEVICE_LAMBDA(int64_t i) {
    dz[i] = device_act_backward(a, dout[i], out[i], input ? input[i] : 0.f, slope);
  });
  return dz;
}

namespace {

// ---------------------------------------------------------------------------- activation op

const char* activation_unsupported(const Node& node) { return device_act_unsupported(node.geom<NodeActivation>()); }

// The op keeps its input in aux when the derivative needs it (activation.cpp's parse).
void activation_forward(const DeviceArgs& a) {
  const NodeActivation& act = a.node->geom<NodeActivation>();
  const int64_t n = a.N * a.node->out_size;
  copy_on_device(a.out, a.in[0], sizeof(float) * n);
  activation_epilogue(act, a.out, nullptr, act.def->needs_input ? a.aux : nullptr, n / act.cols, act.cols);
}

void activation_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const NodeActivation& act = a.node->geom<NodeActivation>();
  activation_gradient(act, dinp[0], dout, a.out, act.def->needs_input ? a.aux : nullptr, a.N * a.node->out_size);
}

const DeviceOpDef activation_device_op = {"activation", activation_unsupported, nullptr, activation_forward,
                                          activation_backward};

// ---------------------------------------------------------------------------- leaky_relu op

void leaky_relu_forward(const DeviceArgs& a) {
  const float slope = a.node->geom<LeakyGeom>().slope;
  const float* x = a.in[0];
  float* y = a.out;
  for_each(a.N * a.node->out_size, "leaky_relu", PYCNN_DEVICE_LAMBDA(int64_t i) {
    y[i] = device_act_forward(DeviceAct::leaky_relu, x[i], slope);
  });
}

void leaky_relu_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const float slope = a.node->geom<LeakyGeom>().slope;
  const float* y = a.out;
  float* dx = dinp[0];
  for_each(a.N * a.node->out_size, "leaky_relu backward", PYCNN_DEVICE_LAMBDA(int64_t i) {
    dx[i] = device_act_backward(DeviceAct::leaky_relu, dout[i], y[i], 0.f, slope);
  });
}

const DeviceOpDef leaky_relu_device_op = {"leaky_relu", nullptr, nullptr, leaky_relu_forward, leaky_relu_backward};

}  // namespace

PYCNN_REGISTER_DEVICE_OP(activation_device_op);
PYCNN_REGISTER_DEVICE_OP(leaky_relu_device_op);

PYCNN_DEVICE_NAMESPACE_END
