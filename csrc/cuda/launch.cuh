// One launch helper for every element-wise kernel: a grid-stride loop that calls `body(i)`
// for i in [0, n), one thread per output element, then checks the launch.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pycnn {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("pycnn CUDA: ") + what + " failed: " + cudaGetErrorString(err));
}

template <class Body>
__global__ void for_each_kernel(int64_t n, Body body) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) body(i);
}

// body is a __device__ lambda (nvcc --extended-lambda) capturing pointers and sizes by value.
template <class Body>
void for_each(int64_t n, const char* what, Body body) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  const int64_t want = (n + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(want < 65535 * 64 ? want : 65535 * 64);
  for_each_kernel<<<blocks, kThreads>>>(n, body);
  check(cudaGetLastError(), what);
}

}  // namespace cuda
}  // namespace pycnn
