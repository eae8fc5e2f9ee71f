// The device half of the op contract: how the CUDA executor (csrc/cuda/executor.h) runs an op.
//
// An op is still described once, by its OpDef (csrc/op_registry.h): kind, attributes, the
// shape rule and every check, the geometry its parse stores in the Node. Its CUDA kernels are
// registered under the same kind from csrc/cuda/<family>.cu and read that same Node: they add
// no attributes and no checks of their own, only launches. A network whose nodes include a
// kind with no DeviceOpDef (the int8 ops) is refused by name when it is compiled for CUDA.
//
// Every pointer a DeviceOpDef receives is device memory over the WHOLE batch of `N` samples
// (the CPU contract's per-thread share becomes one launch over the batch); sizes come from the
// Node (in_sizes, out_size, aux_size, param_size) and its geometry. Launches go to the current
// stream; nothing here may synchronise with the host.
//
// Loss and update components (executor.h's LossDef / UpdateDef) have device halves registered
// the same way, by name.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/device_api.h"
#include "op_registry.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

// What a device forward / backward / commit reads and writes (device pointers).
struct DeviceArgs {
  const Node* node;
  int64_t N;                  // samples in the batch
  const float* const* in;     // in[j]: (N, node->in_sizes[j])
  float* out;                 // (N, node->out_size); unused by views (the executor aliases them)
  float* aux;                 // (N, node->aux_size) cells, kept from forward to backward
  const float* const* param;  // param[k]: (node->param_size[k]), or null when absent
  float* const* state;        // state[k]: the writable state parameters (ParamDef::state), else null
  float* work;                // workspace(node, N) floats, kept from forward to backward and commit
};

struct DeviceOpDef {
  const char* kind;  // the OpDef's kind
  // Why these kernels cannot run `node` (an attribute value they do not cover), or null.
  const char* (*unsupported)(const Node& node) = nullptr;
  // Device floats the node keeps per batch besides aux (batch statistics, transposed weights,
  // GEMM scratch), or null for none.
  int64_t (*workspace)(const Node& node, int64_t N) = nullptr;
  // Writes a.out (never called for a view).
  void (*forward)(const DeviceArgs& a) = nullptr;
  // dout (N, out_size) -> dinp[j] for every non-null dinp[j] (written, not accumulated) and
  // dparam[k] for every parameter present (never null then: frozen ones get scratch);
  // a.in / a.out / a.aux / a.work are what forward read and wrote.
  void (*backward)(const DeviceArgs& a, float* const* dinp, float* const* dparam, const float* dout) = nullptr;
  // After a step whose loss is finite: write a.state from what forward kept (moving statistics).
  // `finite` is a device flag (1.f: finite) the kernel reads, so the host never waits for the loss.
  void (*commit)(const DeviceArgs& a, const float* finite) = nullptr;
};

// The device half of a LossDef (same name): over rows [0, N) of out (N, cols) with the batch's
// targets ((N,) int64 or (N, cols) float32) and optional weights (N): writes row_loss[r] =
// w_r * loss_r, row_hit[r] = 1.f when the row's largest output is its target class (else 0),
// and, when grad is not null, grad (N, cols) = d loss / d out * scale * w_r. The executor sums
// row_loss and row_hit on the device.
struct DeviceLossDef {
  const char* name;
  void (*rows)(float* grad, float* row_loss, float* row_hit, const float* out, const void* targets,
               const float* weights, int64_t N, int64_t cols, float scale, const std::vector<double>& hyper);
};

// The device half of an UpdateDef (same name): n floats of w (and its slots) from gradient g,
// after the decoupled decay w -= w * decay when decay != 0; does nothing when *finite == 0.f.
// `hyper` are host values (the UpdateDef's order), passed to the kernel by value.
struct DeviceUpdateDef {
  const char* name;
  void (*apply)(float* w, float* const* slots, const float* g, int64_t n, const double* hyper, float decay,
                const float* finite);
};

bool register_device_op(const DeviceOpDef* def);
const DeviceOpDef* find_device_op(const std::string& kind);
std::vector<const DeviceOpDef*> registered_device_ops();
bool register_device_loss(const DeviceLossDef* def);
const DeviceLossDef* find_device_loss(const std::string& name);
bool register_device_update(const DeviceUpdateDef* def);
const DeviceUpdateDef* find_device_update(const std::string& name);

PYCNN_DEVICE_NAMESPACE_END

#define PYCNN_REGISTER_DEVICE_OP(def) \
  [[maybe_unused]] static const bool pycnn_registered_device_op_##def = ::pycnn::cuda::register_device_op(&def)
#define PYCNN_REGISTER_DEVICE_LOSS(def) \
  [[maybe_unused]] static const bool pycnn_registered_device_loss_##def = ::pycnn::cuda::register_device_loss(&def)
#define PYCNN_REGISTER_DEVICE_UPDATE(def) \
  [[maybe_unused]] static const bool pycnn_registered_device_update_##def = ::pycnn::cuda::register_device_update(&def)
