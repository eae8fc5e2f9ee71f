// Sobel edges and image gradients (image.h), forward and backward, and their network-step ops.
#include "image.h"

#include <cstring>
#include <vector>

#include "network.h"
#include "runtime.h"

namespace pycnn {
namespace {

// REFLECT padding by one pixel: -1 -> 1, n -> n - 2 (n >= 2).
inline int64_t reflect(int64_t i, int64_t n) { return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i); }

constexpr float kSobelY[3][3] = {{-1.f, -2.f, -1.f}, {0.f, 0.f, 0.f}, {1.f, 2.f, 1.f}};
constexpr float kSobelX[3][3] = {{-1.f, 0.f, 1.f}, {-2.f, 0.f, 2.f}, {-1.f, 0.f, 1.f}};

}  // namespace

void sobel_edges_forward(float* out, const float* inp, int64_t N, int64_t H, int64_t W, int64_t C) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (N > 1)
#endif
  for (int64_t n = 0; n < N; ++n) {
    const float* img = inp + n * H * W * C;
    float* o = out + n * H * W * C * 2;
    for (int64_t y = 0; y < H; ++y) {
      const float* rows[3] = {img + reflect(y - 1, H) * W * C, img + y * W * C, img + reflect(y + 1, H) * W * C};
      for (int64_t x = 0; x < W; ++x) {
        const int64_t cols[3] = {reflect(x - 1, W) * C, x * C, reflect(x + 1, W) * C};
        float* ox = o + (y * W + x) * C * 2;
        for (int64_t c = 0; c < C; ++c) {
          float dy = 0.f, dx = 0.f;
          for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b) {
              const float v = rows[a][cols[b] + c];
              dy += kSobelY[a][b] * v;
              dx += kSobelX[a][b] * v;
            }
          ox[2 * c] = dy;
          ox[2 * c + 1] = dx;
        }
      }
    }
  }
}

// "o[y, x] = sum_ab K[a][b] p[r(y + a - 1), r(x + b - 1)]": each tap sends K[a][b] * do back
// to the pixel it read (a reflected tap to the pixel it mirrors).
void sobel_edges_backward(float* dinp, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C) {
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (N > 1)
#endif
  for (int64_t n = 0; n < N; ++n) {
    float* img = dinp + n * H * W * C;
    const float* d = dout + n * H * W * C * 2;
    std::memset(img, 0, sizeof(float) * H * W * C);
    for (int64_t y = 0; y < H; ++y) {
      float* rows[3] = {img + reflect(y - 1, H) * W * C, img + y * W * C, img + reflect(y + 1, H) * W * C};
      for (int64_t x = 0; x < W; ++x) {
        const int64_t cols[3] = {reflect(x - 1, W) * C, x * C, reflect(x + 1, W) * C};
        const float* dx = d + (y * W + x) * C * 2;
        for (int a = 0; a < 3; ++a)
          for (int b = 0; b < 3; ++b) {
            const float ky = kSobelY[a][b], kx = kSobelX[a][b];
            float* p = rows[a] + cols[b];
            for (int64_t c = 0; c < C; ++c) p[c] += ky * dx[2 * c] + kx * dx[2 * c + 1];
          }
      }
    }
  }
}

void image_gradient_forward(float* out, const float* inp, int64_t N, int64_t H, int64_t W, int64_t C, int axis) {
  const int64_t row = W * C;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (N > 1)
#endif
  for (int64_t n = 0; n < N; ++n) {
    const float* img = inp + n * H * row;
    float* o = out + n * H * row;
    for (int64_t y = 0; y < H; ++y) {
      const float* r = img + y * row;
      float* orow = o + y * row;
      if (axis == 0) {
        if (y == H - 1) {
          std::memset(orow, 0, sizeof(float) * row);
          continue;
        }
        for (int64_t i = 0; i < row; ++i) orow[i] = r[i + row] - r[i];
      } else {
        for (int64_t i = 0; i < (W - 1) * C; ++i) orow[i] = r[i + C] - r[i];
        std::memset(orow + (W - 1) * C, 0, sizeof(float) * C);
      }
    }
  }
}

// "o[y] = p[y + 1] - p[y] (y < H - 1)": dp[y] = do[y - 1] (y > 0) - do[y] (y < H - 1).
void image_gradient_backward(float* dinp, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C, int axis) {
  const int64_t row = W * C;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (N > 1)
#endif
  for (int64_t n = 0; n < N; ++n) {
    const float* d = dout + n * H * row;
    float* g = dinp + n * H * row;
    for (int64_t y = 0; y < H; ++y) {
      float* grow = g + y * row;
      const float* drow = d + y * row;
      if (axis == 0) {
        for (int64_t i = 0; i < row; ++i) {
          const float from_above = y > 0 ? drow[i - row] : 0.f;
          const float own = y < H - 1 ? drow[i] : 0.f;
          grow[i] = from_above - own;
        }
      } else {
        for (int64_t x = 0; x < W; ++x)
          for (int64_t c = 0; c < C; ++c) {
            const int64_t i = x * C + c;
            const float from_left = x > 0 ? drow[i - C] : 0.f;
            const float own = x < W - 1 ? drow[i] : 0.f;
            grow[i] = from_left - own;
          }
      }
    }
  }
}

// ---------------------------------------------------------------------------- network step

// sobel_edges: input (H, W, C) -> (H, W, C, 2). image_gradient: ints (axis,), (H, W, C) -> same.
// dims = (H, W, C[, axis]).
namespace {

std::vector<int64_t> image_parse(NetNode& node, const NetArgs& args) {
  net_expect_inputs(args, 1);
  const std::vector<int64_t>& in = args.in_shapes[0];
  if (in.size() != 3) net_error(args, std::string("needs (H, W, C) input. Received: ") + net_dims_str(in) + ".");
  node.dims[0] = in[0]; node.dims[1] = in[1]; node.dims[2] = in[2];
  return in;
}

std::vector<int64_t> sobel_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_counts(args, 0, 0, 0);
  std::vector<int64_t> out = image_parse(node, args);
  if (out[0] < 2 || out[1] < 2)
    net_error(args, "needs images of at least 2x2 pixels (the reflect padding mirrors one pixel). Received: input "
                    "shape " + net_dims_str(out) + ".");
  out.push_back(2);
  return out;
}

const float* sobel_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  sobel_edges_forward(out, in[0], nb, node.dims[0], node.dims[1], node.dims[2]);
  return out;
}

void sobel_net_backward(const NetNode& node, float* const* dinp, float* const*, const float* dout,
                        const float* const*, const float*, const int32_t*, int64_t nb) {
  sobel_edges_backward(dinp[0], dout, nb, node.dims[0], node.dims[1], node.dims[2]);
}

std::vector<int64_t> gradient_net_parse(NetNode& node, const NetArgs& args) {
  net_expect_counts(args, 0, 1, 0);
  if (args.ints[0] != 0 && args.ints[0] != 1)
    net_error(args, "expected axis 0 (dy) or 1 (dx). Received: axis=" + std::to_string(args.ints[0]) + ".");
  std::vector<int64_t> out = image_parse(node, args);
  node.dims[3] = args.ints[0];
  return out;
}

const float* gradient_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  image_gradient_forward(out, in[0], nb, node.dims[0], node.dims[1], node.dims[2], static_cast<int>(node.dims[3]));
  return out;
}

void gradient_net_backward(const NetNode& node, float* const* dinp, float* const*, const float* dout,
                           const float* const*, const float*, const int32_t*, int64_t nb) {
  image_gradient_backward(dinp[0], dout, nb, node.dims[0], node.dims[1], node.dims[2], static_cast<int>(node.dims[3]));
}

}  // namespace

extern const NetOp sobel_edges_net_op = {"sobel_edges", sobel_net_parse, sobel_net_forward, sobel_net_backward};
extern const NetOp image_gradient_net_op = {"image_gradient", gradient_net_parse, gradient_net_forward,
                                            gradient_net_backward};

}  // namespace pycnn
