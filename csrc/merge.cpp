// Merging ops: concatenate, add, multiply. Shapes are per sample, inputs j = 0 .. k-1, k >= 2.
//   concatenate: attrs axis, a per-sample axis; inputs agree on every other dimension ->
//                the sizes along axis summed. Forward copies, per sample, `outer` blocks of
//                each input in turn (outer = product of the dimensions before axis);
//                backward splits dout the same way.
//   add:         inputs of one shape -> their sum; dinp[j] = dout.
//   multiply:    inputs of one shape -> their product; dinp[j] = dout * the product of the
//                other inputs (computed, never divided, so zeros are exact).
#include <cstring>
#include <string>
#include <vector>

#include "op_registry.h"

namespace pycnn {
namespace {

std::string shapes_str(const OpArgs& args) {
  std::string s;
  for (size_t j = 0; j < args.in_shapes.size(); ++j) s += (j ? ", " : "") + dims_str(args.in_shapes[j]);
  return s;
}

std::vector<int64_t> concatenate_parse(Node& node, const OpArgs& args) {
  const std::vector<int64_t>& first = args.in_shapes[0];
  const int64_t rank = static_cast<int64_t>(first.size()), axis = args.attrs.i("axis");
  if (axis < 0 || axis >= rank)
    args.fail("expected a per-sample axis in [0, " + std::to_string(rank) + "). Received: axis=" +
                        std::to_string(axis) + " for input shapes " + shapes_str(args) + ".");
  std::vector<int64_t> out = first;
  out[axis] = 0;
  for (const std::vector<int64_t>& s : args.in_shapes) {
    bool ok = static_cast<int64_t>(s.size()) == rank;
    for (int64_t d = 0; ok && d < rank; ++d) ok = d == axis || s[d] == first[d];
    if (!ok)
      args.fail("expected inputs with matching shapes except along axis " + std::to_string(axis) +
                          ". Received: input shapes " + shapes_str(args) + ".");
    out[axis] += s[axis];
  }
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= first[d];
  node.geom<int64_t>() = outer;
  return out;
}

const float* concatenate_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const int64_t outer = node.geom<int64_t>(), k = static_cast<int64_t>(node.inputs.size());
  float* o_ptr = out;
  for (int64_t s = 0; s < nb; ++s)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t block = node.in_sizes[j] / outer;
        std::memcpy(o_ptr, in[j] + (s * outer + o) * block, sizeof(float) * block);
        o_ptr += block;
      }
  return out;
}

void concatenate_backward(const Node& node, float* const* dinp, float* const*, const float* dout,
                          const float* const*, const float*, const float*, int64_t nb) {
  const int64_t outer = node.geom<int64_t>(), k = static_cast<int64_t>(node.inputs.size());
  for (int64_t s = 0; s < nb; ++s)
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t block = node.in_sizes[j] / outer;
        if (dinp[j]) std::memcpy(dinp[j] + (s * outer + o) * block, dout, sizeof(float) * block);
        dout += block;
      }
}

std::vector<int64_t> elementwise_parse(Node&, const OpArgs& args) {
  for (const std::vector<int64_t>& s : args.in_shapes)
    if (s != args.in_shapes[0])
      args.fail("expected inputs of the same shape. Received: input shapes " + shapes_str(args) + ".");
  return args.in_shapes[0];
}

const float* add_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const int64_t n = nb * node.out_size;
  std::memcpy(out, in[0], sizeof(float) * n);
  for (size_t j = 1; j < node.inputs.size(); ++j)
    for (int64_t i = 0; i < n; ++i) out[i] += in[j][i];
  return out;
}

void add_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                  const float*, const float*, int64_t nb) {
  for (size_t j = 0; j < node.inputs.size(); ++j)
    if (dinp[j]) std::memcpy(dinp[j], dout, sizeof(float) * nb * node.out_size);
}

const float* multiply_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const int64_t n = nb * node.out_size;
  std::memcpy(out, in[0], sizeof(float) * n);
  for (size_t j = 1; j < node.inputs.size(); ++j)
    for (int64_t i = 0; i < n; ++i) out[i] *= in[j][i];
  return out;
}

void multiply_backward(const Node& node, float* const* dinp, float* const*, const float* dout,
                       const float* const* in, const float*, const float*, int64_t nb) {
  const int64_t n = nb * node.out_size;
  const size_t k = node.inputs.size();
  for (size_t j = 0; j < k; ++j) {
    if (!dinp[j]) continue;
    std::memcpy(dinp[j], dout, sizeof(float) * n);
    for (size_t m = 0; m < k; ++m)
      if (m != j)
        for (int64_t i = 0; i < n; ++i) dinp[j][i] *= in[m][i];
  }
}

const OpDef concatenate_op = {"concatenate", "inputs joined along a per-sample axis", kVariadic, {},
                              {{"axis", AttrType::Int, int64_t{0}, true}},
                              concatenate_parse, concatenate_forward, concatenate_backward};
const OpDef add_op = {"add", "the sum of inputs of one shape", kVariadic, {}, {}, elementwise_parse, add_forward,
                      add_backward};
const OpDef multiply_op = {"multiply", "the product of inputs of one shape", kVariadic, {}, {}, elementwise_parse,
                           multiply_forward, multiply_backward};

PYCNN_REGISTER_OP(concatenate_op);
PYCNN_REGISTER_OP(add_op);
PYCNN_REGISTER_OP(multiply_op);

}  // namespace
}  // namespace pycnn
