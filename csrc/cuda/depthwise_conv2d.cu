// The device half of depthwise_conv2d and separable_conv2d (depthwise_conv2d.cpp), NHWC over
// the whole batch, with the node's DepthwiseGeom (depthwise_conv2d.h): strides, dilation,
// 'same' / 'valid' padding, depth multiplier M, optional bias, any activation the device has.
//
//   out[n, oh, ow, c*M + m] = act(bias[c*M + m] + sum_{kh, kw}
//       inp[n, oh*SH + kh*DH - PT, ow*SW + kw*DW - PL, c] * weight[kh, kw, c, m])
//
// The weight viewed as (KH, KW, C*M) is indexed like the output's channels. Every kernel is a
// gather over what it writes:
//   forward   one thread per output element (the bias first, then the taps in (kh, kw) order,
//             as the CPU row kernel);
//   dinp      one thread per input element, summing the output pixels whose taps read it;
//   dweight   two levels: one thread per (block of output rows (n, oh), weight element) sums its
//             block into the workspace, then one thread per weight element sums the blocks;
//   dbias     the column sums of the pre-activation gradient (device_common.h).
// separable_conv2d runs the depthwise conv (no bias, no activation) into the node's aux cells,
// then the pointwise 1x1 conv as one GEMM (N*OH*OW, C*M) @ (C*M, F) with bias and activation
// as the epilogue; its backward is two GEMMs and the depthwise backward from dmid.
#include <cstdint>

#include "cuda/device_common.h"
#include "cuda/device_op.h"
#include "depthwise_conv2d.h"

PYCNN_DEVICE_NAMESPACE_BEGIN
namespace {

// Output rows (n, oh) per dweight block: about kBlockWork multiply-adds per thread.
constexpr int64_t kBlockWork = 512;
int64_t rows_per_block(const ConvShape& s) { return s.OW >= kBlockWork ? 1 : kBlockWork / s.OW; }
int64_t dweight_blocks(const ConvShape& s, int64_t N) {
  const int64_t rows = N * s.OH, per = rows_per_block(s);
  return (rows + per - 1) / per;
}
int64_t dweight_partial_floats(const ConvShape& s, int64_t N) { return dweight_blocks(s, N) * s.KH * s.KW * s.F; }

// out (N, OH, OW, C*M) = bias + taps (no activation); bias may be null.
void depthwise_forward_kernel(float* out, const float* inp, const float* weight, const float* bias,
                              const DepthwiseShape& d, int64_t N) {
  const ConvShape s = d.s;
  const int64_t M = d.M, DH = d.DH, DW = d.DW, CM = s.F;
  for_each(N * s.OH * s.OW * CM, "depthwise_conv2d_forward", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t cm = i % CM, ow = (i / CM) % s.OW, oh = (i / (CM * s.OW)) % s.OH, n = i / (CM * s.OW * s.OH);
    const int64_t c = cm / M;
    const float* img = inp + n * s.H * s.W * s.C;
    float acc = bias ? bias[cm] : 0.f;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.SH + kh * DH - s.PT;
      if (ih < 0 || ih >= s.H) continue;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t iw = ow * s.SW + kw * DW - s.PL;
        if (iw < 0 || iw >= s.W) continue;
        acc += img[(ih * s.W + iw) * s.C + c] * weight[(kh * s.KW + kw) * CM + cm];
      }
    }
    out[i] = acc;
  });
}

// From "out[n, oh, ow, c*M+m] += inp[n, ih, iw, c] * w[kh, kw, c*M+m]" with ih = oh*SH + kh*DH - PT,
// iw = ow*SW + kw*DW - PL:
//   dinp[n, ih, iw, c] = sum_{kh, kw} sum_m g[n, oh, ow, c*M+m] * w[kh, kw, c*M+m] over the (oh, ow) in range;
//   dweight[kh, kw, cm] = sum_{n, oh, ow} g[n, oh, ow, cm] * inp[n, ih, iw, cm / M] over the (ih, iw) in range.
// g (N, OH, OW, C*M) is the pre-activation gradient; dinp may be null; partial holds
// dweight_partial_floats(s, N).
void depthwise_backward_kernels(float* dinp, float* dweight, const float* g, const float* inp, const float* weight,
                                const DepthwiseShape& d, int64_t N, float* partial) {
  const ConvShape s = d.s;
  const int64_t M = d.M, DH = d.DH, DW = d.DW, CM = s.F, taps_cm = s.KH * s.KW * CM;
  const int64_t rows = N * s.OH, per = rows_per_block(s), blocks = dweight_blocks(s, N);
  for_each(blocks * taps_cm, "depthwise_conv2d_backward (dweight blocks)", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t t = i % taps_cm, b = i / taps_cm;
    const int64_t cm = t % CM, kw = (t / CM) % s.KW, kh = t / (CM * s.KW), c = cm / M;
    const int64_t end = (b + 1) * per < rows ? (b + 1) * per : rows;
    float acc = 0.f;
    for (int64_t r = b * per; r < end; ++r) {
      const int64_t n = r / s.OH, oh = r % s.OH, ih = oh * s.SH + kh * DH - s.PT;
      if (ih < 0 || ih >= s.H) continue;
      const float* grow = g + r * s.OW * CM;
      const float* xrow = inp + (n * s.H + ih) * s.W * s.C;
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t iw = ow * s.SW + kw * DW - s.PL;
        if (iw < 0 || iw >= s.W) continue;
        acc += grow[ow * CM + cm] * xrow[iw * s.C + c];
      }
    }
    partial[i] = acc;
  });
  for_each(taps_cm, "depthwise_conv2d_backward (dweight)", PYCNN_DEVICE_LAMBDA(int64_t t) {
    float acc = 0.f;
    for (int64_t b = 0; b < blocks; ++b) acc += partial[b * taps_cm + t];
    dweight[t] = acc;
  });
  if (!dinp) return;
  for_each(N * s.H * s.W * s.C, "depthwise_conv2d_backward (dinp)", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % s.C, iw = (i / s.C) % s.W, ih = (i / (s.C * s.W)) % s.H, n = i / (s.C * s.W * s.H);
    float acc = 0.f;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t th = ih + s.PT - kh * DH;  // = oh * SH
      if (th < 0 || th % s.SH != 0 || th / s.SH >= s.OH) continue;
      const int64_t oh = th / s.SH;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t tw = iw + s.PL - kw * DW;  // = ow * SW
        if (tw < 0 || tw % s.SW != 0 || tw / s.SW >= s.OW) continue;
        const int64_t ow = tw / s.SW;
        const float* gp = g + ((n * s.OH + oh) * s.OW + ow) * CM + c * M;
        const float* wp = weight + (kh * s.KW + kw) * CM + c * M;
        float sum = 0.f;
        for (int64_t m = 0; m < M; ++m) sum += gp[m] * wp[m];
        acc += sum;
      }
    }
    dinp[i] = acc;
  });
}

const char* depthwise_unsupported(const Node& node) {
  return device_act_unsupported(node.geom<DepthwiseGeom>().act);
}

// ---------------------------------------------------------------------------- depthwise_conv2d

// Workspace (floats): the activation gradient (N * out_size, 0 for linear), the dweight blocks,
// then the dbias column sums' scratch.
int64_t depthwise_workspace(const Node& node, int64_t N) {
  const DepthwiseGeom& g = node.geom<DepthwiseGeom>();
  const int64_t pixels = N * g.d.s.OH * g.d.s.OW;
  return activation_gradient_floats(g.act, N * node.out_size) + dweight_partial_floats(g.d.s, N) +
         column_sums_floats(pixels, g.d.s.F);
}

void depthwise_forward(const DeviceArgs& a) {
  const DepthwiseGeom& g = a.node->geom<DepthwiseGeom>();
  depthwise_forward_kernel(a.out, a.in[0], a.param[0], a.param[1], g.d, a.N);
  activation_epilogue(g.act, a.out, nullptr, a.aux, a.N * g.d.s.OH * g.d.s.OW, g.d.s.F);
}

void depthwise_backward(const DeviceArgs& a, float* const* dinp, float* const* dparam, const float* dout) {
  const DepthwiseGeom& g = a.node->geom<DepthwiseGeom>();
  const int64_t n_out = a.N * a.node->out_size, pixels = a.N * g.d.s.OH * g.d.s.OW;
  float* dz_buf = a.work;
  float* partial = dz_buf + activation_gradient_floats(g.act, n_out);
  float* sums_work = partial + dweight_partial_floats(g.d.s, a.N);
  const float* dz = activation_gradient(g.act, dz_buf, dout, a.out, a.aux, n_out);
  depthwise_backward_kernels(dinp[0], dparam[0], dz, a.in[0], a.param[0], g.d, a.N, partial);
  if (a.param[1]) column_sums(dparam[1], dz, pixels, g.d.s.F, sums_work);
}

// ---------------------------------------------------------------------------- separable_conv2d

// aux: the depthwise output mid (N, OH, OW, C*M), then the activation's kept input.
int64_t mid_floats(const DepthwiseGeom& g, int64_t N) { return N * g.d.s.OH * g.d.s.OW * g.d.s.F; }

// Workspace (floats): the activation gradient, dmid (N * mid), the dweight blocks, the dbias
// column sums' scratch.
int64_t separable_workspace(const Node& node, int64_t N) {
  const DepthwiseGeom& g = node.geom<DepthwiseGeom>();
  const int64_t pixels = N * g.d.s.OH * g.d.s.OW;
  return activation_gradient_floats(g.act, N * node.out_size) + mid_floats(g, N) +
         dweight_partial_floats(g.d.s, N) + column_sums_floats(pixels, g.F);
}

void separable_forward(const DeviceArgs& a) {
  const DepthwiseGeom& g = a.node->geom<DepthwiseGeom>();
  const int64_t pixels = a.N * g.d.s.OH * g.d.s.OW, CM = g.d.s.F;
  float* mid = a.aux;
  depthwise_forward_kernel(mid, a.in[0], a.param[0], nullptr, g.d, a.N);
  // out (pixels, F) = mid (pixels, CM) @ pointwise (CM, F)
  gemm(false, false, pixels, g.F, CM, 1.f, mid, CM, a.param[1], g.F, 0.f, a.out, g.F);
  activation_epilogue(g.act, a.out, a.param[2], a.aux + mid_floats(g, a.N), pixels, g.F);
}

// "out = act(mid @ pw + bias)": dz = act'(...) dout; dpw = mid^T @ dz; dbias = column sums of
// dz; dmid = dz @ pw^T; then the depthwise backward from dmid (no bias there).
void separable_backward(const DeviceArgs& a, float* const* dinp, float* const* dparam, const float* dout) {
  const DepthwiseGeom& g = a.node->geom<DepthwiseGeom>();
  const int64_t n_out = a.N * a.node->out_size, pixels = a.N * g.d.s.OH * g.d.s.OW, CM = g.d.s.F;
  const float* mid = a.aux;
  float* dz_buf = a.work;
  float* dmid = dz_buf + activation_gradient_floats(g.act, n_out);
  float* partial = dmid + mid_floats(g, a.N);
  float* sums_work = partial + dweight_partial_floats(g.d.s, a.N);
  const float* dz = activation_gradient(g.act, dz_buf, dout, a.out, a.aux + mid_floats(g, a.N), n_out);
  gemm(true, false, CM, g.F, pixels, 1.f, mid, CM, dz, g.F, 0.f, dparam[1], g.F);
  if (a.param[2]) column_sums(dparam[2], dz, pixels, g.F, sums_work);
  gemm(false, true, pixels, CM, g.F, 1.f, dz, g.F, a.param[1], g.F, 0.f, dmid, CM);
  depthwise_backward_kernels(dinp[0], dparam[0], dmid, a.in[0], a.param[0], g.d, a.N, partial);
}

const DeviceOpDef depthwise_conv2d_device = {"depthwise_conv2d", depthwise_unsupported, depthwise_workspace,
                                             depthwise_forward, depthwise_backward};
const DeviceOpDef separable_conv2d_device = {"separable_conv2d", depthwise_unsupported, separable_workspace,
                                             separable_forward, separable_backward};

PYCNN_REGISTER_DEVICE_OP(depthwise_conv2d_device);
PYCNN_REGISTER_DEVICE_OP(separable_conv2d_device);

}  // namespace
PYCNN_DEVICE_NAMESPACE_END
