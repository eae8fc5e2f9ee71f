// Single-precision matrix multiply with general strides, the workhorse of conv2d and dense.
//
//   C = A B            (accumulate == false)
//   C = C + A B        (accumulate == true)
//
// A is M x K with element (i, k) at A[i * rsa + k * csa]; B is K x N, C is M x N likewise.
// Transposes are expressed with strides (A^T: swap rsa and csa). Packs A and B into
// cache-sized panels and runs an AVX-512, AVX2+FMA or portable micro-kernel chosen at
// run time. Parallel over blocks of C with OpenMP when `parallel` is true.
#pragma once
#include <cstdint>

namespace pycnn {

void sgemm(int64_t M, int64_t N, int64_t K,
           const float* A, int64_t rsa, int64_t csa,
           const float* B, int64_t rsb, int64_t csb,
           float* C, int64_t rsc, int64_t csc,
           bool accumulate, bool parallel);

}  // namespace pycnn
