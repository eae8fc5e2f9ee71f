// Device queries of the GPU build (device.cu), for the Python seam (pycnn/cuda.py) through
// pycnn._cuda. device_count() is 0 without a driver or a device; status() says why in words
// ("ok", or the CUDA runtime's error text).
#pragma once
#include <string>

namespace pycnn {
namespace cuda {

int device_count();
std::string status();
std::string device_name(int index);
bool cublas_enabled();  // whether this build runs its GEMMs on cuBLAS
void synchronize();     // waits for the device; a pending kernel error becomes std::runtime_error

}  // namespace cuda
}  // namespace pycnn
