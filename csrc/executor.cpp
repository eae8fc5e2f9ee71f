// The CPU executor (executor.h).
#include "executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>

#include "runtime.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

namespace pycnn {

// ---------------------------------------------------------------------------- component registries

bool register_loss(const LossDef* def) { return Registry<LossDef, &LossDef::name>::add(def, "loss"); }
const LossDef* find_loss(const std::string& name) { return Registry<LossDef, &LossDef::name>::find(name); }
std::vector<const LossDef*> registered_losses() { return Registry<LossDef, &LossDef::name>::all(); }
bool register_update(const UpdateDef* def) { return Registry<UpdateDef, &UpdateDef::name>::add(def, "update"); }
const UpdateDef* find_update(const std::string& name) { return Registry<UpdateDef, &UpdateDef::name>::find(name); }
std::vector<const UpdateDef*> registered_updates() { return Registry<UpdateDef, &UpdateDef::name>::all(); }

void StepUpdate::apply(size_t w, int64_t lo, int64_t hi, const float* grad, float** slot_ptrs) const {
  float* weight = weights[w] + lo;
  if (!decay.empty() && decay[w] != 0.f) {
    const float d = decay[w];
    for (int64_t i = 0; i < hi - lo; ++i) weight[i] -= weight[i] * d;
  }
  def->apply(weight, slot_ptrs, grad, hi - lo, hyper_of(w));
}

// ---------------------------------------------------------------------------- teams

namespace {

int threads_in_region() {
#ifdef PYCNN_OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// What the threads of one call share for batch-wide nodes: a reduction area and each thread's
// storage per node. Set for the team's threads by TeamScope.
struct Team {
  const Node* first = nullptr;
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
  const double* leader_storage(const Node& node) const { return storage.data() + offset[&node - first]; }
};

thread_local Team* tl_team = nullptr;

struct TeamScope {
  Team* saved;
  explicit TeamScope(Team* team) : saved(tl_team) { tl_team = team; }
  ~TeamScope() { tl_team = saved; }
};

}  // namespace

void team_allreduce(double* vals, int64_t n) {
#ifdef PYCNN_OPENMP
  const int T = omp_get_num_threads();
  if (T == 1 || !tl_team) return;
  Team& team = *tl_team;
  double* mine = team.reduce.data() + team_thread() * team.reduce_max;
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

double* team_storage(const Node& node) {
  Team& team = *tl_team;  // set by the executor for every thread that runs nodes
  return team.storage.data() + team_thread() * team.per_thread + team.offset[&node - team.first];
}

bool team_leader() { return team_thread() == 0; }

// ---------------------------------------------------------------------------- shared by the entries

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

// 4-byte cells per sample of every node's output (a uint8 output takes a quarter).
int64_t acts_per_sample(const Network& net) {
  int64_t total = 0;
  for (const Node& n : net.nodes) total += n.view ? 0 : n.out_cells();
  return total;
}

int64_t aux_per_sample(const Network& net) {
  int64_t total = 0;
  for (const Node& n : net.nodes) total += n.aux_size;
  return total;
}

// Every value and aux block of a chunk, and every gradient slot, starts on a 64-byte boundary
// (buffers come 64-byte aligned): kernels load and store whole vectors, and a vector across two
// cache lines costs the conv forward 15% (256x15x15x64 k3 -> 64, weights misaligned).
constexpr int64_t kAlignFloats = 16;
int64_t aligned(int64_t floats) { return (floats + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }

// Floats of a chunk of nb samples: every node's output (views take none), each aligned.
int64_t acts_floats(const Network& net, int64_t nb) {
  int64_t total = 0;
  for (const Node& n : net.nodes) total += n.view ? 0 : aligned(n.out_cells() * nb);
  return total;
}

int64_t aux_floats(const Network& net, int64_t nb) {
  int64_t total = 0;
  for (const Node& n : net.nodes) total += n.aux_size ? aligned(n.aux_size * nb) : 0;
  return total;
}

// Whether value v is listed once among the network's outputs.
bool listed_once(const Network& net, int v) {
  return std::count(net.outputs.begin(), net.outputs.end(), v) == 1;
}

// Floats between a chunk's gradient slots.
int64_t grad_stride(const Network& net, int64_t nb) { return aligned(net.max_size * nb); }

// Samples per chunk: every node's output for one sample plus `extra` floats per sample.
int64_t chunk_size(const Network& net, int64_t extra) {
  const int64_t per_sample = acts_per_sample(net) + aux_per_sample(net) + extra;
  return std::max<int64_t>(kMinChunk, kChunkBytes / (std::max<int64_t>(per_sample, 1) * 4));
}

// Below this many multiply-adds for the whole batch, one thread runs the call: waking the
// others costs more. With passive waiting (pycnn's default) a wake-up costs tens of
// microseconds, measured here: a Conv2D(4, 3) + Dense(3) step at batch 8 (about 16k
// multiply-adds) took 20 us on one thread and 75 us on two.
constexpr double kParallelWork = 1 << 18;

// Threads for a batch of N: never more than samples, one for a small call. Returns 0 for a
// large call on one sample: one thread without the serial guard, whose kernels may then use
// every core themselves (a single large image).
int threads_for(const Network& net, int64_t N) {
  if (net.work_per_sample * static_cast<double>(N) < kParallelWork) return 1;
  const int T = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), N)));
  return T == 1 && get_num_threads() > 1 ? 0 : T;
}

// Runs body(t, team) on T threads (in a parallel region when T > 1), each with its team
// scope and the serial kernels on its own scratch slots; T == 0: on this thread, with the
// kernels parallel inside (threads_for).
template <class Body>
void run_team(int T, Team* team, Body&& body) {
  const int base = slot_base();
  if (T == 0) {
    TeamScope scope(team);
    body(0, 1);
    return;
  }
  if (T == 1) {
    SerialKernels serial(base);
    TeamScope scope(team);
    body(0, 1);
    return;
  }
#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(T)
#endif
  {
    const int t = team_thread(), size = threads_in_region();
    SerialKernels serial(base + t);
    TeamScope scope(team);
    body(t, size);
  }
}

// Samples [n0, n1) of thread t out of T.
void share(int64_t N, int t, int T, int64_t* n0, int64_t* n1) {
  *n0 = N * t / T;
  *n1 = N * (t + 1) / T;
}

// Where a chunk's values live: the inputs' rows, then each node's output (or its view).
struct ChunkValues {
  std::vector<const float*> value;
  std::vector<float*> aux;
};

// Every node's forward on samples [c0, c0 + nb), outputs in `acts`, aux cells in `aux`;
// out_to (null, or per node a pointer or null): where a node writes its output instead.
void forward_chunk(const Network& net, const std::vector<const float*>& x, int64_t c0, int64_t nb, float* acts,
                   float* aux, ChunkValues* cv, float* const* out_to = nullptr) {
  const int K = net.num_inputs;
  cv->value.assign(K + net.nodes.size(), nullptr);
  cv->aux.assign(net.nodes.size(), nullptr);
  for (int k = 0; k < K; ++k) cv->value[k] = x[k] + c0 * net.value_sizes[k];
  std::vector<const float*> in;
  for (size_t i = 0; i < net.nodes.size(); ++i) {
    const Node& n = net.nodes[i];
    in.clear();
    for (int v : n.inputs) in.push_back(cv->value[v]);
    if (n.aux_size) {
      cv->aux[i] = aux;
      aux += aligned(n.aux_size * nb);
    }
    float* to = out_to && out_to[i] ? out_to[i] : acts;
    cv->value[K + i] = n.forward(n, in.data(), to, cv->aux[i], nb);
    if (!n.view && to == acts) acts += aligned(n.out_cells() * nb);
  }
}

// Offsets of each trained parameter's gradient in a thread's flat buffer. Each (node,
// parameter) has its own place, so two nodes sharing a weight never write the same floats;
// the reduction sums the places of a weight.
struct GradLayout {
  std::vector<std::vector<int64_t>> offset;     // per node, per param; -1: not trained
  std::vector<std::vector<int64_t>> of_weight;  // per trained weight: its places
  int64_t total = 0;
  int64_t frozen = 1;  // the largest untrained parameter: scratch for gradients never read
  explicit GradLayout(const Network& net) : offset(net.nodes.size()), of_weight(net.weight_sizes.size()) {
    for (size_t i = 0; i < net.nodes.size(); ++i) {
      const Node& n = net.nodes[i];
      offset[i].assign(n.nparams, -1);
      for (int p = 0; p < n.nparams; ++p) {
        if (n.weight[p] >= 0) {
          offset[i][p] = total;
          of_weight[n.weight[p]].push_back(total);
          total += n.param_size[p];
        } else {
          frozen = std::max(frozen, n.param_size[p]);
        }
      }
    }
  }
};

// Backward through the chunk whose forward `cv` holds. gbuf holds grad_slots + 1 buffers of
// grad_stride(net, nb) floats; the output values' slots hold their gradients already. Parameter
// gradients go to dst + their GradLayout offsets. input_grads (null, or per network input a
// pointer or null): where an input's gradient goes instead of its slot (the caller's array:
// no copy out of gbuf; an input's slot, once first written, is its own to the end).
// output_grads (null, or per value a pointer or null): where an output's gradient is read
// instead of its slot (the caller's rows, for an output that nothing adds to).
void backward_chunk(const Network& net, const ChunkValues& cv, float* gbuf, int64_t nb, const GradLayout& layout,
                    float* dst, int slot, float* const* input_grads = nullptr,
                    const float* const* output_grads = nullptr) {
  const int K = net.num_inputs;
  auto slot_ptr = [&](int s) { return gbuf + s * grad_stride(net, nb); };
  auto grad_of = [&](int u) {
    return u < K && input_grads && input_grads[u] ? input_grads[u] : slot_ptr(net.grad_slot[u]);
  };
  float* spare = slot_ptr(net.grad_slots);
  float* frozen = scratch(slot, static_cast<std::size_t>(kMaxNodeParams * layout.frozen), kScratchNetFrozen);
  std::vector<const float*> in;
  std::vector<float*> dinp, dparam;
  for (int i = static_cast<int>(net.nodes.size()) - 1; i >= 0; --i) {
    const Node& n = net.nodes[i];
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
        dinp[j] = grad_of(u);
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
        dparam[p] = frozen + p * layout.frozen;
      }
    }
    if (!any && !trains) continue;
    const float* dout = output_grads && output_grads[v] ? output_grads[v] : slot_ptr(net.grad_slot[v]);
    n.backward(n, dinp.data(), dparam.data(), dout, in.data(), cv.value[v], cv.aux[i], nb);
    // Contributions to values that already hold a gradient: added through `spare`, one
    // input at a time (a node reading the same value twice, e.g. Add(x, x), loops here).
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      const int u = n.inputs[j];
      if (!net.needs_grad[u] || net.first_write[i][j]) continue;
      if (static_cast<int>(j) != pending) {
        std::fill(dinp.begin(), dinp.end(), nullptr);
        dinp[j] = spare;
        for (int p = 0; p < n.nparams; ++p)
          if (n.param[p]) dparam[p] = frozen + p * layout.frozen;
        n.backward(n, dinp.data(), dparam.data(), dout, in.data(), cv.value[v], cv.aux[i], nb);
      }
      float* target = grad_of(u);
      const int64_t count = nb * n.in_sizes[j];
      for (int64_t e = 0; e < count; ++e) target[e] += spare[e];
    }
  }
}

// Thread t's slice [lo, hi) of every weight: the sum of its places over the threads' buffers.
void reduce_slice(const GradLayout& layout, int64_t w, int64_t lo, int64_t hi, const std::vector<float*>& parts,
                  int threads, float* out) {
  const std::vector<int64_t>& places = layout.of_weight[w];
  for (int64_t j = lo; j < hi; ++j) {
    float sum = 0.f;
    for (int64_t off : places)
      for (int u = 0; u < threads; ++u) sum += parts[u][off + j];
    out[j] = sum;
  }
}

void commit_nodes(const Network& net, const Team& team) {
  for (const Node& n : net.nodes)
    if (n.op->commit) n.op->commit(n, n.team_doubles ? team.leader_storage(n) : nullptr);
}

}  // namespace

// ---------------------------------------------------------------------------- train_step

double train_step(const Network& net, const std::vector<const float*>& x, int64_t N, const StepLoss& loss,
                  float* const* grads, const StepUpdate* update, int64_t* hits) {
  const int o = net.outputs.at(0);
  const int64_t cols = net.value_sizes[o];
  const GradLayout layout(net);
  const int T = threads_for(net, N), slots_T = std::max(T, 1);
  std::vector<double> loss_part(slots_T, 0.0);
  std::vector<int64_t> hit_part(slots_T, 0);
  std::vector<float*> parts(slots_T, nullptr);
  const float scale = 1.f / static_cast<float>(N);
  const int64_t slots = net.grad_slots + 1;  // + one for contributions to a value already written
  // Batch-wide nodes reduce over the team at every call: each thread makes the same calls when
  // each runs its samples as one chunk.
  const int64_t chunk = net.batch_wide ? N : chunk_size(net, slots * net.max_size);
  Team team_state(net, slots_T);

  run_team(T, &team_state, [&](int t, int team) {
    int64_t n0, n1;
    share(N, t, team, &n0, &n1);
    const int slot = slot_base();
    float* mine = scratch(slot, static_cast<std::size_t>(layout.total + 1), kScratchNetParams);
    parts[t] = mine;
    auto run_chunk = [&](int64_t c0, int64_t cb, float* dst) {
      ChunkValues cv;
      float* acts = scratch(slot, static_cast<std::size_t>(acts_floats(net, cb) + 1), kScratchNetActs);
      float* aux = scratch(slot, static_cast<std::size_t>(aux_floats(net, cb) + 1), kScratchNetIndex);
      forward_chunk(net, x, c0, cb, acts, aux, &cv);
      const float* out = cv.value[o];
      float* gbuf = scratch(slot, static_cast<std::size_t>(slots * grad_stride(net, cb)), kScratchNetGrad);
      float* g = net.grad_slot[o] >= 0 ? gbuf + net.grad_slot[o] * grad_stride(net, cb) : nullptr;
      const float* w = loss.sample_weight;
      loss_part[t] += loss.def->rows(g, out, loss.targets, w, c0, cb, cols, scale, loss.hyper.data(), &hit_part[t]);
      if (loss.outputs_out) std::memcpy(loss.outputs_out + c0 * cols, out, sizeof(float) * cb * cols);
      if (g) backward_chunk(net, cv, gbuf, cb, layout, dst, slot);
      else std::memset(dst, 0, sizeof(float) * layout.total);
    };
    for (int64_t c0 = n0; c0 < n1; c0 += chunk) {
      const int64_t cb = std::min(chunk, n1 - c0);
      if (c0 == n0) {
        run_chunk(c0, cb, mine);
      } else {
        float* part = scratch(slot, static_cast<std::size_t>(layout.total + 1), kScratchNetChunk);
        run_chunk(c0, cb, part);
        for (int64_t i = 0; i < layout.total; ++i) mine[i] += part[i];
      }
    }
    if (n1 == n0) std::memset(mine, 0, sizeof(float) * layout.total);
#ifdef PYCNN_OPENMP
#pragma omp barrier
#endif
    // A non-finite loss means non-finite gradients: the update is skipped so the weights stay
    // those of the last finite step (every thread sees every loss_part after the barrier).
    double total = 0.0;
    for (int u = 0; u < team; ++u) total += loss_part[u];
    const bool apply = update && std::isfinite(total);
    std::vector<float*> slot_ptrs;
    for (size_t w = 0; w < net.weight_sizes.size(); ++w) {
      const int64_t size = net.weight_sizes[w];
      const int64_t lo = size * t / team, hi = size * (t + 1) / team;
      reduce_slice(layout, static_cast<int64_t>(w), lo, hi, parts, team, grads[w]);
      if (!apply || hi == lo) continue;
      slot_ptrs.clear();
      for (float* s : update->slots[w]) slot_ptrs.push_back(s + lo);

      update->apply(w, lo, hi, grads[w] + lo, slot_ptrs.data());
    }
  });
  double total = 0.0;
  int64_t hit_total = 0;
  for (int t = 0; t < slots_T; ++t) {
    total += loss_part[t];
    hit_total += hit_part[t];
  }
  *hits = hit_total;
  if (net.has_commit && std::isfinite(total)) commit_nodes(net, team_state);
  return total / static_cast<double>(N);
}

// ---------------------------------------------------------------------------- forward / backward

namespace {

// Tape arenas are recycled. A forward of a large batch keeps tens of MB per thread, and a
// fresh allocation that large comes from mmap (or from a thread heap that was trimmed) and
// faults every page in again on each call: in an eager conv2d forward at batch 256
// (bench/convs.py, group1_conv1) that cost as much as the convolution (17 -> 29 ms) as soon
// as earlier calls had fragmented the heap. Released arenas wait here for the next tape.
class ArenaPool {
 public:
  struct Buffer {
    float* data = nullptr;
    size_t count = 0;
  };
  // A buffer of at least `count` floats: the smallest kept one that fits, else a new one.
  Buffer take(size_t count) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      size_t best = kept_.size();
      for (size_t i = 0; i < kept_.size(); ++i)
        if (kept_[i].count >= count && (best == kept_.size() || kept_[i].count < kept_[best].count)) best = i;
      if (best != kept_.size()) {
        Buffer b = kept_[best];
        kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(best));
        bytes_ -= b.count * sizeof(float);
        return b;
      }
    }
    return Buffer{static_cast<float*>(::operator new(count * sizeof(float), std::align_val_t(64))), count};
  }
  // Keeps `b` for a later tape, up to kMaxKept buffers and kMaxBytes (the smallest go first).
  void give(Buffer b) {
    if (!b.data) return;
    std::vector<float*> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      kept_.push_back(b);
      bytes_ += b.count * sizeof(float);
      while (kept_.size() > kMaxKept || bytes_ > kMaxBytes) {
        auto smallest = std::min_element(kept_.begin(), kept_.end(),
                                         [](const Buffer& a, const Buffer& c) { return a.count < c.count; });
        bytes_ -= smallest->count * sizeof(float);
        drop.push_back(smallest->data);
        kept_.erase(smallest);
      }
    }
    for (float* p : drop) ::operator delete(p, std::align_val_t(64));
  }

 private:
  static constexpr size_t kMaxKept = 8;
  static constexpr size_t kMaxBytes = size_t(1) << 30;
  std::mutex mutex_;
  std::vector<Buffer> kept_;
  size_t bytes_ = 0;
};

ArenaPool& arena_pool() {
  static ArenaPool* pool = new ArenaPool();  // never destroyed: tapes may outlive static destruction
  return *pool;
}

// One thread's tape arena, given back to the pool when the tape goes.
struct Arena {
  ArenaPool::Buffer buffer;
  Arena() = default;
  Arena(Arena&& other) noexcept : buffer(other.buffer) { other.buffer = ArenaPool::Buffer{}; }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Arena& operator=(Arena&&) = delete;
  ~Arena() { arena_pool().give(buffer); }
  float* reset(size_t count) {
    arena_pool().give(buffer);
    buffer = arena_pool().take(count);
    return buffer.data;
  }
};

}  // namespace

struct Tape {
  int threads = 1;
  int64_t N = 0;
  std::vector<const float*> x;
  std::vector<Arena> arena;  // per thread: activations, then aux cells
  std::vector<ChunkValues> values;              // per thread
  std::unique_ptr<Team> team;
};

void TapeDeleter::operator()(Tape* tape) const { delete tape; }

TapePtr forward(const Network& net, const std::vector<const float*>& x, int64_t N, float* const* outputs) {
  TapePtr tape(new Tape);
  const int T = threads_for(net, N), slots_T = std::max(T, 1);
  tape->threads = T;
  tape->N = N;
  tape->x = x;
  tape->arena.resize(slots_T);
  tape->values.resize(slots_T);
  tape->team.reset(new Team(net, slots_T));
  int team_seen = slots_T;
  run_team(T, tape->team.get(), [&](int t, int team) {
    if (t == 0) team_seen = team;
    int64_t n0, n1;
    share(N, t, team, &n0, &n1);
    const int64_t nb = n1 - n0;
    const int64_t acts_size = acts_floats(net, nb);  // a multiple of 16: aux starts aligned
    float* acts = tape->arena[t].reset(static_cast<size_t>(acts_size + aux_floats(net, nb) + 1));
    forward_chunk(net, x, n0, nb, acts, acts + acts_size, &tape->values[t]);
    for (size_t k = 0; k < net.outputs.size(); ++k) {
      const int v = net.outputs[k];
      const int64_t size = net.value_sizes[v];
      std::memcpy(outputs[k] + n0 * size, tape->values[t].value[v], sizeof(float) * nb * size);
    }
  });
  if (team_seen != slots_T) throw std::runtime_error("forward(): the OpenMP runtime gave fewer threads than asked for.");
  return tape;
}

void backward(const Network& net, Tape& tape, const float* const* douts, float* const* dinputs, float* const* grads) {
  const GradLayout layout(net);
  const int T = tape.threads, slots_T = std::max(T, 1);
  const int64_t N = tape.N;
  std::vector<float*> parts(slots_T, nullptr);
  const int64_t slots = net.grad_slots + 1;
  std::vector<char> consumed(net.value_sizes.size(), 0);  // values some node reads
  for (const Node& n : net.nodes)
    for (int v : n.inputs) consumed[v] = 1;
  int team_seen = slots_T;
  run_team(T, tape.team.get(), [&](int t, int team) {
    if (t == 0) team_seen = team;
    if (team != slots_T) return;  // shares would not match the forward's (reported below)
    int64_t n0, n1;
    share(N, t, team, &n0, &n1);
    const int64_t nb = n1 - n0;
    const int slot = slot_base();
    float* mine = scratch(slot, static_cast<std::size_t>(layout.total + 1), kScratchNetParams);
    parts[t] = mine;
    std::memset(mine, 0, sizeof(float) * layout.total);
    const int64_t stride = grad_stride(net, nb);
    float* gbuf = scratch(slot, static_cast<std::size_t>(slots * stride + 1), kScratchNetGrad);
    // The outputs' gradients first: read straight from the caller's rows where nothing adds
    // to them (a node's output listed once, which no node reads), else the caller's rows
    // copied into the output's slot (summed when an output is listed twice).
    std::vector<char> seeded(net.value_sizes.size(), 0);
    std::vector<const float*> read_from(net.value_sizes.size(), nullptr);
    for (size_t k = 0; k < net.outputs.size(); ++k) {
      const int v = net.outputs[k];
      if (net.grad_slot[v] < 0 || !douts[k] || v < net.num_inputs || consumed[v] || !listed_once(net, v)) continue;
      read_from[v] = douts[k] + n0 * net.value_sizes[v];
      seeded[v] = 1;
    }
    for (size_t k = 0; k < net.outputs.size(); ++k) {
      const int v = net.outputs[k];
      if (net.grad_slot[v] < 0 || read_from[v]) continue;
      float* g = gbuf + net.grad_slot[v] * stride;
      const int64_t count = nb * net.value_sizes[v];
      const float* d = douts[k] ? douts[k] + n0 * net.value_sizes[v] : nullptr;
      if (!seeded[v]) {
        if (d) std::memcpy(g, d, sizeof(float) * count);
        else std::memset(g, 0, sizeof(float) * count);
        seeded[v] = 1;
      } else if (d) {
        for (int64_t e = 0; e < count; ++e) g[e] += d[e];
      }
    }
    // Inputs' gradients straight into the caller's rows, except an input that is also an
    // output (its slot was seeded above): copied out of its slot.
    std::vector<float*> direct(net.num_inputs, nullptr);
    for (int k = 0; k < net.num_inputs; ++k)
      if (dinputs && dinputs[k] && net.grad_slot[k] >= 0 && !seeded[k]) direct[k] = dinputs[k] + n0 * net.value_sizes[k];
    if (nb > 0) backward_chunk(net, tape.values[t], gbuf, nb, layout, mine, slot, direct.data(), read_from.data());
    for (int k = 0; k < net.num_inputs; ++k) {
      if (!dinputs || !dinputs[k] || direct[k]) continue;
      const int64_t size = net.value_sizes[k];
      float* dst = dinputs[k] + n0 * size;
      if (net.grad_slot[k] >= 0) std::memcpy(dst, gbuf + net.grad_slot[k] * stride, sizeof(float) * nb * size);
      else std::memset(dst, 0, sizeof(float) * nb * size);
    }
#ifdef PYCNN_OPENMP
#pragma omp barrier
#endif
    for (size_t w = 0; w < net.weight_sizes.size(); ++w) {
      const int64_t size = net.weight_sizes[w];
      reduce_slice(layout, static_cast<int64_t>(w), size * t / team, size * (t + 1) / team, parts, team, grads[w]);
    }
  });
  if (team_seen != slots_T)
    throw std::runtime_error("backward(): the OpenMP runtime gave fewer threads than the forward had.");
}

void commit(const Network& net, const Tape& tape) {
  if (net.has_commit) commit_nodes(net, *tape.team);
}

// ---------------------------------------------------------------------------- predict

void predict(const Network& net, const std::vector<const float*>& x, int64_t N, float* const* outputs) {
  const int64_t chunk = net.batch_wide ? N : chunk_size(net, 0);
  const int T = threads_for(net, N);
  Team team_state(net, std::max(T, 1));
  // A float32 output of a node (not a view) listed once is written straight into the caller's
  // rows: a 63 MB result is not written twice. (forward() keeps its own copy in the tape,
  // which the caller could otherwise change before backward.)
  std::vector<int> direct_node(net.outputs.size(), -1);
  for (size_t k = 0; k < net.outputs.size(); ++k) {
    const int v = net.outputs[k], i = v - net.num_inputs;
    if (i >= 0 && !net.nodes[i].view && net.value_types[v] == ElemType::float32 && listed_once(net, v))
      direct_node[k] = i;
  }
  run_team(T, &team_state, [&](int t, int team) {
    int64_t n0, n1;
    share(N, t, team, &n0, &n1);
    const int slot = slot_base();
    std::vector<float*> out_to(net.nodes.size(), nullptr);  // this chunk's rows of direct_node's outputs
    for (int64_t c0 = n0; c0 < n1; c0 += chunk) {
      const int64_t cb = std::min(chunk, n1 - c0);
      ChunkValues cv;
      float* acts = scratch(slot, static_cast<std::size_t>(acts_floats(net, cb) + 1), kScratchNetActs);
      float* aux = scratch(slot, static_cast<std::size_t>(aux_floats(net, cb) + 1), kScratchNetIndex);
      for (size_t k = 0; k < net.outputs.size(); ++k)
        if (direct_node[k] >= 0) out_to[direct_node[k]] = outputs[k] + c0 * net.value_sizes[net.outputs[k]];
      forward_chunk(net, x, c0, cb, acts, aux, &cv, out_to.data());
      for (size_t k = 0; k < net.outputs.size(); ++k) {
        const int v = net.outputs[k];
        const int64_t size = net.value_sizes[v];
        float* dst = outputs[k] + c0 * size;
        if (cv.value[v] != dst) std::memcpy(dst, cv.value[v], sizeof(float) * cb * size);
      }
    }
  });
}

}  // namespace pycnn
