// The CUDA executor (executor.h). The step's order is the CPU executor's (executor.cpp):
// forward over the nodes, the loss rows into the output's gradient slot, backward in reverse
// with the same gradient-slot plan (first contributions written, later ones added through the
// spare slot), the weights' places summed, then decay + update and commit, both gated on the
// device finite flag.
#include "cuda/executor.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <stdexcept>

PYCNN_DEVICE_NAMESPACE_BEGIN

// ---------------------------------------------------------------------------- buffers

void DeviceBuffer::reserve(size_t bytes, const char* what) {
  if (bytes <= bytes_ && ptr_) return;
  release();
  ptr_ = device_alloc(bytes ? bytes : 4, what);
  bytes_ = bytes;
}

void DeviceBuffer::release() {
  if (ptr_) device_free(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

void PinnedBuffer::reserve(size_t bytes) {
  if (bytes <= bytes_ && ptr_) return;
  pinned_free(ptr_);
  ptr_ = nullptr;
  ptr_ = pinned_alloc(bytes ? bytes : 4);
  bytes_ = bytes;
}

// What a node's launches read and write in the current batch (pointer arrays for DeviceArgs).
struct DeviceNetwork::NodeRun {
  std::vector<const float*> in;
  const float* param[kMaxNodeParams] = {};
  float* state[kMaxNodeParams] = {};
  DeviceArgs args{};
};

namespace {

std::string node_where(const std::string& fn, size_t i, const NodeSpec& spec) {
  return spec.name.empty() ? fn + "(): node " + std::to_string(i) + " (op '" + spec.kind + "')"
                           : fn + "(): layer '" + spec.name + "' (op '" + spec.kind + "')";
}

// Emulation: every pointer an op receives lies inside one device allocation of its size
// (the GPU build: a no-op).
void expect_args(const DeviceArgs& a, const std::vector<int64_t>& work) {
  const Node& n = *a.node;
  for (size_t j = 0; j < n.inputs.size(); ++j)
    expect_device(a.in[j], sizeof(float) * a.N * n.in_sizes[j], "an op's input");
  if (!n.view) expect_device(a.out, sizeof(float) * a.N * n.out_cells(), "an op's output");
  if (n.aux_size) expect_device(a.aux, sizeof(float) * a.N * n.aux_size, "an op's aux cells");
  for (int k = 0; k < n.nparams; ++k)
    if (a.param[k]) expect_device(a.param[k], sizeof(float) * n.param_size[k], "an op's parameter");
  if (!work.empty() && work[0]) expect_device(a.work, sizeof(float) * work[0], "an op's workspace");
}

// The loss and hit sums in two passes: kSumParts threads each sum a contiguous block of rows,
// then one thread sums the blocks, in order (deterministic; one thread over a large batch
// would walk it serially).
constexpr int64_t kSumParts = 64;
constexpr size_t kSumsHead = 2 * sizeof(double) + 8;  // the sums, the flag, padding to 8 bytes
constexpr size_t kSumsBytes = kSumsHead + 2 * kSumParts * sizeof(double);

// target[e] += add[e] for e in [0, n). (A launch from a free function: nvcc refuses device
// lambdas in private member functions.)
void add_into(float* target, const float* add, int64_t n) {
  for_each(n, "gradient sum", PYCNN_DEVICE_LAMBDA(int64_t e) { target[e] += add[e]; });
}

}  // namespace

// ---------------------------------------------------------------------------- construction

DeviceNetwork::DeviceNetwork(const std::vector<std::vector<int64_t>>& input_shapes,
                             const std::vector<NodeSpec>& specs, const std::vector<int>& outputs,
                             const std::string& fn)
    : fn_(fn) {
  net_ = compile_network(input_shapes, specs, outputs, false, fn);
  const size_t nodes = net_.nodes.size();
  ops_.assign(nodes, nullptr);
  for (size_t i = 0; i < nodes; ++i) {
    const Node& n = net_.nodes[i];
    if (n.view) continue;
    const DeviceOpDef* def = find_device_op(n.op->kind);
    const std::string where = node_where(fn, i, specs[i]);
    if (!def || !def->forward)
      throw std::invalid_argument(where + " has no CUDA kernels, so the network cannot run on the CUDA device. "
                                  "Train this model with device='cpu'.");
    if (const char* why = def->unsupported ? def->unsupported(n) : nullptr)
      throw std::invalid_argument(where + " cannot run on the CUDA device: " + why + ". Use device='cpu'.");
    if (n.op->commit && !def->commit)
      throw std::invalid_argument(where + " has no CUDA kernel for writing its state (commit). Use device='cpu'.");
    ops_[i] = def;
  }
  // One device copy per distinct host parameter array (a weight two nodes share is one copy).
  std::map<const float*, int> index;
  node_param_.assign(nodes, {});
  for (size_t i = 0; i < nodes; ++i) {
    const Node& n = net_.nodes[i];
    node_param_[i].assign(n.nparams, -1);
    for (int k = 0; k < n.nparams; ++k) {
      if (!n.param[k]) continue;
      auto it = index.find(n.param[k]);
      int p;
      if (it == index.end()) {
        p = static_cast<int>(param_host_.size());
        index[n.param[k]] = p;
        param_host_.push_back(n.param[k]);
        param_size_.push_back(n.param_size[k]);
        param_written_.push_back(false);
      } else {
        p = it->second;
      }
      if (n.weight[k] >= 0 || n.state[k]) param_written_[p] = true;
      node_param_[i][k] = p;
    }
  }
  param_dev_.resize(param_host_.size());
  for (size_t p = 0; p < param_host_.size(); ++p)
    param_dev_[p].reserve(sizeof(float) * param_size_[p], "a parameter");
  // Gradients: a weight read by one (node, param) gets it written straight into its buffer;
  // one read at several places gets a buffer per place, summed after backward (executor.cpp's
  // GradLayout).
  const size_t W = net_.weight_sizes.size();
  weight_grad_.resize(W);
  weight_of_.assign(W, -1);
  places_.assign(W, {});
  std::vector<int> uses(W, 0);
  for (size_t i = 0; i < nodes; ++i)
    for (int k = 0; k < net_.nodes[i].nparams; ++k)
      if (net_.nodes[i].weight[k] >= 0) ++uses[net_.nodes[i].weight[k]];
  node_place_.assign(nodes, {});
  for (size_t i = 0; i < nodes; ++i) {
    const Node& n = net_.nodes[i];
    node_place_[i].assign(n.nparams, -1);
    for (int k = 0; k < n.nparams; ++k) {
      const int w = n.weight[k];
      if (w < 0) {
        if (n.param[k]) frozen_floats_ = std::max(frozen_floats_, n.param_size[k]);
        continue;
      }
      weight_of_[w] = node_param_[i][k];
      if (uses[w] > 1) {
        node_place_[i][k] = static_cast<int>(place_dev_.size());
        places_[w].push_back(static_cast<int>(place_dev_.size()));
        place_dev_.emplace_back();
        place_dev_.back().reserve(sizeof(float) * n.param_size[k], "a weight gradient place");
      }
    }
  }
  for (size_t w = 0; w < W; ++w) weight_grad_[w].reserve(sizeof(float) * net_.weight_sizes[w], "a weight gradient");
  frozen_.reserve(sizeof(float) * kMaxNodeParams * frozen_floats_, "frozen parameters' gradients");
  // [loss sum, hit sum] (doubles), the finite flag (a float), then kSumParts partial sums of each.
  sums_.reserve(kSumsBytes, "the loss sums");
  stream_ = create_stream();
  runs_.resize(nodes);
  const int K = net_.num_inputs;
  pinned_.resize(K + 4);
  upload_params();
}

DeviceNetwork::~DeviceNetwork() {
  try {
    StreamScope scope(stream_);
    synchronize_stream();
  } catch (...) {
  }
  destroy_stream(stream_);
}

size_t DeviceNetwork::device_bytes() const {
  size_t total = 0;
  auto add = [&](const std::vector<DeviceBuffer>& v) {
    for (const DeviceBuffer& b : v) total += b.bytes();
  };
  add(param_dev_), add(weight_grad_), add(place_dev_), add(inputs_), add(acts_), add(aux_), add(work_), add(grads_);
  for (const auto& s : slots_) add(s);
  total += frozen_.bytes() + targets_.bytes() + sample_weight_.bytes() + row_loss_.bytes() + row_hit_.bytes() +
           sums_.bytes();
  return total;
}

// ---------------------------------------------------------------------------- host <-> device

void DeviceNetwork::upload_params() {
  StreamScope scope(stream_);
  for (size_t p = 0; p < param_host_.size(); ++p)
    copy_to_device(param_dev_[p].get(), param_host_[p], sizeof(float) * param_size_[p]);
  synchronize_stream();  // the host arrays may change as soon as this returns
}

void DeviceNetwork::download_params() {
  StreamScope scope(stream_);
  for (size_t p = 0; p < param_host_.size(); ++p)
    if (param_written_[p])
      copy_to_host(const_cast<float*>(param_host_[p]), param_dev_[p].get(), sizeof(float) * param_size_[p]);
  synchronize_stream();
}

void DeviceNetwork::upload_slots(const UpdateDef* def, const std::vector<std::vector<float*>>& host) {
  StreamScope scope(stream_);
  const size_t W = net_.weight_sizes.size();
  if (host.size() != W) throw std::invalid_argument(fn_ + "(): expected one list of slots per trained weight.");
  if (slots_def_ != def) {
    slots_.clear();
    slots_.resize(W);
    for (size_t w = 0; w < W; ++w) {
      slots_[w].resize(def->slots);
      for (int s = 0; s < def->slots; ++s)
        slots_[w][s].reserve(sizeof(float) * net_.weight_sizes[w], "an optimizer slot");
    }
    slots_def_ = def;
  }
  for (size_t w = 0; w < W; ++w) {
    if (host[w].size() != static_cast<size_t>(def->slots))
      throw std::invalid_argument(fn_ + "(): expected " + std::to_string(def->slots) + " slot arrays per weight.");
    for (int s = 0; s < def->slots; ++s)
      copy_to_device(slots_[w][s].get(), host[w][s], sizeof(float) * net_.weight_sizes[w]);
  }
  synchronize_stream();
}

void DeviceNetwork::download_slots(const UpdateDef* def, const std::vector<std::vector<float*>>& host) {
  if (slots_def_ != def) throw std::invalid_argument(fn_ + "(): the device holds no slots of update '" +
                                                     def->name + "' (upload them first).");
  StreamScope scope(stream_);
  for (size_t w = 0; w < host.size() && w < slots_.size(); ++w)
    for (int s = 0; s < def->slots && s < static_cast<int>(host[w].size()); ++s)
      copy_to_host(host[w][s], slots_[w][s].get(), sizeof(float) * net_.weight_sizes[w]);
  synchronize_stream();
}

void DeviceNetwork::download_gradients(const std::vector<float*>& host) {
  StreamScope scope(stream_);
  for (size_t w = 0; w < host.size() && w < weight_grad_.size(); ++w)
    copy_to_host(host[w], weight_grad_[w].get(), sizeof(float) * net_.weight_sizes[w]);
  synchronize_stream();
}

void DeviceNetwork::apply_gradients(const std::vector<const float*>& host, const DeviceStepUpdate& u) {
  StreamScope scope(stream_);
  for (size_t w = 0; w < host.size() && w < weight_grad_.size(); ++w)
    copy_to_device(weight_grad_[w].get(), host[w], sizeof(float) * net_.weight_sizes[w]);
  // The caller applies only finite steps: the flag says so.
  float* finite = reinterpret_cast<float*>(static_cast<char*>(sums_.get()) + 2 * sizeof(double));
  for_each(1, "finite flag", PYCNN_DEVICE_LAMBDA(int64_t) { *finite = 1.f; });
  update(u);
  synchronize_stream();
}

// ---------------------------------------------------------------------------- per batch

void DeviceNetwork::ensure(int64_t N) {
  const int K = net_.num_inputs;
  const size_t nodes = net_.nodes.size();
  if (N > cap_) {
    const int64_t cap = N;
    inputs_.resize(K);
    for (int k = 0; k < K; ++k) inputs_[k].reserve(sizeof(float) * cap * net_.value_sizes[k], "a batch input");
    acts_.resize(nodes);
    aux_.resize(nodes);
    for (size_t i = 0; i < nodes; ++i) {
      const Node& n = net_.nodes[i];
      if (!n.view) acts_[i].reserve(sizeof(float) * cap * n.out_cells(), "a node's output");
      if (n.aux_size) aux_[i].reserve(sizeof(float) * cap * n.aux_size, "a node's aux cells");
    }
    grads_.resize(net_.grad_slots + 1);
    for (DeviceBuffer& g : grads_) g.reserve(sizeof(float) * cap * net_.max_size, "a gradient slot");
    const int o = net_.outputs.at(0);
    targets_.reserve(std::max(sizeof(int64_t), sizeof(float) * net_.value_sizes[o]) * cap, "the targets");
    sample_weight_.reserve(sizeof(float) * cap, "the sample weights");
    row_loss_.reserve(sizeof(float) * cap, "the rows' losses");
    row_hit_.reserve(sizeof(float) * cap, "the rows' hits");
    cap_ = cap;
  }
  work_.resize(nodes);
  values_.assign(K + nodes, nullptr);
  for (int k = 0; k < K; ++k) values_[k] = inputs_[k].f();
  for (size_t i = 0; i < nodes; ++i) {
    const Node& n = net_.nodes[i];
    const int64_t need = ops_[i] && ops_[i]->workspace ? ops_[i]->workspace(n, N) : 0;
    if (need) work_[i].reserve(sizeof(float) * need, "a node's workspace");
    values_[K + i] = n.view ? values_[n.inputs[0]] : acts_[i].f();
    NodeRun& run = runs_[i];
    run.in.clear();
    for (int v : n.inputs) run.in.push_back(values_[v]);
    for (int k = 0; k < kMaxNodeParams; ++k) {
      const int p = k < n.nparams ? node_param_[i][k] : -1;
      run.param[k] = p >= 0 ? param_dev_[p].f() : nullptr;
      run.state[k] = p >= 0 && n.state[k] ? param_dev_[p].f() : nullptr;
    }
    DeviceArgs& a = run.args;
    a.node = &n;
    a.N = N;
    a.in = run.in.data();
    a.out = n.view ? nullptr : acts_[i].f();
    a.aux = n.aux_size ? aux_[i].f() : nullptr;
    a.param = run.param;
    a.state = run.state;
    a.work = need ? work_[i].f() : nullptr;
    if (emulated()) expect_args(a, {need});
  }
  last_N_ = N;
}

void DeviceNetwork::upload_batch(const std::vector<const float*>& x, int64_t N) {
  // Staged through pinned memory so that the copy is asynchronous on the stream.
  for (int k = 0; k < net_.num_inputs; ++k) {
    const size_t bytes = sizeof(float) * N * net_.value_sizes[k];
    pinned_[k].reserve(bytes);
    std::memcpy(pinned_[k].get(), x[k], bytes);
    copy_to_device(inputs_[k].get(), pinned_[k].get(), bytes);
  }
}

void DeviceNetwork::forward(int64_t N) {
  for (size_t i = 0; i < net_.nodes.size(); ++i)
    if (ops_[i]) ops_[i]->forward(runs_[i].args);
  (void)N;
}

// As executor.cpp's backward_chunk, over the whole batch.
void DeviceNetwork::backward(int64_t N) {
  const int K = net_.num_inputs;
  float* spare = slot(net_.grad_slots);
  float* frozen = frozen_.f();
  std::vector<float*> dinp, dparam;
  for (int i = static_cast<int>(net_.nodes.size()) - 1; i >= 0; --i) {
    const Node& n = net_.nodes[i];
    const int v = K + i;
    if (net_.grad_slot[v] < 0) continue;
    dinp.assign(n.inputs.size(), nullptr);
    dparam.assign(kMaxNodeParams, nullptr);
    int pending = -1;
    bool any = false;
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      const int u = n.inputs[j];
      if (!net_.needs_grad[u]) continue;
      any = true;
      if (net_.first_write[i][j]) {
        dinp[j] = slot(net_.grad_slot[u]);
      } else if (pending < 0) {
        dinp[j] = spare;
        pending = static_cast<int>(j);
      }
    }
    bool trains = false;
    for (int k = 0; k < n.nparams; ++k) {
      if (!n.param[k]) continue;
      if (n.weight[k] >= 0) {
        const int place = node_place_[i][k];
        dparam[k] = place >= 0 ? place_dev_[place].f() : weight_grad_[n.weight[k]].f();
        trains = true;
      } else {
        dparam[k] = frozen + k * frozen_floats_;
      }
    }
    if (!any && !trains) continue;
    const float* dout = slot(net_.grad_slot[v]);
    auto run = [&](float* const* di, float* const* dp) {
      if (n.view) {  // the view's gradient is its output's
        for (size_t j = 0; j < n.inputs.size(); ++j)
          if (di[j]) copy_on_device(di[j], dout, sizeof(float) * N * n.in_sizes[j]);
        return;
      }
      ops_[i]->backward(runs_[i].args, di, dp, dout);
    };
    run(dinp.data(), dparam.data());
    // Contributions to values that already hold a gradient: added through `spare`, one input
    // at a time (a node reading one value twice runs again for the second).
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      const int u = n.inputs[j];
      if (!net_.needs_grad[u] || net_.first_write[i][j]) continue;
      if (static_cast<int>(j) != pending) {
        std::fill(dinp.begin(), dinp.end(), nullptr);
        dinp[j] = spare;
        for (int k = 0; k < n.nparams; ++k)
          if (n.param[k]) dparam[k] = frozen + k * frozen_floats_;
        run(dinp.data(), dparam.data());
      }
      add_into(slot(net_.grad_slot[u]), spare, N * n.in_sizes[j]);
    }
  }
  // A weight read at several places: the sum of its places, in node order (as the CPU's).
  for (size_t w = 0; w < places_.size(); ++w) {
    if (places_[w].empty()) continue;
    float* g = weight_grad_[w].f();
    for (size_t q = 0; q < places_[w].size(); ++q) {
      const float* part = place_dev_[places_[w][q]].f();
      if (q == 0) copy_on_device(g, part, sizeof(float) * net_.weight_sizes[w]);
      else add_into(g, part, net_.weight_sizes[w]);
    }
  }
}

void DeviceNetwork::update(const DeviceStepUpdate& u) {
  if (slots_def_ != u.def) throw std::invalid_argument(fn_ + "(): the optimizer's slots of update '" +
                                                       std::string(u.def->name) + "' are not on the device "
                                                       "(upload_slots first).");
  const float* finite = reinterpret_cast<const float*>(static_cast<const char*>(sums_.get()) + 2 * sizeof(double));
  std::vector<float*> slot_ptrs;
  for (size_t w = 0; w < weight_grad_.size(); ++w) {
    slot_ptrs.clear();
    for (DeviceBuffer& s : slots_[w]) slot_ptrs.push_back(s.f());
    const float decay = u.decay.empty() ? 0.f : u.decay[w];
    u.device->apply(param_dev_[weight_of_[w]].f(), slot_ptrs.data(), weight_grad_[w].f(), net_.weight_sizes[w],
                    u.hyper.data() + w * u.hyper_stride, decay, finite);
  }
}

// ---------------------------------------------------------------------------- entries

double DeviceNetwork::train_step(const std::vector<const float*>& x, int64_t N, const DeviceStepLoss& loss,
                                 const DeviceStepUpdate* u, int64_t* hits, float* outputs_out) {
  StreamScope scope(stream_);
  ensure(N);
  const int K = net_.num_inputs;
  const int o = net_.outputs.at(0);
  const int64_t cols = net_.value_sizes[o];
  upload_batch(x, N);
  const size_t target_bytes = loss.def->class_targets ? sizeof(int64_t) * N : sizeof(float) * N * cols;
  pinned_[K].reserve(target_bytes);
  std::memcpy(pinned_[K].get(), loss.targets, target_bytes);
  copy_to_device(targets_.get(), pinned_[K].get(), target_bytes);
  const float* weights = nullptr;
  if (loss.sample_weight) {
    pinned_[K + 1].reserve(sizeof(float) * N);
    std::memcpy(pinned_[K + 1].get(), loss.sample_weight, sizeof(float) * N);
    copy_to_device(sample_weight_.get(), pinned_[K + 1].get(), sizeof(float) * N);
    weights = sample_weight_.f();
  }
  forward(N);
  float* g = net_.grad_slot[o] >= 0 ? slot(net_.grad_slot[o]) : nullptr;
  float* row_loss = row_loss_.f();
  float* row_hit = row_hit_.f();
  loss.device->rows(g, row_loss, row_hit, value(o), targets_.get(), weights, N, cols, 1.f / static_cast<float>(N),
                    loss.hyper);
  // The sums, in double and in row order (deterministic), and the finite flag the update and
  // commit read.
  double* sums = static_cast<double*>(sums_.get());
  float* finite = reinterpret_cast<float*>(static_cast<char*>(sums_.get()) + 2 * sizeof(double));
  double* parts = reinterpret_cast<double*>(static_cast<char*>(sums_.get()) + kSumsHead);
  const int64_t P = std::min<int64_t>(kSumParts, N);
  for_each(P, "loss sums (blocks)", PYCNN_DEVICE_LAMBDA(int64_t b) {
    double l = 0.0, h = 0.0;
    for (int64_t r = N * b / P; r < N * (b + 1) / P; ++r) {
      l += static_cast<double>(row_loss[r]);
      h += static_cast<double>(row_hit[r]);
    }
    parts[b] = l;
    parts[kSumParts + b] = h;
  });
  for_each(1, "loss sums", PYCNN_DEVICE_LAMBDA(int64_t) {
    double l = 0.0, h = 0.0;
    for (int64_t b = 0; b < P; ++b) {
      l += parts[b];
      h += parts[kSumParts + b];
    }
    sums[0] = l;
    sums[1] = h;
    *finite = l - l == 0.0 ? 1.f : 0.f;  // false for NaN and +-inf
  });
  if (outputs_out) {
    pinned_[K + 3].reserve(sizeof(float) * N * cols);
    copy_to_host(pinned_[K + 3].get(), value(o), sizeof(float) * N * cols);
  }
  if (g) {
    backward(N);
  } else {
    for (DeviceBuffer& b : weight_grad_) fill_zero(b.get(), b.bytes());
  }
  if (u) update(*u);
  for (size_t i = 0; i < net_.nodes.size(); ++i)
    if (ops_[i] && ops_[i]->commit) ops_[i]->commit(runs_[i].args, finite);
  pinned_[K + 2].reserve(2 * sizeof(double));
  copy_to_host(pinned_[K + 2].get(), sums_.get(), 2 * sizeof(double));
  synchronize_stream();  // the step's one wait
  double host_sums[2];
  std::memcpy(host_sums, pinned_[K + 2].get(), sizeof(host_sums));
  if (outputs_out) std::memcpy(outputs_out, pinned_[K + 3].get(), sizeof(float) * N * cols);
  *hits = static_cast<int64_t>(host_sums[1] + 0.5);
  return host_sums[0] / static_cast<double>(N);
}

void DeviceNetwork::predict(const std::vector<const float*>& x, int64_t N, float* const* outputs) {
  StreamScope scope(stream_);
  const int K = net_.num_inputs;
  // Chunks of the largest batch trained so far (or 256 samples): predict on a whole test set
  // does not allocate its activations at once.
  const int64_t chunk = std::max<int64_t>(cap_, 256);
  std::vector<const float*> xs(K);
  for (int64_t c0 = 0; c0 < N; c0 += chunk) {
    const int64_t nb = std::min(chunk, N - c0);
    ensure(nb);
    for (int k = 0; k < K; ++k) xs[k] = x[k] + c0 * net_.value_sizes[k];
    upload_batch(xs, nb);
    forward(nb);
    for (size_t j = 0; j < net_.outputs.size(); ++j) {
      const int v = net_.outputs[j];
      const size_t bytes = sizeof(float) * nb * net_.value_sizes[v];
      pinned_[K + 3].reserve(bytes);
      copy_to_host(pinned_[K + 3].get(), value(v), bytes);
      synchronize_stream();
      std::memcpy(outputs[j] + c0 * net_.value_sizes[v], pinned_[K + 3].get(), bytes);
    }
  }
}

PYCNN_DEVICE_NAMESPACE_END
