// The device half of sobel_edges and image_gradient (image.cpp), NHWC over the whole batch,
// with the node's ImageGeom (image.h). Forward and backward are gathers over their output;
// the Sobel backward (the CPU scatters each tap back onto the pixel it read) gathers for each
// pixel the taps that read it, reflected ones included.
#include <cstdint>

#include "cuda/device_op.h"
#include "image.h"

PYCNN_DEVICE_NAMESPACE_BEGIN
namespace {

// REFLECT padding by one pixel: -1 -> 1, n -> n - 2 (n >= 2).
PYCNN_HD inline int64_t reflect(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i); }

// The Sobel taps, K[a][b] with a the row (y) and b the column (x) offset + 1:
// dy: [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]; dx: [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]].
PYCNN_HD inline float sobel_y(int a, int b) { return static_cast<float>((a - 1) * (b == 1 ? 2 : 1)); }
PYCNN_HD inline float sobel_x(int a, int b) { return static_cast<float>((b - 1) * (a == 1 ? 2 : 1)); }

// The output rows o (of n) whose tap a (0..2) reads row y, i.e. reflect(o + a - 1, n) == y:
// the direct one o = y + 1 - a, and the reflected ones (o = 0, a = 0 reads row 1; o = n - 1,
// a = 2 reads row n - 2). Writes them to o[], returns how many.
PYCNN_HD inline int readers(int64_t y, int64_t n, int a, int64_t* o) {
  int count = 0;
  const int64_t direct = y + 1 - a;
  if (direct >= 0 && direct < n) o[count++] = direct;
  if (a == 0 && y == 1) o[count++] = 0;
  if (a == 2 && y == n - 2) o[count++] = n - 1;
  return count;
}

// out (N, H, W, C, 2): [dy, dx] of each pixel, the 3x3 taps over the reflect-padded image.
void sobel_forward(const DeviceArgs& a) {
  const ImageGeom g = a.node->geom<ImageGeom>();
  const int64_t H = g.H, W = g.W, C = g.C;
  const float* inp = a.in[0];
  float* out = a.out;
  for_each(a.N * H * W * C * 2, "sobel_edges_forward", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t k = i % 2, c = (i / 2) % C, x = (i / (2 * C)) % W, y = (i / (2 * C * W)) % H,
                  n = i / (2 * C * W * H);
    const float* img = inp + n * H * W * C;
    float acc = 0.f;
    for (int ta = 0; ta < 3; ++ta)
      for (int tb = 0; tb < 3; ++tb) {
        const float v = img[(reflect(y + ta - 1, H) * W + reflect(x + tb - 1, W)) * C + c];
        acc += (k == 0 ? sobel_y(ta, tb) : sobel_x(ta, tb)) * v;
      }
    out[i] = acc;
  });
}

// "o[y, x] = sum_ab K[a][b] p[r(y + a - 1), r(x + b - 1)]": dp[y, x] sums K[a][b] * do[oy, ox]
// over every (oy, a) whose row reads y and every (ox, b) whose column reads x.
void sobel_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const ImageGeom g = a.node->geom<ImageGeom>();
  const int64_t H = g.H, W = g.W, C = g.C;
  float* d = dinp[0];
  if (!d) return;
  for_each(a.N * H * W * C, "sobel_edges_backward", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t c = i % C, x = (i / C) % W, y = (i / (C * W)) % H, n = i / (C * W * H);
    const float* dn = dout + n * H * W * C * 2;
    float acc = 0.f;
    for (int ta = 0; ta < 3; ++ta) {
      int64_t rows[2];
      const int nr = readers(y, H, ta, rows);
      for (int r = 0; r < nr; ++r)
        for (int tb = 0; tb < 3; ++tb) {
          int64_t cols[2];
          const int nc = readers(x, W, tb, cols);
          for (int q = 0; q < nc; ++q) {
            const float* o = dn + ((rows[r] * W + cols[q]) * C + c) * 2;
            acc += sobel_y(ta, tb) * o[0] + sobel_x(ta, tb) * o[1];
          }
        }
    }
    d[i] = acc;
  });
}

// axis 0: out[y] = p[y + 1] - p[y] (y < H - 1), 0 in the last row; axis 1 the same along x.
void gradient_forward(const DeviceArgs& a) {
  const ImageGeom g = a.node->geom<ImageGeom>();
  const int64_t H = g.H, W = g.W, C = g.C;
  const int axis = g.axis;
  const float* inp = a.in[0];
  float* out = a.out;
  for_each(a.N * H * W * C, "image_gradient_forward", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t x = (i / C) % W, y = (i / (C * W)) % H;
    if (axis == 0)
      out[i] = y < H - 1 ? inp[i + W * C] - inp[i] : 0.f;
    else
      out[i] = x < W - 1 ? inp[i + C] - inp[i] : 0.f;
  });
}

// "o[y] = p[y + 1] - p[y] (y < H - 1)": dp[y] = do[y - 1] (y > 0) - do[y] (y < H - 1).
void gradient_backward(const DeviceArgs& a, float* const* dinp, float* const*, const float* dout) {
  const ImageGeom g = a.node->geom<ImageGeom>();
  const int64_t H = g.H, W = g.W, C = g.C;
  const int axis = g.axis;
  float* d = dinp[0];
  if (!d) return;
  for_each(a.N * H * W * C, "image_gradient_backward", PYCNN_DEVICE_LAMBDA(int64_t i) {
    const int64_t x = (i / C) % W, y = (i / (C * W)) % H;
    if (axis == 0) {
      const float from_above = y > 0 ? dout[i - W * C] : 0.f;
      const float own = y < H - 1 ? dout[i] : 0.f;
      d[i] = from_above - own;
    } else {
      const float from_left = x > 0 ? dout[i - C] : 0.f;
      const float own = x < W - 1 ? dout[i] : 0.f;
      d[i] = from_left - own;
    }
  });
}

const DeviceOpDef sobel_edges_device = {"sobel_edges", nullptr, nullptr, sobel_forward, sobel_backward};
const DeviceOpDef image_gradient_device = {"image_gradient", nullptr, nullptr, gradient_forward, gradient_backward};

PYCNN_REGISTER_DEVICE_OP(sobel_edges_device);
PYCNN_REGISTER_DEVICE_OP(image_gradient_device);

}  // namespace
PYCNN_DEVICE_NAMESPACE_END
