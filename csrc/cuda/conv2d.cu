// Device half of the conv2d op (conv2d.cpp): every attribute the CPU op has (strides, 'same'
// / 'valid' padding, dilation, groups, any activation), lowered onto the device GEMM:
//
//   im2col  col (rows, KH * KW * Cg) per group g, rows = samples x OH x OW, column
//           (kh * KW + kw) * Cg + c holding inp[n, oh*SH + kh*DH - PT, ow*SW + kw*DW - PL, g*Cg + c]
//           (0 outside the image)
//   forward out[:, g*Fg : (g+1)*Fg] = col_g @ kernel_g, kernel_g the (KH*KW*Cg, F) matrix's
//           columns of group g (ldb = F); then bias and activation (device_common.h)
//   backward dz = dout * act'; dbias = column sums of dz; dkernel_g = col_g^T @ dz_g;
//           dcol_g = dz_g @ kernel_g^T and dinp = col2im(dcol_g), a gather: each input element
//           sums the columns that read it, so no two threads write one address
//
// The batch runs in chunks of samples whose columns take at most kColFloats floats (a large
// batch of a wide layer would need gigabytes of columns at once); the kernel gradient adds
// the chunks' products (beta = 1 after the first). A 1x1 convolution with stride 1 and one
// group reads its input as the columns directly.
#include <cstdlib>

#include "cuda/device_common.h"
#include "op_geometry.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

namespace {

// 128 MB of columns per chunk: the heavy model's third convolution at batch 128 (411 MB of
// columns) in 4 chunks, whose GEMMs keep ~10,000 rows each.
constexpr int64_t kColFloats = int64_t(32) << 20;

// The chunk's floats: kColFloats, or PYCNN_CUDA_COL_FLOATS (tests: small chunks on small layers).
int64_t col_floats_per_chunk() {
  const char* env = std::getenv("PYCNN_CUDA_COL_FLOATS");
  const long long v = env ? std::atoll(env) : 0;
  return v > 0 ? static_cast<int64_t>(v) : kColFloats;
}

struct ConvPlan {
  ConvShape s;
  ConvDilation d;
  int64_t P, KK, Cg, Fg, cols;  // output pixels, kernel taps, channels and filters per group, col width
  int64_t chunk;                // samples per chunk
  bool direct;                  // 1x1, stride 1, one group: the input is the columns
  // workspace offsets (floats)
  int64_t col, dcol, dz, sums, total;
};

ConvPlan plan_of(const Node& node, int64_t N) {
  const Conv2dGeom& g = node.geom<Conv2dGeom>();
  ConvPlan p;
  p.s = g.s;
  p.s.N = N;
  p.d = g.d;
  p.P = p.s.OH * p.s.OW;
  p.KK = p.s.KH * p.s.KW;
  p.Cg = p.s.C / p.d.G;
  p.Fg = p.s.F / p.d.G;
  p.cols = p.KK * p.Cg;
  p.direct = p.KK == 1 && p.s.SH == 1 && p.s.SW == 1 && p.d.G == 1 && p.s.PT == 0 && p.s.PL == 0 &&
             p.s.OH == p.s.H && p.s.OW == p.s.W;
  const int64_t per_sample = p.P * p.cols;
  p.chunk = col_floats_per_chunk() / (per_sample > 0 ? per_sample : 1);
  if (p.chunk < 1) p.chunk = 1;
  if (p.chunk > N) p.chunk = N > 0 ? N : 1;
  const int64_t col_floats = p.direct ? 0 : p.chunk * per_sample;
  p.col = 0;
  p.dcol = p.col + col_floats;
  p.dz = p.dcol + (p.direct ? 0 : p.chunk * per_sample);
  p.sums = p.dz + activation_gradient_floats(g.act, N * p.P * p.s.F);
  p.total = p.sums + column_sums_floats(N * p.P, p.s.F);
  return p;
}

// col (nb * P, cols) of samples [n0, n0 + nb), group g.
void im2col(float* col, const float* inp, const ConvPlan& p, int64_t n0, int64_t nb, int64_t g) {
  const ConvShape s = p.s;
  const ConvDilation d = p.d;
  const int64_t P = p.P, cols = p.cols, Cg = p.Cg;
  const float* x = inp + n0 * s.H * s.W * s.C;
  for_each(nb * P * cols, "conv2d im2col", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t r = i / cols, k = i % cols;
    const int64_t c = k % Cg, kw = (k / Cg) % s.KW, kh = k / (Cg * s.KW);
    const int64_t n = r / P, ow = r % s.OW, oh = (r / s.OW) % s.OH;
    const int64_t ih = oh * s.SH + kh * d.DH - s.PT, iw = ow * s.SW + kw * d.DW - s.PL;
    col[i] = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W ? x[((n * s.H + ih) * s.W + iw) * s.C + g * Cg + c] : 0.f;
  });
}

// dinp's channels of group g for samples [n0, n0 + nb): the sum of the dcol entries that
// im2col filled from each element ("col[r, k] = inp[...]" read backwards).
void col2im(float* dinp, const float* dcol, const ConvPlan& p, int64_t n0, int64_t nb, int64_t g) {
  const ConvShape s = p.s;
  const ConvDilation d = p.d;
  const int64_t P = p.P, cols = p.cols, Cg = p.Cg;
  float* dx = dinp + n0 * s.H * s.W * s.C;
  for_each(nb * s.H * s.W * Cg, "conv2d col2im", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % Cg, iw = (i / Cg) % s.W, ih = (i / (Cg * s.W)) % s.H, n = i / (Cg * s.W * s.H);
    float acc = 0.f;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t th = ih + s.PT - kh * d.DH;  // = oh * SH
      if (th < 0 || th % s.SH != 0 || th / s.SH >= s.OH) continue;
      const int64_t oh = th / s.SH;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t tw = iw + s.PL - kw * d.DW;
        if (tw < 0 || tw % s.SW != 0 || tw / s.SW >= s.OW) continue;
        const int64_t ow = tw / s.SW;
        acc += dcol[(n * P + oh * s.OW + ow) * cols + (kh * s.KW + kw) * Cg + c];
      }
    }
    dx[((n * s.H + ih) * s.W + iw) * s.C + g * Cg + c] = acc;
  });
}

const char* conv2d_unsupported(const Node& node) { return device_act_unsupported(node.geom<Conv2dGeom>().act); }

int64_t conv2d_workspace(const Node& node, int64_t N) { return plan_of(node, N).total; }

void conv2d_forward(const DeviceArgs& a) {
  const Conv2dGeom& geo = a.node->geom<Conv2dGeom>();
  const ConvPlan p = plan_of(*a.node, a.N);
  const int64_t F = p.s.F;
  for (int64_t n0 = 0; n0 < a.N; n0 += p.chunk) {
    const int64_t nb = a.N - n0 < p.chunk ? a.N - n0 : p.chunk;
    for (int64_t g = 0; g < p.d.G; ++g) {
      const float* col = a.in[0] + n0 * p.s.H * p.s.W * p.s.C;
      if (!p.direct) {
        im2col(a.work + p.col, a.in[0], p, n0, nb, g);
        col = a.work + p.col;
      }
      gemm(false, false, nb * p.P, p.Fg, p.cols, 1.f, col, p.cols, a.param[0] + g * p.Fg, F, 0.f,
           a.out + n0 * p.P * F + g * p.Fg, F);
    }
  }
  activation_epilogue(geo.act, a.out, a.param[1], a.aux, a.N * p.P, F);
}

void conv2d_backward(const DeviceArgs& a, float* const* dinp, float* const* dparam, const float* dout) {
  const Conv2dGeom& geo = a.node->geom<Conv2dGeom>();
  const ConvPlan p = plan_of(*a.node, a.N);
  const int64_t F = p.s.F;
  const float* dz = activation_gradient(geo.act, a.work + p.dz, dout, a.out, a.aux, a.N * p.P * F);
  if (a.param[1]) column_sums(dparam[1], dz, a.N * p.P, F, a.work + p.sums);
  for (int64_t n0 = 0; n0 < a.N; n0 += p.chunk) {
    const int64_t nb = a.N - n0 < p.chunk ? a.N - n0 : p.chunk;
    for (int64_t g = 0; g < p.d.G; ++g) {
      const float* col = a.in[0] + n0 * p.s.H * p.s.W * p.s.C;
      if (!p.direct) {
        im2col(a.work + p.col, a.in[0], p, n0, nb, g);
        col = a.work + p.col;
      }
      const float* dz_g = dz + n0 * p.P * F + g * p.Fg;
      gemm(true, false, p.cols, p.Fg, nb * p.P, 1.f, col, p.cols, dz_g, F, n0 == 0 ? 0.f : 1.f,
           dparam[0] + g * p.Fg, F);
      if (!dinp[0]) continue;
      if (p.direct) {
        gemm(false, true, nb * p.P, p.cols, p.Fg, 1.f, dz_g, F, a.param[0], F, 0.f,
             dinp[0] + n0 * p.s.H * p.s.W * p.s.C, p.cols);
        continue;
      }
      gemm(false, true, nb * p.P, p.cols, p.Fg, 1.f, dz_g, F, a.param[0] + g * p.Fg, F, 0.f, a.work + p.dcol, p.cols);
      col2im(dinp[0], a.work + p.dcol, p, n0, nb, g);
    }
  }
}

const DeviceOpDef conv2d_device_op = {"conv2d", conv2d_unsupported, conv2d_workspace, conv2d_forward,
                                      conv2d_backward};

}  // namespace

PYCNN_REGISTER_DEVICE_OP(conv2d_device_op);

PYCNN_DEVICE_NAMESPACE_END
