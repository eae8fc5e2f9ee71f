// The compiled module pycnn._cuda, built only with -DPYCNN_CUDA=ON: device queries for the
// Python seam (pycnn/cuda.py) and the CUDA executor's DeviceNetwork (cuda/executor.h) on the
// GPU, bound by the same source as pycnn._core's emulated one (cuda/bind_device_network.h).
// It is a separate module so that pycnn._core never links the CUDA runtime and a machine
// without the driver imports pycnn as before.
#include <cuda_runtime_api.h>

#include "cuda/bind_device_network.h"
#include "cuda/kernels.h"

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "pycnn CUDA backend (device queries, the CUDA executor). Use pycnn.cuda, not this module.";
  m.def("device_count", &pycnn::cuda::device_count, "Visible CUDA devices; 0 without a driver or a device.");
  m.def("status", &pycnn::cuda::status, "'ok', or why no device is usable (the CUDA runtime's error).");
  m.def("device_name", &pycnn::cuda::device_name, py::arg("index") = 0, "Name and compute capability of a device.");
  m.def("build_info", [] {
    py::dict d;
    d["cuda_runtime_version"] = CUDART_VERSION;
    d["architectures"] = PYCNN_CUDA_ARCHITECTURES;
    d["cublas"] = pycnn::cuda::cublas_enabled();
    return d;
  }, "How the CUDA module was built: runtime version, architectures, cuBLAS on/off.");
  pycnn_py::bind_device_network(m, "DeviceNetwork", "device_ops");
}
