// Zero padding and cropping (padding.h), forward and backward, and their network-step ops.
//
// Both directions are one of two copies: `frame` writes a small image into a zero frame
// (padding forward, cropping backward), `window` reads a window of a large image (padding
// backward, cropping forward). Rows of the window are contiguous runs of W * C floats.
#include "padding.h"

#include <cstring>
#include <string>
#include <vector>

#include "op_registry.h"
#include "runtime.h"

namespace pycnn {
namespace {

// big (N, BH, BW, C) = zeros with small (N, SH, SW, C) at row T, column L.
void frame(float* big, const float* small, int64_t N, int64_t SH, int64_t SW, int64_t C, int64_t BH, int64_t BW,
           int64_t T, int64_t L) {
  const int64_t brow = BW * C, srow = SW * C;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (N > 1)
#endif
  for (int64_t n = 0; n < N; ++n) {
    float* b = big + n * BH * brow;
    const float* s = small + n * SH * srow;
    std::memset(b, 0, sizeof(float) * T * brow);
    for (int64_t y = 0; y < SH; ++y) {
      float* r = b + (T + y) * brow;
      std::memset(r, 0, sizeof(float) * L * C);
      std::memcpy(r + L * C, s + y * srow, sizeof(float) * srow);
      std::memset(r + L * C + srow, 0, sizeof(float) * (brow - L * C - srow));
    }
    std::memset(b + (T + SH) * brow, 0, sizeof(float) * (BH - T - SH) * brow);
  }
}

// small (N, SH, SW, C) = big (N, BH, BW, C) at rows [T, T + SH), columns [L, L + SW).
void window(float* small, const float* big, int64_t N, int64_t SH, int64_t SW, int64_t C, int64_t BH, int64_t BW,
            int64_t T, int64_t L) {
  const int64_t brow = BW * C, srow = SW * C;
#ifdef PYCNN_OPENMP
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (N > 1)
#endif
  for (int64_t n = 0; n < N; ++n) {
    const float* b = big + n * BH * brow;
    float* s = small + n * SH * srow;
    for (int64_t y = 0; y < SH; ++y) std::memcpy(s + y * srow, b + (T + y) * brow + L * C, sizeof(float) * srow);
  }
}

}  // namespace

void zero_padding2d_forward(float* out, const float* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t PT,
                            int64_t PB, int64_t PL, int64_t PR) {
  frame(out, inp, N, H, W, C, PT + H + PB, PL + W + PR, PT, PL);
}

// "out[PT + y, PL + x] = inp[y, x]", the frame constant: dinp[y, x] = dout[PT + y, PL + x].
void zero_padding2d_backward(float* dinp, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C, int64_t PT,
                             int64_t PB, int64_t PL, int64_t PR) {
  window(dinp, dout, N, H, W, C, PT + H + PB, PL + W + PR, PT, PL);
}

void cropping2d_forward(float* out, const float* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t CT,
                        int64_t CB, int64_t CL, int64_t CR) {
  window(out, inp, N, H - CT - CB, W - CL - CR, C, H, W, CT, CL);
}

// "out[y, x] = inp[CT + y, CL + x]": dinp is dout at that place, 0 on the cropped border.
void cropping2d_backward(float* dinp, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C, int64_t CT,
                         int64_t CB, int64_t CL, int64_t CR) {
  frame(dinp, dout, N, H - CT - CB, W - CL - CR, C, H, W, CT, CL);
}

// ---------------------------------------------------------------------------- the ops

// zero_padding2d: attrs padding (PT, PB, PL, PR), (H, W, C) -> (PT + H + PB, PL + W + PR, C).
// cropping2d: attrs cropping (CT, CB, CL, CR), (H, W, C) -> (H - CT - CB, W - CL - CR, C).
namespace {

FrameGeom frame_parse(const OpArgs& args, const char* attr) {
  expect_input_rank(args, 3, "(H, W, C)");
  const std::vector<int64_t>& in = args.in_shapes[0];
  const std::vector<int64_t>& sides = args.attrs.ints(attr);
  if (sides.size() != 4) args.fail(std::string("expected ") + attr + " as 4 sizes (top, bottom, left, right).");
  for (int64_t v : sides)
    if (v < 0 || v > kMaxWindow)
      args.fail(std::string("expected ") + attr + " sizes in [0, " + std::to_string(kMaxWindow) + "]. Received: " +
                shape_str(sides) + ".");
  return {in[0], in[1], in[2], sides[0], sides[1], sides[2], sides[3]};
}

std::vector<int64_t> padding_parse(Node& node, const OpArgs& args) {
  const FrameGeom& d = node.geom<FrameGeom>() = frame_parse(args, "padding");
  return {d.T + d.H + d.B, d.L + d.W + d.R, d.C};
}

const float* padding_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const FrameGeom& d = node.geom<FrameGeom>();
  zero_padding2d_forward(out, in[0], nb, d.H, d.W, d.C, d.T, d.B, d.L, d.R);
  return out;
}

void padding_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                      const float*, const float*, int64_t nb) {
  const FrameGeom& d = node.geom<FrameGeom>();
  zero_padding2d_backward(dinp[0], dout, nb, d.H, d.W, d.C, d.T, d.B, d.L, d.R);
}

std::vector<int64_t> cropping_parse(Node& node, const OpArgs& args) {
  const FrameGeom& d = node.geom<FrameGeom>() = frame_parse(args, "cropping");
  const int64_t OH = d.H - d.T - d.B, OW = d.W - d.L - d.R;
  if (OH < 1 || OW < 1)
    args.fail("would crop the input to nothing. Received: input shape " + dims_str(args.in_shapes[0]) + ", cropping " +
              shape_str(args.attrs.ints("cropping")) + ".");
  return {OH, OW, d.C};
}

const float* cropping_forward(const Node& node, const float* const* in, float* out, float*, int64_t nb) {
  const FrameGeom& d = node.geom<FrameGeom>();
  cropping2d_forward(out, in[0], nb, d.H, d.W, d.C, d.T, d.B, d.L, d.R);
  return out;
}

void cropping_backward(const Node& node, float* const* dinp, float* const*, const float* dout, const float* const*,
                       const float*, const float*, int64_t nb) {
  const FrameGeom& d = node.geom<FrameGeom>();
  cropping2d_backward(dinp[0], dout, nb, d.H, d.W, d.C, d.T, d.B, d.L, d.R);
}

const OpDef zero_padding2d_op = {"zero_padding2d", "zeros around H and W: (H, W, C) -> (PT + H + PB, PL + W + PR, C)",
                                 1, {}, {{"padding", AttrType::Ints, std::vector<int64_t>{1, 1, 1, 1}}},
                                 padding_parse, padding_forward, padding_backward};
const OpDef cropping2d_op = {"cropping2d", "rows and columns cut from H and W: (H, W, C) -> (H - CT - CB, W - CL - CR, C)",
                             1, {}, {{"cropping", AttrType::Ints, std::vector<int64_t>{0, 0, 0, 0}}}, cropping_parse,
                             cropping_forward, cropping_backward};

PYCNN_REGISTER_OP(zero_padding2d_op);
PYCNN_REGISTER_OP(cropping2d_op);

}  // namespace
}  // namespace pycnn
