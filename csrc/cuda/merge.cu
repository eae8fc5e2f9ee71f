// The device half of the merging ops (merge.cpp): concatenate, add, multiply, with k >= 2
// inputs of the node's shapes, over the whole batch.
//
//   concatenate: one launch per input j: element i of input j (sample-block so, offset b in its
//                block of in_sizes[j] / outer values) goes to out[so * total + offset_j + b],
//                total = out_size / outer; backward gathers dinp[j] from the same places.
//   add:         out = in[0] + in[1] + ... (in that order, as the CPU loop); dinp[j] = dout.
//   multiply:    out = in[0] * in[1] * ...; dinp[j] = dout * the product of the other inputs,
//                multiplied in input order (computed, never divided, so zeros are exact).
// A kernel takes its inputs' pointers by value, kPack at a time; more inputs continue from
// what the previous launch wrote, so the order of the float operations is the CPU's.
#include <cstdint>

#include "cuda/device_op.h"

PYCNN_DEVICE_NAMESPACE_BEGIN
namespace {

constexpr int kPack = 8;
struct Pack {
  const float* p[kPack];
  int count;
};
// Inputs [first, first + kPack) (clipped to k) of `in`.
Pack pack(const float* const* in, int first, int k) {
  Pack r{};
  r.count = k - first < kPack ? k - first : kPack;
  for (int m = 0; m < r.count; ++m) r.p[m] = in[first + m];
  return r;
}

// ---------------------------------------------------------------------------- concatenate

void concatenate_forward(const DeviceArgs& a) {
  const Node& node = *a.node;
  const int64_t outer = node.geom<int64_t>(), total = node.out_size / outer;
  float* out = a.out;
  int64_t offset = 0;
  for (size_t j = 0; j < node.inputs.size(); ++j) {
    const int64_t block = node.in_sizes[j] / outer;
    const float* in = a.in[j];
    for_each(a.N * outer * block, "concatenate_forward", PYCNN_DEVICE_LAMBDA(int64_t i) {
      out[(i / block) * total + offset + i % block] = in[i];
    });
    offset += block;
  }
}

void concatenate_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const Node& node = *a.node;
  const int64_t outer = node.geom<int64_t>(), total = node.out_size / outer;
  int64_t offset = 0;
  for (size_t j = 0; j < node.inputs.size(); ++j) {
    const int64_t block = node.in_sizes[j] / outer;
    float* d = dinp[j];
    if (d)
      for_each(a.N * outer * block, "concatenate_backward", PYCNN_DEVICE_LAMBDA(int64_t i) {
        d[i] = dout[(i / block) * total + offset + i % block];
      });
    offset += block;
  }
}

// ---------------------------------------------------------------------------- add, multiply

void add_forward(const DeviceArgs& a) {
  const int k = static_cast<int>(a.node->inputs.size());
  float* out = a.out;
  for (int first = 0; first < k; first += kPack) {
    const Pack p = pack(a.in, first, k);
    const bool start = first == 0;
    for_each(a.N * a.node->out_size, "add_forward", PYCNN_DEVICE_LAMBDA(int64_t i) {
      float acc = start ? p.p[0][i] : out[i];
      for (int m = start ? 1 : 0; m < p.count; ++m) acc += p.p[m][i];
      out[i] = acc;
    });
  }
}

// "out = sum_j in[j]": dinp[j] = dout.
void add_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const size_t bytes = sizeof(float) * static_cast<size_t>(a.N * a.node->out_size);
  for (size_t j = 0; j < a.node->inputs.size(); ++j)
    if (dinp[j]) copy_on_device(dinp[j], dout, bytes);
}

void multiply_forward(const DeviceArgs& a) {
  const int k = static_cast<int>(a.node->inputs.size());
  float* out = a.out;
  for (int first = 0; first < k; first += kPack) {
    const Pack p = pack(a.in, first, k);
    const bool start = first == 0;
    for_each(a.N * a.node->out_size, "multiply_forward", PYCNN_DEVICE_LAMBDA(int64_t i) {
      float acc = start ? p.p[0][i] : out[i];
      for (int m = start ? 1 : 0; m < p.count; ++m) acc *= p.p[m][i];
      out[i] = acc;
    });
  }
}

// "out = prod_m in[m]": dinp[j] = dout * prod_{m != j} in[m], as the CPU: dout times each other
// input in input order.
void multiply_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const int k = static_cast<int>(a.node->inputs.size());
  for (int j = 0; j < k; ++j) {
    float* d = dinp[j];
    if (!d) continue;
    for (int first = 0; first < k; first += kPack) {
      const Pack p = pack(a.in, first, k);
      const bool start = first == 0;
      const int skip = j - first;  // this input's place in the pack (outside [0, count): none)
      for_each(a.N * a.node->out_size, "multiply_backward", PYCNN_DEVICE_LAMBDA(int64_t i) {
        float acc = start ? dout[i] : d[i];
        for (int m = 0; m < p.count; ++m)
          if (m != skip) acc *= p.p[m][i];
        d[i] = acc;
      });
    }
  }
}

const DeviceOpDef concatenate_device = {"concatenate", nullptr, nullptr, concatenate_forward, concatenate_backward};
const DeviceOpDef add_device = {"add", nullptr, nullptr, add_forward, add_backward};
const DeviceOpDef multiply_device = {"multiply", nullptr, nullptr, multiply_forward, multiply_backward};

PYCNN_REGISTER_DEVICE_OP(concatenate_device);
PYCNN_REGISTER_DEVICE_OP(add_device);
PYCNN_REGISTER_DEVICE_OP(multiply_device);

}  // namespace
PYCNN_DEVICE_NAMESPACE_END
