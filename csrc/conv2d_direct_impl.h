// Direct (no im2col) stride-1 convolution kernels over planar, zero-padded buffers, written
// once with GCC vector extensions and compiled per instruction set by conv2d_direct.cpp
// (which includes this file several times under different `#pragma GCC target`s and
// namespaces). Deliberately free of std:: calls so that nothing inline is shared between
// the per-ISA copies. Vectors run along the output width; R vectors per register block.
//
// Buffers (all float, planar, row-major):
//   src  [CS][rows][lds]   zero-padded input planes, lds >= OWp + KW - 1
//   dst  [CD][OH][ldd]     output planes, ldd >= OWp, OWp = OW rounded up to V * R
//   wt   (KH, KW, CS, CD)  weights in Keras order (contiguous over the output channel)
#ifndef PYCNN_DIRECT_NS
#error "include through conv2d_direct.cpp"
#endif

namespace pycnn {
namespace PYCNN_DIRECT_NS {

constexpr int V = PYCNN_DIRECT_VEC / 4;
constexpr int R = 2;
typedef float vf __attribute__((vector_size(PYCNN_DIRECT_VEC)));
typedef float vfu __attribute__((vector_size(PYCNN_DIRECT_VEC), aligned(4)));

static inline vf loadu(const float* p) { return *reinterpret_cast<const vfu*>(p); }
static inline void storeu(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }

template <int FB>
static void forward_block(float* dst, int64_t ldd, int64_t dplane, const float* src, int64_t lds, int64_t splane,
                          const float* wt, int64_t CS, int64_t CD, int64_t KH, int64_t KW, int64_t OH, int64_t OWp,
                          int64_t f0) {
  for (int64_t oh = 0; oh < OH; ++oh) {
    for (int64_t ow = 0; ow < OWp; ow += V * R) {
      vf acc[FB][R];
      for (int f = 0; f < FB; ++f)
        for (int r = 0; r < R; ++r) acc[f][r] = vf{} ;
      for (int64_t c = 0; c < CS; ++c) {
        for (int64_t kh = 0; kh < KH; ++kh) {
          const float* xrow = src + c * splane + (oh + kh) * lds + ow;
          const float* wrow = wt + (kh * KW * CS + c) * CD + f0;
          for (int64_t kw = 0; kw < KW; ++kw) {
            vf x[R];
            for (int r = 0; r < R; ++r) x[r] = loadu(xrow + kw + r * V);
            const float* wk = wrow + kw * CS * CD;
            for (int f = 0; f < FB; ++f) {
              const float w = wk[f];
              for (int r = 0; r < R; ++r) acc[f][r] += x[r] * w;
            }
          }
        }
      }
      for (int f = 0; f < FB; ++f)
        for (int r = 0; r < R; ++r) storeu(dst + (f0 + f) * dplane + oh * ldd + ow + r * V, acc[f][r]);
    }
  }
}

// dst[CD planes] = direct convolution of src with wt; FB output channels per pass.
void forward(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t src_rows, const float* wt,
             int64_t CS, int64_t CD, int64_t KH, int64_t KW, int64_t OH, int64_t OWp) {
  const int64_t dplane = OH * ldd, splane = src_rows * lds;
  int64_t f0 = 0;
  for (; f0 + 6 <= CD; f0 += 6) forward_block<6>(dst, ldd, dplane, src, lds, splane, wt, CS, CD, KH, KW, OH, OWp, f0);
  switch (CD - f0) {
    case 5: forward_block<5>(dst, ldd, dplane, src, lds, splane, wt, CS, CD, KH, KW, OH, OWp, f0); break;
    case 4: forward_block<4>(dst, ldd, dplane, src, lds, splane, wt, CS, CD, KH, KW, OH, OWp, f0); break;
    case 3: forward_block<3>(dst, ldd, dplane, src, lds, splane, wt, CS, CD, KH, KW, OH, OWp, f0); break;
    case 2: forward_block<2>(dst, ldd, dplane, src, lds, splane, wt, CS, CD, KH, KW, OH, OWp, f0); break;
    case 1: forward_block<1>(dst, ldd, dplane, src, lds, splane, wt, CS, CD, KH, KW, OH, OWp, f0); break;
    default: break;
  }
}

// KWB neighbouring kernel columns x FB filters of accumulators: each gradient vector is
// loaded once and used KWB times, each input vector once and used FB times.
template <int FB, int KWB>
static void dweight_block(float* dw, const float* x, int64_t ldx, int64_t xplane, const float* g, int64_t ldg,
                          int64_t gplane, int64_t C, int64_t F, int64_t KH, int64_t KW, int64_t OH, int64_t OWp,
                          int64_t f0, int64_t kw0) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t kh = 0; kh < KH; ++kh) {
      vf acc[KWB][FB];
      for (int k = 0; k < KWB; ++k)
        for (int f = 0; f < FB; ++f) acc[k][f] = vf{};
      for (int64_t oh = 0; oh < OH; ++oh) {
        const float* xrow = x + c * xplane + (oh + kh) * ldx + kw0;
        const float* grow = g + f0 * gplane + oh * ldg;
        for (int64_t ow = 0; ow < OWp; ow += V) {
          vf gv[FB];
          for (int f = 0; f < FB; ++f) gv[f] = loadu(grow + f * gplane + ow);
          for (int k = 0; k < KWB; ++k) {
            const vf xv = loadu(xrow + ow + k);
            for (int f = 0; f < FB; ++f) acc[k][f] += xv * gv[f];
          }
        }
      }
      for (int k = 0; k < KWB; ++k) {
        float* out = dw + ((kh * KW + kw0 + k) * C + c) * F + f0;
        for (int f = 0; f < FB; ++f) {
          float sum = 0.f;
          for (int l = 0; l < V; ++l) sum += acc[k][f][l];
          out[f] += sum;
        }
      }
    }
}

template <int FB>
static void dweight_filters(float* dw, const float* x, int64_t ldx, int64_t xplane, const float* g, int64_t ldg,
                            int64_t gplane, int64_t C, int64_t F, int64_t KH, int64_t KW, int64_t OH, int64_t OWp,
                            int64_t f0) {
#define PYCNN_DW_KW(KWB) dweight_block<FB, KWB>(dw, x, ldx, xplane, g, ldg, gplane, C, F, KH, KW, OH, OWp, f0, kw0)
  int64_t kw0 = 0;
  for (; kw0 + 5 <= KW; kw0 += 5) PYCNN_DW_KW(5);
  switch (KW - kw0) {
    case 4: PYCNN_DW_KW(4); break;
    case 3: PYCNN_DW_KW(3); break;
    case 2: PYCNN_DW_KW(2); break;
    case 1: PYCNN_DW_KW(1); break;
    default: break;
  }
#undef PYCNN_DW_KW
}

// dw (KH, KW, C, F) += sum over output pixels of x window * g; g planes [F][OH][ldg] are zero
// beyond the real output width (so the padded lanes add nothing).
void dweight(float* dw, const float* x, int64_t ldx, int64_t x_rows, const float* g, int64_t ldg, int64_t g_rows,
             int64_t C, int64_t F, int64_t KH, int64_t KW, int64_t OH, int64_t OWp) {
  const int64_t xplane = x_rows * ldx, gplane = g_rows * ldg;
#define PYCNN_DW_F(FB) dweight_filters<FB>(dw, x, ldx, xplane, g, ldg, gplane, C, F, KH, KW, OH, OWp, f0)
  int64_t f0 = 0;
  for (; f0 + 4 <= F; f0 += 4) PYCNN_DW_F(4);
  switch (F - f0) {
    case 3: PYCNN_DW_F(3); break;
    case 2: PYCNN_DW_F(2); break;
    case 1: PYCNN_DW_F(1); break;
    default: break;
  }
#undef PYCNN_DW_F
}

}  // namespace PYCNN_DIRECT_NS
}  // namespace pycnn
