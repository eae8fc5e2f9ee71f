// Views for the network step: flatten, reshape and identity change how a sample's values
// are read, never the values (NHWC is row-major), so their forward returns the input
// itself and their backward copies the gradient through.
//   flatten:  (d1, ..., dk) -> (d1 * ... * dk)
//   reshape:  ints are the target shape (one -1 is inferred) -> that shape
//   identity: any shape -> the same (Dropout at inference, a no-op layer)
#include "network.h"

#include <cstring>

namespace pycnn {
namespace {

const float* view_forward(const NetNode&, const float* const* in, float*, int32_t*, int64_t) { return in[0]; }

void view_backward(const NetNode& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                   const float*, const int32_t*, int64_t nb) {
  std::memcpy(dinp[0], dout, sizeof(float) * nb * node.out_size);
}

std::vector<int64_t> flatten_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 0, 0, 0);
  node.view = true;
  return {net_size(args.in_shapes[0])};
}

std::vector<int64_t> reshape_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  if (!args.params.empty() || !args.strs.empty() || args.ints.empty())
    net_error(args, "expected the target shape as ints and nothing else.");
  const int64_t size = net_size(args.in_shapes[0]);
  std::vector<int64_t> out = args.ints;
  int64_t known = 1, unknown = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1 && unknown < 0) {
      unknown = static_cast<int64_t>(i);
    } else if (out[i] < 1) {
      net_error(args, "expected a target shape of positive sizes and at most one -1. Received: " +
                          net_shape_str(args.ints) + ".");
    } else {
      known *= out[i];
    }
  }
  if (unknown >= 0 && size % known == 0) out[unknown] = size / known;
  if (net_size(out) != size)
    net_error(args, "cannot reshape input of shape " + net_dims_str(args.in_shapes[0]) + " (" + std::to_string(size) +
                        " values per sample) to " + net_shape_str(args.ints) + ".");
  node.view = true;
  return out;
}

std::vector<int64_t> identity_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 0, 0, 0);
  node.view = true;
  return args.in_shapes[0];
}

}  // namespace

extern const NetOp flatten_net_op = {"flatten", flatten_parse, view_forward, view_backward};
extern const NetOp reshape_net_op = {"reshape", reshape_parse, view_forward, view_backward};
extern const NetOp identity_net_op = {"identity", identity_parse, view_forward, view_backward};

}  // namespace pycnn
