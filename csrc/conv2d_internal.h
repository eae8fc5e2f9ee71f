// Internal to the conv2d kernels (not part of the kernel API; conv2d.h is): what the dispatch
// in conv2d.cpp calls in the three algorithm files, and the helpers more than one of them uses.
//
//   conv2d.cpp          conv2d_forward / conv2d_backward: pick an algorithm per layer
//   conv2d_planar.cpp   direct convolution on planar copies (stride 1, C <= 4)
//   conv2d_overf.cpp    direct convolution on NHWC, vectorised over the output channels F
//   conv2d_im2col.cpp   im2col + GEMM, everything else (and col2im for conv2d_overf.cpp)
//
// Every entry point below has the arguments, shapes and contract of conv2d_forward /
// conv2d_backward in conv2d.h (outputs written, not accumulated; bias, dbias and dinp may be
// null), plus the plan the dispatch already made.
#pragma once
#include <cstdint>
#include <cstring>

#include "conv2d.h"
#include "conv2d_direct.h"
#include "conv2d_partials.h"
#include "runtime.h"

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

namespace pycnn {

// ---- shared helpers --------------------------------------------------------------------

// How samples are cut into groups for the im2col and over-F paths (plan_groups in conv2d.cpp).
struct Grouping {
  int64_t nb;       // samples per group
  int64_t groups;
  bool outer_parallel;  // threads take whole groups (else the GEMMs run in parallel)
  int threads;
};

// The gradient w.r.t. the pre-activation for `count` values starting at `offset`:
// dout itself when the activation is linear, else dout * act'(out) in thread t's scratch.
inline const float* preactivation_grad(const float* dout, const float* out, int64_t offset, int64_t count,
                                       Activation act, int t) {
  if (act == Activation::linear) return dout + offset;
  float* g = scratch(slot_base() + t, static_cast<std::size_t>(count), kScratchGrad);
  std::memcpy(g, dout + offset, sizeof(float) * count);
  activation_grad_inplace(g, out + offset, count, act);
  return g;
}

// dinp (nb, H, W, C) = sum of dcol rows (nb * OH * OW, KH * KW * C) scattered back to their
// windows: the adjoint of im2col (conv2d_im2col.cpp). Zeroes dinp first.
void col2im(float* dinp, const float* dcol, int64_t nb, const ConvShape& s);

// ---- im2col + GEMM (conv2d_im2col.cpp) ---------------------------------------------------

void conv2d_forward_im2col(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                           Activation act, const Grouping& g);
void conv2d_backward_im2col(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const float* out, const ConvShape& s, Activation act,
                            const Grouping& g);

// ---- direct planar, stride 1 and few input channels (conv2d_planar.cpp) ------------------

void conv2d_forward_planar(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                           Activation act);
void conv2d_backward_planar(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const float* out, const ConvShape& s, Activation act);

// ---- direct over F (conv2d_overf.cpp) ----------------------------------------------------

// F must be a multiple of k.vec; use_overf in conv2d.cpp decides when this path runs.
void conv2d_forward_overf(float* out, const float* inp, const float* weight, const float* bias, const ConvShape& s,
                          Activation act, const Grouping& g, const OverFKernels& k);
void conv2d_backward_overf(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                           const float* weight, const float* out, const ConvShape& s, Activation act,
                           const Grouping& g, const OverFKernels& k);

}  // namespace pycnn
