// The CPU executor: runs a compiled Network (network.h) over a batch, one parallel region
// per call. Each thread takes a contiguous share of the batch and runs every node's forward
// (and backward) on it with the serial kernels; weight gradients go to per-thread buffers
// that are summed at the end. Training a small CNN layer by layer would pay, at every layer
// and direction, for crossing into C++ and for waking the OpenMP threads; here it pays once.
//
// Four entries:
//   train_step  forward, a loss component, backward and (optionally) an update component, in
//               one region: the fast path of fit() for a network that is all native
//   forward     forward keeping every activation in a Tape, and backward(tape, douts): for a
//               network that a Python layer continues (or feeds), and for eager calls of one op
//   predict     forward only, in chunks that bound the memory of large batches
//   commit      after a finite training step: the nodes' state (moving statistics) is written
//
// Loss and update components are registered by their own files (softmax.cpp, optimizer.cpp)
// like ops are; the executor only calls through them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "network.h"

namespace pycnn {

// ---------------------------------------------------------------------------- components

// A loss over the rows of the network's (N, cols) output.
struct LossDef {
  const char* name;
  const char* doc;
  bool class_targets;  // targets are int64 class indices (N,); else float32 (N, cols)
  std::vector<const char*> hyper;  // its hyper-parameters, in the order rows reads them
  // Rows [r0, r0 + n) of `out` (n, cols), with the batch's targets and optional weights:
  // returns the sum over those rows of w_r * loss_r, adds the rows whose largest output is
  // the target class to *hits, and, when grad is not null, writes d loss / d out scaled by
  // `scale` (1/N: the gradient of the batch mean) and by w_r.
  double (*rows)(float* grad, const float* out, const void* targets, const float* weights, int64_t r0, int64_t n,
                 int64_t cols, float scale, const double* hyper, int64_t* hits);
  // What is wrong with `hyper`, or empty (as UpdateDef::check).
  std::string (*check)(const double* hyper);
};
bool register_loss(const LossDef* def);
const LossDef* find_loss(const std::string& name);
std::vector<const LossDef*> registered_losses();
#define PYCNN_REGISTER_LOSS(def) [[maybe_unused]] static const bool pycnn_registered_loss_##def = ::pycnn::register_loss(&def)

// An optimizer's update of one weight slice: w, its slots and its gradient over n floats.
struct UpdateDef {
  const char* name;
  const char* doc;
  std::vector<const char*> hyper;  // the hyper-parameters, in the order apply reads them
  int slots;                       // state arrays per weight (Adam: m and v)
  void (*apply)(float* w, float* const* slots, const float* g, int64_t n, const double* hyper);
  // What is wrong with `hyper` ("expected beta_1 in [0, 1). Received: beta_1=1.5."), or empty:
  // a negative rate or a beta of 1 would silently wreck the weights.
  std::string (*check)(const double* hyper);
};
bool register_update(const UpdateDef* def);
const UpdateDef* find_update(const std::string& name);
std::vector<const UpdateDef*> registered_updates();
#define PYCNN_REGISTER_UPDATE(def) \
  [[maybe_unused]] static const bool pycnn_registered_update_##def = ::pycnn::register_update(&def)

struct StepLoss {
  const LossDef* def = nullptr;
  const void* targets = nullptr;       // (N,) int64 or (N, cols) float32
  const float* sample_weight = nullptr;  // (N) or null: the loss is sum_r w_r * loss_r / N (Keras)
  float* outputs_out = nullptr;        // (N, cols) or null: receives the network's output rows
  std::vector<double> hyper;           // def->hyper values
};

struct StepUpdate {
  const UpdateDef* def = nullptr;
  // def->hyper values: one set for every weight (hyper_stride 0) or one set per weight
  // (hyper_stride = def->hyper.size(): per-weight learning-rate multipliers).
  std::vector<double> hyper;
  size_t hyper_stride = 0;
  // Empty, or per weight the decoupled weight decay applied before the update (Keras 3:
  // w -= w * weight_decay * learning_rate; 0 for a weight excluded from decay).
  std::vector<float> decay;
  std::vector<float*> weights;               // per trained weight, updated in place
  std::vector<std::vector<float*>> slots;    // per trained weight, def->slots arrays
  const double* hyper_of(size_t w) const { return hyper.data() + w * hyper_stride; }
  // Decay (when set), then the update, of weight w's floats [lo, hi).
  void apply(size_t w, int64_t lo, int64_t hi, const float* grad, float** slot_ptrs) const;
};

// ---------------------------------------------------------------------------- entries

// x[k] is (N, input size k). The network has one output of (cols,) per sample... or any shape:
// the loss sees (N * rows per sample, cols) with cols its last axis. grads[w] receives trained
// weight w's gradient (every one is written). With `update`, each thread then applies it to
// its slice of every weight in the same region, unless the loss is not finite (the weights
// then stay those of the last finite step). Returns the mean loss; *hits counts correct rows.
double train_step(const Network& net, const std::vector<const float*>& x, int64_t N, const StepLoss& loss,
                  float* const* grads, const StepUpdate* update, int64_t* hits);

// What forward keeps for backward: every thread's activations, aux cells and team storage.
struct Tape;
struct TapeDeleter {
  void operator()(Tape* tape) const;
};
using TapePtr = std::unique_ptr<Tape, TapeDeleter>;

// outputs[o] (N, size of output o) receive the outputs. x must stay alive until the tape is
// released (the tape reads the inputs again in backward).
TapePtr forward(const Network& net, const std::vector<const float*>& x, int64_t N, float* const* outputs);
// douts[o] (N, size of output o), or null for an output that receives no gradient; writes
// dinputs[k] (N, input size k) where not null (needs net.input_grads) and every grads[w].
void backward(const Network& net, Tape& tape, const float* const* douts, float* const* dinputs, float* const* grads);
// Writes the state of nodes that commit (moving statistics) from the tape's forward.
void commit(const Network& net, const Tape& tape);

void predict(const Network& net, const std::vector<const float*>& x, int64_t N, float* const* outputs);

// ---------------------------------------------------------------------------- for batch-wide ops

// Whole-batch sums, called from an op's forward or backward inside an executor region: each
// thread passes its partial sums in vals[0, n) and gets back the team's total, summed in
// thread order (the same on every thread and in every run). Every thread of the team makes
// the same calls in the same order: the executor runs a network with batch-wide nodes as one
// chunk per thread. n <= node.team_doubles.
void team_allreduce(double* vals, int64_t n);
// The calling thread's node.team_doubles values of storage for `node`, kept from the node's
// forward to its backward (and to commit).
double* team_storage(const Node& node);
// True on the one thread of the team that writes results shared by all (thread 0).
bool team_leader();

}  // namespace pycnn
