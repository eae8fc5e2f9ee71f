// Device half of the dense op (dense.cpp), on the device GEMM (cuBLAS in the GPU build):
//   forward:  out (R, OUT) = act(inp (R, IN) @ kernel (IN, OUT) + bias), R = N * rows per sample
//   backward: dz = dout * act'; dkernel = inp^T @ dz; dbias = column sums of dz; dinp = dz @ kernel^T
// Also column_sums (device_common.h), which the convolutions' dbias uses too.
#include "cuda/device_common.h"
#include "op_geometry.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

namespace {
constexpr int64_t kSumBlocks = 256;  // row blocks of the first pass
int64_t sum_blocks(int64_t rows) { return rows < kSumBlocks ? rows : kSumBlocks; }
}  // namespace

int64_t column_sums_floats(int64_t rows, int64_t cols) { return sum_blocks(rows) * cols; }

void column_sums(float* sums, const float* x, int64_t rows, int64_t cols, float* work) {
  const int64_t B = sum_blocks(rows);
  if (B == 0) {
    fill_zero(sums, sizeof(float) * cols);
    return;
  }
  for_each(B * cols, "column sums (blocks)", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t b = i / cols, c = i % cols;
    const int64_t r0 = rows * b / B, r1 = rows * (b + 1) / B;
    float acc = 0.f;
    for (int64_t r = r0; r < r1; ++r) acc += x[r * cols + c];
    work[i] = acc;
  });
  for_each(cols, "column sums", PYCNN_DEVICE_LAMBDA(int64_t c) {
    float acc = 0.f;
    for (int64_t b = 0; b < B; ++b) acc += work[b * cols + c];
    sums[c] = acc;
  });
}

namespace {

const char* dense_unsupported(const Node& node) { return device_act_unsupported(node.geom<DenseGeom>().act); }

// Workspace: dz (when the activation is not linear), then the column sums' blocks.
int64_t dense_workspace(const Node& node, int64_t N) {
  const DenseGeom& g = node.geom<DenseGeom>();
  const int64_t R = N * g.rows;
  return activation_gradient_floats(g.act, R * g.OUT) + column_sums_floats(R, g.OUT);
}

void dense_forward(const DeviceArgs& a) {
  const DenseGeom& g = a.node->geom<DenseGeom>();
  const int64_t R = a.N * g.rows;
  gemm(false, false, R, g.OUT, g.IN, 1.f, a.in[0], g.IN, a.param[0], g.OUT, 0.f, a.out, g.OUT);
  activation_epilogue(g.act, a.out, a.param[1], a.aux, R, g.OUT);
}

void dense_backward(const DeviceArgs& a, float* const* dinp, float* const* dparam, const float* dout) {
  const DenseGeom& g = a.node->geom<DenseGeom>();
  const int64_t R = a.N * g.rows;
  const int64_t dz_floats = activation_gradient_floats(g.act, R * g.OUT);
  const float* dz = activation_gradient(g.act, a.work, dout, a.out, a.aux, R * g.OUT);
  gemm(true, false, g.IN, g.OUT, R, 1.f, a.in[0], g.IN, dz, g.OUT, 0.f, dparam[0], g.OUT);
  if (a.param[1]) column_sums(dparam[1], dz, R, g.OUT, a.work + dz_floats);
  if (dinp[0]) gemm(false, true, R, g.IN, g.OUT, 1.f, dz, g.OUT, a.param[0], g.OUT, 0.f, dinp[0], g.IN);
}

const DeviceOpDef dense_device_op = {"dense", dense_unsupported, dense_workspace, dense_forward, dense_backward};

}  // namespace

PYCNN_REGISTER_DEVICE_OP(dense_device_op);

PYCNN_DEVICE_NAMESPACE_END
