// Zero padding and cropping of the two spatial axes, NHWC float32. Each is the other's
// backward: padding's gradient is the crop of dout, cropping's is dout in a zero frame.
//
// zero_padding2d: inp (N, H, W, C) -> out (N, PT + H + PB, PL + W + PR, C), inp at rows
//   [PT, PT + H) and columns [PL, PL + W), zeros elsewhere (keras.layers.ZeroPadding2D).
// cropping2d: inp (N, H, W, C) -> out (N, H - CT - CB, W - CL - CR, C), the window that
//   starts at row CT and column CL (keras.layers.Cropping2D; CT + CB < H, CL + CR < W).
//
// Padding and cropping sizes are >= 0. The functions parallelise over N with OpenMP; called
// inside the network step's parallel region they run on the calling thread.
#pragma once
#include <cstdint>

namespace pycnn {

// The geometry the zero_padding2d and cropping2d ops store in their node (node.geom<FrameGeom>()):
// the input (H, W, C) and the four sides (padding added, or cropping removed).
struct FrameGeom {
  int64_t H, W, C, T, B, L, R;
};

void zero_padding2d_forward(float* out, const float* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t PT,
                            int64_t PB, int64_t PL, int64_t PR);
// dout (N, PT + H + PB, PL + W + PR, C) -> dinp (N, H, W, C).
void zero_padding2d_backward(float* dinp, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C, int64_t PT,
                             int64_t PB, int64_t PL, int64_t PR);

void cropping2d_forward(float* out, const float* inp, int64_t N, int64_t H, int64_t W, int64_t C, int64_t CT,
                        int64_t CB, int64_t CL, int64_t CR);
// dout (N, H - CT - CB, W - CL - CR, C) -> dinp (N, H, W, C).
void cropping2d_backward(float* dinp, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C, int64_t CT,
                         int64_t CB, int64_t CL, int64_t CR);

}  // namespace pycnn
