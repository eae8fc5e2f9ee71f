// Fixed image filters with TensorFlow's tf.image definitions, NHWC float32.
//
// sobel_edges: inp (N, H, W, C) -> out (N, H, W, C, 2). Each channel is padded by one pixel
//   with REFLECT padding (index -1 reads 1, index H reads H - 2; so H, W >= 2) and
//   cross-correlated with
//     out[..., 0] (dy): [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]   (rows index y, columns x)
//     out[..., 1] (dx): [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
//   Backward is the adjoint: dinp (N, H, W, C) from dout (N, H, W, C, 2), the reflected taps
//   folding their gradient back onto the pixel they mirror.
//
// image_gradient (one half of tf.image.image_gradients): inp (N, H, W, C) -> out, same shape;
//   axis 0: out[n, y, x, c] = inp[n, y + 1, x, c] - inp[n, y, x, c] for y < H - 1, 0 in the
//   last row; axis 1: the same along x, 0 in the last column. Any H, W >= 1.
//
// The functions parallelise over N with OpenMP; called inside the network step's parallel
// region they run on the calling thread.
#pragma once
#include <cstdint>

namespace pycnn {

// The geometry the sobel_edges and image_gradient ops store in their node
// (node.geom<ImageGeom>()): the input (H, W, C) and image_gradient's axis (0 for sobel_edges).
struct ImageGeom {
  int64_t H, W, C;
  int axis;
};

void sobel_edges_forward(float* out, const float* inp, int64_t N, int64_t H, int64_t W, int64_t C);
void sobel_edges_backward(float* dinp, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C);

void image_gradient_forward(float* out, const float* inp, int64_t N, int64_t H, int64_t W, int64_t C, int axis);
void image_gradient_backward(float* dinp, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C, int axis);

}  // namespace pycnn
