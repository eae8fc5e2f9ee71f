// Blocked SGEMM with general strides (BLIS-style): C is cut into KC x NC panels of B and
// MC x KC blocks of A, both packed into micro-panels so the micro-kernel streams
// contiguous memory. The micro-kernel computes an MR x NR tile with NR along SIMD lanes:
//   AVX-512:  8 x 32  (16 zmm accumulators)
//   AVX2+FMA: 6 x 16  (12 ymm accumulators)
//   portable: 4 x 16  (plain loops the compiler vectorises for the baseline ISA)
// The variant is picked at run time from the CPU (runtime.h), so one portable binary
// runs the best code the machine has.
#include "gemm.h"

#include <algorithm>
#include <cstring>

#include "runtime.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define PYCNN_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace pycnn {
namespace {

// Writes (or adds, when accumulate) the MR x NR tile Ap * Bp into C with row stride ldc and
// unit column stride. Ap is kc x MR (k-major), Bp is kc x NR (k-major).
using MicroKernel = void (*)(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate);

struct KernelSpec {
  int64_t mr, nr;
  MicroKernel fn;
};

template <int MR, int NR>
void ukernel_portable(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const float* a = Ap + k * MR;
    const float* b = Bp + k * NR;
    for (int i = 0; i < MR; ++i) {
      const float ai = a[i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* c = C + i * ldc;
    if (accumulate)
      for (int j = 0; j < NR; ++j) c[j] += acc[i][j];
    else
      for (int j = 0; j < NR; ++j) c[j] = acc[i][j];
  }
}

#ifdef PYCNN_X86_DISPATCH
__attribute__((target("avx2,fma"))) void ukernel_avx2(int64_t kc, const float* Ap, const float* Bp, float* C,
                                                      int64_t ldc, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(Bp), b1 = _mm256_loadu_ps(Bp + 8);
    __m256 a;
    a = _mm256_broadcast_ss(Ap + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(Ap + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(Ap + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(Ap + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(Ap + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(Ap + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    Ap += 6;
    Bp += 16;
  }
  __m256 rows[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < 6; ++i) {
    float* c = C + i * ldc;
    if (accumulate) {
      rows[i][0] = _mm256_add_ps(rows[i][0], _mm256_loadu_ps(c));
      rows[i][1] = _mm256_add_ps(rows[i][1], _mm256_loadu_ps(c + 8));
    }
    _mm256_storeu_ps(c, rows[i][0]);
    _mm256_storeu_ps(c + 8, rows[i][1]);
  }
}

__attribute__((target("avx512f"))) void ukernel_avx512(int64_t kc, const float* Ap, const float* Bp, float* C,
                                                       int64_t ldc, bool accumulate) {
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(Bp), b1 = _mm512_loadu_ps(Bp + 16);
    __m512 a;
    a = _mm512_set1_ps(Ap[0]); c00 = _mm512_fmadd_ps(a, b0, c00); c01 = _mm512_fmadd_ps(a, b1, c01);
    a = _mm512_set1_ps(Ap[1]); c10 = _mm512_fmadd_ps(a, b0, c10); c11 = _mm512_fmadd_ps(a, b1, c11);
    a = _mm512_set1_ps(Ap[2]); c20 = _mm512_fmadd_ps(a, b0, c20); c21 = _mm512_fmadd_ps(a, b1, c21);
    a = _mm512_set1_ps(Ap[3]); c30 = _mm512_fmadd_ps(a, b0, c30); c31 = _mm512_fmadd_ps(a, b1, c31);
    a = _mm512_set1_ps(Ap[4]); c40 = _mm512_fmadd_ps(a, b0, c40); c41 = _mm512_fmadd_ps(a, b1, c41);
    a = _mm512_set1_ps(Ap[5]); c50 = _mm512_fmadd_ps(a, b0, c50); c51 = _mm512_fmadd_ps(a, b1, c51);
    a = _mm512_set1_ps(Ap[6]); c60 = _mm512_fmadd_ps(a, b0, c60); c61 = _mm512_fmadd_ps(a, b1, c61);
    a = _mm512_set1_ps(Ap[7]); c70 = _mm512_fmadd_ps(a, b0, c70); c71 = _mm512_fmadd_ps(a, b1, c71);
    Ap += 8;
    Bp += 32;
  }
  __m512 rows[8][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                       {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
  for (int i = 0; i < 8; ++i) {
    float* c = C + i * ldc;
    if (accumulate) {
      rows[i][0] = _mm512_add_ps(rows[i][0], _mm512_loadu_ps(c));
      rows[i][1] = _mm512_add_ps(rows[i][1], _mm512_loadu_ps(c + 16));
    }
    _mm512_storeu_ps(c, rows[i][0]);
    _mm512_storeu_ps(c + 16, rows[i][1]);
  }
}

// 12 x 16: for results exactly 16 (or a multiple of 16) wide, e.g. a 16-filter convolution,
// where the 8 x 32 tile would waste half its lanes.
__attribute__((target("avx512f"))) void ukernel_avx512_12x16(int64_t kc, const float* Ap, const float* Bp, float* C,
                                                             int64_t ldc, bool accumulate) {
  __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps(), c2 = _mm512_setzero_ps(), c3 = _mm512_setzero_ps();
  __m512 c4 = _mm512_setzero_ps(), c5 = _mm512_setzero_ps(), c6 = _mm512_setzero_ps(), c7 = _mm512_setzero_ps();
  __m512 c8 = _mm512_setzero_ps(), c9 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b = _mm512_loadu_ps(Bp);
    c0 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[0]), b, c0);
    c1 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[1]), b, c1);
    c2 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[2]), b, c2);
    c3 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[3]), b, c3);
    c4 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[4]), b, c4);
    c5 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[5]), b, c5);
    c6 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[6]), b, c6);
    c7 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[7]), b, c7);
    c8 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[8]), b, c8);
    c9 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[9]), b, c9);
    c10 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[10]), b, c10);
    c11 = _mm512_fmadd_ps(_mm512_set1_ps(Ap[11]), b, c11);
    Ap += 12;
    Bp += 16;
  }
  __m512 rows[12] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};
  for (int i = 0; i < 12; ++i) {
    float* c = C + i * ldc;
    if (accumulate) rows[i] = _mm512_add_ps(rows[i], _mm512_loadu_ps(c));
    _mm512_storeu_ps(c, rows[i]);
  }
}
#endif

// The micro-kernels this CPU can run (up to two shapes per ISA).
int available_kernels(KernelSpec* out) {
#ifdef PYCNN_X86_DISPATCH
  switch (active_isa()) {
    case Isa::avx512:
      out[0] = {8, 32, ukernel_avx512};
      out[1] = {12, 16, ukernel_avx512_12x16};
      return 2;
    case Isa::avx2:
      out[0] = {6, 16, ukernel_avx2};
      return 1;
    default: break;
  }
#endif
  out[0] = {4, 16, ukernel_portable<4, 16>};
  return 1;
}

constexpr int64_t kKC = 256;       // depth of a packed panel: a KC x NR sliver of B stays in L1
constexpr int64_t kMCTarget = 128; // rows of A per packed block (rounded to MR): stays in L2
constexpr int64_t kNC = 4096;      // columns of B per packed panel

// Packs rows [0, mc) x depth [0, kc) of A into ceil(mc / mr) slivers, each kc x mr, k-major,
// zero-padding the last sliver.
void pack_a(float* Ap, const float* A, int64_t rsa, int64_t csa, int64_t mc, int64_t kc, int64_t mr) {
  for (int64_t i0 = 0; i0 < mc; i0 += mr, Ap += kc * mr) {
    const int64_t rows = std::min(mr, mc - i0);
    if (rsa == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = A + i0 + k * csa;
        float* dst = Ap + k * mr;
        int64_t i = 0;
        for (; i < rows; ++i) dst[i] = src[i];
        for (; i < mr; ++i) dst[i] = 0.f;
      }
    } else {
      for (int64_t i = 0; i < rows; ++i) {
        const float* src = A + (i0 + i) * rsa;
        for (int64_t k = 0; k < kc; ++k) Ap[k * mr + i] = src[k * csa];
      }
      for (int64_t i = rows; i < mr; ++i)
        for (int64_t k = 0; k < kc; ++k) Ap[k * mr + i] = 0.f;
    }
  }
}

// Packs depth [0, kc) x columns [0, nc) of B into ceil(nc / nr) slivers, each kc x nr, k-major.
void pack_b(float* Bp, const float* B, int64_t rsb, int64_t csb, int64_t kc, int64_t nc, int64_t nr) {
  for (int64_t j0 = 0; j0 < nc; j0 += nr, Bp += kc * nr) {
    const int64_t cols = std::min(nr, nc - j0);
    if (csb == 1) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = B + k * rsb + j0;
        float* dst = Bp + k * nr;
        int64_t j = 0;
        for (; j < cols; ++j) dst[j] = src[j];
        for (; j < nr; ++j) dst[j] = 0.f;
      }
    } else {
      for (int64_t j = 0; j < cols; ++j) {
        const float* src = B + (j0 + j) * csb;
        for (int64_t k = 0; k < kc; ++k) Bp[k * nr + j] = src[k * rsb];
      }
      for (int64_t j = cols; j < nr; ++j)
        for (int64_t k = 0; k < kc; ++k) Bp[k * nr + j] = 0.f;
    }
  }
}

int current_slot() { return slot_base() + team_thread(); }

void gemm_serial(const KernelSpec& ks, int64_t M, int64_t N, int64_t K, const float* A, int64_t rsa, int64_t csa,
                 const float* B, int64_t rsb, int64_t csb, float* C, int64_t rsc, int64_t csc, bool accumulate) {
  const int64_t mr = ks.mr, nr = ks.nr;
  const int64_t MC = std::max<int64_t>(mr, (kMCTarget / mr) * mr);
  const int slot = current_slot();
  const int64_t kc_max = std::min(kKC, K);
  float* Ap = scratch(slot, static_cast<std::size_t>(((std::min(MC, M) + mr - 1) / mr) * mr * kc_max), kScratchPackA);
  float* Bp = scratch(slot, static_cast<std::size_t>(((std::min(kNC, N) + nr - 1) / nr) * nr * kc_max), kScratchPackB);
  alignas(64) float tile[12 * 32];  // >= every MR x NR; edge tiles and strided C go through it

  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = std::min(kNC, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      const bool acc = accumulate || pc > 0;
      pack_b(Bp, B + pc * rsb + jc * csb, rsb, csb, kc, nc, nr);
      for (int64_t ic = 0; ic < M; ic += MC) {
        const int64_t mc = std::min(MC, M - ic);
        pack_a(Ap, A + ic * rsa + pc * csa, rsa, csa, mc, kc, mr);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int64_t ncols = std::min(nr, nc - jr);
          const float* b = Bp + (jr / nr) * kc * nr;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int64_t nrows = std::min(mr, mc - ir);
            const float* a = Ap + (ir / mr) * kc * mr;
            float* c = C + (ic + ir) * rsc + (jc + jr) * csc;
            if (nrows == mr && ncols == nr && csc == 1) {
              ks.fn(kc, a, b, c, rsc, acc);
            } else {
              ks.fn(kc, a, b, tile, nr, false);
              for (int64_t i = 0; i < nrows; ++i)
                for (int64_t j = 0; j < ncols; ++j) {
                  float& dst = c[i * rsc + j * csc];
                  dst = (acc ? dst : 0.f) + tile[i * nr + j];
                }
            }
          }
        }
      }
    }
  }
}

// Fraction of micro-kernel lanes doing useful work when an M x N result is cut into mr x nr tiles.
double tile_efficiency(int64_t M, int64_t N, int64_t mr, int64_t nr) {
  const double tm = static_cast<double>((M + mr - 1) / mr * mr), tn = static_cast<double>((N + nr - 1) / nr * nr);
  return (static_cast<double>(M) / tm) * (static_cast<double>(N) / tn);
}

}  // namespace

void sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t rsa, int64_t csa, const float* B, int64_t rsb,
           int64_t csb, float* C, int64_t rsc, int64_t csc, bool accumulate, bool parallel) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C[i * rsc + j * csc] = 0.f;
    return;
  }
  // Pick the micro-kernel and orientation that waste the fewest SIMD lanes. The transposed
  // orientation, C^T = B^T A^T, vectorises over M instead of N (e.g. a 6-column result);
  // it writes C through a strided scatter, hence the small penalty.
  KernelSpec kernels[2];
  const int nk = available_kernels(kernels);
  KernelSpec ks = kernels[0];
  bool transpose = false;
  double best = -1.0;
  for (int i = 0; i < nk; ++i) {
    const double plain = tile_efficiency(M, N, kernels[i].mr, kernels[i].nr) * (csc == 1 ? 1.0 : 0.8);
    const double swapped = tile_efficiency(N, M, kernels[i].mr, kernels[i].nr) * (rsc == 1 ? 1.0 : 0.8);
    if (plain > best) best = plain, ks = kernels[i], transpose = false;
    if (swapped > best * 1.05) best = swapped, ks = kernels[i], transpose = true;
  }
  if (transpose) {
    std::swap(M, N);
    std::swap(A, B);
    // A' = B^T has strides (csb, rsb); B' = A^T has strides (csa, rsa); C' = C^T.
    std::swap(rsa, csb);
    std::swap(csa, rsb);
    std::swap(rsc, csc);
  }
  int threads = parallel ? get_num_threads() : 1;
  const int64_t tiles_m = (M + ks.mr - 1) / ks.mr, tiles_n = (N + ks.nr - 1) / ks.nr;
  const bool split_rows = tiles_m >= tiles_n;
  const int64_t tiles = split_rows ? tiles_m : tiles_n;
  if (threads > tiles) threads = static_cast<int>(tiles);
  if (static_cast<double>(M) * N * K < 1024.0 * 1024) threads = 1;  // waking threads would cost more
  if (threads <= 1) {
    gemm_serial(ks, M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, accumulate);
    return;
  }
#ifdef PYCNN_OPENMP
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t t0 = tiles * t / T, t1 = tiles * (t + 1) / T;
    if (split_rows) {
      const int64_t r0 = t0 * ks.mr, r1 = std::min(M, t1 * ks.mr);
      if (r1 > r0) gemm_serial(ks, r1 - r0, N, K, A + r0 * rsa, rsa, csa, B, rsb, csb, C + r0 * rsc, rsc, csc, accumulate);
    } else {
      const int64_t c0 = t0 * ks.nr, c1 = std::min(N, t1 * ks.nr);
      if (c1 > c0) gemm_serial(ks, M, c1 - c0, K, A, rsa, csa, B + c0 * csb, rsb, csb, C + c0 * csc, rsc, csc, accumulate);
    }
  }
#else
  gemm_serial(ks, M, N, K, A, rsa, csa, B, rsb, csb, C, rsc, csc, accumulate);
#endif
}

GemmShape gemm_shape_for(int64_t M, int64_t N) {
  KernelSpec kernels[2];
  const int nk = available_kernels(kernels);
  GemmShape best{kernels[0].mr, kernels[0].nr, 0, -1.0};
  for (int i = 0; i < nk; ++i) {
    const double e = tile_efficiency(M, N, kernels[i].mr, kernels[i].nr);
    if (e > best.efficiency) best = {kernels[i].mr, kernels[i].nr, i, e};
  }
  return best;
}

void gemm_pack_a(float* Ap, const float* A, int64_t rsa, int64_t csa, int64_t M, int64_t K, const GemmShape& g) {
  pack_a(Ap, A, rsa, csa, M, K, g.mr);
}

void gemm_pack_b(float* Bp, const float* B, int64_t rsb, int64_t csb, int64_t K, int64_t N, const GemmShape& g) {
  pack_b(Bp, B, rsb, csb, K, N, g.nr);
}

void gemm_packed(const GemmShape& g, int64_t M, int64_t N, int64_t K, const float* Ap, const float* Bp, float* C,
                 int64_t ldc, bool accumulate) {
  KernelSpec kernels[2];
  available_kernels(kernels);
  const KernelSpec ks = kernels[g.kernel];
  const int64_t mr = ks.mr, nr = ks.nr;
  const int64_t MC = std::max<int64_t>(mr, (kMCTarget / mr) * mr);
  alignas(64) float tile[12 * 32];
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::memset(C + i * ldc, 0, sizeof(float) * N);
    return;
  }
  for (int64_t pc = 0; pc < K; pc += kKC) {
    const int64_t kc = std::min(kKC, K - pc);
    const bool acc = accumulate || pc > 0;
    for (int64_t ic = 0; ic < M; ic += MC) {
      const int64_t mc = std::min(MC, M - ic);
      for (int64_t jr = 0; jr < N; jr += nr) {
        const int64_t ncols = std::min(nr, N - jr);
        const float* b = Bp + ((jr / nr) * K + pc) * nr;
        for (int64_t ir = ic; ir < ic + mc; ir += mr) {
          const int64_t nrows = std::min(mr, M - ir);
          const float* a = Ap + ((ir / mr) * K + pc) * mr;
          float* c = C + ir * ldc + jr;
          if (nrows == mr && ncols == nr) {
            ks.fn(kc, a, b, c, ldc, acc);
          } else {
            ks.fn(kc, a, b, tile, nr, false);
            for (int64_t i = 0; i < nrows; ++i)
              for (int64_t j = 0; j < ncols; ++j) c[i * ldc + j] = (acc ? c[i * ldc + j] : 0.f) + tile[i * nr + j];
          }
        }
      }
    }
  }
}

}  // namespace pycnn
