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

// ---- Pre-packed operands ---------------------------------------------------------------
// For callers that reuse one operand across many products (conv2d packs its weights once
// per call) or can generate an operand directly in packed form (conv2d writes im2col rows
// straight into the A layout, saving a full copy of the largest array).
//   packed A: ceil(M / mr) slivers; element (i, k) at Ap[((i / mr) * K + k) * mr + i % mr],
//             rows past M zero.
//   packed B: ceil(N / nr) slivers; element (k, j) at Bp[((j / nr) * K + k) * nr + j % nr],
//             columns past N zero.
struct GemmShape {
  int64_t mr, nr;
  int kernel;         // which micro-kernel (internal index)
  double efficiency;  // fraction of SIMD lanes doing useful work for this M x N
};

// The micro-kernel with the best lane efficiency for an M x N result (no transposition).
GemmShape gemm_shape_for(int64_t M, int64_t N);
inline int64_t gemm_packed_a_size(const GemmShape& g, int64_t M, int64_t K) { return (M + g.mr - 1) / g.mr * g.mr * K; }
inline int64_t gemm_packed_b_size(const GemmShape& g, int64_t K, int64_t N) { return (N + g.nr - 1) / g.nr * g.nr * K; }
void gemm_pack_a(float* Ap, const float* A, int64_t rsa, int64_t csa, int64_t M, int64_t K, const GemmShape& g);
void gemm_pack_b(float* Bp, const float* B, int64_t rsb, int64_t csb, int64_t K, int64_t N, const GemmShape& g);

// C (M x N, row stride ldc, unit column stride) = or += Ap * Bp, serial.
void gemm_packed(const GemmShape& g, int64_t M, int64_t N, int64_t K, const float* Ap, const float* Bp, float* C,
                 int64_t ldc, bool accumulate);

}  // namespace pycnn
