// Batch normalization, forward and backward (see batchnorm.h), and its network-step node.
#include "batchnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "network.h"
#include "runtime.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

namespace pycnn {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // below this many values, waking threads costs more than the loop

// Rows go through in tiles of R rows (R * C >= 64 values when C < 64), so that the inner loops
// run over R * C contiguous values and vectorise even for C = 6; per-channel vectors are
// repeated R times to line up with a tile.
struct Tiles {
  int64_t R, L;  // rows per tile, values per tile
  explicit Tiles(int64_t C) : R(C >= 64 ? 1 : 64 / C), L(R * C) {}
};

std::vector<float> repeat(const float* v, int64_t C, const Tiles& t) {
  std::vector<float> out(static_cast<size_t>(t.L));
  for (int64_t r = 0; r < t.R; ++r) std::copy(v, v + C, out.begin() + r * C);
  return out;
}

// s[c] += sum over rows of x[r, c].
void sum_rows(double* s, const float* x, int64_t rows, int64_t C) {
  const Tiles t(C);
  std::vector<double> acc(static_cast<size_t>(t.L), 0.0);
  const int64_t full = rows / t.R;
  for (int64_t b = 0; b < full; ++b) {
    const float* xb = x + b * t.L;
    for (int64_t j = 0; j < t.L; ++j) acc[j] += xb[j];
  }
  for (int64_t j = 0; j < t.L; ++j) s[j % C] += acc[j];
  for (int64_t r = full * t.R; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) s[c] += x[r * C + c];
}

// s[c] += sum over rows of (x[r, c] - mean[c])^2.
void sum_sqdev_rows(double* s, const float* x, const float* mean, int64_t rows, int64_t C) {
  const Tiles t(C);
  const std::vector<float> m = repeat(mean, C, t);
  std::vector<double> acc(static_cast<size_t>(t.L), 0.0);
  const int64_t full = rows / t.R;
  for (int64_t b = 0; b < full; ++b) {
    const float* xb = x + b * t.L;
    for (int64_t j = 0; j < t.L; ++j) {
      const float d = xb[j] - m[j];
      acc[j] += d * d;
    }
  }
  for (int64_t j = 0; j < t.L; ++j) s[j % C] += acc[j];
  for (int64_t r = full * t.R; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const float d = x[r * C + c] - mean[c];
      s[c] += d * d;
    }
}

// sdy[c] += sum dy[r, c]; sdyx[c] += sum dy[r, c] * x[r, c].
void sum_grad_rows(double* sdy, double* sdyx, const float* dy, const float* x, int64_t rows, int64_t C) {
  const Tiles t(C);
  std::vector<double> a(static_cast<size_t>(t.L), 0.0), b(static_cast<size_t>(t.L), 0.0);
  const int64_t full = rows / t.R;
  for (int64_t k = 0; k < full; ++k) {
    const float* dk = dy + k * t.L;
    const float* xk = x + k * t.L;
    for (int64_t j = 0; j < t.L; ++j) {
      a[j] += dk[j];
      b[j] += dk[j] * xk[j];
    }
  }
  for (int64_t j = 0; j < t.L; ++j) {
    sdy[j % C] += a[j];
    sdyx[j % C] += b[j];
  }
  for (int64_t r = full * t.R; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      sdy[c] += dy[r * C + c];
      sdyx[c] += static_cast<double>(dy[r * C + c]) * x[r * C + c];
    }
}

// out = x * a + b per channel (out may be x).
void affine_rows(float* out, const float* x, const float* a, const float* b, int64_t rows, int64_t C) {
  const Tiles t(C);
  const std::vector<float> ta = repeat(a, C, t), tb = repeat(b, C, t);
  const int64_t full = rows / t.R;
  for (int64_t k = 0; k < full; ++k) {
    const float* xk = x + k * t.L;
    float* ok = out + k * t.L;
    for (int64_t j = 0; j < t.L; ++j) ok[j] = xk[j] * ta[j] + tb[j];
  }
  for (int64_t r = full * t.R; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) out[r * C + c] = x[r * C + c] * a[c] + b[c];
}

// dx = a * dy - k * x + d per channel: the training input gradient with a = gamma * invstd,
// k = a * invstd * sum(dy * xhat) / M, d = k * mean - a * sum(dy) / M.
void grad_input_rows(float* dx, const float* dy, const float* x, const float* a, const float* k, const float* d,
                     int64_t rows, int64_t C) {
  const Tiles t(C);
  const std::vector<float> ta = repeat(a, C, t), tk = repeat(k, C, t), td = repeat(d, C, t);
  const int64_t full = rows / t.R;
  for (int64_t b = 0; b < full; ++b) {
    const float* dyb = dy + b * t.L;
    const float* xb = x + b * t.L;
    float* db = dx + b * t.L;
    for (int64_t j = 0; j < t.L; ++j) db[j] = ta[j] * dyb[j] - tk[j] * xb[j] + td[j];
  }
  for (int64_t r = full * t.R; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = r * C + c;
      dx[i] = a[c] * dy[i] - k[c] * x[i] + d[c];
    }
}

// Threads for M rows of C values (1 when the work is too small to share).
int row_threads(int64_t M, int64_t C) {
  return M * C > kParallelMin ? static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(get_num_threads(), M))) : 1;
}

// Runs fn(r0, r1) on a share of the M rows per thread.
template <class F>
void parallel_rows(int64_t M, int64_t C, F&& fn) {
  const int T = row_threads(M, C);
#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(T) if (T > 1)
#endif
  {
#ifdef PYCNN_OPENMP
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
#else
    const int t = 0, team = 1;
#endif
    fn(M * t / team, M * (t + 1) / team);
  }
}

// s[0, width) = the sum over threads of fn(partial, r0, r1), which adds a share of the rows'
// sums into its zeroed `partial`; threads' partials are added in thread order.
template <class F>
void reduce_rows(double* s, int64_t width, int64_t M, int64_t C, F&& fn) {
  const int T = row_threads(M, C);
  std::vector<double> part(static_cast<size_t>(T * width), 0.0);
  int used = 1;
#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(T) if (T > 1)
#endif
  {
#ifdef PYCNN_OPENMP
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
#else
    const int t = 0, team = 1;
#endif
    if (t == 0) used = team;
    fn(part.data() + t * width, M * t / team, M * (t + 1) / team);
  }
  for (int64_t j = 0; j < width; ++j) {
    double v = 0.0;
    for (int u = 0; u < used; ++u) v += part[u * width + j];
    s[j] = v;
  }
}

float gamma_at(const float* gamma, int64_t c) { return gamma ? gamma[c] : 1.f; }
float beta_at(const float* beta, int64_t c) { return beta ? beta[c] : 0.f; }

// Per channel: scale = gamma * invstd, shift = beta - mean * scale.
void scale_shift(float* scale, float* shift, const float* gamma, const float* beta, const float* mean,
                 const float* var, int64_t C, float epsilon) {
  for (int64_t c = 0; c < C; ++c) {
    const float inv = 1.f / std::sqrt(var[c] + epsilon);
    scale[c] = gamma_at(gamma, c) * inv;
    shift[c] = beta_at(beta, c) - mean[c] * scale[c];
  }
}

// From the batch sums of dy and dy * x: dgamma, dbeta (each may be null) and the input
// gradient's coefficients a, k, d (grad_input_rows); M rows in the batch.
void train_grad_coefficients(float* dgamma, float* dbeta, float* a, float* k, float* d, const double* sdy,
                             const double* sdyx, const float* gamma, const float* mean, const float* var, double M,
                             int64_t C, float epsilon) {
  for (int64_t c = 0; c < C; ++c) {
    const double inv = 1.0 / std::sqrt(static_cast<double>(var[c]) + epsilon);
    const double sdyxhat = inv * (sdyx[c] - mean[c] * sdy[c]);  // sum dy * xhat
    if (dgamma) dgamma[c] = static_cast<float>(sdyxhat);
    if (dbeta) dbeta[c] = static_cast<float>(sdy[c]);
    const double ac = gamma_at(gamma, c) * inv;
    const double kc = ac * inv * sdyxhat / M;
    a[c] = static_cast<float>(ac);
    k[c] = static_cast<float>(kc);
    d[c] = static_cast<float>(kc * mean[c] - ac * sdy[c] / M);
  }
}

}  // namespace

void batchnorm_forward_train(float* out, float* mean, float* var, const float* inp, const float* gamma,
                             const float* beta, int64_t M, int64_t C, float epsilon) {
  // Two passes (mean, then squared deviations from it): exact where E[x^2] - E[x]^2 cancels.
  std::vector<double> s(static_cast<size_t>(C));
  reduce_rows(s.data(), C, M, C, [&](double* p, int64_t r0, int64_t r1) { sum_rows(p, inp + r0 * C, r1 - r0, C); });
  for (int64_t c = 0; c < C; ++c) mean[c] = static_cast<float>(s[c] / M);
  reduce_rows(s.data(), C, M, C,
              [&](double* p, int64_t r0, int64_t r1) { sum_sqdev_rows(p, inp + r0 * C, mean, r1 - r0, C); });
  for (int64_t c = 0; c < C; ++c) var[c] = static_cast<float>(s[c] / M);
  std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  scale_shift(scale.data(), shift.data(), gamma, beta, mean, var, C, epsilon);
  parallel_rows(M, C, [&](int64_t r0, int64_t r1) {
    affine_rows(out + r0 * C, inp + r0 * C, scale.data(), shift.data(), r1 - r0, C);
  });
}

void batchnorm_backward_train(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                              const float* gamma, const float* mean, const float* var, int64_t M, int64_t C,
                              float epsilon) {
  std::vector<double> s(static_cast<size_t>(2 * C));
  reduce_rows(s.data(), 2 * C, M, C, [&](double* p, int64_t r0, int64_t r1) {
    sum_grad_rows(p, p + C, dout + r0 * C, inp + r0 * C, r1 - r0, C);
  });
  std::vector<float> a(static_cast<size_t>(C)), k(static_cast<size_t>(C)), d(static_cast<size_t>(C));
  train_grad_coefficients(dgamma, dbeta, a.data(), k.data(), d.data(), s.data(), s.data() + C, gamma, mean, var,
                          static_cast<double>(M), C, epsilon);
  if (!dinp) return;
  parallel_rows(M, C, [&](int64_t r0, int64_t r1) {
    grad_input_rows(dinp + r0 * C, dout + r0 * C, inp + r0 * C, a.data(), k.data(), d.data(), r1 - r0, C);
  });
}

void batchnorm_forward_infer(float* out, const float* inp, const float* gamma, const float* beta,
                             const float* moving_mean, const float* moving_var, int64_t M, int64_t C, float epsilon) {
  std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  scale_shift(scale.data(), shift.data(), gamma, beta, moving_mean, moving_var, C, epsilon);
  parallel_rows(M, C, [&](int64_t r0, int64_t r1) {
    affine_rows(out + r0 * C, inp + r0 * C, scale.data(), shift.data(), r1 - r0, C);
  });
}

void batchnorm_backward_infer(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                              const float* gamma, const float* moving_mean, const float* moving_var, int64_t M,
                              int64_t C, float epsilon) {
  if (dgamma || dbeta) {
    std::vector<double> s(static_cast<size_t>(2 * C));
    reduce_rows(s.data(), 2 * C, M, C, [&](double* p, int64_t r0, int64_t r1) {
      sum_grad_rows(p, p + C, dout + r0 * C, inp + r0 * C, r1 - r0, C);
    });
    for (int64_t c = 0; c < C; ++c) {
      const double inv = 1.0 / std::sqrt(static_cast<double>(moving_var[c]) + epsilon);
      if (dgamma) dgamma[c] = static_cast<float>(inv * (s[C + c] - moving_mean[c] * s[c]));
      if (dbeta) dbeta[c] = static_cast<float>(s[c]);
    }
  }
  if (!dinp) return;
  std::vector<float> scale(static_cast<size_t>(C)), zero(static_cast<size_t>(C), 0.f);
  for (int64_t c = 0; c < C; ++c) scale[c] = gamma_at(gamma, c) / std::sqrt(moving_var[c] + epsilon);
  parallel_rows(M, C, [&](int64_t r0, int64_t r1) {
    affine_rows(dinp + r0 * C, dout + r0 * C, scale.data(), zero.data(), r1 - r0, C);
  });
}

// ---------------------------------------------------------------------------- network step

// params (gamma or None, beta or None, moving_mean, moving_var), each (C,); ints (training);
// strs: optional activation applied to the output (an Activation layer right after the BN,
// fused by pycnn/fused_step.py); floats (epsilon); in training, state (batch_mean, batch_var), optional, each (C,): the
// batch's moments for the caller's moving averages. Input: any per-sample shape whose last
// axis has the C channels. Training nodes are batch-wide: their moments are over the whole
// batch, summed across the step's threads (team_allreduce), so the result does not depend on
// the number of threads. Team storage per thread: the batch mean and var (C each, as double).
namespace {

struct BnNode {
  const float *gamma, *beta, *moving_mean, *moving_var;
  int64_t C, rows_per_sample;
  float epsilon;
};

BnNode bn_view(const NetNode& node) {
  return {node.param[0], node.param[1], node.param[2], node.param[3], node.dims[0], node.dims[1], node.hyper[0]};
}

std::vector<int64_t> batchnorm_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  if (args.strs.size() > 1) net_error(args, "expected at most one str (an activation applied after it).");
  net_expect_counts(args, 4, 1, args.strs.size());
  node.act = net_activation(args, args.strs.empty() ? std::string("linear") : args.strs[0]);
  const bool training = args.ints[0] != 0;
  net_expect_floats(args, 1, training ? 2 : 0);
  const std::vector<int64_t>& shape = args.in_shapes[0];
  if (shape.empty()) net_error(args, "expected an input with a channel axis. Received: input shape (None,).");
  const int64_t C = shape.back();
  for (int p = 0; p < 4; ++p) {
    const bool optional = p < 2;
    if (!args.params[p] && optional) continue;
    if (!args.params[p] || args.param_shapes[p] != std::vector<int64_t>{C})
      net_error(args, "expected parameter " + std::to_string(p) + " of shape (" + std::to_string(C) +
                          ",) for input shape " + net_dims_str(shape) + ". Received: " +
                          (args.params[p] ? net_shape_str(args.param_shapes[p]) : std::string("None")) + ".");
  }
  for (size_t k = 0; k < args.state.size(); ++k)
    if (args.state[k] && args.state_shapes[k] != std::vector<int64_t>{C})
      net_error(args, "expected state array " + std::to_string(k) + " of shape (" + std::to_string(C) +
                          ",). Received: " + net_shape_str(args.state_shapes[k]) + ".");
  if (!(args.floats[0] > 0.0)) net_error(args, "expected epsilon > 0. Received: " + std::to_string(args.floats[0]) + ".");
  node.dims[0] = C;
  node.dims[1] = net_size(shape) / C;
  node.hyper[0] = static_cast<float>(args.floats[0]);
  node.batch_wide = training;
  node.team_doubles = training ? 2 * C + 1 : 0;  // the backward reduces 2C sums and the row count
  return shape;
}

// Training: the moments of the whole batch, then out = inp * scale + shift.
const float* batchnorm_train_forward(const NetNode& node, const float* inp, float* out, int64_t nb) {
  const BnNode bn = bn_view(node);
  const int64_t C = bn.C, rows = nb * bn.rows_per_sample;
  double* stats = team_storage(node);  // [sum -> mean (C), sqdev -> var (C)], kept for backward
  std::vector<double> s(static_cast<size_t>(C + 1), 0.0);
  sum_rows(s.data(), inp, rows, C);
  s[C] = static_cast<double>(rows);
  team_allreduce(s.data(), C + 1);
  const double M = s[C];
  std::vector<float> mean(static_cast<size_t>(C)), var(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) mean[c] = static_cast<float>(s[c] / M);
  std::fill(s.begin(), s.end(), 0.0);
  sum_sqdev_rows(s.data(), inp, mean.data(), rows, C);
  team_allreduce(s.data(), C);
  for (int64_t c = 0; c < C; ++c) {
    var[c] = static_cast<float>(s[c] / M);
    stats[c] = mean[c];
    stats[C + c] = var[c];
  }
#ifdef PYCNN_OPENMP
  const bool first = omp_get_thread_num() == 0;
#else
  const bool first = true;
#endif
  if (first) {  // every thread holds the same moments; one hands them to the caller
    if (node.state[0]) std::copy(mean.begin(), mean.end(), node.state[0]);
    if (node.state[1]) std::copy(var.begin(), var.end(), node.state[1]);
  }
  std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  scale_shift(scale.data(), shift.data(), bn.gamma, bn.beta, mean.data(), var.data(), C, bn.epsilon);
  affine_rows(out, inp, scale.data(), shift.data(), rows, C);
  apply_activation(out, rows * C, node.act);
  return out;
}

const float* batchnorm_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  if (node.batch_wide) return batchnorm_train_forward(node, in[0], out, nb);
  const BnNode bn = bn_view(node);
  std::vector<float> scale(static_cast<size_t>(bn.C)), shift(static_cast<size_t>(bn.C));
  scale_shift(scale.data(), shift.data(), bn.gamma, bn.beta, bn.moving_mean, bn.moving_var, bn.C, bn.epsilon);
  affine_rows(out, in[0], scale.data(), shift.data(), nb * bn.rows_per_sample, bn.C);
  apply_activation(out, nb * bn.rows_per_sample * bn.C, node.act);
  return out;
}

// dparam[0], dparam[1] get this thread's share of dgamma and dbeta (the step sums the
// threads'); the input gradient needs the batch's sums (team_allreduce). The moving
// statistics have no gradient (dparam[2], dparam[3] are left alone).
void batchnorm_net_backward(const NetNode& node, float* const* dinp, float* const* dparam, const float* dout_act,
                            const float* const* in, const float* out, const int32_t*, int64_t nb) {
  const BnNode bn = bn_view(node);
  const int64_t C = bn.C, rows = nb * bn.rows_per_sample;
  const float* x = in[0];
  // With a fused activation, "y = act(z)" first: dz = dy * act'(y), in per-thread scratch.
  const float* dout = dout_act;
  if (node.act != Activation::linear) {
    float* dz = scratch(slot_base(), static_cast<std::size_t>(rows * C), kScratchGrad);
    std::copy(dout_act, dout_act + rows * C, dz);
    activation_grad_inplace(dz, out, rows * C, node.act);
    dout = dz;
  }
  std::vector<double> s(static_cast<size_t>(2 * C), 0.0);
  sum_grad_rows(s.data(), s.data() + C, dout, x, rows, C);
  std::vector<float> mean(static_cast<size_t>(C)), var(static_cast<size_t>(C));
  if (node.batch_wide) {
    const double* stats = team_storage(node);
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = static_cast<float>(stats[c]);
      var[c] = static_cast<float>(stats[C + c]);
    }
  } else {
    std::copy(bn.moving_mean, bn.moving_mean + C, mean.begin());
    std::copy(bn.moving_var, bn.moving_var + C, var.begin());
  }
  // This thread's dgamma, dbeta: sum over its rows of dy * xhat and dy.
  for (int64_t c = 0; c < C; ++c) {
    const double inv = 1.0 / std::sqrt(static_cast<double>(var[c]) + bn.epsilon);
    if (bn.gamma) dparam[0][c] = static_cast<float>(inv * (s[C + c] - mean[c] * s[c]));
    if (bn.beta) dparam[1][c] = static_cast<float>(s[c]);
  }
  if (!dinp[0]) return;
  std::vector<float> a(static_cast<size_t>(C)), k(static_cast<size_t>(C)), d(static_cast<size_t>(C));
  if (node.batch_wide) {
    std::vector<double> total(s.begin(), s.end());
    total.push_back(static_cast<double>(rows));
    team_allreduce(total.data(), 2 * C + 1);
    train_grad_coefficients(nullptr, nullptr, a.data(), k.data(), d.data(), total.data(), total.data() + C, bn.gamma,
                            mean.data(), var.data(), total[2 * C], C, bn.epsilon);
    grad_input_rows(dinp[0], dout, x, a.data(), k.data(), d.data(), rows, C);
  } else {
    std::vector<float> zero(static_cast<size_t>(C), 0.f);
    for (int64_t c = 0; c < C; ++c) a[c] = gamma_at(bn.gamma, c) / std::sqrt(var[c] + bn.epsilon);
    affine_rows(dinp[0], dout, a.data(), zero.data(), rows, C);
  }
}

}  // namespace

extern const NetOp batchnorm_net_op = {"batchnorm", batchnorm_net_parse, batchnorm_net_forward,
                                       batchnorm_net_backward};

}  // namespace pycnn
