// Direct NHWC convolution vectorised over the output channels ("over F"), written once with
// GCC vector extensions and compiled per instruction set by conv2d_direct.cpp (included
// several times under different `#pragma GCC target`s and namespaces). Deliberately free
// of std:: calls so that nothing inline is shared between the per-ISA copies.
//
// Buffers (float, row-major, one group of N samples):
//   x    (N, Hp, Wp, C)    input, zero-padded so that every window lies inside it:
//                          Hp >= (OH - 1) * SH + KH, Wp >= (OW - 1) * SW + KW; zero outside
//                          rows [row_lo, row_hi) and columns [col_lo, col_hi)
//   wb   (KH, KW, C, F)    weights, channel-blocked (below)
//   out  (N, OH, OW, F)    NHWC output
//   gb   (N, OH, OW, F)    gradient w.r.t. the pre-activation output, channel-blocked (dweight)
//   dw   (KH, KW, C, F)    weight gradient
// F must be a multiple of V. "Channel-blocked" means the F columns are cut into blocks of
// kMaxFV * V (the last block may be narrower, fw = F - f0) and each block is stored whole,
// rows x fw, one after the other: element (row, f) of block f0 is at rows * f0 + row * fw +
// (f - f0). A kernel pass over one block then walks contiguous memory (in plain (rows, F)
// order, rows F floats apart would fall into a fraction of the L1 cache sets).
// One window row (kw, c) is contiguous in x for any stride: x[ih, ow * SW + kw, c] sits at
// (ih * Wp + ow * SW) * C + (kw * C + c), and its weight row is w[kh, kw, c] = w[kh * KW * C +
// (kw * C + c)]; the kernels loop over j = kw * C + c.
//
// forward: a tile of R consecutive output pixels x FV vectors of output channels keeps
//   R * FV accumulators; for each (kh, j) it loads FV weight vectors and broadcasts one
//   input value per pixel. A row's last R' < R pixels take the same tile with R = R'.
// dweight: a tile of KB consecutive window elements j x FV vectors of channels keeps
//   KB * FV accumulators; for each output pixel it loads FV gradient vectors once and
//   broadcasts KB input values.
// Both are cache-blocked so that the operand reused by every tile (a chunk of the weights,
// a chunk of gradient rows) stays in L1.
#ifndef PYCNN_DIRECT_NS
#error "include through conv2d_direct.cpp"
#endif

namespace pycnn {
namespace PYCNN_DIRECT_NS {
namespace overf {

constexpr int V = PYCNN_DIRECT_VEC / 4;
typedef float vec __attribute__((vector_size(PYCNN_DIRECT_VEC)));
typedef float vecu __attribute__((vector_size(PYCNN_DIRECT_VEC), aligned(4)));

static inline vec loadu(const float* p) { return *reinterpret_cast<const vecu*>(p); }
static inline void storeu(float* p, vec v) { *reinterpret_cast<vecu*>(p) = v; }

// Tile sizes. Registers needed: R * FV accumulators + FV weight vectors + a broadcast (and,
// without FMA, a product). AVX-512 has 32 vector registers, AVX2 and SSE 16.
#if PYCNN_DIRECT_VEC == 64
constexpr int kMaxFV = 4;
constexpr int tile_rows(int fv) { return fv == 4 ? 6 : fv == 3 ? 8 : 12; }
#elif PYCNN_DIRECT_VEC == 32
constexpr int kMaxFV = 3;
constexpr int tile_rows(int fv) { return fv == 3 ? 4 : fv == 2 ? 6 : 12; }
#else
constexpr int kMaxFV = 2;
constexpr int tile_rows(int fv) { return fv == 2 ? 5 : 10; }
#endif

// The weights of one channel block (`width` floats per window element) are used in chunks of
// window elements, so that a chunk stays in L1 while every pixel of the group streams past it
// (and likewise the gradient rows of a chunk of pixels in dweight). Accumulators are reloaded
// from the output once per chunk.
constexpr int64_t kL1Floats = 8192;        // 32 KiB of a 48 KiB L1
constexpr int64_t kWholeRowFloats = 12288;  // 48 KiB: the chunk limit when it holds whole rows

// A chunk of the (kh, j) window: kh in [kh0, kh0 + nkh), j in [j0, j0 + len).
struct Chunks {
  int64_t khc, jc;  // rows per chunk (when a chunk holds whole rows), elements per chunk
};

// Chunks of at most 32 KiB of weights, or of up to 48 KiB when that holds whole window rows:
// then the reloads, not L1 misses, dominate. Measured on Zen 5 (48 KiB L1), 48 against 32 KiB:
// forward 256x15x15x64 k3 -> 64 81-84% -> 86-89% of peak (one chunk per row instead of two),
// the pair kernel's 64 -> 24 3.5% less time; but 256x7x7x256 -> 256 (rows of 768 elements,
// still split) 3-4% slower, weights and streaming input then contending for L1.
static inline Chunks plan_chunks(int64_t KH, int64_t KWC, int64_t width) {
  const int64_t whole_rows = kWholeRowFloats / width;
  const int64_t max_elems = KWC <= whole_rows ? whole_rows : kL1Floats / width;
  Chunks c;
  if (KWC <= max_elems) {
    const int64_t rows = max_elems / KWC;
    const int64_t pieces = (KH + rows - 1) / rows;
    c.khc = (KH + pieces - 1) / pieces;
    c.jc = KWC;
  } else {
    const int64_t pieces = (KWC + max_elems - 1) / max_elems;
    c.khc = 1;
    c.jc = (KWC + pieces - 1) / pieces;
  }
  return c;
}

// ---- forward ----------------------------------------------------------------------------
// o[r * F + v * V ..] (+)= sum_{kh < nkh, j < len} x[xo[r] + kh * xrow + j] * w[kh * wrow + j * fw + v * V ..]
// for r < R, v < FV, starting from the values in o (accumulate) or else from b (null: zero);
// o, x, w and b already point at the tile's first pixel, window element and channel, and
// xo[r] is pixel r's offset in x (GCC keeps the R offsets in registers).
template <int R, int FV>
static inline void forward_tile(float* o, const float* x, const int64_t* xo, const float* w, const float* b,
                                int64_t nkh, int64_t len, int64_t xrow, int64_t wrow, int64_t F, bool accumulate) {
  constexpr int fw = FV * V;
  vec acc[R][FV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < FV; ++v) acc[r][v] = vec{};
  for (int64_t kh = 0; kh < nkh; ++kh) {
    const float* xk = x + kh * xrow;
    const float* wk = w + kh * wrow;
    for (int64_t j = 0; j < len; ++j) {
      vec wv[FV];
      for (int v = 0; v < FV; ++v) wv[v] = loadu(wk + j * fw + v * V);
      for (int r = 0; r < R; ++r) {
        const float xs = xk[xo[r] + j];
        for (int v = 0; v < FV; ++v) acc[r][v] += xs * wv[v];
      }
    }
  }
  // The accumulators start at zero (a branch on where they start from makes GCC keep them
  // in memory around the loop) and what they start from is added here.
  if (accumulate) {
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < FV; ++v) storeu(o + r * F + v * V, loadu(o + r * F + v * V) + acc[r][v]);
  } else if (b) {
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < FV; ++v) storeu(o + r * F + v * V, loadu(b + v * V) + acc[r][v]);
  } else {
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < FV; ++v) storeu(o + r * F + v * V, acc[r][v]);
  }
}

// A last tile of n < R pixels: forward_tile<n, FV> chosen by recursion on RT.
template <int RT, int FV>
struct ForwardTail {
  static inline void run(int64_t n, float* o, const float* x, const int64_t* xo, const float* w, const float* b,
                         int64_t nkh, int64_t len, int64_t xrow, int64_t wrow, int64_t F, bool accumulate) {
    if (n == RT)
      forward_tile<RT, FV>(o, x, xo, w, b, nkh, len, xrow, wrow, F, accumulate);
    else
      ForwardTail<RT - 1, FV>::run(n, o, x, xo, w, b, nkh, len, xrow, wrow, F, accumulate);
  }
};
template <int FV>
struct ForwardTail<0, FV> {
  static inline void run(int64_t, float*, const float*, const int64_t*, const float*, const float*, int64_t, int64_t,
                         int64_t, int64_t, int64_t, bool) {}
};

static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Output channels [f0, f0 + FV * V) of every pixel of the group; w is that channel block.
// Tiles are R consecutive pixels of one output row (the row's last tile may be shorter), or,
// when rows are shorter than R, R consecutive pixels of the group across rows.
// Window rows and columns outside the band [row_lo, row_hi) x [col_lo, col_hi) of x (all
// zeros) are skipped where every pixel of a tile would only read zeros there: this is what
// makes the input gradient of a 'valid' convolution, computed from a heavily padded
// gradient, cost about what the forward costs.
template <int FV>
static void forward_channels(float* out, const float* x, const float* w, const float* bias, const VfGeom& s,
                             int64_t f0) {
  constexpr int R = tile_rows(FV);
  constexpr int64_t fw = FV * V;
  const int64_t KWC = s.KW * s.C, xrow = s.Wp * s.C, wrow = KWC * fw, F = s.F;
  const int64_t P = s.N * s.OH * s.OW;
  const float* b = bias ? bias + f0 : nullptr;
  const Chunks ch = plan_chunks(s.KH, KWC, fw);
  for (int64_t kh0 = 0; kh0 < s.KH; kh0 += ch.khc) {
    const int64_t kh1 = imin(s.KH, kh0 + ch.khc);
    for (int64_t j0 = 0; j0 < KWC; j0 += ch.jc) {
      const int64_t j1 = imin(KWC, j0 + ch.jc);
      // The first chunk writes every output (bias, or zero, plus its part); later ones add.
      const bool first = kh0 == 0 && j0 == 0;
      // One tile: pixels p0 .. p0 + rt - 1 at offsets xo in x, their window origins spanning
      // rows [ih_min, ih_max] and columns [iw_min, iw_max] within their samples.
      auto tile = [&](int64_t p0, int64_t rt, const int64_t* xo, int64_t ih_min, int64_t ih_max, int64_t iw_min,
                      int64_t iw_max) {
        const int64_t kha = imax(kh0, s.row_lo - ih_max), khb = imin(kh1, s.row_hi - ih_min);
        const int64_t ja = imax(j0, (s.col_lo - iw_max) * s.C), jb = imin(j1, (s.col_hi - iw_min) * s.C);
        const bool empty = khb <= kha || jb <= ja;
        if (empty && !first) return;
        const int64_t nkh = empty ? 0 : khb - kha, len = empty ? 0 : jb - ja;
        const float* xt = empty ? x : x + kha * xrow + ja;
        const float* wt = empty ? w : w + kha * wrow + ja * fw;
        float* o = out + p0 * F + f0;
        if (rt == R)
          forward_tile<R, FV>(o, xt, xo, wt, b, nkh, len, xrow, wrow, F, !first);
        else
          ForwardTail<R - 1, FV>::run(rt, o, xt, xo, wt, b, nkh, len, xrow, wrow, F, !first);
      };
      int64_t xo[R];
      if (s.OW >= R) {
        for (int64_t q = 0; q < s.N * s.OH; ++q) {
          const int64_t n = q / s.OH, ih = (q % s.OH) * s.SH;
          for (int64_t ow = 0; ow < s.OW; ow += R) {
            const int64_t rt = imin(R, s.OW - ow);
            for (int64_t r = 0; r < rt; ++r) xo[r] = (n * s.Hp + ih) * xrow + (ow + r) * s.SW * s.C;
            tile(q * s.OW + ow, rt, xo, ih, ih, ow * s.SW, (ow + rt - 1) * s.SW);
          }
        }
      } else {
        int64_t n = 0, oh = 0, ow = 0;  // pixel p0
        for (int64_t p0 = 0; p0 < P; p0 += R) {
          const int64_t rt = imin(R, P - p0);
          int64_t ih_min = s.Hp, ih_max = 0, iw_min = s.Wp, iw_max = 0;
          for (int64_t r = 0; r < rt; ++r) {
            const int64_t ih = oh * s.SH, iw = ow * s.SW;
            xo[r] = (n * s.Hp + ih) * xrow + iw * s.C;
            ih_min = imin(ih_min, ih);
            ih_max = imax(ih_max, ih);
            iw_min = imin(iw_min, iw);
            iw_max = imax(iw_max, iw);
            if (++ow == s.OW) {
              ow = 0;
              if (++oh == s.OH) {
                oh = 0;
                ++n;
              }
            }
          }
          tile(p0, rt, xo, ih_min, ih_max, iw_min, iw_max);
        }
      }
    }
  }
}

// out (N, OH, OW, F) = bias + x (*) wb, without activation; bias may be null.
void forward(float* out, const float* x, const float* wb, const float* bias, const VfGeom& s) {
  const int64_t FVs = s.F / V, K = s.KH * s.KW * s.C;
  int64_t fv = 0;
  for (; fv + kMaxFV <= FVs; fv += kMaxFV) forward_channels<kMaxFV>(out, x, wb + K * fv * V, bias, s, fv * V);
  const float* w = wb + K * fv * V;
  switch (FVs - fv) {
#if PYCNN_DIRECT_VEC == 64
    case 3: forward_channels<3>(out, x, w, bias, s, fv * V); break;
#endif
#if PYCNN_DIRECT_VEC >= 32
    case 2: forward_channels<2>(out, x, w, bias, s, fv * V); break;
#endif
    case 1: forward_channels<1>(out, x, w, bias, s, fv * V); break;
    default: break;
  }
}

// ---- forward over pixel pairs ---------------------------------------------------------------
// For an output channel count F that is an odd multiple of V / 2 (F = 24 with AVX-512: the
// input gradient of a 24-channel layer), whole vectors over F would waste a quarter of their
// lanes. Two consecutive output pixels hold 2F floats = NV whole vectors (NV odd): vectors
// below the middle belong to the first pixel, those above to the second, and the middle one
// takes its low V / 2 lanes from the first pixel and its high ones from the second. So a
// tile of R pixel pairs x NV vectors uses every lane; per window element it broadcasts the
// two pixels' input values and blends them for the middle vector. The weights come in pair
// layout: wp[(kh * KW * C + j) * NV * V + q] = w[kh, j, q % F] (q < 2F).
// Pixels are paired in the order of the output (N, OH, OW) flattened, so a pair may span two
// rows or samples; xo0 / xo1 are the two pixels' window origins in x.
template <int NV, int R>
static inline void pair_tile(float* o, const float* x, const int64_t* xo0, const int64_t* xo1, const float* w,
                             int64_t nkh, int64_t len, int64_t xrow, int64_t wrow, bool accumulate) {
  constexpr int mid = NV / 2, half = V / 2;
  vec lo_mask;
  for (int l = 0; l < V; ++l) lo_mask[l] = l < half ? 1.f : 0.f;
  vec acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = vec{};
  for (int64_t kh = 0; kh < nkh; ++kh) {
    const float* xk = x + kh * xrow;
    const float* wk = w + kh * wrow;
    for (int64_t j = 0; j < len; ++j) {
      vec wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = loadu(wk + j * (NV * V) + v * V);
      for (int r = 0; r < R; ++r) {
#if PYCNN_DIRECT_VEC == 64
        // Broadcasts straight from memory (load ports only) and a masked broadcast for the
        // middle vector: built from registers they would take shuffle slots beside the FMAs.
        const float* pa = xk + xo0[r] + j;
        const float* pb = xk + xo1[r] + j;
        const vec a = (vec)_mm512_set1_ps(*pa), b = (vec)_mm512_set1_ps(*pb);
        // (the empty asm hides that pm == pb, so that GCC loads it again instead of
        // broadcasting b's register)
        const float* pm = pb;
        __asm__("" : "+r"(pm));
        const vec m = (vec)_mm512_mask_broadcastss_ps((__m512)a, (__mmask16)0xFF00, _mm_load_ss(pm));
        (void)lo_mask;
#else
        const vec a = vec{} + xk[xo0[r] + j], b = vec{} + xk[xo1[r] + j];
        const vec m = lo_mask != 0.f ? a : b;
#endif
        for (int v = 0; v < mid; ++v) acc[r][v] += a * wv[v];
        acc[r][mid] += m * wv[mid];
        for (int v = mid + 1; v < NV; ++v) acc[r][v] += b * wv[v];
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float* d = o + (r * NV + v) * V;
      storeu(d, accumulate ? loadu(d) + acc[r][v] : acc[r][v]);
    }
}

template <int RT, int NV>
struct PairTail {
  static inline void run(int64_t n, float* o, const float* x, const int64_t* xo0, const int64_t* xo1, const float* w,
                         int64_t nkh, int64_t len, int64_t xrow, int64_t wrow, bool accumulate) {
    if (n == RT)
      pair_tile<NV, RT>(o, x, xo0, xo1, w, nkh, len, xrow, wrow, accumulate);
    else
      PairTail<RT - 1, NV>::run(n, o, x, xo0, xo1, w, nkh, len, xrow, wrow, accumulate);
  }
};
template <int NV>
struct PairTail<0, NV> {
  static inline void run(int64_t, float*, const float*, const int64_t*, const int64_t*, const float*, int64_t, int64_t,
                         int64_t, int64_t, bool) {}
};

// Pairs per tile: R * NV accumulators of the 32 (AVX-512) or 16 vector registers.
constexpr int pair_rows(int nv) { return PYCNN_DIRECT_VEC == 64 ? (nv == 1 ? 12 : nv == 3 ? 8 : 4) : (nv == 1 ? 6 : nv == 3 ? 3 : 2); }

template <int NV>
static void forward_pairs_nv(float* out, const float* x, const float* wp, const VfGeom& s) {
  constexpr int R = pair_rows(NV);
  constexpr int64_t pw = NV * V;  // floats of a pair
  const int64_t KWC = s.KW * s.C, xrow = s.Wp * s.C, wrow = KWC * pw, F = s.F;
  const int64_t P = s.N * s.OH * s.OW, pairs = P / 2;
  const Chunks ch = plan_chunks(s.KH, KWC, pw);
  // Window origins of pixels [p0, p0 + 2 * kOriginPairs): filled once per stretch of
  // pairs and read by every chunk (divisions per tile and chunk cost as much as the tile).
  // Tiles whose pixels' windows only meet zero rows of x in a chunk's window rows skip the
  // chunk (the first chunk writes their zeros), as forward_channels does: the first and last
  // output rows of a 'same' input gradient.
  constexpr int64_t kOriginPairs = 512;
  int64_t xo[2 * kOriginPairs], ih_lo[kOriginPairs / R + 1], ih_hi[kOriginPairs / R + 1];
  int64_t n = 0, oh = 0, ow = 0;  // pixel p0
  int64_t last_ih = 0;            // the window origin row of the last pixel next_origin() gave
  auto next_origin = [&]() {
    last_ih = oh * s.SH;
    const int64_t o = (n * s.Hp + last_ih) * xrow + ow * s.SW * s.C;
    if (++ow == s.OW) {
      ow = 0;
      if (++oh == s.OH) {
        oh = 0;
        ++n;
      }
    }
    return o;
  };
  for (int64_t q_lo = 0; q_lo < pairs; q_lo += kOriginPairs) {
    const int64_t q_hi = imin(pairs, q_lo + kOriginPairs);
    for (int64_t q = 0; q < 2 * (q_hi - q_lo); ++q) {
      xo[q] = next_origin();
      const int64_t tile = q / (2 * R);
      if (q % (2 * R) == 0) ih_lo[tile] = ih_hi[tile] = last_ih;
      ih_lo[tile] = imin(ih_lo[tile], last_ih);
      ih_hi[tile] = imax(ih_hi[tile], last_ih);
    }
    for (int64_t kh0 = 0; kh0 < s.KH; kh0 += ch.khc) {
      const int64_t kh1 = imin(s.KH, kh0 + ch.khc);
      for (int64_t j0 = 0; j0 < KWC; j0 += ch.jc) {
        const int64_t len = imin(KWC, j0 + ch.jc) - j0;
        const bool first = kh0 == 0 && j0 == 0;
        int64_t xo0[R], xo1[R];
        for (int64_t q0 = q_lo; q0 < q_hi; q0 += R) {
          const int64_t rt = imin(R, q_hi - q0), tile = (q0 - q_lo) / R;
          const int64_t kha = imax(kh0, s.row_lo - ih_hi[tile]), khb = imin(kh1, s.row_hi - ih_lo[tile]);
          if (khb <= kha && !first) continue;
          const int64_t nkh = khb <= kha ? 0 : khb - kha;
          const float* xc = x + (nkh ? kha : kh0) * xrow + j0;
          const float* wc = wp + (nkh ? kha : kh0) * wrow + j0 * pw;
          for (int64_t r = 0; r < rt; ++r) {
            xo0[r] = xo[2 * (q0 - q_lo + r)];
            xo1[r] = xo[2 * (q0 - q_lo + r) + 1];
          }
          float* o = out + 2 * q0 * F;
          if (rt == R)
            pair_tile<NV, R>(o, xc, xo0, xo1, wc, nkh, len, xrow, wrow, !first);
          else
            PairTail<R - 1, NV>::run(rt, o, xc, xo0, xo1, wc, nkh, len, xrow, wrow, !first);
        }
      }
    }
  }
  if (P % 2) {  // the last pixel alone: a pair of it with itself, the first half kept
    const int64_t last = next_origin();
    float pair[NV * V];
    pair_tile<NV, 1>(pair, x, &last, &last, wp, s.KH, KWC, xrow, wrow, false);
    float* o = out + (P - 1) * F;
    for (int64_t f = 0; f < F; ++f) o[f] = pair[f];
  }
}

// out (N, OH, OW, F) = x (*) w without bias, wp the pair layout; F an odd multiple of V / 2
// with 2F / V <= 5 (pairs_fit).
void forward_pairs(float* out, const float* x, const float* wp, const VfGeom& s) {
  switch (2 * s.F / V) {
    case 1: forward_pairs_nv<1>(out, x, wp, s); break;
    case 3: forward_pairs_nv<3>(out, x, wp, s); break;
    case 5: forward_pairs_nv<5>(out, x, wp, s); break;
    default: break;
  }
}

// ---- weight gradient ----------------------------------------------------------------------
// The group's output pixels are taken in chunks of at most kChunkPixels / FV (the chunk's
// gradient rows stay in L1 while every window element streams past them); xoff[p] is the
// offset in x of pixel p's window origin, so one flat loop covers pixels of many rows.
constexpr int64_t kChunkPixels = kL1Floats / V;

// dw[kb * F + v * V ..] (+)= sum_{p < np} x[xoff[p] + kb] * g[p * fw + v * V ..]
// for kb < KB, v < FV; dw, x and g already point at the tile's first window element, channel
// and pixel.
template <int KB, int FV>
static inline void dweight_tile(float* dw, const float* x, const float* g, const int64_t* xoff, int64_t np,
                                int64_t F, bool accumulate) {
  constexpr int fw = FV * V;
  vec acc[KB][FV];
  for (int kb = 0; kb < KB; ++kb)
    for (int v = 0; v < FV; ++v) acc[kb][v] = vec{};
  for (int64_t p = 0; p < np; ++p) {
    vec gv[FV];
    for (int v = 0; v < FV; ++v) gv[v] = loadu(g + p * fw + v * V);
    const float* xs = x + xoff[p];
    for (int kb = 0; kb < KB; ++kb) {
      const float xv = xs[kb];
      for (int v = 0; v < FV; ++v) acc[kb][v] += xv * gv[v];
    }
  }
  for (int kb = 0; kb < KB; ++kb)
    for (int v = 0; v < FV; ++v) {
      float* d = dw + kb * F + v * V;
      storeu(d, accumulate ? loadu(d) + acc[kb][v] : acc[kb][v]);
    }
}

template <int KT, int FV>
struct DweightTail {
  static inline void run(int64_t n, float* dw, const float* x, const float* g, const int64_t* xoff, int64_t np,
                         int64_t F, bool accumulate) {
    if (n == KT)
      dweight_tile<KT, FV>(dw, x, g, xoff, np, F, accumulate);
    else
      DweightTail<KT - 1, FV>::run(n, dw, x, g, xoff, np, F, accumulate);
  }
};
template <int FV>
struct DweightTail<0, FV> {
  static inline void run(int64_t, float*, const float*, const float*, const int64_t*, int64_t, int64_t, bool) {}
};

// Channels [f0, f0 + FV * V) of dw; g is that channel block of the gradient.
template <int FV>
static void dweight_channels(float* dw, const float* x, const float* g, const VfGeom& s, int64_t f0, bool accumulate) {
  constexpr int KB = tile_rows(FV);
  constexpr int64_t fw = FV * V;
  const int64_t KWC = s.KW * s.C, xrow = s.Wp * s.C, xstep = s.SW * s.C, F = s.F, P = s.N * s.OH * s.OW;
  const int64_t pieces = (P + kChunkPixels / FV - 1) / (kChunkPixels / FV), pc = (P + pieces - 1) / pieces;
  int64_t xoff[kChunkPixels];
  int64_t n = 0, oh = 0, ow = 0;  // pixel p0
  for (int64_t p0 = 0; p0 < P; p0 += pc) {
    const int64_t np = imin(pc, P - p0);
    for (int64_t p = 0; p < np; ++p) {
      xoff[p] = (n * s.Hp + oh * s.SH) * xrow + ow * xstep;
      if (++ow == s.OW) {
        ow = 0;
        if (++oh == s.OH) {
          oh = 0;
          ++n;
        }
      }
    }
    const bool acc = accumulate || p0 > 0;
    const float* gc = g + p0 * fw;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const float* xk = x + kh * xrow;
      float* dk = dw + kh * KWC * F + f0;
      int64_t j = 0;
      for (; j + KB <= KWC; j += KB) dweight_tile<KB, FV>(dk + j * F, xk + j, gc, xoff, np, F, acc);
      if (j < KWC) DweightTail<KB - 1, FV>::run(KWC - j, dk + j * F, xk + j, gc, xoff, np, F, acc);
    }
  }
}

// dw (KH, KW, C, F) = (accumulate: +=) sum over the group of x window (x) gb.
void dweight(float* dw, const float* x, const float* gb, const VfGeom& s, bool accumulate) {
  const int64_t FVs = s.F / V, P = s.N * s.OH * s.OW;
  int64_t fv = 0;
  for (; fv + kMaxFV <= FVs; fv += kMaxFV) dweight_channels<kMaxFV>(dw, x, gb + P * fv * V, s, fv * V, accumulate);
  const float* g = gb + P * fv * V;
  switch (FVs - fv) {
#if PYCNN_DIRECT_VEC == 64
    case 3: dweight_channels<3>(dw, x, g, s, fv * V, accumulate); break;
#endif
#if PYCNN_DIRECT_VEC >= 32
    case 2: dweight_channels<2>(dw, x, g, s, fv * V, accumulate); break;
#endif
    case 1: dweight_channels<1>(dw, x, g, s, fv * V, accumulate); break;
    default: break;
  }
}

}  // namespace overf
}  // namespace PYCNN_DIRECT_NS
}  // namespace pycnn
