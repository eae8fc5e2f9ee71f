// Run-time selected direct convolution kernels: planar stride-1 kernels vectorised along the
// output width (conv2d_direct_impl.h) and NHWC kernels vectorised over the output channels
// (conv2d_vf_impl.h).
#pragma once
#include <cstdint>

#include "runtime.h"

namespace pycnn {

struct DirectKernels {
  int64_t block;  // output width is processed in multiples of this (V * R)
  int64_t vec;    // floats per vector
  void (*forward)(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t src_rows, const float* wt,
                  int64_t CS, int64_t CD, int64_t KH, int64_t KW, int64_t OH, int64_t OWp);
  void (*dweight)(float* dw, const float* x, int64_t ldx, int64_t x_rows, const float* g, int64_t ldg,
                  int64_t g_rows, int64_t C, int64_t F, int64_t KH, int64_t KW, int64_t OH, int64_t OWp);
};

DirectKernels direct_kernels(Isa isa);

// Geometry of one group of N samples for the over-F kernels (layouts in conv2d_vf_impl.h):
// x is (N, Hp, Wp, C), zero-padded so that every window of the (OH, OW) output is inside;
// only rows [row_lo, row_hi) and columns [col_lo, col_hi) of each sample may be nonzero.
struct VfGeom {
  int64_t N, Hp, Wp, C, F, KH, KW, SH, SW, OH, OW;
  int64_t row_lo, row_hi, col_lo, col_hi;
};

struct OverFKernels {
  int64_t vec;     // floats per vector; F must be a multiple of it
  int64_t fblock;  // channel block width of the channel-blocked operands (conv2d_vf_impl.h)
  // out (N, OH, OW, F) = bias + x (*) w; wb is w (KH, KW, C, F) channel-blocked; bias (F) may be null.
  void (*forward)(float* out, const float* x, const float* wb, const float* bias, const VfGeom& s);
  // dw (KH, KW, C, F) = sum over the group of x windows (x) g, += if accumulate; gb is
  // g (N, OH, OW, F) channel-blocked.
  void (*dweight)(float* dw, const float* x, const float* gb, const VfGeom& s, bool accumulate);
  // out (N, OH, OW, F) = x (*) w over pixel pairs, for F an odd multiple of vec / 2 with
  // 2F / vec <= 5 (pairs_fit); wp is w in pair layout (conv2d_vf_impl.h). No bias.
  void (*forward_pairs)(float* out, const float* x, const float* wp, const VfGeom& s);
  bool pairs_fit(int64_t F) const { return (2 * F) % vec == 0 && (F % vec) != 0 && 2 * F / vec <= 5; }
};

OverFKernels overf_kernels(Isa isa);

}  // namespace pycnn
