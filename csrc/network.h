// A network compiled once from its node specs: the plan an executor (executor.h) runs.
//
// Values 0 .. K-1 are the network's K inputs, value K + i is node i's output; nodes come in
// topological order and name the values they read; `outputs` are the values the caller
// gets back (and, in training, sends gradients into). A value read by several nodes gets the
// sum of their gradients. The trained weights are numbered: node.weight[k] says which one
// receives parameter k's gradient (two nodes may share a weight: their gradients are summed).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "op_registry.h"

namespace pycnn {

// A node as a caller describes it, in plain C++ (the binding converts Python's).
struct NodeSpec {
  std::string kind;
  std::string name;  // the layer's name, for messages (may be empty)
  std::vector<int> inputs;
  std::vector<const float*> params;               // null: absent
  std::vector<std::vector<int64_t>> param_shapes;
  std::vector<float*> writable;                   // per param: the same pointer when the caller let it be written, else null
  std::map<std::string, AttrValue> attrs;         // complete and typed (check_attrs)
  std::vector<int> weight;                        // per param: trained weight index, -1: not trained
};

struct Network {
  int num_inputs = 0;
  std::vector<std::vector<int64_t>> value_shapes;  // per value, per sample
  std::vector<int64_t> value_sizes;                // elements per sample
  std::vector<ElemType> value_types;               // float32, or uint8 (quantized; see op_registry.h)
  std::vector<Node> nodes;
  std::vector<int> outputs;
  std::vector<int64_t> weight_sizes;               // per trained weight
  bool input_grads = false;                        // backward also writes the inputs' gradients
  // Derived: which values need a gradient, the gradient buffer slot of each value, and
  // whether a node's input gradient is the first contribution to its value.
  std::vector<char> needs_grad;
  std::vector<int> grad_slot;  // -1: none
  std::vector<std::vector<char>> first_write;
  int grad_slots = 0;
  int64_t max_size = 1;     // largest value, elements per sample (gradient buffers are float32)
  // Multiply-adds per sample, roughly: each node's outputs times (1 + its parameters' values per
  // output channel). What the executor weighs against waking its threads.
  double work_per_sample = 0;
  bool batch_wide = false;  // some node is batch-wide: one chunk per thread
  bool has_commit = false;  // some node commits state after a finite step
};

// Checks every spec against its op (kind, inputs and their element types, parameter shapes,
// attributes via parse) and derives the plan. Inputs and outputs are float32 values; a node
// of an inference-only op (no backward) may not lie on a gradient's path. Throws std::invalid_argument with a message naming the node.
// `input_grads`: backward computes the gradient of every input too (for a caller that
// continues backward past the network, e.g. a Python layer before it).
Network compile_network(const std::vector<std::vector<int64_t>>& input_shapes, const std::vector<NodeSpec>& specs,
                        const std::vector<int>& outputs, bool input_grads, const std::string& fn);

// Fills `attrs` with the op's defaults and checks that every given name is declared and of
// its type (the binding converts Python values to the declared type first). Throws
// std::invalid_argument naming `where`.
void check_attrs(const OpDef& op, std::map<std::string, AttrValue>& attrs, const std::string& where);

}  // namespace pycnn
