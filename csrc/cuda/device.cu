// Device queries: what the CUDA runtime can see. With the static runtime (cudart_static)
// a machine without the driver loads this module fine and reports "no driver" here.
#include <cuda_runtime.h>

#include <stdexcept>

#include "cuda/kernels.h"

namespace pycnn {
namespace cuda {

namespace {
void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("pycnn CUDA: ") + what + " failed: " + cudaGetErrorString(err));
}
}  // namespace

bool cublas_enabled() {
#ifdef PYCNN_CUBLAS
  return true;
#else
  return false;
#endif
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later queries start clean
    return 0;
  }
  return n;
}

std::string status() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  }
  if (n == 0) return "no CUDA device found";
  return "ok";
}

std::string device_name(int index) {
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
}

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

}  // namespace cuda
}  // namespace pycnn
