// The device half of batchnorm (batchnorm.cpp), over the whole batch: x is (rows, C) with
// rows = N * rows_per_sample, the node's BnGeom (batchnorm.h); gamma and beta may be absent.
//
//   training (node.batch_wide): the batch's mean and biased variance per channel, two passes
//     (mean, then squared deviations) summed in double as the CPU does (10^6 rows lose ~3
//     digits in a float sum); out = x * scale + shift with scale = gamma / sqrt(var + eps),
//     shift = beta - mean * scale; commit, after a finite step only, moves the moving
//     statistics: moving = moving * momentum + batch * (1 - momentum), each product in float32.
//   inference: the same affine map from the moving statistics; commit does nothing.
//   Then the fused activation (device_common.h's epilogue), and its gradient first in backward.
//
// Sums over rows are gathers in two levels, no atomics: kernel 1 gives one thread per (block
// of kRowBlock rows, channel) its block's partial sums, kernel 2 one thread per channel the sum
// of its blocks' partials (in a fixed order, so every run gives the same bits).
//
// Workspace (floats): mean (C), var (C) kept from forward to backward and commit; the
// per-channel coefficients (3C); the activation gradient's buffer; then, 8-byte aligned,
// 2 * blocks * C partial sums and C totals in double.
#include <cstdint>

#include "batchnorm.h"
#include "cuda/device_common.h"
#include "cuda/device_op.h"

PYCNN_DEVICE_NAMESPACE_BEGIN
namespace {

constexpr int64_t kRowBlock = 256;

int64_t blocks_of(int64_t rows) { return (rows + kRowBlock - 1) / kRowBlock; }

// Where the workspace's parts start, for a batch of N samples.
struct BnWork {
  float *mean, *var, *a, *k, *d, *dz;
  double *partial, *total;  // partial: (2, blocks, C); total: (C)
};

int64_t dz_floats(const Node& node, int64_t N) {
  return activation_gradient_floats(node.geom<BnGeom>().act, N * node.out_size);
}

int64_t bn_workspace(const Node& node, int64_t N) {
  const BnGeom& g = node.geom<BnGeom>();
  int64_t floats = 5 * g.C + dz_floats(node, N);
  floats += floats % 2;  // the doubles start 8-byte aligned (the workspace itself is 256-aligned)
  return floats + 2 * (2 * blocks_of(N * g.rows_per_sample) * g.C + g.C);
}

BnWork work_of(const DeviceArgs& args) {
  const int64_t C = args.node->geom<BnGeom>().C;
  BnWork w;
  w.mean = args.work;
  w.var = w.mean + C;
  w.a = w.var + C;
  w.k = w.a + C;
  w.d = w.k + C;
  w.dz = w.d + C;
  int64_t floats = 5 * C + dz_floats(*args.node, args.N);
  floats += floats % 2;
  w.partial = reinterpret_cast<double*>(args.work + floats);
  w.total = w.partial + 2 * blocks_of(args.N * args.node->geom<BnGeom>().rows_per_sample) * C;
  return w;
}

// The CPU's float32 rounding of each product in the moving-statistics update: nvcc would
// otherwise contract "m * keep + take * s" into one fma.
PYCNN_HD inline float mul_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(x, y);
#else
  return x * y;
#endif
}
PYCNN_HD inline float add_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(x, y);
#else
  return x + y;
#endif
}

// total[c] = sum over rows of x[r, c] (in double), through partial (blocks, C).
void sum_rows(double* total, double* partial, const float* x, int64_t rows, int64_t C) {
  const int64_t blocks = blocks_of(rows);
  for_each(blocks * C, "batchnorm (row sums)", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % C, b = i / C, end = (b + 1) * kRowBlock < rows ? (b + 1) * kRowBlock : rows;
    double s = 0.0;
    for (int64_t r = b * kRowBlock; r < end; ++r) s += x[r * C + c];
    partial[i] = s;
  });
  for_each(C, "batchnorm (row sums, blocks)", PYCNN_DEVICE_LAMBDA(int64_t c) {
    double s = 0.0;
    for (int64_t b = 0; b < blocks; ++b) s += partial[b * C + c];
    total[c] = s;
  });
}

// ---------------------------------------------------------------------------- forward

void bn_forward(const DeviceArgs& args) {
  const Node& node = *args.node;
  const BnGeom& g = node.geom<BnGeom>();
  const int64_t C = g.C, rows = args.N * g.rows_per_sample;
  const double M = static_cast<double>(rows);
  const float eps = g.epsilon;
  const float* x = args.in[0];
  const float* gamma = args.param[0];
  const float* beta = args.param[1];
  const BnWork w = work_of(args);
  float* mean = w.mean;
  float* var = w.var;
  float* scale = w.a;
  float* shift = w.k;
  double* partial = w.partial;
  double* total = w.total;
  if (node.batch_wide) {
    sum_rows(total, partial, x, rows, C);
    for_each(C, "batchnorm (mean)", PYCNN_DEVICE_LAMBDA(int64_t c) { mean[c] = static_cast<float>(total[c] / M); });
    // s[c] = sum (x - mean)^2: the difference and its square in float, the sum in double (the CPU's).
    const int64_t blocks = blocks_of(rows);
    for_each(blocks * C, "batchnorm (squared deviations)", PYCNN_DEVICE_LAMBDA(int64_t i) {
      const int64_t c = i % C, b = i / C, end = (b + 1) * kRowBlock < rows ? (b + 1) * kRowBlock : rows;
      const float m = mean[c];
      double s = 0.0;
      for (int64_t r = b * kRowBlock; r < end; ++r) {
        const float dev = x[r * C + c] - m;
        s += dev * dev;
      }
      partial[i] = s;
    });
    for_each(C, "batchnorm (variance)", PYCNN_DEVICE_LAMBDA(int64_t c) {
      double s = 0.0;
      for (int64_t b = 0; b < blocks; ++b) s += partial[b * C + c];
      var[c] = static_cast<float>(s / M);
      const float inv = 1.f / sqrtf(var[c] + eps);
      scale[c] = (gamma ? gamma[c] : 1.f) * inv;
      shift[c] = (beta ? beta[c] : 0.f) - mean[c] * scale[c];
    });
  } else {
    const float* moving_mean = args.param[2];
    const float* moving_var = args.param[3];
    for_each(C, "batchnorm (scale, shift)", PYCNN_DEVICE_LAMBDA(int64_t c) {
      const float inv = 1.f / sqrtf(moving_var[c] + eps);
      scale[c] = (gamma ? gamma[c] : 1.f) * inv;
      shift[c] = (beta ? beta[c] : 0.f) - moving_mean[c] * scale[c];
    });
  }
  float* out = args.out;
  for_each(rows * C, "batchnorm_forward", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % C;
    out[i] = x[i] * scale[c] + shift[c];
  });
  activation_epilogue(g.act, out, nullptr, args.aux, rows, C);
}

// ---------------------------------------------------------------------------- backward

// "y = act(z)" first: dz = dy * act'(y). Then with xhat = (x - mean) * invstd and the batch's
// sums sdy = sum dy, sdyx = sum dy * x (double):
//   dgamma = sum dy * xhat = invstd * (sdyx - mean * sdy),  dbeta = sdy;
//   training: dx = a * dy - k * x + d with a = gamma * invstd, k = a * invstd * dgamma / M,
//             d = k * mean - a * sdy / M (the batch statistics depend on x);
//   inference: dx = dy * gamma / sqrt(var + eps) (the moving statistics are constants).
// The moving statistics have no gradient (dparam[2], dparam[3] are left alone).
void bn_backward(const DeviceArgs& args, float* const* dinp, float* const* dparam, const float* dout_act) {
  const Node& node = *args.node;
  const BnGeom& g = node.geom<BnGeom>();
  const int64_t C = g.C, rows = args.N * g.rows_per_sample;
  const double M = static_cast<double>(rows);
  const float eps = g.epsilon;
  const bool training = node.batch_wide;
  const float* x = args.in[0];
  const float* gamma = args.param[0];
  const BnWork w = work_of(args);
  const float* dy = activation_gradient(g.act, w.dz, dout_act, args.out, args.aux, rows * C);
  const float* mean = training ? w.mean : args.param[2];
  const float* var = training ? w.var : args.param[3];
  float* dgamma = args.param[0] ? dparam[0] : nullptr;
  float* dbeta = args.param[1] ? dparam[1] : nullptr;
  float* ca = w.a;
  float* ck = w.k;
  float* cd = w.d;
  double* partial = w.partial;
  const int64_t blocks = blocks_of(rows);
  // partial (2, blocks, C): the blocks' sums of dy, then of dy * x (the product in float, as the CPU).
  for_each(blocks * C, "batchnorm_backward (sums)", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % C, b = i / C, end = (b + 1) * kRowBlock < rows ? (b + 1) * kRowBlock : rows;
    double s = 0.0, sx = 0.0;
    for (int64_t r = b * kRowBlock; r < end; ++r) {
      const float d = dy[r * C + c];
      s += d;
      sx += d * x[r * C + c];
    }
    partial[i] = s;
    partial[blocks * C + i] = sx;
  });
  for_each(C, "batchnorm_backward (coefficients)", PYCNN_DEVICE_LAMBDA(int64_t c) {
    double sdy = 0.0, sdyx = 0.0;
    for (int64_t b = 0; b < blocks; ++b) {
      sdy += partial[b * C + c];
      sdyx += partial[(blocks + b) * C + c];
    }
    const double inv = 1.0 / sqrt(static_cast<double>(var[c]) + eps);
    const double sdyxhat = inv * (sdyx - mean[c] * sdy);
    if (dgamma) dgamma[c] = static_cast<float>(sdyxhat);
    if (dbeta) dbeta[c] = static_cast<float>(sdy);
    const float gc = gamma ? gamma[c] : 1.f;
    if (training) {
      const double ac = gc * inv, kc = ac * inv * sdyxhat / M;
      ca[c] = static_cast<float>(ac);
      ck[c] = static_cast<float>(kc);
      cd[c] = static_cast<float>(kc * mean[c] - ac * sdy / M);
    } else {
      ca[c] = gc / sqrtf(var[c] + eps);
    }
  });
  float* dx = dinp[0];
  if (!dx) return;
  if (training)
    for_each(rows * C, "batchnorm_backward (dinp)", PYCNN_DEVICE_LAMBDA(int64_t i) {
      const int64_t c = i % C;
      dx[i] = ca[c] * dy[i] - ck[c] * x[i] + cd[c];
    });
  else
    for_each(rows * C, "batchnorm_backward (dinp)", PYCNN_DEVICE_LAMBDA(int64_t i) { dx[i] = dy[i] * ca[i % C]; });
}

// ---------------------------------------------------------------------------- commit

// "moving = moving * momentum + batch * (1 - momentum)", each product rounded to float32 as
// Keras's float32 variables do; nothing when the step's loss was not finite (*finite == 0).
void bn_commit(const DeviceArgs& args, const float* finite) {
  const Node& node = *args.node;
  if (!node.batch_wide) return;
  const BnGeom& g = node.geom<BnGeom>();
  const float keep = g.momentum, take = static_cast<float>(1.0 - static_cast<double>(g.momentum));
  const BnWork w = work_of(args);
  const float* mean = w.mean;
  const float* var = w.var;
  float* moving_mean = args.state[2];
  float* moving_var = args.state[3];
  const int64_t C = g.C;
  for_each(2 * C, "batchnorm_commit", PYCNN_DEVICE_LAMBDA(int64_t i) {
    if (*finite == 0.f) return;
    const int64_t c = i % C;
    float* moving = i < C ? moving_mean : moving_var;
    const float batch = i < C ? mean[c] : var[c];
    moving[c] = add_rn(mul_rn(moving[c], keep), mul_rn(take, batch));
  });
}

const char* bn_unsupported(const Node& node) { return device_act_unsupported(node.geom<BnGeom>().act); }

const DeviceOpDef batchnorm_device = {"batchnorm", bn_unsupported, bn_workspace, bn_forward, bn_backward, bn_commit};

PYCNN_REGISTER_DEVICE_OP(batchnorm_device);

}  // namespace
PYCNN_DEVICE_NAMESPACE_END
