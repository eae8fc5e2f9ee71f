// Native execution of a whole network graph (see network.h).
#include "network.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "optimizer.h"
#include "softmax.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

namespace pycnn {

// Every op family's entries, defined next to its kernels. Adding an op family adds its
// NetOp here and nothing else in this file.
extern const NetOp conv2d_net_op, maxpool2d_net_op, avgpool2d_net_op, global_maxpool2d_net_op,
    global_avgpool2d_net_op, dense_net_op, activation_net_op, flatten_net_op, reshape_net_op, identity_net_op,
    concatenate_net_op, add_net_op, multiply_net_op, sobel_edges_net_op, image_gradient_net_op, batchnorm_net_op,
    zero_padding2d_net_op, cropping2d_net_op, rescaling_net_op, leaky_relu_net_op, conv2d_grouped_net_op,
    depthwise_conv2d_net_op, separable_conv2d_net_op;

const NetOp* find_net_op(const std::string& kind) {
  static const NetOp* const ops[] = {
      &conv2d_net_op,      &maxpool2d_net_op,   &avgpool2d_net_op,  &global_maxpool2d_net_op,
      &global_avgpool2d_net_op, &dense_net_op,  &activation_net_op, &flatten_net_op,
      &reshape_net_op,     &identity_net_op,    &concatenate_net_op, &add_net_op,
      &multiply_net_op,    &sobel_edges_net_op, &image_gradient_net_op, &batchnorm_net_op,
      &zero_padding2d_net_op, &cropping2d_net_op, &rescaling_net_op,   &leaky_relu_net_op,
      &conv2d_grouped_net_op, &depthwise_conv2d_net_op, &separable_conv2d_net_op};
  for (const NetOp* op : ops)
    if (kind == op->kind) return op;
  return nullptr;
}

// ---------------------------------------------------------------------------- parse helpers

void net_error(const NetArgs& args, const std::string& what) { throw std::invalid_argument(args.where + " " + what); }

std::string net_dims_str(const std::vector<int64_t>& dims) {
  std::ostringstream os;
  os << "(None";
  for (int64_t v : dims) os << ", " << v;
  os << ")";
  return os.str();
}

std::string net_shape_str(const std::vector<int64_t>& dims) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < dims.size(); ++i) os << dims[i] << (i + 1 < dims.size() ? ", " : dims.size() == 1 ? "," : "");
  os << ")";
  return os.str();
}

int64_t net_size(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t v : dims) n *= v;
  return n;
}

void net_expect_inputs(const NetArgs& args, size_t n) {
  const size_t got = args.in_shapes.size();
  if (n == 0 && got < 2) net_error(args, "expected at least 2 inputs. Received: " + std::to_string(got) + ".");
  if (n > 0 && got != n)
    net_error(args, "expected " + std::to_string(n) + " input(s). Received: " + std::to_string(got) + ".");
}

void net_expect_counts(const NetArgs& args, size_t params, size_t ints, size_t strs) {
  if (args.params.size() != params || args.ints.size() != ints || args.strs.size() != strs)
    net_error(args, "expected " + std::to_string(params) + " params, " + std::to_string(ints) + " ints and " +
                        std::to_string(strs) + " strs. Received: " + std::to_string(args.params.size()) + ", " +
                        std::to_string(args.ints.size()) + " and " + std::to_string(args.strs.size()) + ".");
}

void net_expect_floats(const NetArgs& args, size_t floats, size_t max_state) {
  if (args.floats.size() != floats || args.state.size() > max_state)
    net_error(args, "expected " + std::to_string(floats) + " floats and at most " + std::to_string(max_state) +
                        " state arrays. Received: " + std::to_string(args.floats.size()) + " and " +
                        std::to_string(args.state.size()) + ".");
}

Activation net_activation(const NetArgs& args, const std::string& name) {
  if (name == "linear" || name.empty()) return Activation::linear;
  if (name == "relu") return Activation::relu;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  net_error(args, "expected activation 'linear', 'relu', 'sigmoid' or 'tanh'. Received: activation='" + name + "'.");
}

bool net_padding_same(const NetArgs& args, const std::string& padding) {
  if (padding == "same") return true;
  if (padding == "valid") return false;
  net_error(args, "expected padding 'valid' or 'same'. Received: padding='" + padding + "'.");
}

// ---------------------------------------------------------------------------- team reductions

namespace {

// What the threads of one step share for batch-wide nodes: a reduction area and each
// thread's storage per node. Set for the team's threads by TeamScope.
struct Team {
  const NetNode* first = nullptr;
  std::vector<int64_t> offset;  // per node, into a thread's storage
  int64_t per_thread = 0, reduce_max = 0;
  std::vector<double> reduce;   // threads x reduce_max
  std::vector<double> storage;  // threads x per_thread
  Team(const Network& net, int threads) : first(net.nodes.data()), offset(net.nodes.size(), 0) {
    for (size_t i = 0; i < net.nodes.size(); ++i) {
      offset[i] = per_thread;
      per_thread += net.nodes[i].team_doubles;
      reduce_max = std::max(reduce_max, net.nodes[i].team_doubles);
    }
    reduce.assign(static_cast<size_t>(threads * reduce_max), 0.0);
    storage.assign(static_cast<size_t>(threads * per_thread), 0.0);
  }
};

thread_local Team* tl_team = nullptr;

struct TeamScope {
  Team* saved;
  explicit TeamScope(Team* team) : saved(tl_team) { tl_team = team; }
  ~TeamScope() { tl_team = saved; }
};

int team_rank() {
#ifdef PYCNN_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace

void team_allreduce(double* vals, int64_t n) {
#ifdef PYCNN_OPENMP
  const int T = omp_get_num_threads();
  if (T == 1 || !tl_team) return;
  Team& team = *tl_team;
  double* mine = team.reduce.data() + team_rank() * team.reduce_max;
  std::copy(vals, vals + n, mine);
#pragma omp barrier
  for (int64_t j = 0; j < n; ++j) {
    double s = 0.0;
    for (int u = 0; u < T; ++u) s += team.reduce[u * team.reduce_max + j];
    vals[j] = s;
  }
#pragma omp barrier  // nobody refills the area before every thread has read it
#else
  (void)vals;
  (void)n;
#endif
}

double* team_storage(const NetNode& node) {
  Team& team = *tl_team;  // set by the step for every thread that runs nodes
  return team.storage.data() + team_rank() * team.per_thread + team.offset[&node - team.first];
}

// ---------------------------------------------------------------------------- graph analysis

void Network::finalize() {
  const int K = num_inputs;
  const int values = K + static_cast<int>(nodes.size());
  auto value_size = [&](int v) { return v < K ? input_sizes[v] : nodes[v - K].out_size; };
  max_size = 1;
  for (int v = 0; v < values; ++v) max_size = std::max(max_size, value_size(v));
  batch_wide = false;
  for (const NetNode& n : nodes) batch_wide = batch_wide || n.batch_wide;
  // A value needs a gradient when a trained parameter lies on some path into it (so a frozen
  // layer still passes its input gradient on when something before it trains).
  needs_grad.assign(values, 0);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const NetNode& n = nodes[i];
    bool g = false;
    for (int p = 0; p < n.nparams; ++p) g = g || n.dparam[p] != nullptr;
    for (int v : n.inputs) g = g || needs_grad[v];
    needs_grad[K + i] = g;
  }
  // Gradient buffers: one slot per value whose gradient is live, reused once the value's
  // producer has run its backward (a chain needs two slots, as a ping-pong).
  grad_slot.assign(values, -1);
  first_write.assign(nodes.size(), {});
  std::vector<int> free_slots;
  grad_slots = 0;
  auto take = [&]() {
    if (!free_slots.empty()) {
      int s = free_slots.back();
      free_slots.pop_back();
      return s;
    }
    return grad_slots++;
  };
  if (needs_grad[values - 1]) grad_slot[values - 1] = take();
  for (int i = static_cast<int>(nodes.size()) - 1; i >= 0; --i) {
    const NetNode& n = nodes[i];
    first_write[i].assign(n.inputs.size(), 0);
    const int v = K + i;
    if (grad_slot[v] < 0) continue;  // no gradient reaches this node
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      const int u = n.inputs[j];
      if (!needs_grad[u]) continue;
      if (grad_slot[u] < 0) {
        grad_slot[u] = take();
        first_write[i][j] = 1;
      }
    }
    free_slots.push_back(grad_slot[v]);
  }
}

namespace {

// A thread runs its samples in chunks whose activations and gradients take about
// kChunkBytes (LeNet: 44 samples), at least kMinChunk: measured on LeNet at batch 256, chunks
// of 32-48 samples ran about 10% faster than one pass over 128 samples per thread, chunks of
// 8-24 slower (more calls, more gradient sums). Each extra chunk adds one pass over the
// weight gradients, hence the floor for models with many parameters. Chunks also bound the
// scratch memory of a large batch (predict on 10,000 images needs 10,000 samples' output,
// not their activations).
constexpr int64_t kChunkBytes = 4 << 20;
constexpr int64_t kMinChunk = 32;

// Samples per chunk: every node's output for one sample plus `extra` floats per sample.
int64_t chunk_size(const Network& net, int64_t extra) {
  int64_t per_sample = extra;
  for (const NetNode& n : net.nodes) per_sample += n.view ? 0 : n.out_size;
  return std::max<int64_t>(kMinChunk, kChunkBytes / (std::max<int64_t>(per_sample, 1) * 4));
}

int team_index() {
#ifdef PYCNN_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int team_size() {
#ifdef PYCNN_OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Samples [n0, n1) of thread t out of T.
void share(int64_t N, int t, int T, int64_t* n0, int64_t* n1) {
  *n0 = N * t / T;
  *n1 = N * (t + 1) / T;
}

// Where a chunk's values live: the inputs' rows, then each node's output (or its view).
struct ChunkValues {
  std::vector<const float*> value;
  std::vector<int32_t*> aux;
};

// Runs every node's forward on samples [c0, c0 + nb); returns the last node's output.
const float* forward_chunk(const Network& net, const std::vector<const float*>& x, int64_t c0, int64_t nb, int slot,
                           ChunkValues* cv) {
  int64_t total = 0, aux_total = 0;
  for (const NetNode& n : net.nodes) {
    total += n.view ? 0 : n.out_size;
    aux_total += n.aux_size;
  }
  float* acts = scratch(slot, static_cast<std::size_t>(total * nb + 1), kScratchNetActs);
  // int32 and float have the same size; the aux cells are only ever read as int32.
  int32_t* aux = reinterpret_cast<int32_t*>(
      scratch(slot, static_cast<std::size_t>(aux_total * nb + 1), kScratchNetIndex));
  const int K = net.num_inputs;
  cv->value.assign(K + net.nodes.size(), nullptr);
  cv->aux.assign(net.nodes.size(), nullptr);
  for (int k = 0; k < K; ++k) cv->value[k] = x[k] + c0 * net.input_sizes[k];
  std::vector<const float*> in;
  for (size_t i = 0; i < net.nodes.size(); ++i) {
    const NetNode& n = net.nodes[i];
    in.clear();
    for (int v : n.inputs) in.push_back(cv->value[v]);
    if (n.aux_size) {
      cv->aux[i] = aux;
      aux += n.aux_size * nb;
    }
    cv->value[K + i] = n.op->forward(n, in.data(), acts, cv->aux[i], nb);
    if (!n.view) acts += n.out_size * nb;
  }
  return cv->value.back();
}

// Offsets of each node's parameter gradients in a thread's flat gradient buffer.
struct ParamLayout {
  std::vector<std::vector<int64_t>> offset;  // per node, per param; -1: not trained
  int64_t total = 0;
  explicit ParamLayout(const Network& net) : offset(net.nodes.size()) {
    for (size_t i = 0; i < net.nodes.size(); ++i) {
      const NetNode& n = net.nodes[i];
      offset[i].assign(n.nparams, -1);
      for (int p = 0; p < n.nparams; ++p)
        if (n.dparam[p]) {
          offset[i][p] = total;
          total += n.param_size[p];
        }
    }
  }
};

}  // namespace

double network_train_step(const Network& net, const std::vector<const float*>& x, const int64_t* labels, int64_t N,
                          int64_t classes, int64_t* correct, const AdamStep* adam, const StepExtras* extras) {
  const float* sample_weight = extras ? extras->sample_weight : nullptr;
  float* logits_out = extras ? extras->logits_out : nullptr;
  const ParamLayout layout(net);
  const int64_t params = layout.total;
  const int K = net.num_inputs;
  int64_t frozen_size = 1;  // per parameter: scratch for the gradients of frozen ones, never read
  for (const NetNode& n : net.nodes)
    for (int p = 0; p < n.nparams; ++p) frozen_size = std::max(frozen_size, n.param_size[p]);
  auto frozen = [&](int slot, int p) {
    return scratch(slot, static_cast<std::size_t>(kMaxNodeParams * frozen_size), kScratchNetFrozen) + p * frozen_size;
  };

  const int T = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), N)));
  const int base = slot_base();
  std::vector<double> loss_part(T, 0.0);
  std::vector<int64_t> correct_part(T, 0);
  std::vector<float*> grads(T, nullptr);
  const float scale = 1.f / static_cast<float>(N);
  const int64_t slots = net.grad_slots + 1;  // + one for contributions to a value already written
  // Batch-wide nodes reduce over the team at every call: each thread makes the same calls when
  // each runs its samples as one chunk.
  const int64_t chunk = net.batch_wide ? N : chunk_size(net, slots * net.max_size);
  Team team_state(net, T);

#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(T)
#endif
  {
    const int t = team_index(), team = team_size();
    int64_t n0, n1;
    share(N, t, team, &n0, &n1);
    const int64_t nb = n1 - n0;
    SerialKernels serial(base + t);
    TeamScope team_scope(&team_state);
    float* mygrads = scratch(base + t, static_cast<std::size_t>(params + 1), kScratchNetParams);
    grads[t] = mygrads;
    // The thread's samples go through in chunks of `chunk`, so that a chunk's activations
    // stay in cache; the chunks' weight gradients are summed into mygrads.
    auto run_chunk = [&](int64_t c0, int64_t cb, float* dst) {
      ChunkValues cv;
      const float* logits = forward_chunk(net, x, c0, cb, base + t, &cv);
      float* gbuf = scratch(base + t, static_cast<std::size_t>(slots * net.max_size * cb), kScratchNetGrad);
      auto slot_ptr = [&](int s) { return gbuf + s * net.max_size * cb; };
      float* spare = slot_ptr(net.grad_slots);
      const int last = K + static_cast<int>(net.nodes.size()) - 1;
      // Fused softmax + cross-entropy: probabilities, then (p - onehot) / N as the gradient
      // of the logits (when nothing trains there is no gradient slot: use the spare one).
      float* g = net.grad_slot[last] >= 0 ? slot_ptr(net.grad_slot[last]) : spare;
      const float* w = sample_weight ? sample_weight + c0 : nullptr;
      if (!w) {
        loss_part[t] += softmax_crossentropy_forward(g, logits, labels + c0, cb, classes) * static_cast<double>(cb);
      } else {
        for (int64_t r = 0; r < cb; ++r)
          loss_part[t] += static_cast<double>(w[r]) * softmax_crossentropy_forward(g + r * classes, logits + r * classes,
                                                                                  labels + c0 + r, 1, classes);
      }
      if (logits_out) std::memcpy(logits_out + c0 * classes, logits, sizeof(float) * cb * classes);
      int64_t hits = 0;
      for (int64_t r = 0; r < cb; ++r) {
        const float* z = logits + r * classes;
        hits += (std::max_element(z, z + classes) - z) == labels[c0 + r];
      }
      correct_part[t] += hits;
      if (net.grad_slot[last] < 0) return;
      softmax_crossentropy_backward(g, g, labels + c0, cb, classes, scale);
      if (w)  // "loss = sum_r w_r loss_r / N": row r's gradient scales by w_r
        for (int64_t r = 0; r < cb; ++r)
          for (int64_t j = 0; j < classes; ++j) g[r * classes + j] *= w[r];
      std::vector<const float*> in;
      std::vector<float*> dinp, dparam;
      for (int i = static_cast<int>(net.nodes.size()) - 1; i >= 0; --i) {
        const NetNode& n = net.nodes[i];
        const int v = K + i;
        if (net.grad_slot[v] < 0) continue;
        in.clear();
        dinp.assign(n.inputs.size(), nullptr);
        dparam.assign(n.nparams, nullptr);
        int pending = -1;  // the one input whose contribution goes to `spare` first
        bool any = false;
        for (size_t j = 0; j < n.inputs.size(); ++j) {
          const int u = n.inputs[j];
          in.push_back(cv.value[u]);
          if (!net.needs_grad[u]) continue;
          any = true;
          if (net.first_write[i][j]) {
            dinp[j] = slot_ptr(net.grad_slot[u]);
          } else if (pending < 0) {
            dinp[j] = spare;
            pending = static_cast<int>(j);
          }
        }
        bool trains = false;
        for (int p = 0; p < n.nparams; ++p) {
          if (!n.param[p]) continue;
          if (layout.offset[i][p] >= 0) {
            dparam[p] = dst + layout.offset[i][p];
            trains = true;
          } else {
            dparam[p] = frozen(base + t, p);
          }
        }
        if (!any && !trains) continue;
        const float* dout = slot_ptr(net.grad_slot[v]);
        n.op->backward(n, dinp.data(), dparam.data(), dout, in.data(), cv.value[v], cv.aux[i], cb);
        // Contributions to values that already hold a gradient: added through `spare`, one
        // input at a time (a node reading the same value twice, e.g. Add(x, x), loops here).
        for (size_t j = 0; j < n.inputs.size(); ++j) {
          const int u = n.inputs[j];
          if (!net.needs_grad[u] || net.first_write[i][j]) continue;
          if (static_cast<int>(j) != pending) {
            std::fill(dinp.begin(), dinp.end(), nullptr);
            dinp[j] = spare;
            for (int p = 0; p < n.nparams; ++p)
              if (n.param[p]) dparam[p] = frozen(base + t, p);
            n.op->backward(n, dinp.data(), dparam.data(), dout, in.data(), cv.value[v], cv.aux[i], cb);
          }
          float* target = slot_ptr(net.grad_slot[u]);
          const int64_t count = cb * n.in_sizes[j];
          for (int64_t e = 0; e < count; ++e) target[e] += spare[e];
        }
      }
    };
    for (int64_t c0 = n0; c0 < n1; c0 += chunk) {
      const int64_t cb = std::min(chunk, n1 - c0);
      if (c0 == n0) {
        run_chunk(c0, cb, mygrads);
      } else {
        float* part = scratch(base + t, static_cast<std::size_t>(params + 1), kScratchNetChunk);
        run_chunk(c0, cb, part);
        for (int64_t i = 0; i < params; ++i) mygrads[i] += part[i];
      }
    }
    if (nb == 0) std::memset(mygrads, 0, sizeof(float) * params);
#ifdef PYCNN_OPENMP
#pragma omp barrier
#endif
    // A non-finite loss means non-finite gradients: the Adam step is skipped so the weights
    // stay those of the last finite step (every thread sees every loss_part after the barrier).
    double total = 0.0;
    for (int u = 0; u < T; ++u) total += loss_part[u];
    const bool apply_adam = adam && std::isfinite(total);
    // Sum the threads' gradients; each thread owns a slice of every parameter array.
    for (size_t i = 0; i < net.nodes.size(); ++i) {
      const NetNode& n = net.nodes[i];
      for (int p = 0; p < n.nparams; ++p) {
        const int64_t off = layout.offset[i][p];
        if (off < 0) continue;
        float* dst = n.dparam[p];
        const int64_t size = n.param_size[p];
        const int64_t lo = size * t / team, hi = size * (t + 1) / team;
        for (int64_t j = lo; j < hi; ++j) {
          float sum = 0.f;
          for (int u = 0; u < team; ++u) sum += grads[u][off + j];
          dst[j] = sum;
        }
        if (apply_adam && n.param_rw[p])
          adam_update(n.param_rw[p] + lo, n.adam_m[p] + lo, n.adam_v[p] + lo, dst + lo, hi - lo, adam->alpha,
                      adam->beta_1, adam->beta_2, adam->epsilon);
      }
    }
  }
  double loss = 0.0;
  int64_t hits = 0;
  for (int t = 0; t < T; ++t) {
    loss += loss_part[t];
    hits += correct_part[t];
  }
  *correct = hits;
  return loss / static_cast<double>(N);
}

void network_predict(const Network& net, const std::vector<const float*>& x, int64_t N, float* out,
                     int64_t softmax_cols) {
  const int base = slot_base();
  const int64_t out_size = net.nodes.back().out_size;
  const int64_t chunk = net.batch_wide ? N : chunk_size(net, 0);
  const int T = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), N)));
  Team team_state(net, T);
#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(T)
#endif
  {
    const int t = team_index(), team = team_size();
    int64_t n0, n1;
    share(N, t, team, &n0, &n1);
    SerialKernels serial(base + t);
    TeamScope team_scope(&team_state);
    for (int64_t c0 = n0; c0 < n1; c0 += chunk) {
      const int64_t cb = std::min(chunk, n1 - c0);
      ChunkValues cv;
      const float* y = forward_chunk(net, x, c0, cb, base + t, &cv);
      if (softmax_cols > 0)
        softmax_forward(out + c0 * out_size, y, cb * out_size / softmax_cols, softmax_cols);
      else
        std::memcpy(out + c0 * out_size, y, sizeof(float) * cb * out_size);
    }
  }
}

}  // namespace pycnn
