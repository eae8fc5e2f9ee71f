// 2-D max and average pooling, NHWC, per channel.
//
//   inp (N, H, W, C) -> out (N, OH, OW, C); window KH x KW moved by SH, SW; output size and
//   'same' padding as in conv2d.h (padded positions never win a max and are not counted in
//   an average: Keras divides by the number of real elements under the window).
//
// Max pooling caches, per output element, the index of the winning input element within
// its sample, (ih * W + iw) * C + c, as int32; ties go to the first maximum in scan order
// (row-major over the window). Backward scatters dout through that index.
#pragma once
#include <cstdint>

namespace pycnn {

struct PoolShape {
  int64_t N, H, W, C;
  int64_t KH, KW, SH, SW;
  int64_t PT, PL;
  int64_t OH, OW;
};

void maxpool2d_forward(float* out, int32_t* argmax, const float* inp, const PoolShape& s);
void maxpool2d_backward(float* dinp, const float* dout, const int32_t* argmax, const PoolShape& s);

void avgpool2d_forward(float* out, const float* inp, const PoolShape& s);
void avgpool2d_backward(float* dinp, const float* dout, const PoolShape& s);

// The same windows on uint8 (quantized networks; inference only). Input and output share one
// scale and zero point: the max of bytes is exact, and the mean is the integer
// (sum + count / 2) / count over the real elements (a half rounds up).
void maxpool2d_u8_forward(uint8_t* out, const uint8_t* inp, const PoolShape& s);
void avgpool2d_u8_forward(uint8_t* out, const uint8_t* inp, const PoolShape& s);

}  // namespace pycnn
