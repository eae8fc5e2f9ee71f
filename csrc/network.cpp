// Compiling a network (network.h): every node checked against its op once, then the plan.
#include "network.h"

#include <algorithm>
#include <stdexcept>

namespace pycnn {
namespace {

std::string node_where(const std::string& fn, size_t i, const NodeSpec& spec) {
  if (!spec.name.empty()) return fn + "(): layer '" + spec.name + "' (op '" + spec.kind + "')";
  return fn + "(): node " + std::to_string(i) + " (op '" + spec.kind + "')";
}

std::string known_ops() {
  std::string names;
  for (const OpDef* op : registered_ops()) names += (names.empty() ? "'" : ", '") + std::string(op->kind) + "'";
  return names;
}

const char* reads_name(Reads reads) {
  return reads == Reads::uint8 ? "uint8 (quantized)" : reads == Reads::float32 ? "float32" : "float32 or uint8";
}

// Which values need a gradient, the buffer slot of each, and which contributions come first.
void plan_gradients(Network& net) {
  const int K = net.num_inputs;
  const int values = K + static_cast<int>(net.nodes.size());
  net.needs_grad.assign(values, 0);
  for (int k = 0; k < K; ++k) net.needs_grad[k] = net.input_grads;
  for (size_t i = 0; i < net.nodes.size(); ++i) {
    const Node& n = net.nodes[i];
    bool g = false;
    for (int p = 0; p < n.nparams; ++p) g = g || n.weight[p] >= 0;
    for (int v : n.inputs) g = g || net.needs_grad[v];
    net.needs_grad[K + i] = g;
  }
  // One slot per value whose gradient is live, reused once the value's producer has run its
  // backward (a chain needs two slots, as a ping-pong). Outputs hold the caller's gradients
  // from the start.
  net.grad_slot.assign(values, -1);
  net.first_write.assign(net.nodes.size(), {});
  std::vector<int> free_slots;
  net.grad_slots = 0;
  auto take = [&]() {
    if (!free_slots.empty()) {
      const int s = free_slots.back();
      free_slots.pop_back();
      return s;
    }
    return net.grad_slots++;
  };
  for (int o : net.outputs)
    if (net.needs_grad[o] && net.grad_slot[o] < 0) net.grad_slot[o] = take();
  for (int i = static_cast<int>(net.nodes.size()) - 1; i >= 0; --i) {
    const Node& n = net.nodes[i];
    net.first_write[i].assign(n.inputs.size(), 0);
    const int v = K + i;
    if (net.grad_slot[v] < 0) continue;  // no gradient reaches this node
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      const int u = n.inputs[j];
      if (!net.needs_grad[u]) continue;
      if (net.grad_slot[u] < 0) {
        net.grad_slot[u] = take();
        net.first_write[i][j] = 1;
      }
    }
    free_slots.push_back(net.grad_slot[v]);
  }
}

}  // namespace

void check_attrs(const OpDef& op, std::map<std::string, AttrValue>& attrs, const std::string& where) {
  for (const auto& entry : attrs) {
    const AttrDef* def = nullptr;
    for (const AttrDef& a : op.attrs)
      if (entry.first == a.name) def = &a;
    if (!def) {
      std::string names;
      for (const AttrDef& a : op.attrs) names += (names.empty() ? "'" : ", '") + std::string(a.name) + "'";
      throw std::invalid_argument(where + " has no attribute '" + entry.first + "'. Expected " +
                                  (names.empty() ? std::string("none") : "one of " + names) + ".");
    }
    if (entry.second.index() != def->default_value.index())
      throw std::invalid_argument(where + " expected attribute '" + entry.first + "' of type " +
                                  attr_type_name(def->type) + ".");
  }
  for (const AttrDef& a : op.attrs) {
    if (attrs.count(a.name)) continue;
    if (a.required) throw std::invalid_argument(where + " needs attribute '" + std::string(a.name) + "'.");
    attrs[a.name] = a.default_value;
  }
}

Network compile_network(const std::vector<std::vector<int64_t>>& input_shapes, const std::vector<NodeSpec>& specs,
                        const std::vector<int>& outputs, bool input_grads, const std::string& fn) {
  Network net;
  net.num_inputs = static_cast<int>(input_shapes.size());
  net.input_grads = input_grads;
  if (specs.empty() && outputs.empty()) throw std::invalid_argument(fn + "() expected at least one node or output.");
  for (size_t k = 0; k < input_shapes.size(); ++k) {
    const auto& shape = input_shapes[k];
    if (size_of(shape) > kMaxSampleValues)
      throw std::invalid_argument(fn + "() expected input " + std::to_string(k) + " to have at most 2^40 values per "
                                  "sample. Received: shape " + dims_str(shape) + ".");
    net.value_shapes.push_back(shape);
    net.value_sizes.push_back(size_of(shape));
    net.value_types.push_back(ElemType::float32);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const NodeSpec& spec = specs[i];
    const std::string where = node_where(fn, i, spec);
    const OpDef* op = find_op(spec.kind);
    if (!op) throw std::invalid_argument(where + ": no op of this kind is registered. Known ops: " + known_ops() + ".");
    Node node;
    node.op = op;
    OpArgs args;
    args.where = where;
    const size_t nin = spec.inputs.size();
    if (op->inputs == kVariadic ? nin < 2 : nin != static_cast<size_t>(op->inputs))
      args.fail("expected " + (op->inputs == kVariadic ? std::string("at least 2") : std::to_string(op->inputs)) +
                " input(s). Received: " + std::to_string(nin) + ".");
    for (int v : spec.inputs) {
      if (v < 0 || v >= static_cast<int>(net.value_shapes.size()))
        args.fail("reads value " + std::to_string(v) + ", but only values 0 .. " +
                  std::to_string(net.value_shapes.size() - 1) + " exist before it (the inputs, then earlier nodes).");
      node.inputs.push_back(v);
      node.in_sizes.push_back(net.value_sizes[v]);
      args.in_shapes.push_back(net.value_shapes[v]);
      const ElemType type = net.value_types[v];
      args.in_types.push_back(type);
      if (op->reads != Reads::any && static_cast<int>(op->reads) != static_cast<int>(type))
        args.fail("reads value " + std::to_string(v) + ", which holds " + elem_type_name(type) +
                  " values; this op reads " + reads_name(op->reads) + " values" +
                  (type == ElemType::uint8 ? ". Dequantize it first (op 'dequantize')."
                                           : ". Quantize it first (op 'quantize')."));
    }
    if (spec.params.size() != op->params.size() || spec.param_shapes.size() != spec.params.size())
      args.fail("expected " + std::to_string(op->params.size()) + " parameter(s). Received: " +
                std::to_string(spec.params.size()) + ".");
    node.nparams = static_cast<int>(spec.params.size());
    for (int k = 0; k < node.nparams; ++k) {
      const ParamDef& pd = op->params[k];
      if (!spec.params[k] && !pd.optional) args.fail("needs its parameter '" + std::string(pd.name) + "'. Received: None.");
      if (pd.state && spec.params[k] && (spec.writable.size() <= static_cast<size_t>(k) || !spec.writable[k]))
        args.fail("updates its parameter '" + std::string(pd.name) + "' in place, so it must be a writeable float32 array.");
      node.param[k] = spec.params[k];
      node.param_size[k] = spec.params[k] ? size_of(spec.param_shapes[k]) : 0;
      if (pd.state && spec.params[k]) node.state[k] = spec.writable[k];
      const int w = k < static_cast<int>(spec.weight.size()) ? spec.weight[k] : -1;
      if (w >= 0) {
        if (!spec.params[k] || pd.state) args.fail("cannot train parameter '" + std::string(pd.name) + "'.");
        if (w >= static_cast<int>(net.weight_sizes.size())) net.weight_sizes.resize(w + 1, -1);
        if (net.weight_sizes[w] >= 0 && net.weight_sizes[w] != node.param_size[k])
          args.fail("shares trained weight " + std::to_string(w) + " with a parameter of another size.");
        net.weight_sizes[w] = node.param_size[k];
        node.weight[k] = w;
      }
      args.params.push_back(spec.params[k]);
      args.param_shapes.push_back(spec.params[k] ? spec.param_shapes[k] : std::vector<int64_t>{});
    }
    args.attrs.values = spec.attrs;
    check_attrs(*op, args.attrs.values, where);
    std::vector<int64_t> out_shape = op->parse(node, args);
    for (int64_t d : out_shape)
      if (d < 1) args.fail("computed an output shape " + dims_str(out_shape) + " with a dimension < 1.");
    if (size_of(out_shape) > kMaxSampleValues)
      args.fail("computed an output shape " + dims_str(out_shape) + " of more than 2^40 values per sample.");
    if (node.view) node.out_type = args.in_types[0];  // a view passes its input's element type on
    node.forward = op->forward;
    node.backward = op->backward;
    node.out_size = size_of(out_shape);
    double per_output = 1.0;
    for (int k = 0; k < node.nparams; ++k)
      per_output += static_cast<double>(node.param_size[k]) / static_cast<double>(out_shape.empty() ? 1 : out_shape.back());
    net.work_per_sample += static_cast<double>(node.out_size) * per_output;
    net.value_shapes.push_back(out_shape);
    net.value_sizes.push_back(node.out_size);
    net.value_types.push_back(node.out_type);
    net.batch_wide = net.batch_wide || node.batch_wide;
    net.has_commit = net.has_commit || op->commit != nullptr;
    net.nodes.push_back(std::move(node));
  }
  for (size_t w = 0; w < net.weight_sizes.size(); ++w)
    if (net.weight_sizes[w] < 0) throw std::invalid_argument(fn + "(): trained weight " + std::to_string(w) + " is not used by any node.");
  const int values = static_cast<int>(net.value_shapes.size());
  for (int o : outputs) {
    if (o < 0 || o >= values)
      throw std::invalid_argument(fn + "(): output value " + std::to_string(o) + " does not exist (values 0 .. " +
                                  std::to_string(values - 1) + ").");
    if (net.value_types[o] != ElemType::float32)
      throw std::invalid_argument(fn + "(): output value " + std::to_string(o) + " holds " +
                                  elem_type_name(net.value_types[o]) +
                                  " values, but a network's outputs are float32. End with op 'dequantize'.");
  }
  net.outputs = outputs;
  for (int64_t s : net.value_sizes) net.max_size = std::max(net.max_size, s);
  plan_gradients(net);
  // An inference-only op (no backward) may not have to run backward: no trained parameter and
  // no gradient through it (a trained node after it is fine: the gradient stops there).
  for (size_t i = 0; i < net.nodes.size(); ++i) {
    const Node& n = net.nodes[i];
    if (n.backward) continue;
    const std::string where = node_where(fn, i, specs[i]);
    for (int p = 0; p < n.nparams; ++p)
      if (n.weight[p] >= 0)
        throw std::invalid_argument(where + " is inference-only (it has no backward), so its parameter '" +
                                    n.op->params[p].name + "' cannot be trained. Received: weights[" +
                                    std::to_string(p) + "]=" + std::to_string(n.weight[p]) + ".");
    if (net.grad_slot[net.num_inputs + i] < 0) continue;
    for (int v : n.inputs)
      if (net.needs_grad[v])
        throw std::invalid_argument(where + " is inference-only (it has no backward), so no gradient can pass "
                                    "through it. Received: value " + std::to_string(v) + " before it needs one (" +
                                    (v < net.num_inputs ? "input gradients were asked for" : "a trained weight "
                                    "comes before it") + "). Train the float model instead.");
  }
  return net;
}

}  // namespace pycnn
