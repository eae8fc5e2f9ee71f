// Instantiates the direct-convolution kernels of conv2d_direct_impl.h and conv2d_vf_impl.h
// once per instruction set. Each copy is compiled under its own `#pragma GCC target`, so one
// portable binary carries AVX-512, AVX2+FMA and baseline code; conv2d_planar.cpp and
// conv2d.cpp / conv2d_overf.cpp pick one at run time. Both families stay in this one file,
// and the code that drives them stays out of it, on purpose: GCC 12's inlining of the over-F
// tiles depends on what else the file holds (compiled beside their driver, the AVX2 and
// AVX-512 over-F forward kernels came out different), and this is the object code that was
// measured.
#include <cstdint>

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>  // the AVX-512 pixel-pair tile (conv2d_vf_impl.h)
#endif

#include "conv2d_direct.h"

#define PYCNN_DIRECT_NS portable
#define PYCNN_DIRECT_VEC 16
#include "conv2d_direct_impl.h"
#include "conv2d_vf_impl.h"
#undef PYCNN_DIRECT_NS
#undef PYCNN_DIRECT_VEC

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define PYCNN_DIRECT_NS avx2
#define PYCNN_DIRECT_VEC 32
#include "conv2d_direct_impl.h"
#include "conv2d_vf_impl.h"
#undef PYCNN_DIRECT_NS
#undef PYCNN_DIRECT_VEC
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f")
#define PYCNN_DIRECT_NS avx512
#define PYCNN_DIRECT_VEC 64
#include "conv2d_direct_impl.h"
#include "conv2d_vf_impl.h"
#undef PYCNN_DIRECT_NS
#undef PYCNN_DIRECT_VEC
#pragma GCC pop_options
#define PYCNN_DIRECT_HAVE_X86 1
#endif

namespace pycnn {

DirectKernels direct_kernels(Isa isa) {
#ifdef PYCNN_DIRECT_HAVE_X86
  if (isa == Isa::avx512) return {avx512::V * avx512::R, avx512::V, avx512::forward, avx512::dweight};
  if (isa == Isa::avx2) return {avx2::V * avx2::R, avx2::V, avx2::forward, avx2::dweight};
#endif
  return {portable::V * portable::R, portable::V, portable::forward, portable::dweight};
}

OverFKernels overf_kernels(Isa isa) {
#define PYCNN_OVERF(ns) \
  {ns::overf::V, ns::overf::V * ns::overf::kMaxFV, ns::overf::forward, ns::overf::dweight, ns::overf::forward_pairs}
#ifdef PYCNN_DIRECT_HAVE_X86
  if (isa == Isa::avx512) return PYCNN_OVERF(avx512);
  if (isa == Isa::avx2) return PYCNN_OVERF(avx2);
#endif
  return PYCNN_OVERF(portable);
#undef PYCNN_OVERF
}

}  // namespace pycnn
