// Sobel edges and image gradients (image.h), forward and backward, and their network-step ops.
#include "image.h"

#include <cstring>
#include <vector>

#include "op_registry.h"
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

// ---------------------------------------------------------------------------- the ops

// sobel_edges: input (H, W, C) -> (H, W, C, 2). image_gradient: attrs axis (0: dy, 1: dx);
// (H, W, C) -> the same.
namespace {

std::vector<int64_t> image_parse(Node& node, const OpArgs& args) {
  expect_input_rank(args, 3, "(H, W, C)");
  const std::vector<int64_t>& in = args.in_shapes[0];
  ImageGeom& g = node.geom<ImageGeom>();
  g.H = in[0]; g.W = in[1]; g.C = in[2]; g.axis = 0;
  return in;
}

std::vector<int64_t> sobel_parse(Node& node, const OpArgs& args) {
  std::vector<int64_t> out = image_parse(node, args);
  if (out[0] < 2 || out[1] < 2)
    args.fail("needs images of at least 2x2 pixels (the reflect padding mirrors one pixel). Received: input shape " +
              dims_str(out) + ".");
  out.push_back(2);
  return out;
}

const float* sobel_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const ImageGeom& g = node.geom<ImageGeom>();
  sobel_edges_forward(out, in[0], nb, g.H, g.W, g.C);
  return out;
}

void sobel_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                    const float*, const float*, int64_t nb) {
  const ImageGeom& g = node.geom<ImageGeom>();
  sobel_edges_backward(dinp[0], dout, nb, g.H, g.W, g.C);
}

std::vector<int64_t> gradient_parse(Node& node, const OpArgs& args) {
  const int64_t axis = args.attrs.i("axis");
  if (axis != 0 && axis != 1) args.fail("expected axis 0 (dy) or 1 (dx). Received: axis=" + std::to_string(axis) + ".");
  std::vector<int64_t> out = image_parse(node, args);
  node.geom<ImageGeom>().axis = static_cast<int>(axis);
  return out;
}

const float* gradient_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const ImageGeom& g = node.geom<ImageGeom>();
  image_gradient_forward(out, in[0], nb, g.H, g.W, g.C, g.axis);
  return out;
}

void gradient_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                       const float*, const float*, int64_t nb) {
  const ImageGeom& g = node.geom<ImageGeom>();
  image_gradient_backward(dinp[0], dout, nb, g.H, g.W, g.C, g.axis);
}

const OpDef sobel_edges_op = {"sobel_edges", "tf.image.sobel_edges: (H, W, C) -> (H, W, C, 2) as [dy, dx]", 1, {}, {},
                              sobel_parse, sobel_forward, sobel_backward};
const OpDef image_gradient_op = {"image_gradient", "forward differences along H (axis 0) or W (axis 1), last row 0", 1,
                                 {}, {{"axis", AttrType::Int, int64_t{0}, true}}, gradient_parse, gradient_forward,
                                 gradient_backward};

PYCNN_REGISTER_OP(sobel_edges_op);
PYCNN_REGISTER_OP(image_gradient_op);

}  // namespace
}  // namespace pycnn
