// Run-time selected direct stride-1 convolution kernels (see conv2d_direct_impl.h).
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

}  // namespace pycnn
