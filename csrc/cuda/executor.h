// The CUDA executor: a compiled Network (network.h) run on the device with the op kernels
// registered in csrc/cuda/<family>.cu (device_op.h), in either build of the device runtime
// (device_api.h: the GPU, or the host emulation that checks every copy's provenance).
//
// A DeviceNetwork is made from the same NodeSpecs as the CPU executor's network (the binding
// converts Python's once, for both): compile_network checks them, then every node's kind must
// have a DeviceOpDef that accepts it (views, which alias their input, need none), else the
// error names the node. It owns device memory for:
//   the batch        inputs, targets and sample weights (staged through pinned host memory)
//   every value      each node's output over the batch (a view aliases its input's buffer),
//                    aux cells and workspace, the gradient slots of network.h's plan
//   the parameters   a device copy of every parameter array (uploaded from the host arrays at
//                    construction and by upload_params), per trained weight its gradient and
//                    the optimizer's slots
//   the loss         per-row loss and hit buffers, their sums and the finite flag
// Per-batch buffers are sized for the largest batch seen and reused.
//
// train_step mirrors the CPU executor (executor.h): the loss is sum_r w_r loss_r / N, the
// gradients are those of the batch mean, each weight is decayed and then updated, and a step
// whose loss is not finite updates nothing and commits nothing. Everything is queued on the
// network's stream; the one host wait is at the end, for the loss and hit sums (16 bytes).
// The weights and slots stay on the device until download_params / download_slots.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda/device_op.h"
#include "../executor.h"  // the CPU executor's LossDef / UpdateDef (not this file)
#include "network.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

// Device memory with one owner (device_alloc / device_free).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr, o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  // At least `bytes` (what was there is lost when it grows).
  void reserve(size_t bytes, const char* what);
  float* f() const { return static_cast<float*>(ptr_); }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  void release();

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory with one owner (pinned_alloc / pinned_free): the batch's staging.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { pinned_free(ptr_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr, o.bytes_ = 0; }
  void reserve(size_t bytes);
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// The loss of a step: a registered LossDef and its device half, with host arrays.
struct DeviceStepLoss {
  const LossDef* def = nullptr;
  const DeviceLossDef* device = nullptr;
  const void* targets = nullptr;          // host: (N,) int64 or (N, cols) float32
  const float* sample_weight = nullptr;   // host (N) or null
  std::vector<double> hyper;
};

// The update of a step (as StepUpdate without host arrays: the weights and slots are the
// network's device copies).
struct DeviceStepUpdate {
  const UpdateDef* def = nullptr;
  const DeviceUpdateDef* device = nullptr;
  std::vector<double> hyper;  // one set, or one per weight (hyper_stride)
  size_t hyper_stride = 0;
  std::vector<float> decay;   // empty, or per weight
};

class DeviceNetwork {
 public:
  // Compiles the specs (compile_network) and checks every node against its DeviceOpDef;
  // throws std::invalid_argument naming the node. `fn` names the caller in messages.
  DeviceNetwork(const std::vector<std::vector<int64_t>>& input_shapes, const std::vector<NodeSpec>& specs,
                const std::vector<int>& outputs, const std::string& fn);
  ~DeviceNetwork();
  DeviceNetwork(const DeviceNetwork&) = delete;
  DeviceNetwork& operator=(const DeviceNetwork&) = delete;

  const Network& net() const { return net_; }

  // Host arrays -> the device copies: every parameter (upload_params); device copies -> host:
  // every trained weight and state parameter (download_params).
  void upload_params();
  void download_params();
  // The update's slots, per trained weight def->slots arrays of its size (host memory).
  // Allocated (zeroed) on first use of an update def; another def replaces them.
  void upload_slots(const UpdateDef* def, const std::vector<std::vector<float*>>& host);
  void download_slots(const UpdateDef* def, const std::vector<std::vector<float*>>& host);
  // The last step's gradients -> host arrays, one per trained weight.
  void download_gradients(const std::vector<float*>& host);
  // Host gradients -> the device's gradient buffers, then the update (as after train_step).
  void apply_gradients(const std::vector<const float*>& host, const DeviceStepUpdate& update);

  // One training step over x[k] (host, (N, input size k)). Returns the mean loss; *hits counts
  // the rows whose largest output is their class; outputs_out (host, (N, cols)) or null.
  double train_step(const std::vector<const float*>& x, int64_t N, const DeviceStepLoss& loss,
                    const DeviceStepUpdate* update, int64_t* hits, float* outputs_out);
  // Forward only (the network as compiled: a training network uses batch statistics), the
  // outputs copied to outputs[o] (host).
  void predict(const std::vector<const float*>& x, int64_t N, float* const* outputs);

  int64_t capacity() const { return cap_; }
  // Device bytes held now (buffers, parameters, slots).
  size_t device_bytes() const;

 private:
  struct NodeRun;
  void ensure(int64_t N);
  void upload_batch(const std::vector<const float*>& x, int64_t N);
  void forward(int64_t N);
  void backward(int64_t N);
  void update(const DeviceStepUpdate& update);
  float* value(int v) const { return values_[v]; }
  float* slot(int s) const { return grads_[s].f(); }

  Network net_;
  std::string fn_;
  std::vector<const DeviceOpDef*> ops_;       // per node; null for a view
  Stream* stream_ = nullptr;
  int64_t cap_ = 0;
  // parameters: one device copy per distinct host array
  std::vector<const float*> param_host_;
  std::vector<int64_t> param_size_;
  std::vector<bool> param_written_;           // trained or state: download_params copies it back
  std::vector<DeviceBuffer> param_dev_;
  std::vector<std::vector<int>> node_param_;  // per node, per param: index into param_host_, -1 absent
  // gradients: per trained weight, and per (node, param) place when a weight has several
  std::vector<DeviceBuffer> weight_grad_;
  std::vector<int> weight_of_;                // per trained weight: its parameter index
  std::vector<std::vector<int>> places_;      // per trained weight: place buffer indices (empty: direct)
  std::vector<std::vector<int>> node_place_;  // per node, per param: place index, -1: the weight's own
  std::vector<DeviceBuffer> place_dev_;
  DeviceBuffer frozen_;
  int64_t frozen_floats_ = 1;
  const UpdateDef* slots_def_ = nullptr;
  std::vector<std::vector<DeviceBuffer>> slots_;
  // per batch
  std::vector<DeviceBuffer> inputs_, acts_, aux_, work_, grads_;
  std::vector<float*> values_;
  DeviceBuffer targets_, sample_weight_, row_loss_, row_hit_, sums_;
  std::vector<PinnedBuffer> pinned_;  // per input, then targets, sample weights, sums, outputs
  std::vector<NodeRun> runs_;
  int64_t last_N_ = 0;
};

PYCNN_DEVICE_NAMESPACE_END
