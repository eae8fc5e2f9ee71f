// int8 inference (quantized.h): the kernels and the ops of quantized networks.
//
//   quantize     float32 (any shape) -> uint8 of the same shape; attrs scale, zero_point
//   dequantize   uint8 -> float32; attrs scale, zero_point
//   conv2d_int8  uint8 (H, W, C) -> (OH, OW, F) uint8 (or float32 with out_dtype='float32');
//                params the float32 kernel (KH, KW, C, F) and bias (F), as conv2d's (after
//                batch normalization was folded into them); attrs strides, padding,
//                activation, in_scale, in_zero_point, out_scale, out_zero_point, out_dtype
//   dense_int8   uint8 (..., IN) -> (..., OUT), params kernel (IN, OUT) and bias, the same attrs
//                but strides and padding
//
// Inference only: no backward (network.cpp refuses to train through them). Parse quantizes
// the float32 kernel per output channel and packs it, with the per-channel constants of the
// requantization, into the node's bytes (numbers and layout: quantized.h). The pooling ops
// on uint8 (maxpool2d_int8, ...) live with the other pooling ops in pool2d.cpp.
//
// A convolution runs as im2col + GEMM on blocks of output pixels: each block's receptive
// fields are copied as rows of bytes (padding reads as the input's zero point, a real 0), then
// the GEMM of quantized_impl.h multiplies them with the packed weights and writes the
// requantized output. The GEMM is compiled for AVX-512 VNNI, AVX2 and the baseline and picked
// at run time (int8_kernel_name()).
#include "quantized.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "activation.h"
#include "op_registry.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

#define PYCNN_Q8_NS q8_portable
#define PYCNN_Q8_LEVEL 0
#include "quantized_impl.h"
#undef PYCNN_Q8_NS
#undef PYCNN_Q8_LEVEL

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx2")
#define PYCNN_Q8_NS q8_avx2
#define PYCNN_Q8_LEVEL 1
#include "quantized_impl.h"
#undef PYCNN_Q8_NS
#undef PYCNN_Q8_LEVEL
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
// GCC 12 warns about the AVX-512 intrinsics' own undefined pass-through operands.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define PYCNN_Q8_NS q8_vnni
#define PYCNN_Q8_LEVEL 2
#include "quantized_impl.h"
#undef PYCNN_Q8_NS
#undef PYCNN_Q8_LEVEL
#pragma GCC diagnostic pop
#pragma GCC pop_options
#define PYCNN_Q8_HAVE_X86 1
#endif

namespace pycnn {
namespace {

// ---------------------------------------------------------------------------- dispatch

struct Int8Kernels {
  const char* name;
  void (*quantize)(uint8_t*, const float*, int64_t, float, float);
  void (*dequantize)(float*, const uint8_t*, int64_t, float, int32_t);
  void (*gemm)(void*, int64_t, const Int8Rows&, const Int8Weights&, const unsigned char*, uint8_t*);
  // Rows per GEMM tile for rows read in place lda apart, in groups of per_group rows.
  int (*tile_rows)(const Int8Weights&, int64_t lda, int64_t per_group);
};

bool cpu_has_vnni512() {
#ifdef PYCNN_Q8_HAVE_X86
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }();
  return yes;
#else
  return false;
#endif
}

// AVX-512 without VNNI (Skylake-X) runs the AVX2 kernels; a CPU with AVX-VNNI but no AVX-512
// too (256-bit VNNI kernels would be the next step there).
Int8Kernels int8_kernels() {
#define PYCNN_Q8_KERNELS(name, ns) {name, ns::quantize, ns::dequantize, ns::gemm, ns::tile_rows}
#ifdef PYCNN_Q8_HAVE_X86
  const Isa isa = active_isa();
  if (isa == Isa::avx512 && cpu_has_vnni512()) return PYCNN_Q8_KERNELS("avx512_vnni", q8_vnni);
  if (isa != Isa::baseline) return PYCNN_Q8_KERNELS("avx2", q8_avx2);
#endif
  return PYCNN_Q8_KERNELS("baseline", q8_portable);
#undef PYCNN_Q8_KERNELS
}

constexpr int64_t kTailRows = 12;          // the most rows a GEMM tile reads (quantized_impl.h)
constexpr int64_t kBlockBytes = 192 << 10;  // im2col rows per block: about this many bytes (L2)
constexpr int64_t kMinRows = 256;           // a direct convolution's images per block: at least this many rows

template <class T>
T* scratch_as(int slot, int64_t bytes, Scratch which) {
  return reinterpret_cast<T*>(scratch(slot, static_cast<std::size_t>((bytes + 64) / 4 + 16), which));
}

// Threads for `blocks` independent blocks of `work` multiply-adds each (one inside the
// executor, whose threads each run a share of the batch serially).
int threads_for(int64_t blocks, double work) {
  const int T = get_num_threads();
  if (T == 1 || blocks < 2 || static_cast<double>(blocks) * work < double(1 << 20)) return 1;
  return static_cast<int>(std::min<int64_t>(T, blocks));
}

// Runs body(slot, b) for b in [0, blocks) on T threads, each with its own scratch slot.
template <class Body>
void parallel_blocks(int64_t blocks, int T, Body&& body) {
  const int base = slot_base();
  if (T == 1) {
    for (int64_t b = 0; b < blocks; ++b) body(base, b);
    return;
  }
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(T)
#endif
  for (int64_t b = 0; b < blocks; ++b) body(base + team_thread(), b);
}

// dst[0, n) = src[0, n) in 16-byte copies: the last may write up to 15 bytes past n (the
// caller writes what follows later, or owns it) and reads past n while that stays before
// src_end (else the rest goes byte by byte).
inline void copy_over(uint8_t* dst, const uint8_t* src, int64_t n, const uint8_t* src_end) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) std::memcpy(dst + i, src + i, 16);
  if (i == n) return;
  if (src + i + 16 <= src_end) {
    std::memcpy(dst + i, src + i, 16);
  } else {
    for (; i < n; ++i) dst[i] = src[i];
  }
}

// dst[0, n) = the 16 bytes of `fill`, repeated; may write up to 15 bytes past n (as copy_over).
inline void fill_over(uint8_t* dst, const uint8_t* fill, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) std::memcpy(dst + i, fill, 16);
}

// Rows [r0, r1) of the flattened output pixels (n, oh, ow) as receptive fields, row r at
// A + (r - r0) * lda: KH segments of Lp bytes (KW * C of the window, `pad` where it leaves
// the image; the last Lp - KW * C bytes meet zero weights and hold anything). Writes up to
// 15 bytes past the last row (A has room). Each row is written in order, so a copy running
// past its part is overwritten by the next one.
void im2col_u8(uint8_t* A, int64_t lda, int64_t Lp, const uint8_t* inp, const ConvShape& s, int64_t r0, int64_t r1,
               uint8_t pad) {
  const int64_t C = s.C, L = s.KW * C;
  const uint8_t* end = inp + s.N * s.H * s.W * C;
  uint8_t fill[16];
  std::memset(fill, pad, sizeof(fill));
  int64_t n = r0 / (s.OH * s.OW), oh = r0 / s.OW % s.OH, ow = r0 % s.OW;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* img = inp + n * s.H * s.W * C;
    uint8_t* dst = A + (r - r0) * lda;
    const int64_t iw0 = ow * s.SW - s.PL, ih0 = oh * s.SH - s.PT;
    const bool inside_w = iw0 >= 0 && iw0 + s.KW <= s.W;
    for (int64_t kh = 0; kh < s.KH; ++kh, dst += Lp) {
      const int64_t ih = ih0 + kh;
      if (ih < 0 || ih >= s.H) {
        fill_over(dst, fill, L);
      } else if (inside_w) {
        copy_over(dst, img + (ih * s.W + iw0) * C, L, end);
      } else {
        const uint8_t* row = img + ih * s.W * C;
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int64_t iw = iw0 + kw;
          if (iw < 0 || iw >= s.W) fill_over(dst + kw * C, fill, C);
          else copy_over(dst + kw * C, row + iw * C, C, end);
        }
      }
    }
    if (++ow == s.OW) {
      ow = 0;
      if (++oh == s.OH) {
        oh = 0;
        ++n;
      }
    }
  }
}

// The padded input of a direct convolution: images [n0, n1) into Hp x Wp x C planes, `pad`
// around (and right of, below) the real pixels.
void pad_images(uint8_t* dst, const uint8_t* inp, const ConvShape& s, int64_t n0, int64_t n1, int64_t Hp, int64_t Wp,
                uint8_t pad) {
  const int64_t C = s.C;
  for (int64_t n = n0; n < n1; ++n) {
    uint8_t* img = dst + (n - n0) * Hp * Wp * C;
    for (int64_t y = 0; y < Hp; ++y) {
      uint8_t* row = img + y * Wp * C;
      const int64_t ih = y - s.PT;
      if (ih < 0 || ih >= s.H) {
        std::memset(row, pad, static_cast<size_t>(Wp * C));
        continue;
      }
      const int64_t left = std::min(s.PL, Wp), width = std::max<int64_t>(0, std::min(s.W, Wp - s.PL));
      std::memset(row, pad, static_cast<size_t>(left * C));
      std::memcpy(row + left * C, inp + (n * s.H + ih) * s.W * C, static_cast<size_t>(width * C));
      std::memset(row + (left + width) * C, pad, static_cast<size_t>((Wp - left - width) * C));
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------- kernels

const char* int8_kernel_name() { return int8_kernels().name; }

void quantize_forward(uint8_t* out, const float* inp, int64_t n, float inv_scale, float zero_point) {
  int8_kernels().quantize(out, inp, n, inv_scale, zero_point);
}

void dequantize_forward(float* out, const uint8_t* inp, int64_t n, float scale, int32_t zero_point) {
  int8_kernels().dequantize(out, inp, n, scale, zero_point);
}

int64_t int8_packed_bytes(int64_t segs, int64_t seg_len, int64_t F) {
  const int64_t K4 = segs * ((seg_len + 3) / 4), Fp = (F + 15) / 16 * 16;
  return Fp * K4 * 4 + 3 * Fp * 4;
}

void int8_pack(unsigned char* bytes, Int8Weights* w, const float* kernel, const float* bias, int64_t segs,
               int64_t seg_len, int64_t F, double in_scale, int32_t in_zero_point, bool u8_out, double out_scale,
               int32_t out_zero_point, bool relu) {
  const int64_t K = segs * seg_len;
  w->K = K;
  w->segs = segs;
  w->seg_k4 = (seg_len + 3) / 4;
  const int64_t K4 = segs * w->seg_k4;
  w->F = F;
  w->Fp = (F + 15) / 16 * 16;
  w->w_off = 0;
  w->comp_off = w->Fp * K4 * 4;
  w->mul_off = w->comp_off + w->Fp * 4;
  w->add_off = w->mul_off + w->Fp * 4;
  w->u8_out = u8_out;
  w->lo = relu ? static_cast<float>(out_zero_point) : 0.f;
  w->hi = 255.f;
  int8_t* packed = reinterpret_cast<int8_t*>(bytes + w->w_off);
  int32_t* comp = reinterpret_cast<int32_t*>(bytes + w->comp_off);
  float* mul = reinterpret_cast<float*>(bytes + w->mul_off);
  float* add = reinterpret_cast<float*>(bytes + w->add_off);
  std::vector<int8_t> q(static_cast<size_t>(K));
  for (int64_t f = 0; f < F; ++f) {
    float amax = 0.f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(kernel[k * F + f]));
    const double sw = amax > 0.f ? static_cast<double>(amax) / 127.0 : 1.0;
    int64_t sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      const double v = std::nearbyint(static_cast<double>(kernel[k * F + f]) / sw);
      q[k] = static_cast<int8_t>(std::min(127.0, std::max(-127.0, v)));
      sum += q[k];
    }
    // Panel p0 = the panel holding f, [K4][width][4] from byte p0 * K4 * 4; kernel row k is
    // row (k / seg_len) * 4 seg_k4 + k % seg_len of the padded reduction.
    const int64_t p0 = f / kInt8Panel * kInt8Panel, width = std::min(kInt8Panel, w->Fp - p0);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t kp = (k / seg_len) * 4 * w->seg_k4 + k % seg_len;
      packed[p0 * K4 * 4 + (kp / 4) * width * 4 + (f - p0) * 4 + kp % 4] = q[k];
    }
    comp[f] = static_cast<int32_t>(-static_cast<int64_t>(in_zero_point) * sum);
    const double b = bias ? static_cast<double>(bias[f]) : 0.0;
    if (u8_out) {
      mul[f] = static_cast<float>(in_scale * sw / out_scale);
      add[f] = static_cast<float>(b / out_scale + static_cast<double>(out_zero_point));
    } else {
      mul[f] = static_cast<float>(in_scale * sw);
      add[f] = bias ? bias[f] : 0.f;
    }
  }
}

void conv2d_int8_forward(void* out, const uint8_t* inp, const Int8Weights& w, const unsigned char* bytes,
                         const ConvShape& s, uint8_t pad) {
  const Int8Kernels k = int8_kernels();
  const int64_t Lp = 4 * w.seg_k4, P = s.OH * s.OW, esize = w.u8_out ? 1 : 4;
  const double work = static_cast<double>(w.K * w.F);
  // Direct: rows of A read in place from a padded copy of the input, tiles along output rows;
  // worth it unless the tiles' last rows in each output row would waste a sixth of the work.
  const int mr = k.tile_rows(w, s.SW * s.C, s.OW);
  const int64_t tiles = (s.OW + mr - 1) / mr;
  if (6 * (tiles * mr - s.OW) <= tiles * mr) {
    const int64_t Hp = (s.OH - 1) * s.SH + s.KH, Wp = std::max((s.OW - 1) * s.SW + s.KW, s.PL + 1);
    const int64_t image = Hp * Wp * s.C;
    // The last tile of an output row reads up to mr - 1 windows (and Lp - KW * C bytes, or a
    // whole 64-byte vector) past it: room after the last image.
    const int64_t slack = mr * s.SW * s.C + Lp + 128;
    // Whole images per block, at least kMinRows output rows (one B pass feeds them all);
    // one image split by output rows when there are fewer images than threads.
    const int64_t per = std::max<int64_t>(1, std::min<int64_t>(s.N, (kMinRows + P - 1) / P));
    int64_t blocks = (s.N + per - 1) / per;
    const int T0 = get_num_threads();
    const bool split_rows = s.N < T0 && s.N * s.OH >= 2 * T0;
    int64_t row_blocks = 1;
    if (split_rows) {
      row_blocks = std::min<int64_t>(s.OH, T0);
      blocks = s.N * row_blocks;
    }
    const int T = threads_for(blocks, static_cast<double>(split_rows ? P / row_blocks : per * P) * work);
    parallel_blocks(blocks, T, [&](int slot, int64_t b) {
      int64_t n0, n1, oh0 = 0, oh1 = s.OH;
      if (split_rows) {
        n0 = b / row_blocks;
        n1 = n0 + 1;
        const int64_t part = b % row_blocks;
        oh0 = s.OH * part / row_blocks;
        oh1 = s.OH * (part + 1) / row_blocks;
        if (oh1 <= oh0) return;
      } else {
        n0 = b * per;
        n1 = std::min(s.N, n0 + per);
      }
      uint8_t* buf = scratch_as<uint8_t>(slot, (n1 - n0) * image + slack, kScratchInt8A);
      pad_images(buf, inp, s, n0, n1, Hp, Wp, pad);
      std::memset(buf + (n1 - n0) * image, pad, static_cast<size_t>(slack));
      const Int8Rows rows = {buf + oh0 * s.SH * Wp * s.C, s.SW * s.C, s.OW, s.SH * Wp * s.C, oh1 - oh0, image,
                             n1 - n0, Wp * s.C};
      if (split_rows) {
        k.gemm(static_cast<unsigned char*>(out) + (n0 * P + oh0 * s.OW) * w.F * esize, w.F, rows, w, bytes, nullptr);
      } else {
        k.gemm(static_cast<unsigned char*>(out) + n0 * P * w.F * esize, w.F, rows, w, bytes, nullptr);
      }
    });
    return;
  }
  // im2col: blocks of output pixels copied as rows (KH segments of Lp bytes).
  const int64_t M = s.N * P, lda = w.segs * Lp;
  int64_t block = std::max<int64_t>(24, kBlockBytes / lda / 24 * 24);  // a multiple of every tile height
  block = std::min(block, M);
  const int64_t blocks = (M + block - 1) / block;
  const int T = threads_for(blocks, static_cast<double>(block) * work);
  parallel_blocks(blocks, T, [&](int slot, int64_t b) {
    const int64_t r0 = b * block, r1 = std::min(M, r0 + block);
    uint8_t* A = scratch_as<uint8_t>(slot, block * lda + 64, kScratchInt8A);  // + 64: copies run past the end
    uint8_t* tail = scratch_as<uint8_t>(slot, kTailRows * lda, kScratchInt8Tail);
    im2col_u8(A, lda, Lp, inp, s, r0, r1, pad);
    const Int8Rows rows = {A, lda, r1 - r0, 0, 1, 0, 1, Lp};
    k.gemm(static_cast<unsigned char*>(out) + r0 * w.F * esize, w.F, rows, w, bytes, tail);
  });
}

void dense_int8_forward(void* out, const uint8_t* inp, const Int8Weights& w, const unsigned char* bytes, int64_t N) {
  const Int8Kernels k = int8_kernels();
  const int64_t lda = 4 * w.seg_k4, esize = w.u8_out ? 1 : 4;
  const int T = threads_for((N + 23) / 24, 24.0 * static_cast<double>(w.K * w.F));
  const int64_t per = T == 1 ? N : ((N + T - 1) / T + 23) / 24 * 24;
  // Rows of K bytes are read in place when K is a multiple of 4; else copied with zeros after.
  parallel_blocks(T, T, [&](int slot, int64_t t) {
    const int64_t r0 = std::min<int64_t>(N, t * per), r1 = std::min<int64_t>(N, (t + 1) * per);
    if (r1 <= r0) return;
    uint8_t* tail = scratch_as<uint8_t>(slot, kTailRows * lda, kScratchInt8Tail);
    unsigned char* o = static_cast<unsigned char*>(out) + r0 * w.F * esize;
    const uint8_t* A = inp + r0 * w.K;
    if (lda != w.K) {
      uint8_t* copy = scratch_as<uint8_t>(slot, (r1 - r0) * lda, kScratchInt8A);
      for (int64_t r = r0; r < r1; ++r) {
        std::memcpy(copy + (r - r0) * lda, inp + r * w.K, static_cast<size_t>(w.K));
        std::memset(copy + (r - r0) * lda + w.K, 0, static_cast<size_t>(lda - w.K));
      }
      A = copy;
    }
    const Int8Rows rows = {A, lda, r1 - r0, 0, 1, 0, 1, 0};
    k.gemm(o, w.F, rows, w, bytes, tail);
  });
}

// ---------------------------------------------------------------------------- the ops

namespace {

std::string num_str(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

double positive_scale(const OpArgs& args, const char* name) {
  const double v = args.attrs.f(name);
  if (!(v > 0.0) || !std::isfinite(v) || static_cast<float>(v) <= 0.f || !std::isfinite(static_cast<float>(v)))
    args.fail(std::string("expected ") + name + " to be a positive finite float32 number. Received: " + name + "=" +
              num_str(v) + ".");
  return v;
}

int32_t zero_point_attr(const OpArgs& args, const char* name) {
  const int64_t v = args.attrs.i(name);
  if (v < 0 || v > 255)
    args.fail(std::string("expected ") + name + " in [0, 255]. Received: " + name + "=" + std::to_string(v) + ".");
  return static_cast<int32_t>(v);
}

// quantize / dequantize: element-wise, any shape.
struct QuantGeom {
  float scale, inv_scale;
  int32_t zero_point;
};

std::vector<int64_t> quant_parse(Node& node, const OpArgs& args, ElemType out_type) {
  QuantGeom& g = node.geom<QuantGeom>();
  const double scale = positive_scale(args, "scale");
  g.scale = static_cast<float>(scale);
  g.inv_scale = static_cast<float>(1.0 / scale);
  g.zero_point = zero_point_attr(args, "zero_point");
  if (!std::isfinite(g.inv_scale) || g.inv_scale <= 0.f)
    args.fail("expected a scale whose inverse is a positive finite float32 number. Received: scale=" +
              num_str(scale) + ".");
  node.out_type = out_type;
  return args.in_shapes[0];
}

std::vector<int64_t> quantize_parse(Node& node, const OpArgs& args) { return quant_parse(node, args, ElemType::uint8); }
std::vector<int64_t> dequantize_parse(Node& node, const OpArgs& args) {
  return quant_parse(node, args, ElemType::float32);
}

const float* quantize_op_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const QuantGeom& g = node.geom<QuantGeom>();
  quantize_forward(reinterpret_cast<uint8_t*>(out), in[0], nb * node.out_size, g.inv_scale,
                   static_cast<float>(g.zero_point));
  return out;
}

const float* dequantize_op_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const QuantGeom& g = node.geom<QuantGeom>();
  dequantize_forward(out, reinterpret_cast<const uint8_t*>(in[0]), nb * node.out_size, g.scale, g.zero_point);
  return out;
}

// conv2d_int8 / dense_int8: the quantization attributes, the packed weights, the output type.
struct Int8Setup {
  bool u8_out, relu;
  double in_scale, out_scale;
  int32_t in_zp, out_zp;
};

Int8Setup int8_setup(const OpArgs& args) {
  Int8Setup q;
  const std::string& dtype = args.attrs.s("out_dtype");
  if (dtype != "uint8" && dtype != "float32")
    args.fail("expected out_dtype 'uint8' or 'float32'. Received: out_dtype='" + dtype + "'.");
  q.u8_out = dtype == "uint8";
  q.in_scale = positive_scale(args, "in_scale");
  q.in_zp = zero_point_attr(args, "in_zero_point");
  q.out_zp = zero_point_attr(args, "out_zero_point");
  q.out_scale = q.u8_out ? positive_scale(args, "out_scale") : 1.0;
  const std::string& act = args.attrs.s("activation");
  q.relu = act == "relu";
  if (q.u8_out && act != "linear" && act != "relu")
    args.fail("expected activation 'linear' or 'relu' with out_dtype='uint8' (the requantization applies them); "
              "other activations need out_dtype='float32'. Received: activation='" + act + "'.");
  return q;
}

void check_finite_kernel(const OpArgs& args, int64_t count) {
  for (int k = 0; k < 2; ++k) {
    const float* p = args.params[k];
    const int64_t n = k == 0 ? count : (p ? size_of(args.param_shapes[1]) : 0);
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i]))
        args.fail(std::string("expected finite ") + (k == 0 ? "kernel" : "bias") + " values to quantize. Received: " +
                  (k == 0 ? "kernel" : "bias") + " value " + num_str(p[i]) + " at flat index " +
                  std::to_string(i) + ".");
  }
}

// Packs the weights into the node's bytes; float32 output gets the op's activation.
NodeActivation int8_weights(Node& node, const OpArgs& args, Int8Weights* w, int64_t segs, int64_t seg_len, int64_t F,
                            const std::vector<int64_t>& out_shape) {
  const int64_t K = segs * seg_len;
  if (K > kMaxInt8K)
    args.fail("has a reduction of " + std::to_string(K) + " values per output, more than the " +
              std::to_string(kMaxInt8K) + " whose int32 sums cannot overflow. Keep this layer in float32.");
  check_finite_kernel(args, K * F);
  const Int8Setup q = int8_setup(args);
  unsigned char* bytes = node.bytes.reset(static_cast<size_t>(int8_packed_bytes(segs, seg_len, F)));
  int8_pack(bytes, w, args.params[0], args.params[1], segs, seg_len, F, q.in_scale, q.in_zp, q.u8_out, q.out_scale,
            q.out_zp, q.relu);
  node.out_type = q.u8_out ? ElemType::uint8 : ElemType::float32;
  NodeActivation act;
  if (!q.u8_out) {
    act = parse_activation(args, out_shape);
    node.aux_size = act.aux_floats(size_of(out_shape));
  }
  return act;
}

// A float32 output's activation: the kernel-fused ones (relu, sigmoid, tanh) with the shared
// helper, then any other (softmax, ...) by its registered forward.
void finish_float(const NodeActivation& act, float* out, float* aux, int64_t n) {
  apply_activation(out, n, act.kernel());
  act.forward(out, aux, n);
}

struct Conv2dInt8Geom {
  ConvShape s;
  Int8Weights w;
  NodeActivation act;
  uint8_t pad;
};

std::vector<int64_t> conv2d_int8_parse(Node& node, const OpArgs& args) {
  expect_input_rank(args, 3, "(H, W, C)");
  const std::vector<int64_t>& in = args.in_shapes[0];
  const std::vector<int64_t> strides = window_pair(args, "strides");
  const std::vector<int64_t>& k = args.param_shapes[0];
  if (k.size() != 4 || k[2] != in[2] || k[0] < 1 || k[1] < 1 || k[3] < 1)
    args.fail("has a kernel of shape " + shape_str(k) + " that does not fit its input of shape " + dims_str(in) + ".");
  expect_param_shape(args, 1, {k[3]});
  Conv2dInt8Geom& g = node.geom<Conv2dInt8Geom>();
  ConvShape& c = g.s;
  c.N = 1; c.H = in[0]; c.W = in[1]; c.C = in[2]; c.F = k[3]; c.KH = k[0]; c.KW = k[1];
  c.SH = strides[0]; c.SW = strides[1];
  const bool same = padding_is_same(args);
  int64_t after;
  if (!window_output_size(c.H, c.KH, c.SH, same, &c.OH, &c.PT, &after) ||
      !window_output_size(c.W, c.KW, c.SW, same, &c.OW, &c.PL, &after))
    args.fail("computed output size would be zero or negative for input shape " + dims_str(in) + ".");
  const std::vector<int64_t> out{c.OH, c.OW, c.F};
  g.act = int8_weights(node, args, &g.w, c.KH, c.KW * c.C, c.F, out);
  g.pad = static_cast<uint8_t>(args.attrs.i("in_zero_point"));
  return out;
}

const float* conv2d_int8_op_forward(const Node& node, const float* const* in, float* out, float* aux, int64_t nb) {
  const Conv2dInt8Geom& g = node.geom<Conv2dInt8Geom>();
  ConvShape s = g.s;
  s.N = nb;
  conv2d_int8_forward(out, reinterpret_cast<const uint8_t*>(in[0]), g.w, node.bytes.data(), s, g.pad);
  if (!g.w.u8_out) finish_float(g.act, out, aux, nb * node.out_size);
  return out;
}

struct DenseInt8Geom {
  Int8Weights w;
  NodeActivation act;
  int64_t rows;  // rows per sample
};

std::vector<int64_t> dense_int8_parse(Node& node, const OpArgs& args) {
  const std::vector<int64_t>& in = args.in_shapes[0];
  const std::vector<int64_t>& k = args.param_shapes[0];
  if (in.empty() || k.size() != 2 || k[0] != in.back() || k[1] < 1)
    args.fail("has a kernel of shape " + shape_str(k) + " that does not fit its input of shape " + dims_str(in) + ".");
  expect_param_shape(args, 1, {k[1]});
  DenseInt8Geom& g = node.geom<DenseInt8Geom>();
  g.rows = size_of(in) / k[0];
  std::vector<int64_t> out = in;
  out.back() = k[1];
  g.act = int8_weights(node, args, &g.w, 1, k[0], k[1], out);
  return out;
}

const float* dense_int8_op_forward(const Node& node, const float* const* in, float* out, float* aux, int64_t nb) {
  const DenseInt8Geom& g = node.geom<DenseInt8Geom>();
  dense_int8_forward(out, reinterpret_cast<const uint8_t*>(in[0]), g.w, node.bytes.data(), nb * g.rows);
  if (!g.w.u8_out) finish_float(g.act, out, aux, nb * node.out_size);
  return out;
}

const std::vector<AttrDef> kQuantAttrs = {{"scale", AttrType::Float, 0.0, true},
                                          {"zero_point", AttrType::Int, int64_t{0}}};

std::vector<AttrDef> int8_attrs(bool window) {
  std::vector<AttrDef> attrs;
  if (window) {
    attrs.push_back({"strides", AttrType::Ints, std::vector<int64_t>{1, 1}});
    attrs.push_back({"padding", AttrType::Str, std::string("valid")});
  }
  attrs.push_back({"activation", AttrType::Str, std::string("linear")});
  attrs.push_back({"in_scale", AttrType::Float, 0.0, true});
  attrs.push_back({"in_zero_point", AttrType::Int, int64_t{0}});
  attrs.push_back({"out_scale", AttrType::Float, 1.0});
  attrs.push_back({"out_zero_point", AttrType::Int, int64_t{0}});
  attrs.push_back({"out_dtype", AttrType::Str, std::string("uint8")});
  return attrs;
}

const OpDef quantize_op = {"quantize", "float32 -> uint8, q = clamp(rint(x / scale + zero_point), 0, 255): any shape",
                           1, {}, kQuantAttrs, quantize_parse, quantize_op_forward, nullptr};
const OpDef dequantize_op = {"dequantize", "uint8 -> float32, x = scale * (q - zero_point): any shape", 1, {},
                             kQuantAttrs, dequantize_parse, dequantize_op_forward, nullptr,
                             nullptr, Reads::uint8};
const OpDef conv2d_int8_op = {
    "conv2d_int8",
    "2-D convolution on uint8, int8 weights per output channel: (H, W, C) -> (OH, OW, F) uint8 or float32", 1,
    {{"kernel"}, {"bias", true}}, int8_attrs(true), conv2d_int8_parse, conv2d_int8_op_forward, nullptr,
    nullptr, Reads::uint8};
const OpDef dense_int8_op = {
    "dense_int8", "x @ kernel + bias on uint8, int8 weights per output channel: (..., IN) -> (..., OUT)", 1,
    {{"kernel"}, {"bias", true}}, int8_attrs(false), dense_int8_parse, dense_int8_op_forward, nullptr,
    nullptr, Reads::uint8};

PYCNN_REGISTER_OP(quantize_op);
PYCNN_REGISTER_OP(dequantize_op);
PYCNN_REGISTER_OP(conv2d_int8_op);
PYCNN_REGISTER_OP(dense_int8_op);

}  // namespace
}  // namespace pycnn
