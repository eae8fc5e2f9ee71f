// Zero padding and cropping (padding.h), forward and backward, and their network-step ops.
//
// Both directions are one of two copies: `frame` writes a small image into a zero frame
// (padding forward, cropping backward), `window` reads a window of a large image (padding
// backward, cropping forward). Rows of the window are contiguous runs of W * C floats.
#include "padding.h"

#include <cstring>
#include <string>
#include <vector>

#include "network.h"
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

// ---------------------------------------------------------------------------- network step

// zero_padding2d: ints (PT, PB, PL, PR), (H, W, C) -> (PT + H + PB, PL + W + PR, C).
// cropping2d: ints (CT, CB, CL, CR), (H, W, C) -> (H - CT - CB, W - CL - CR, C).
// dims = (H, W, C, T, B, L, R).
namespace {

void pad_crop_parse(NetNode& node, const NetArgs& args, const char* what) {
  net_expect_inputs(args, 1);
  net_expect_counts(args, 0, 4, 0);
  const std::vector<int64_t>& in = args.in_shapes[0];
  if (in.size() != 3) net_error(args, std::string("needs (H, W, C) input. Received: ") + net_dims_str(in) + ".");
  for (int64_t v : args.ints)
    if (v < 0) net_error(args, std::string("expected ") + what + " sizes >= 0. Received: " + net_shape_str(args.ints) + ".");
  for (int k = 0; k < 3; ++k) node.dims[k] = in[k];
  for (int k = 0; k < 4; ++k) node.dims[3 + k] = args.ints[k];
}

std::vector<int64_t> padding_net_parse(NetNode& node, const NetArgs& args) {
  pad_crop_parse(node, args, "padding");
  const int64_t* d = node.dims;
  return {d[3] + d[0] + d[4], d[5] + d[1] + d[6], d[2]};
}

const float* padding_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  const int64_t* d = node.dims;
  zero_padding2d_forward(out, in[0], nb, d[0], d[1], d[2], d[3], d[4], d[5], d[6]);
  return out;
}

void padding_net_backward(const NetNode& node, float* const* dinp, float* const*, const float* dout,
                          const float* const*, const float*, const int32_t*, int64_t nb) {
  const int64_t* d = node.dims;
  zero_padding2d_backward(dinp[0], dout, nb, d[0], d[1], d[2], d[3], d[4], d[5], d[6]);
}

std::vector<int64_t> cropping_net_parse(NetNode& node, const NetArgs& args) {
  pad_crop_parse(node, args, "cropping");
  const int64_t* d = node.dims;
  const int64_t OH = d[0] - d[3] - d[4], OW = d[1] - d[5] - d[6];
  if (OH < 1 || OW < 1)
    net_error(args, "would crop the input to nothing. Received: input shape " + net_dims_str(args.in_shapes[0]) +
                        ", cropping " + net_shape_str(args.ints) + ".");
  return {OH, OW, d[2]};
}

const float* cropping_net_forward(const NetNode& node, const float* const* in, float* out, int32_t*, int64_t nb) {
  const int64_t* d = node.dims;
  cropping2d_forward(out, in[0], nb, d[0], d[1], d[2], d[3], d[4], d[5], d[6]);
  return out;
}

void cropping_net_backward(const NetNode& node, float* const* dinp, float* const*, const float* dout,
                           const float* const*, const float*, const int32_t*, int64_t nb) {
  const int64_t* d = node.dims;
  cropping2d_backward(dinp[0], dout, nb, d[0], d[1], d[2], d[3], d[4], d[5], d[6]);
}

}  // namespace

extern const NetOp zero_padding2d_net_op = {"zero_padding2d", padding_net_parse, padding_net_forward,
                                            padding_net_backward};
extern const NetOp cropping2d_net_op = {"cropping2d", cropping_net_parse, cropping_net_forward, cropping_net_backward};

}  // namespace pycnn
