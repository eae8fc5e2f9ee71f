// int8 inference kernels (quantized.cpp): float32 <-> uint8 quantization and the int8
// convolution and dense GEMM with requantization fused into its epilogue. Inference only:
// nothing here has a backward.
//
// Numbers. An activation tensor is uint8 with a per-tensor scale and zero point,
// real = scale * (q - zero_point), q in [0, 255]. A weight is int8, symmetric per output
// channel f: w ~ sw[f] * wq, wq in [-127, 127], sw[f] = max_k |w[k, f]| / 127 (1 when the
// channel is all zero), wq = rint(w / sw[f]) in double. A conv2d / dense output is
//
//   acc[m, f] = sum_k aq[m, k] * wq[k, f] + comp[f],   comp[f] = -in_zero_point * sum_k wq[k, f]
//
// exactly, in int32 (K is bounded so that it cannot overflow: kMaxInt8K), then, in float32
// with every product and sum rounded on its own (no fused multiply-add), so that NumPy
// reproduces it bit for bit:
//
//   uint8 output:   v = float(acc) * mul[f] + add[f],  mul = in_scale * sw / out_scale,
//                   add = bias / out_scale + out_zero_point (both computed in double, then
//                   rounded to float32), v = min(max(v, lo), 255) with lo = out_zero_point
//                   for relu (0 otherwise), q = rint(v) (half to even)
//   float32 output: y = float(acc) * mul[f] + add[f],  mul = in_scale * sw, add = bias,
//                   then the op's activation (any registered one)
//
// Layouts. Activations NHWC: a row of A is one output pixel's receptive field, KH segments
// of KW * C bytes (a kernel row's window in one input row), or one dense input row (one
// segment). Kernels as the float ops, (KH, KW, C, F) and (IN, OUT), quantized and packed
// once by the op's parse: each segment padded with zero weights to a multiple of 4 (Lp =
// 4 seg_k4), output channels padded to Fp (a multiple of 16) in panels of up to kInt8Panel
// channels, each panel [segs * seg_k4][width][4] (4 consecutive k of one channel side by
// side: what vpdpbusd multiplies with 4 bytes of a row of A). A convolution reads its rows
// of A straight from a zero-point-padded copy of its input (the windows of one output row
// are SW * C bytes apart, its kernel rows a padded input row apart) when the GEMM's tiles
// fit its output rows, else from im2col rows.
#pragma once
#include <cstdint>

#include "conv2d.h"
#include "runtime.h"

namespace pycnn {

// The largest reduction length K whose int32 sums cannot overflow: |acc| <= 2 K 255 127.
constexpr int64_t kMaxInt8K = 33000;
constexpr int64_t kInt8Panel = 64;  // output channels per packed panel

// out (n) = clamp(rint(inp * inv_scale + zero_point), 0, 255), the product and the sum
// rounded separately in float32; NaN -> 0, +inf -> 255, -inf -> 0.
void quantize_forward(uint8_t* out, const float* inp, int64_t n, float inv_scale, float zero_point);
// out (n) = float(inp - zero_point) * scale.
void dequantize_forward(float* out, const uint8_t* inp, int64_t n, float scale, int32_t zero_point);

// A node's quantized, packed weights and per-channel constants, as offsets into its bytes.
struct Int8Weights {
  int64_t K;          // reduction length (KH * KW * C, or IN)
  int64_t segs;       // segments of the reduction (KH, or 1)
  int64_t seg_k4;     // groups of 4 bytes per segment (KW * C, or IN, rounded up to 4, / 4)
  int64_t F, Fp;      // output channels; padded to a multiple of 16
  int64_t w_off, comp_off, mul_off, add_off;  // packed int8 weights, int32 comp, float mul, float add
  float lo, hi;       // clamp of the requantized value (uint8 output)
  bool u8_out;        // uint8 output (else float32)
};

// Where the rows of A are, for the GEMM: row m = (item i, group g, j) with
// m = (i * groups + g) * per_group + j starts at A + i * istride + g * gstride + j * lda, and
// its segment s a further s * seg_stride bytes on. A convolution: items the images, groups
// the output rows, j the output column; a matrix: one item, one group of M rows.
struct Int8Rows {
  const uint8_t* A;
  int64_t lda, per_group, gstride, groups, istride, items, seg_stride;
};

// Bytes int8_pack writes for a kernel of `segs` segments of `seg_len` rows, F columns.
int64_t int8_packed_bytes(int64_t segs, int64_t seg_len, int64_t F);
// Quantizes kernel (segs * seg_len, F) per output channel and packs it with the constants
// above into `bytes` (int8_packed_bytes of them, zeroed); bias (F) may be null. `relu`: the
// uint8 output is clamped at out_zero_point. Fills *w.
void int8_pack(unsigned char* bytes, Int8Weights* w, const float* kernel, const float* bias, int64_t segs,
               int64_t seg_len, int64_t F, double in_scale, int32_t in_zero_point, bool u8_out, double out_scale,
               int32_t out_zero_point, bool relu);

// out (N, OH, OW, F) uint8 or float32 (w.u8_out) from inp (N, H, W, C) uint8; padding reads
// as `pad` (the input's zero point: a real 0).
void conv2d_int8_forward(void* out, const uint8_t* inp, const Int8Weights& w, const unsigned char* bytes,
                         const ConvShape& s, uint8_t pad);
// out (N, F) uint8 or float32 from inp (N, K) uint8.
void dense_int8_forward(void* out, const uint8_t* inp, const Int8Weights& w, const unsigned char* bytes, int64_t N);

// Which int8 kernels run now: "avx512_vnni" (AVX-512 VNNI: vpdpbusd), "avx2" (vpmaddwd on
// bytes widened to int16: no saturation) or "baseline", from active_isa() and the CPU.
const char* int8_kernel_name();

}  // namespace pycnn
