// A whole network (a graph of layers) run natively, one parallel region per batch.
//
// Training a small CNN layer by layer pays, at every layer, for crossing into C++ and for
// waking the OpenMP threads (with passive waiting, tens of microseconds each, about a
// millisecond per LeNet step). Here each thread takes a contiguous share of the batch and
// runs every node's forward, the fused softmax cross-entropy and every node's backward on
// it with the serial kernels; weight gradients go to per-thread buffers that are summed at
// the end. Results match the layer-by-layer path up to float32 summation order.
//
// The graph: values 0 .. K-1 are the network's K inputs, value K + i is node i's output;
// nodes come in topological order and name the values they read. The last node's output is
// the network's output. A value read by several nodes gets the sum of their gradients.
//
// Each op family (conv2d.cpp, pool2d.cpp, dense.cpp, ...) supplies a NetOp: its parse,
// forward and backward for this step, next to its kernels. The step only calls through
// those entries (like Darknet's l.forward(l, net)); it never switches on the kind.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "conv2d.h"
#include "pool2d.h"
#include "runtime.h"

namespace pycnn {

constexpr int kMaxNodeParams = 4;
constexpr int kMaxNodeDims = 8;

struct NetNode;

// A node's description as the binding received it, in plain C++. Shapes are per sample
// (no batch axis). An absent optional parameter (a bias of None) has params[k] == nullptr
// and an empty shape.
struct NetArgs {
  std::string where;  // "layers[3] ('conv2d')", for error messages
  std::vector<std::vector<int64_t>> in_shapes;
  std::vector<const float*> params;
  std::vector<std::vector<int64_t>> param_shapes;
  std::vector<int64_t> ints;
  std::vector<std::string> strs;
  std::vector<double> floats;                     // float hyper-parameters (epsilon)
  std::vector<float*> state;                      // arrays the node fills for the caller, may be null
  std::vector<std::vector<int64_t>> state_shapes;
};

// One op family's entries for the network step.
struct NetOp {
  const char* kind;
  // Checks `args` (input shapes, parameter shapes, ints, strings) and fills the node's
  // geometry (conv, pool, act, dims, aux_size, view); returns the output shape per sample.
  // Throws std::invalid_argument with a message naming args.where on bad input.
  std::vector<int64_t> (*parse)(NetNode& node, const NetArgs& args);
  // Forward on nb samples: in[j] is (nb, in_size[j]), out (nb, out_size) is this node's
  // buffer (unused by views), aux (nb, aux_size) int32 per node (e.g. argmax). Returns the
  // output: `out`, or in[0] itself for a view (flatten, reshape, identity).
  const float* (*forward)(const NetNode& node, const float* const* in, float* out, int32_t* aux, int64_t nb);
  // Backward on nb samples: dout (nb, out_size) -> dinp[j] (nb, in_size[j]) for every j
  // whose dinp[j] is not null (written, not accumulated), and dparam[k] (param_size[k])
  // for every parameter the node has (never null then: frozen parameters get scratch).
  // in, out and aux are what forward read and wrote.
  void (*backward)(const NetNode& node, float* const* dinp, float* const* dparam, const float* dout,
                   const float* const* in, const float* out, const int32_t* aux, int64_t nb);
};

// Finds the op for `kind` (nullptr when no family provides it).
const NetOp* find_net_op(const std::string& kind);

struct NetNode {
  const NetOp* op = nullptr;
  std::vector<int> inputs;        // value indices, each < K + this node's index
  std::vector<int64_t> in_sizes;  // floats per sample of each input
  int64_t out_size = 0;           // floats per sample of the output
  int64_t aux_size = 0;           // int32 per sample of the forward's aux (argmax)
  bool view = false;              // forward returns in[0]: no output buffer of its own
  // Parameters (bias may be null); where their gradients go (training, null: frozen);
  // with a fused Adam step the same parameters writeable and their two moments.
  int nparams = 0;
  const float* param[kMaxNodeParams] = {};
  int64_t param_size[kMaxNodeParams] = {};
  float* dparam[kMaxNodeParams] = {};
  float* param_rw[kMaxNodeParams] = {};
  float* adam_m[kMaxNodeParams] = {};
  float* adam_v[kMaxNodeParams] = {};
  // Geometry, filled by the op's parse; each op uses what it needs.
  Activation act = Activation::linear;
  ConvShape conv{};
  PoolShape pool{};
  int64_t dims[kMaxNodeDims] = {};
  float hyper[kMaxNodeDims] = {};  // float hyper-parameters, e.g. batch normalization's epsilon
  // Arrays the node writes for the caller during training (batch normalization: the batch's
  // mean and variance, from which Python updates the moving statistics); null when absent.
  float* state[kMaxNodeParams] = {};
  // A batch-wide node's forward or backward sums over the whole batch with team_allreduce
  // (batch normalization in training); team_doubles: the most values it reduces at once,
  // which is also the per-thread storage it keeps from forward to backward (team_storage).
  bool batch_wide = false;
  int64_t team_doubles = 0;
};

// Whole-batch sums for batch-wide nodes, called from a NetOp's forward or backward inside the
// network step: each thread passes its partial sums in vals[0, n) and gets back the team's
// total, summed in thread order (the same on every thread and in every run). Every thread of
// the team makes the same calls in the same order: the step guarantees it by running a network
// with batch-wide nodes as one chunk per thread. n <= node.team_doubles.
void team_allreduce(double* vals, int64_t n);
// The calling thread's node.team_doubles values of storage for `node`, kept from the node's
// forward to its backward within one step.
double* team_storage(const NetNode& node);

// Shared by the ops' parse functions.
[[noreturn]] void net_error(const NetArgs& args, const std::string& what);
void net_expect_inputs(const NetArgs& args, size_t n);  // exactly n inputs (n == 0: at least 2)
void net_expect_counts(const NetArgs& args, size_t params, size_t ints, size_t strs);
void net_expect_floats(const NetArgs& args, size_t floats, size_t max_state);  // exactly `floats`, at most max_state
Activation net_activation(const NetArgs& args, const std::string& name);
bool net_padding_same(const NetArgs& args, const std::string& padding);
std::string net_dims_str(const std::vector<int64_t>& dims);   // a sample shape as "(None, 32, 32, 3)"
std::string net_shape_str(const std::vector<int64_t>& dims);  // an array shape as "(5, 5, 3, 6)"
int64_t net_size(const std::vector<int64_t>& dims);          // product

// A parsed network: nodes plus what the step derives from their wiring.
struct Network {
  int num_inputs = 0;
  std::vector<int64_t> input_sizes;  // floats per sample of each network input
  std::vector<NetNode> nodes;
  std::vector<int64_t> out_shape;    // per sample, of the last node
  // Derived by finalize(): which values need a gradient, the gradient buffer slot of each
  // value, and whether a node's input gradient is the first contribution to its value.
  std::vector<char> needs_grad;                 // per value
  std::vector<int> grad_slot;                   // per value, -1: none
  std::vector<std::vector<char>> first_write;   // per node, per input
  int grad_slots = 0;
  int64_t max_size = 0;  // largest value, floats per sample
  bool batch_wide = false;  // some node is batch-wide: one chunk per thread
  void finalize();
};

// Adam's step for one batch (optimizer.h): alpha already holds the bias correction.
struct AdamStep {
  float alpha, beta_1, beta_2, epsilon;
};

// Forward + mean sparse categorical cross-entropy of softmax(logits) + backward for the
// inputs x[k] (N, input_sizes[k]) and labels (N) in [0, classes); the last node's output is
// the logits (N, classes). Writes every dparam. Returns the mean loss; *correct counts the
// rows whose largest logit is the label. With `adam` (may be null), each thread also applies
// the Adam update to its slice of every parameter right after summing its gradient, in the
// same parallel region (nodes then carry param_rw and the moments); when the loss is not
// finite, the update is skipped and the weights are left as they were.
// Optional inputs and outputs of a training step.
struct StepExtras {
  const float* sample_weight = nullptr;  // (N): the loss is sum_r w_r * loss_r / N, Keras's weighting
  float* logits_out = nullptr;           // (N, classes): receives the logits (for metrics)
};

double network_train_step(const Network& net, const std::vector<const float*>& x, const int64_t* labels, int64_t N,
                          int64_t classes, int64_t* correct, const AdamStep* adam = nullptr,
                          const StepExtras* extras = nullptr);

// Forward only: out (N, out_size of the last node). softmax_cols > 0 applies a softmax over
// each run of softmax_cols values (the output's last axis).
void network_predict(const Network& net, const std::vector<const float*>& x, int64_t N, float* out,
                     int64_t softmax_cols);

}  // namespace pycnn
