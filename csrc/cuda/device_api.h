// The device runtime every CUDA source of pycnn is written against, in one of two builds:
//
//   the GPU build     (nvcc, -DPYCNN_CUDA=ON -> pycnn._cuda): memory is device memory, copies
//                     and launches are asynchronous on the executor's stream, GEMMs are cuBLAS;
//   the host emulation (g++, always built -> pycnn._core): the same sources compiled as C++
//                     with PYCNN_CUDA_EMULATE; a launch is a loop over its indices, device
//                     memory is host memory from an arena that checks every copy's provenance
//                     and bounds, and a GEMM is the CPU sgemm.
//
// So the CUDA executor's buffer sizes, pointer arithmetic, launch order and step logic run and
// are compared with the CPU executor on every machine; only a GPU can check real launches.
//
// The two builds live in different inline namespaces (pycnn::cuda::gpu / ::emulated) so that
// one process can hold both (pycnn._cuda links the CPU library, which holds the emulation).
// Kernels are grid-stride bodies: `for_each(n, what, PYCNN_DEVICE_LAMBDA(int64_t i) {...})`
// computes element i and writes only its own outputs (gathers, never scatters or atomics), so
// the emulation may run the indices in any order, as a GPU does.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#if defined(__CUDACC__)
#define PYCNN_HD __host__ __device__
#define PYCNN_DEVICE_LAMBDA [=] __device__
#else
#define PYCNN_HD
#define PYCNN_DEVICE_LAMBDA [=]
#endif

#if defined(PYCNN_CUDA_EMULATE)
#define PYCNN_DEVICE_NAMESPACE_BEGIN \
  namespace pycnn {                  \
  namespace cuda {                   \
  inline namespace emulated {
#else
#define PYCNN_DEVICE_NAMESPACE_BEGIN \
  namespace pycnn {                  \
  namespace cuda {                   \
  inline namespace gpu {
#endif
#define PYCNN_DEVICE_NAMESPACE_END \
  }                                \
  }                                \
  }

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#endif

PYCNN_DEVICE_NAMESPACE_BEGIN

// True in the host emulation.
bool emulated();

// ---------------------------------------------------------------------------- memory
// Device memory (aligned to 256 bytes). `what` names the buffer in an out-of-memory error.
void* device_alloc(size_t bytes, const char* what);
void device_free(void* ptr);
// Page-locked host memory for the batches' asynchronous copies (plain host memory in the
// emulation).
void* pinned_alloc(size_t bytes);
void pinned_free(void* ptr);

// Asynchronous on the current stream (see StreamScope); the emulation runs them at once and
// throws std::logic_error when a device pointer is not inside a device allocation (or a host
// pointer is), or when the bytes run past the allocation's end.
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_on_device(void* dst, const void* src, size_t bytes);
void fill_zero(void* dst, size_t bytes);
// Waits for everything queued on the current stream; a pending kernel error becomes
// std::runtime_error.
void synchronize_stream();

// The emulation's provenance check, for executor code that wants to assert a pointer is
// device memory with `bytes` readable (a no-op in the GPU build).
void expect_device(const void* ptr, size_t bytes, const char* what);

// ---------------------------------------------------------------------------- streams
// The stream launches and copies go to: set by the executor around a step.
struct Stream;  // opaque; cudaStream_t in the GPU build
Stream* create_stream();
void destroy_stream(Stream* stream);
Stream* current_stream();
class StreamScope {
 public:
  explicit StreamScope(Stream* stream);
  ~StreamScope();
  StreamScope(const StreamScope&) = delete;
  StreamScope& operator=(const StreamScope&) = delete;

 private:
  Stream* saved_;
};

// ---------------------------------------------------------------------------- GEMM
// Row-major C (M, N) = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T, leading dimensions
// in elements (cuBLAS in the GPU build, the CPU sgemm in the emulation).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// ---------------------------------------------------------------------------- launches
// Checks the last launch (the GPU build); `what` names it in the error.
void check_launch(const char* what);

#if defined(__CUDACC__)
template <class Body>
__global__ void for_each_kernel(int64_t n, Body body) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) body(i);
}
cudaStream_t raw_stream(Stream* stream);
#endif

// body(i) for every i in [0, n): one GPU thread per index (grid-stride), or a loop on the host.
template <class Body>
void for_each(int64_t n, const char* what, Body body) {
  if (n <= 0) return;
#if defined(__CUDACC__)
  constexpr int kThreads = 256;
  const int64_t want = (n + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(want < 65535 * 64 ? want : 65535 * 64);
  for_each_kernel<<<blocks, kThreads, 0, raw_stream(current_stream())>>>(n, body);
  check_launch(what);
#else
  (void)what;
  // Indices in any order are correct (bodies only gather); OpenMP keeps the emulated tests fast.
#if defined(PYCNN_OPENMP)
#pragma omp parallel for schedule(static) if (n > 4096)
#endif
  for (int64_t i = 0; i < n; ++i) body(i);
#endif
}

PYCNN_DEVICE_NAMESPACE_END
