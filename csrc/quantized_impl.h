// The int8 kernels that depend on the instruction set, compiled once per level by
// quantized.cpp (which includes this file under different `#pragma GCC target`s and
// namespaces): PYCNN_Q8_LEVEL 2 is AVX-512 VNNI, 1 AVX2, 0 the portable baseline.
//
//   quantize / dequantize   element-wise loops the compiler vectorizes for the level
//   gemm                    out (M, F) = requantize(A @ packed weights): rows of A described by
//                           Int8Rows (quantized.h), their reduction in segments
//
// The GEMM runs each packed panel of output channels over all rows of A, MR rows at a time
// (a tile): int32 accumulators in registers across the whole reduction, then the epilogue
// (comp, mul, add, clamp, round, store) straight from them. Per level, the inner product of
// 4 bytes of a row of A with 4 int8 weights of a channel:
//   VNNI     vpdpbusd: u8 x s8, 4 products summed into each int32 lane, never saturating;
//            16 channels per zmm, MR rows x NV zmm accumulators
//   AVX2     no u8 x s8 instruction that cannot saturate (vpmaddubsw saturates at int16), so
//            both sides are widened to int16 and vpmaddwd sums pairs into int32: each ymm
//            accumulator holds 4 channels x 2 partial sums, added pairwise after the loop
//   baseline plain int32 loops
// Every level computes the same integers, and the same float32 epilogue (separate multiply
// and add, round half to even), so their outputs are identical.
#ifndef PYCNN_Q8_NS
#error "include through quantized.cpp"
#endif

namespace pycnn {
namespace PYCNN_Q8_NS {

static inline int32_t load4(const uint8_t* p) {
  int32_t x;
  __builtin_memcpy(&x, p, 4);
  return x;
}

// 1.5 * 2^23: (v + kRound) - kRound rounds v in [0, 2^22) to an integer, half to even (the
// float32 sum is rounded at that magnitude to a whole number, in the default rounding mode).
constexpr float kRound = 12582912.0f;

void quantize(uint8_t* out, const float* inp, int64_t n, float inv_scale, float zero_point) {
  for (int64_t i = 0; i < n; ++i) {
    float v = inp[i] * inv_scale;
    v = v + zero_point;
    v = v > 0.f ? v : 0.f;  // NaN fails the test: 0
    v = v < 255.f ? v : 255.f;
    v = (v + kRound) - kRound;
    out[i] = static_cast<uint8_t>(static_cast<int32_t>(v));
  }
}

void dequantize(float* out, const uint8_t* inp, int64_t n, float scale, int32_t zero_point) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int32_t>(inp[i]) - zero_point) * scale;
}

// The reduction of a row, in segments: `segs` runs of 4 k4 bytes, `stride` bytes apart in A
// (a convolution's kernel rows in its padded input; one segment for a plain matrix).
struct Seg {
  int64_t segs, k4, stride;
};

// What the epilogue of a tile needs: the output, its constants and where the tile sits.
struct Epi {
  void* out;
  int64_t ldo;  // elements per output row
  const int32_t* comp;
  const float* mul;
  const float* add;
  float lo, hi;
  bool u8;
};

#if PYCNN_Q8_LEVEL != 2
// Rows [m0, m0 + rows) x channels [f0, f0 + cols) of the output from int32 sums acc (rows x
// ld): the portable epilogue (AVX2 and baseline), vectorized by the compiler.
static void epilogue(const Epi& e, const int32_t* acc, int64_t ld, int64_t m0, int rows, int64_t f0, int cols) {
  for (int r = 0; r < rows; ++r) {
    const int32_t* a = acc + r * ld;
    if (e.u8) {
      uint8_t* o = static_cast<uint8_t*>(e.out) + (m0 + r) * e.ldo + f0;
      for (int f = 0; f < cols; ++f) {
        float v = static_cast<float>(a[f] + e.comp[f0 + f]);
        v = v * e.mul[f0 + f];
        v = v + e.add[f0 + f];
        v = v > e.lo ? v : e.lo;
        v = v < e.hi ? v : e.hi;
        v = (v + kRound) - kRound;
        o[f] = static_cast<uint8_t>(static_cast<int32_t>(v));
      }
    } else {
      float* o = static_cast<float*>(e.out) + (m0 + r) * e.ldo + f0;
      for (int f = 0; f < cols; ++f) {
        float v = static_cast<float>(a[f] + e.comp[f0 + f]);
        v = v * e.mul[f0 + f];
        o[f] = v + e.add[f0 + f];
      }
    }
  }
}
#endif

#if PYCNN_Q8_LEVEL == 2
// ---------------------------------------------------------------------------- AVX-512 VNNI

// MR rows x (16 NV) channels: A rows at stride lda, the panel's k4 steps at stride ldb.
template <int MR, int NV>
static void tile(const Epi& e, const Seg& g, const uint8_t* A, int64_t lda, const int8_t* B, int64_t ldb, int64_t m0,
                 int rows, int64_t f0, int cols) {
  __m512i c[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = _mm512_setzero_si512();
  for (int64_t s = 0; s < g.segs; ++s) {
    const uint8_t* as = A + s * g.stride;
    const int8_t* bs = B + s * g.k4 * ldb;
    for (int64_t k = 0; k < g.k4; ++k) {
      const int8_t* b = bs + k * ldb;
      __m512i bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(b + 64 * v);
      const uint8_t* a = as + 4 * k;
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r) {
        const __m512i av = _mm512_set1_epi32(load4(a + r * lda));
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) c[r][v] = _mm512_dpbusd_epi32(c[r][v], av, bv[v]);
      }
    }
  }
  // The sums leave the registers once (constant indices: the accumulators never live in
  // memory during the loop), then the epilogue reads them row by row.
  alignas(64) int32_t acc[MR][16 * NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_store_si512(acc[r] + 16 * v, c[r][v]);
  const __m512 lo = _mm512_set1_ps(e.lo), hi = _mm512_set1_ps(e.hi);
  for (int v = 0; v < NV; ++v) {
    const int valid = cols - 16 * v;
    if (valid <= 0) break;
    const int64_t f = f0 + 16 * v;
    const __mmask16 mask = valid >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << valid) - 1);
    const __m512i cm = _mm512_loadu_si512(e.comp + f);
    const __m512 mv = _mm512_loadu_ps(e.mul + f), av = _mm512_loadu_ps(e.add + f);
    for (int r = 0; r < rows; ++r) {
      __m512 y = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_load_si512(acc[r] + 16 * v), cm));
      y = _mm512_mul_ps(y, mv);
      y = _mm512_add_ps(y, av);
      if (e.u8) {
        y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
        const __m512i q = _mm512_cvt_roundps_epi32(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_mask_storeu_epi8(static_cast<uint8_t*>(e.out) + (m0 + r) * e.ldo + f, mask, _mm512_cvtepi32_epi8(q));
      } else {
        _mm512_mask_storeu_ps(static_cast<float*>(e.out) + (m0 + r) * e.ldo + f, mask, y);
      }
    }
  }
}
#elif PYCNN_Q8_LEVEL == 1
// ---------------------------------------------------------------------------- AVX2

// MR rows x 16 channels into acc (MR x 16). Each accumulator c[r][j] holds channels
// 4j .. 4j+3, two partial sums each (k0 k1 and k2 k3): vpmaddwd of the row's 4 bytes
// (widened, repeated) with those channels' 4 x 4 weights (widened).
template <int MR>
static void tile16(int32_t* acc, const Seg& g, const uint8_t* A, int64_t lda, const int8_t* B, int64_t ldb) {
  __m256i c[MR][4];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) c[r][j] = _mm256_setzero_si256();
  for (int64_t s = 0; s < g.segs; ++s) {
    const uint8_t* as = A + s * g.stride;
    const int8_t* bs = B + s * g.k4 * ldb;
    for (int64_t k = 0; k < g.k4; ++k) {
      const int8_t* b = bs + k * ldb;
      __m256i bv[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j)
        bv[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * j)));
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m256i av = _mm256_cvtepu8_epi16(_mm_set1_epi32(load4(as + r * lda + 4 * k)));
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) c[r][j] = _mm256_add_epi32(c[r][j], _mm256_madd_epi16(av, bv[j]));
      }
    }
  }
  // hadd of (channels 0-3, channels 4-7) gives [0 1 4 5 | 2 3 6 7]; the permute puts them in order.
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(c[r][2 * h], c[r][2 * h + 1]), 0xD8);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * 16 + 8 * h), s);
    }
}
#else
// ---------------------------------------------------------------------------- baseline

template <int MR>
static void tile16(int32_t* acc, const Seg& g, const uint8_t* A, int64_t lda, const int8_t* B, int64_t ldb) {
  int32_t c[MR][16] = {};
  for (int64_t s = 0; s < g.segs; ++s)
    for (int64_t k = 0; k < g.k4; ++k) {
      const int8_t* b = B + (s * g.k4 + k) * ldb;
      for (int r = 0; r < MR; ++r) {
        const uint8_t* a = A + s * g.stride + r * lda + 4 * k;
        const int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
        for (int f = 0; f < 16; ++f)
          c[r][f] += a0 * b[4 * f] + a1 * b[4 * f + 1] + a2 * b[4 * f + 2] + a3 * b[4 * f + 3];
      }
    }
  for (int r = 0; r < MR; ++r)
    for (int f = 0; f < 16; ++f) acc[r * 16 + f] = c[r][f];
}
#endif

// Every tile of rows of A (Int8Rows, quantized.h) against one panel: tiles stay within a
// group of rows at constant stride; the last tile of a group reads up to MR rows (A has
// room for them) or, with `tail`, copies the group's last rows there (rows whose segments
// are contiguous: im2col and dense rows).
template <int MR, class Tile>
static void for_tiles(const Int8Rows& a, const Seg& g, uint8_t* tail, Tile&& tile) {
  for (int64_t item = 0; item < a.items; ++item)
    for (int64_t grp = 0; grp < a.groups; ++grp) {
      const uint8_t* base = a.A + item * a.istride + grp * a.gstride;
      const int64_t first = (item * a.groups + grp) * a.per_group;
      for (int64_t j0 = 0; j0 < a.per_group; j0 += MR) {
        const int rows = static_cast<int>(a.per_group - j0 < MR ? a.per_group - j0 : MR);
        const uint8_t* p = base + j0 * a.lda;
        int64_t ld = a.lda;
        if (rows < MR && tail) {
          const int64_t bytes = 4 * g.k4 * g.segs;
          for (int r = 0; r < rows; ++r) __builtin_memcpy(tail + r * bytes, p + r * a.lda, bytes);
          p = tail;
          ld = bytes;
        }
        tile(p, ld, first + j0, rows);
      }
    }
}

#if PYCNN_Q8_LEVEL == 2
template <int MR, int NV>
static void panel(const Epi& e, const Int8Rows& a, const Seg& g, const int8_t* P, int64_t ldb, int64_t f0, int cols,
                  uint8_t* tail) {
  for_tiles<MR>(a, g, tail, [&](const uint8_t* p, int64_t ld, int64_t m0, int rows) {
    tile<MR, NV>(e, g, p, ld, P, ldb, m0, rows, f0, cols);
  });
}

// A first layer: few output channels (F <= 8) and windows at most 4 bytes apart (C <= 4 at
// stride 1), where 16 channels per vector would mostly multiply padding. Here a vector holds
// 16 output pixels instead: one 64-byte load covers 16 windows' next 4 bytes, vpermb lines
// them up, and each channel's 4 weights are broadcast. The uint8 results (F vectors of 16
// pixels) are transposed to NHWC with two vpermt2b. Needs AVX-512 VBMI (vpermb).
bool pixels_fit(const Int8Weights& w, int64_t lda, bool in_place) {
  static const bool vbmi = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi") != 0;
  }();
  return vbmi && in_place && w.u8_out && w.F <= 8 && lda >= 1 && lda <= 4;
}

template <int NF>
__attribute__((target("avx512vbmi"))) static void pixels16(const Epi& e, const Seg& g, const uint8_t* A, __m512i gather,
                                                          __m512i lo_idx, __m512i hi_idx, const int8_t* B,
                                                          int64_t ldb, int64_t m0, int rows) {
  __m512i c[NF];
#pragma GCC unroll 8
  for (int f = 0; f < NF; ++f) c[f] = _mm512_setzero_si512();
  for (int64_t s = 0; s < g.segs; ++s) {
    const uint8_t* as = A + s * g.stride;
    const int8_t* bs = B + s * g.k4 * ldb;
    for (int64_t k = 0; k < g.k4; ++k) {
      const __m512i av = _mm512_permutexvar_epi8(gather, _mm512_loadu_si512(as + 4 * k));
      const int8_t* b = bs + k * ldb;
#pragma GCC unroll 8
      for (int f = 0; f < NF; ++f) c[f] = _mm512_dpbusd_epi32(c[f], av, _mm512_set1_epi32(load4(
                                                                         reinterpret_cast<const uint8_t*>(b) + 4 * f)));
    }
  }
  const __m512 lo = _mm512_set1_ps(e.lo), hi = _mm512_set1_ps(e.hi);
  __m128i q[8];
#pragma GCC unroll 8
  for (int f = 0; f < 8; ++f) {
    if (f >= NF) {
      q[f] = _mm_setzero_si128();
      continue;
    }
    __m512 y = _mm512_cvtepi32_ps(_mm512_add_epi32(c[f], _mm512_set1_epi32(e.comp[f])));
    y = _mm512_mul_ps(y, _mm512_set1_ps(e.mul[f]));
    y = _mm512_add_ps(y, _mm512_set1_ps(e.add[f]));
    y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
    q[f] = _mm512_cvtepi32_epi8(_mm512_cvt_roundps_epi32(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  // byte f * 16 + p of (first, second) is channel f of pixel p; the outputs want p * NF + f.
  __m512i first = _mm512_castsi128_si512(q[0]), second = _mm512_castsi128_si512(q[4]);
  first = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(first, q[1], 1), q[2], 2), q[3], 3);
  second = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(second, q[5], 1), q[6], 2), q[7], 3);
  const int64_t total = static_cast<int64_t>(rows) * NF;
  uint8_t* o = static_cast<uint8_t*>(e.out) + m0 * e.ldo;
  const __m512i part0 = _mm512_permutex2var_epi8(first, lo_idx, second);
  _mm512_mask_storeu_epi8(o, total >= 64 ? ~__mmask64(0) : (__mmask64(1) << total) - 1, part0);
  if (total > 64) {
    const __m512i part1 = _mm512_permutex2var_epi8(first, hi_idx, second);
    _mm512_mask_storeu_epi8(o + 64, total - 64 >= 64 ? ~__mmask64(0) : (__mmask64(1) << (total - 64)) - 1, part1);
  }
}

template <int NF>
__attribute__((target("avx512vbmi"))) static void pixels_panel(const Epi& e, const Int8Rows& a, const Seg& g,
                                                              const int8_t* P, int64_t ldb) {
  alignas(64) uint8_t gather[64], lo_idx[64], hi_idx[64];
  for (int j = 0; j < 64; ++j) {
    gather[j] = static_cast<uint8_t>(j / 4 * a.lda + j % 4);
    lo_idx[j] = static_cast<uint8_t>(j % NF * 16 + j / NF);
    hi_idx[j] = static_cast<uint8_t>((64 + j) % NF * 16 + (64 + j) / NF < 128 ? (64 + j) % NF * 16 + (64 + j) / NF : 0);
  }
  const __m512i gi = _mm512_load_si512(gather), li = _mm512_load_si512(lo_idx), hj = _mm512_load_si512(hi_idx);
  for_tiles<16>(a, g, nullptr, [&](const uint8_t* p, int64_t, int64_t m0, int rows) {
    pixels16<NF>(e, g, p, gi, li, hj, P, ldb, m0, rows);
  });
}

// Rows per tile for a panel of 16 nv channels and groups of `rows` rows: the height (of a
// few the registers allow: MR x NV accumulators, NV weight vectors, one broadcast) that
// wastes fewest rows at the end of a group (a convolution's output row), the tallest on a tie.
int choose_mr(int nv, int64_t rows) {
  static const int kCandidates[5][3] = {{0, 0, 0}, {12, 10, 8}, {12, 10, 8}, {8, 7, 6}, {6, 5, 4}};
  int best = kCandidates[nv][0];
  int64_t best_waste = (rows + best - 1) / best * best - rows;
  for (int c : kCandidates[nv]) {
    const int64_t waste = (rows + c - 1) / c * c - rows;
    if (waste < best_waste) {
      best = c;
      best_waste = waste;
    }
  }
  return best;
}

int tile_rows(const Int8Weights& w, int64_t lda, int64_t per_group) {
  if (pixels_fit(w, lda, true)) return 16;
  return choose_mr(static_cast<int>((w.Fp < kInt8Panel ? w.Fp : kInt8Panel) / 16), per_group);
}
#else
constexpr int kMR = PYCNN_Q8_LEVEL == 1 ? 2 : 4;

int tile_rows(const Int8Weights&, int64_t, int64_t) { return kMR; }
#endif

// out row m (at out + m * ldo) = requantize(row m of A @ W) for every row of `a`.
void gemm(void* out, int64_t ldo, const Int8Rows& a, const Int8Weights& w, const unsigned char* bytes, uint8_t* tail) {
  const int8_t* W = reinterpret_cast<const int8_t*>(bytes + w.w_off);
  const Epi e = {out, ldo, reinterpret_cast<const int32_t*>(bytes + w.comp_off),
                 reinterpret_cast<const float*>(bytes + w.mul_off), reinterpret_cast<const float*>(bytes + w.add_off),
                 w.lo, w.hi, w.u8_out};
  const Seg g = {w.segs, w.seg_k4, a.seg_stride};
  const int64_t K4 = w.segs * w.seg_k4;
#if PYCNN_Q8_LEVEL == 2
  if (pixels_fit(w, a.lda, tail == nullptr)) {  // one panel of 16 (padded) channels
    switch (w.F) {
      case 1: pixels_panel<1>(e, a, g, W, 64); return;
      case 2: pixels_panel<2>(e, a, g, W, 64); return;
      case 3: pixels_panel<3>(e, a, g, W, 64); return;
      case 4: pixels_panel<4>(e, a, g, W, 64); return;
      case 5: pixels_panel<5>(e, a, g, W, 64); return;
      case 6: pixels_panel<6>(e, a, g, W, 64); return;
      case 7: pixels_panel<7>(e, a, g, W, 64); return;
      default: pixels_panel<8>(e, a, g, W, 64); return;
    }
  }
#endif
  for (int64_t p0 = 0; p0 < w.Fp; p0 += kInt8Panel) {
    const int64_t width = w.Fp - p0 < kInt8Panel ? w.Fp - p0 : kInt8Panel;
    const int8_t* P = W + p0 * K4 * 4;
    const int64_t ldb = width * 4;
#if PYCNN_Q8_LEVEL == 2
    const int cols = static_cast<int>(w.F - p0 < width ? w.F - p0 : width);
    const int nv = static_cast<int>(width / 16);
    switch (nv * 100 + choose_mr(nv, a.per_group)) {
#define PYCNN_Q8_PANEL(NV, MR) \
  case NV * 100 + MR: panel<MR, NV>(e, a, g, P, ldb, p0, cols, tail); break;
      PYCNN_Q8_PANEL(4, 6) PYCNN_Q8_PANEL(4, 5) PYCNN_Q8_PANEL(4, 4)
      PYCNN_Q8_PANEL(3, 8) PYCNN_Q8_PANEL(3, 7) PYCNN_Q8_PANEL(3, 6)
      PYCNN_Q8_PANEL(2, 12) PYCNN_Q8_PANEL(2, 10) PYCNN_Q8_PANEL(2, 8)
      PYCNN_Q8_PANEL(1, 12) PYCNN_Q8_PANEL(1, 10) PYCNN_Q8_PANEL(1, 8)
#undef PYCNN_Q8_PANEL
      default: break;  // not reached: choose_mr returns one of the heights above
    }
#else
    alignas(64) int32_t acc[kMR * 16];
    for (int64_t s0 = 0; s0 < width; s0 += 16) {
      const int64_t f0 = p0 + s0;
      const int cols = static_cast<int>(w.F - f0 < 16 ? w.F - f0 : 16);
      for_tiles<kMR>(a, g, tail, [&](const uint8_t* p, int64_t ld, int64_t m0, int rows) {
        tile16<kMR>(acc, g, p, ld, P + s0 * 4, ldb);
        epilogue(e, acc, 16, m0, rows, f0, cols);
      });
    }
#endif
  }
}

}  // namespace PYCNN_Q8_NS
}  // namespace pycnn
