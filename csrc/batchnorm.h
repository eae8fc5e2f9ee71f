// Batch normalization over the channel axis of NHWC data, forward and backward.
//
// Every kernel sees its input as M rows of C channels (M = N * H * W for images, N for
// (N, C) features). gamma (scale) and beta (center) may be null (Keras's scale=False,
// center=False: gamma = 1, beta = 0).
//   training:  mean, var = per-channel moments over the M rows (biased variance, as Keras)
//              out = gamma * (inp - mean) / sqrt(var + epsilon) + beta
//   inference: the same with the moving mean and variance in place of the batch's.
// Sums over rows accumulate in double: M reaches 10^6 (a batch of 1,024 images of 32x32),
// where a float sum of that many terms loses about 3 digits.
#pragma once
#include <cstdint>

namespace pycnn {

// inp, out are (M, C); writes mean (C) and var (C) of the batch.
void batchnorm_forward_train(float* out, float* mean, float* var, const float* inp, const float* gamma,
                             const float* beta, int64_t M, int64_t C, float epsilon);

// dinp (M, C; may be null: not needed), dgamma and dbeta (C; may be null when absent) from
// dout (M, C), the forward's inp, gamma and the batch mean and var it wrote:
//   xhat = (inp - mean) * invstd, dbeta = sum dout, dgamma = sum dout * xhat,
//   dinp = gamma * invstd * (dout - dbeta / M - xhat * dgamma / M).
void batchnorm_backward_train(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                              const float* gamma, const float* mean, const float* var, int64_t M, int64_t C,
                              float epsilon);

// out = inp * scale + shift with scale = gamma / sqrt(moving_var + epsilon),
// shift = beta - moving_mean * scale.
void batchnorm_forward_infer(float* out, const float* inp, const float* gamma, const float* beta,
                             const float* moving_mean, const float* moving_var, int64_t M, int64_t C, float epsilon);

// The statistics are constants here: dinp = dout * scale (dinp may be null),
// dgamma = sum dout * (inp - moving_mean) / sqrt(moving_var + epsilon), dbeta = sum dout.
void batchnorm_backward_infer(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                              const float* gamma, const float* moving_mean, const float* moving_var, int64_t M,
                              int64_t C, float epsilon);

}  // namespace pycnn
