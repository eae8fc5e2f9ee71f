// Per-thread weight-gradient partials shared by the convolution kernels (conv2d.cpp and the
// grouped / dilated path in conv2d_grouped.cpp): each thread sums its rows' products into its
// own K*F scratch, the bias into double sums; reduce() adds them in thread order.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime.h"

namespace pycnn {

// acc[f] += sum_r g[r, f]. The bias gradient sums N*OH*OW terms; accumulating in double keeps
// it accurate and independent (to float round-off) of how rows are split between threads.
inline void add_column_sums(double* acc, const float* g, int64_t rows, int64_t F) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t f = 0; f < F; ++f) acc[f] += g[r * F + f];
}

// Per-thread partial weight gradients (K*F floats in each thread's scratch) and bias sums
// (double, see add_column_sums). parts.used[t] says whether thread t has written its partial yet:
// its first product assigns, later ones accumulate.
struct GradPartials {
  int T;
  int64_t KF, F;
  float* partial[256];
  bool used[256] = {};
  std::vector<double> bias;

  GradPartials(int threads, int64_t kf, int64_t f)
      : T(threads), KF(kf), F(f), bias(static_cast<std::size_t>(threads * f), 0.0) {
    for (int t = 0; t < T; ++t) partial[t] = scratch(slot_base() + t, static_cast<std::size_t>(KF), kScratchPartial);
  }
  double* bias_of(int t) { return &bias[static_cast<std::size_t>(t * F)]; }

  // dweight = sum of the used partials (parallel over the parameter index, so each thread
  // owns its slice); dbias likewise from the double sums.
  void reduce(float* dweight, float* dbias) const {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (KF * T > (1 << 16))
#endif
    for (int64_t i = 0; i < KF; ++i) {
      float sum = 0.f;
      for (int t = 0; t < T; ++t)
        if (used[t]) sum += partial[t][i];
      dweight[i] = sum;
    }
    if (dbias)
      for (int64_t f = 0; f < F; ++f) {
        double sum = 0.0;
        for (int t = 0; t < T; ++t) sum += bias[static_cast<std::size_t>(t * F + f)];
        dbias[f] = static_cast<float>(sum);
      }
  }
};

}  // namespace pycnn
