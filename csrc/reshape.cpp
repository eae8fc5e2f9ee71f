// Views: flatten, reshape and identity change how a sample's values are read, never the
// values (NHWC is row-major), so their forward returns the input itself and their backward
// copies the gradient through. They read float32 and uint8 values alike (a quantized
// network flattens its bytes the same way) and pass the type on; backward is float32 only,
// and only a float32 value ever has a gradient.
//   flatten:  (d1, ..., dk) -> (d1 * ... * dk)
//   reshape:  attrs target_shape (one -1 is inferred) -> that shape
//   identity: any shape -> the same (Dropout at inference, an Input, a no-op layer)
#include <cstring>

#include "op_registry.h"

namespace pycnn {
namespace {

const float* view_forward(const Node&, const float* const* in, float*, float*, int64_t) { return in[0]; }

void view_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                   const float*, const float*, int64_t nb) {
  std::memcpy(dinp[0], dout, sizeof(float) * nb * node.out_size);
}

std::vector<int64_t> flatten_parse(Node& node, const OpArgs& args) {
  node.view = true;
  return {size_of(args.in_shapes[0])};
}

std::vector<int64_t> reshape_parse(Node& node, const OpArgs& args) {
  const int64_t size = size_of(args.in_shapes[0]);
  const std::vector<int64_t>& target = args.attrs.ints("target_shape");
  std::vector<int64_t> out = target;
  int64_t known = 1, unknown = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1 && unknown < 0) {
      unknown = static_cast<int64_t>(i);
    } else if (out[i] < 1 || out[i] > size / known) {  // (the second: cannot fit, and the product stays in range)
      args.fail("cannot reshape input of shape " + dims_str(args.in_shapes[0]) + " (" + std::to_string(size) +
                " values per sample) to " + shape_str(target) + ": expected positive sizes, at most one -1.");
    } else {
      known *= out[i];
    }
  }
  if (unknown >= 0 && size % known == 0) out[unknown] = size / known;
  if (size_of(out) != size)
    args.fail("cannot reshape input of shape " + dims_str(args.in_shapes[0]) + " (" + std::to_string(size) +
              " values per sample) to " + shape_str(target) + ".");
  node.view = true;
  return out;
}

std::vector<int64_t> identity_parse(Node& node, const OpArgs& args) {
  node.view = true;
  return args.in_shapes[0];
}

const OpDef flatten_op = {"flatten", "(d1, ..., dk) -> (d1 * ... * dk), row-major", 1, {}, {}, flatten_parse,
                          view_forward, view_backward, nullptr, Reads::any};
const OpDef reshape_op = {"reshape", "the same values in target_shape (one -1 inferred)", 1, {},
                          {{"target_shape", AttrType::Ints, std::vector<int64_t>{}, true}}, reshape_parse,
                          view_forward, view_backward, nullptr, Reads::any};
const OpDef identity_op = {"identity", "the input unchanged", 1, {}, {}, identity_parse, view_forward, view_backward,
                           nullptr, Reads::any};

PYCNN_REGISTER_OP(flatten_op);
PYCNN_REGISTER_OP(reshape_op);
PYCNN_REGISTER_OP(identity_op);

}  // namespace
}  // namespace pycnn
