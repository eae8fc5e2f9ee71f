// The CUDA kernels of pycnn: the same names and argument order as the CPU kernels, under
// pycnn::cuda. Every pointer is DEVICE memory; sizes and geometry are host values. Each
// call launches on the default stream and returns without synchronising; a launch error
// becomes std::runtime_error. The arithmetic is csrc/cuda/bodies.h (shared with the CPU
// tests); only launch, memory and synchronisation live in the .cu files.
//
// Backward differs from the CPU signature in one way: `dz` is caller-provided device
// scratch of dout's size, which receives dout * act'(out) (the CPU kernels keep it in
// their own per-thread scratch). It may alias nothing else.
#pragma once
#include <cstdint>
#include <string>

#include "conv2d.h"
#include "pool2d.h"
#include "runtime.h"

namespace pycnn {
namespace cuda {

// Device queries (device.cu). device_count() is 0 without a driver or a device;
// status() says why in words ("ok", or the CUDA runtime's error text).
int device_count();
std::string status();
std::string device_name(int index);
bool cublas_enabled();  // whether this build uses cuBLAS for the dense GEMMs
void synchronize();     // waits for the device; a pending kernel error becomes std::runtime_error

// activation.cu: element-wise over n floats. dinp = dout * act'(out).
void activation_forward(float* out, const float* inp, int64_t n, Activation act);
void activation_backward(float* dinp, const float* dout, const float* out, int64_t n, Activation act);

// conv2d.cu: shapes as conv2d.h. dinp and dbias may be null to skip them.
void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const ConvShape& s, Activation act);
void conv2d_backward(float* dinp, float* dweight, float* dbias, float* dz,
                     const float* dout, const float* inp, const float* weight, const float* out,
                     const ConvShape& s, Activation act);

// pool2d.cu: shapes as pool2d.h; argmax int32 (N, OH, OW, C).
void maxpool2d_forward(float* out, int32_t* argmax, const float* inp, const PoolShape& s);
void maxpool2d_backward(float* dinp, const float* dout, const int32_t* argmax, const PoolShape& s);
void avgpool2d_forward(float* out, const float* inp, const PoolShape& s);
void avgpool2d_backward(float* dinp, const float* dout, const PoolShape& s);

// softmax.cu: probs (rows, cols) and row_loss (rows) = -log softmax(logits)[label]; the
// mean over rows is the caller's (one device-to-host copy of `rows` floats).
void softmax_crossentropy_forward(float* probs, float* row_loss, const float* logits, const int64_t* labels,
                                  int64_t rows, int64_t cols);
void softmax_crossentropy_backward(float* dlogits, const float* probs, const int64_t* labels,
                                   int64_t rows, int64_t cols, float scale);

// dense.cu: out (N, OUT) = act(inp (N, IN) @ weight (IN, OUT) + bias). GEMMs through cuBLAS
// when cublas_enabled(), else one thread per output element with the bodies.
void dense_forward(float* out, const float* inp, const float* weight, const float* bias,
                   int64_t N, int64_t IN, int64_t OUT, Activation act);
void dense_backward(float* dinp, float* dweight, float* dbias, float* dz,
                    const float* dout, const float* inp, const float* weight, const float* out,
                    int64_t N, int64_t IN, int64_t OUT, Activation act);

}  // namespace cuda
}  // namespace pycnn
