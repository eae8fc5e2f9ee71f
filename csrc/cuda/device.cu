// Device queries: what the CUDA runtime can see. With the static runtime (cudart_static)
// a machine without the driver loads this module fine and reports "no driver" here.
#include "cuda/kernels.h"
#include "cuda/launch.cuh"

namespace pycnn {
namespace cuda {

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
