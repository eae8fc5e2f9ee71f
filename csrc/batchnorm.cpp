// Batch normalization over the channel axis (the last), forward and backward: the row
// helpers, then the batchnorm op.

#include <algorithm>
#include <cmath>
#include <vector>

#include "activation.h"
#include "batchnorm.h"
#include "executor.h"
#include "op_registry.h"
#include "runtime.h"

namespace pycnn {
namespace {

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

// ---------------------------------------------------------------------------- the batchnorm op

// batchnorm: params (gamma (C) or absent, beta (C) or absent, moving_mean (C), moving_variance
// (C), the last two state); attrs epsilon, momentum, training, activation; any per-sample
// shape whose last axis has the C channels -> the same.
//   training = 1: the batch's moments over every row of the batch (biased variance, as Keras),
//     summed across the executor's threads (team_allreduce), so the result does not depend on
//     the thread count; commit then moves the moving statistics towards them:
//     moving = moving * momentum + batch * (1 - momentum), in float32 as Keras.
//   training = 0: the moving statistics (a per-channel scale and shift).
// Two passes for the moments (mean, then squared deviations): exact where E[x^2] - E[x]^2
// cancels. Sums over rows accumulate in double: a batch of 1,024 32x32 images has 10^6 rows,
// where a float sum loses about 3 digits. Team storage per thread: the batch mean and var.
namespace {

std::vector<int64_t> batchnorm_parse(Node& node, const OpArgs& args) {
  const std::vector<int64_t>& shape = args.in_shapes[0];
  if (shape.empty()) args.fail("expected an input with a channel axis. Received: input shape (None,).");
  const int64_t C = shape.back();
  for (int p = 0; p < 4; ++p) expect_param_shape(args, p, {C});
  const double epsilon = args.attrs.f("epsilon"), momentum = args.attrs.f("momentum");
  if (!(epsilon > 0.0) || !std::isfinite(epsilon))
    args.fail("expected epsilon > 0. Received: epsilon=" + std::to_string(epsilon) + ".");
  if (!(momentum >= 0.0 && momentum <= 1.0))
    args.fail("expected momentum in [0, 1]. Received: momentum=" + std::to_string(momentum) + ".");
  BnGeom& g = node.geom<BnGeom>();
  g.C = C;
  g.rows_per_sample = size_of(shape) / C;
  g.epsilon = static_cast<float>(epsilon);
  g.momentum = static_cast<float>(momentum);
  g.act = parse_activation(args, shape);
  node.aux_size = g.act.aux_floats(size_of(shape));
  const bool training = args.attrs.i("training") != 0;
  node.batch_wide = training;
  node.team_doubles = training ? 2 * C + 1 : 0;  // the backward reduces 2C sums and the row count
  return shape;
}

// The activation after the affine map (the kernels' own form for relu / sigmoid / tanh).
void activate(const BnGeom& g, float* out, float* aux, int64_t n) {
  apply_activation(out, n, g.act.kernel());
  g.act.forward(out, aux, n);
}

// Training: the moments of the whole batch, then out = inp * scale + shift.
void train_forward(const Node& node, const BnGeom& g, const float* inp, float* out, int64_t nb) {
  const int64_t C = g.C, rows = nb * g.rows_per_sample;
  double* stats = team_storage(node);  // [mean (C), var (C)], kept for backward and commit
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
  std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  scale_shift(scale.data(), shift.data(), node.param[0], node.param[1], mean.data(), var.data(), C, g.epsilon);
  affine_rows(out, inp, scale.data(), shift.data(), rows, C);
}

const float* batchnorm_forward(const Node& node, const float* const* in, float* out, float* aux, int64_t nb) {
  const BnGeom& g = node.geom<BnGeom>();
  if (node.batch_wide) {
    train_forward(node, g, in[0], out, nb);
  } else {
    std::vector<float> scale(static_cast<size_t>(g.C)), shift(static_cast<size_t>(g.C));
    scale_shift(scale.data(), shift.data(), node.param[0], node.param[1], node.param[2], node.param[3], g.C,
                g.epsilon);
    affine_rows(out, in[0], scale.data(), shift.data(), nb * g.rows_per_sample, g.C);
  }
  activate(g, out, aux, nb * node.out_size);
  return out;
}

// dparam[0], dparam[1] get this thread's share of dgamma and dbeta (the executor sums the
// threads'); the input gradient needs the batch's sums (team_allreduce). The moving
// statistics have no gradient (dparam[2], dparam[3] are left alone).
void batchnorm_backward(const Node& node, float* const* dinp, float* const* dparam, const float* dout_act,
                        const float* const* in, const float* out, const float* aux, int64_t nb) {
  const BnGeom& g = node.geom<BnGeom>();
  const int64_t C = g.C, rows = nb * g.rows_per_sample;
  const float* gamma = node.param[0];
  const float* x = in[0];
  // "y = act(z)" first: dz = dy * act'(y), in per-thread scratch.
  const float* dout = g.act.backward(dout_act, out, aux, rows * C);
  if (g.act.kernel() != Activation::linear) {
    float* dz = scratch(slot_base(), static_cast<std::size_t>(rows * C), kScratchGrad);
    std::copy(dout, dout + rows * C, dz);
    activation_grad_inplace(dz, out, rows * C, g.act.kernel());
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
    std::copy(node.param[2], node.param[2] + C, mean.begin());
    std::copy(node.param[3], node.param[3] + C, var.begin());
  }
  // This thread's dgamma, dbeta: sum over its rows of dy * xhat and dy.
  for (int64_t c = 0; c < C; ++c) {
    const double inv = 1.0 / std::sqrt(static_cast<double>(var[c]) + g.epsilon);
    if (gamma) dparam[0][c] = static_cast<float>(inv * (s[C + c] - mean[c] * s[c]));
    if (node.param[1]) dparam[1][c] = static_cast<float>(s[c]);
  }
  if (!dinp[0]) return;
  std::vector<float> a(static_cast<size_t>(C)), k(static_cast<size_t>(C)), d(static_cast<size_t>(C));
  if (node.batch_wide) {
    std::vector<double> total(s.begin(), s.end());
    total.push_back(static_cast<double>(rows));
    team_allreduce(total.data(), 2 * C + 1);
    train_grad_coefficients(nullptr, nullptr, a.data(), k.data(), d.data(), total.data(), total.data() + C, gamma,
                            mean.data(), var.data(), total[2 * C], C, g.epsilon);
    grad_input_rows(dinp[0], dout, x, a.data(), k.data(), d.data(), rows, C);
  } else {
    std::vector<float> zero(static_cast<size_t>(C), 0.f);
    for (int64_t c = 0; c < C; ++c) a[c] = gamma_at(gamma, c) / std::sqrt(var[c] + g.epsilon);
    affine_rows(dinp[0], dout, a.data(), zero.data(), rows, C);
  }
}

// "moving = moving * momentum + batch * (1 - momentum)", each product rounded to float32 as
// Keras's float32 variables do.
void batchnorm_commit(const Node& node, const double* stats) {
  if (!node.batch_wide) return;
  const BnGeom& g = node.geom<BnGeom>();
  const float keep = g.momentum, take = static_cast<float>(1.0 - static_cast<double>(g.momentum));
  for (int s = 0; s < 2; ++s) {
    float* moving = node.state[2 + s];
    for (int64_t c = 0; c < g.C; ++c) {
      moving[c] *= keep;
      moving[c] += take * static_cast<float>(stats[s * g.C + c]);
    }
  }
}

const OpDef batchnorm_op = {
    "batchnorm", "per-channel normalization over the last axis; any shape -> the same", 1,
    {{"gamma", true}, {"beta", true}, {"moving_mean", false, true}, {"moving_variance", false, true}},
    {{"epsilon", AttrType::Float, 1e-3},
     {"momentum", AttrType::Float, 0.99},
     {"training", AttrType::Int, int64_t{0}},
     {"activation", AttrType::Str, std::string("linear")}},
    batchnorm_parse, batchnorm_forward, batchnorm_backward, batchnorm_commit};

PYCNN_REGISTER_OP(batchnorm_op);

}  // namespace
}  // namespace pycnn
