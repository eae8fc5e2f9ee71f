// The GPU build of the device runtime (device_api.h): device memory from cudaMalloc, pinned
// host memory from cudaHostAlloc, copies and launches asynchronous on the executor's stream,
// GEMMs on cuBLAS (PYCNN_CUBLAS) or, without it, one thread per output element.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#ifdef PYCNN_CUBLAS
#include <cublas_v2.h>

#include <climits>
#endif

#include "cuda/device_api.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("pycnn CUDA: ") + what + " failed: " + cudaGetErrorName(err) + ": " +
                             cudaGetErrorString(err));
}

thread_local Stream* tl_stream = nullptr;

}  // namespace

struct Stream {
  cudaStream_t s = nullptr;
#ifdef PYCNN_CUBLAS
  cublasHandle_t blas = nullptr;  // one handle per stream, bound to it
#endif
};

bool emulated() { return false; }

void* device_alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes ? bytes : 256);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("pycnn CUDA: could not allocate ") + std::to_string(bytes) +
                             " bytes of device memory for " + what + " (" + cudaGetErrorString(err) + ")" +
                             (err == cudaErrorMemoryAllocation ? ". Use a smaller batch." : "."));
  }
  return p;
}

void device_free(void* ptr) {
  if (ptr) cudaFree(ptr);
}

void* pinned_alloc(size_t bytes) {
  void* p = nullptr;
  check(cudaHostAlloc(&p, bytes ? bytes : 256, cudaHostAllocDefault), "cudaHostAlloc");
  return p;
}

void pinned_free(void* ptr) {
  if (ptr) cudaFreeHost(ptr);
}

cudaStream_t raw_stream(Stream* stream) { return stream ? stream->s : nullptr; }

void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes)
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, raw_stream(tl_stream)), "cudaMemcpyAsync (to device)");
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes)
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, raw_stream(tl_stream)), "cudaMemcpyAsync (to host)");
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes)
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, raw_stream(tl_stream)),
          "cudaMemcpyAsync (on device)");
}

void fill_zero(void* dst, size_t bytes) {
  if (bytes) check(cudaMemsetAsync(dst, 0, bytes, raw_stream(tl_stream)), "cudaMemsetAsync");
}

void synchronize_stream() { check(cudaStreamSynchronize(raw_stream(tl_stream)), "the stream's work"); }

void expect_device(const void*, size_t, const char*) {}

void check_launch(const char* what) { check(cudaGetLastError(), what); }

Stream* create_stream() {
  Stream* s = new Stream();
  const cudaError_t err = cudaStreamCreateWithFlags(&s->s, cudaStreamNonBlocking);
  if (err != cudaSuccess) {
    delete s;
    check(err, "cudaStreamCreate");
  }
  return s;
}

void destroy_stream(Stream* stream) {
  if (!stream) return;
#ifdef PYCNN_CUBLAS
  if (stream->blas) cublasDestroy(stream->blas);
#endif
  if (stream->s) cudaStreamDestroy(stream->s);
  delete stream;
}

Stream* current_stream() { return tl_stream; }
StreamScope::StreamScope(Stream* stream) : saved_(tl_stream) { tl_stream = stream; }
StreamScope::~StreamScope() { tl_stream = saved_; }

// Row-major C (M, N) = alpha op(A) op(B) + beta C. cuBLAS is column-major: the row-major C is
// the column-major C^T = op(B)^T op(A)^T, so the call swaps the operands (and M, N), each
// keeping its own transposition flag and leading dimension.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
#ifdef PYCNN_CUBLAS
  auto as_int = [](int64_t v) {
    if (v > INT_MAX) throw std::runtime_error("pycnn CUDA: a GEMM dimension exceeds cuBLAS's int range");
    return static_cast<int>(v);
  };
  Stream* s = tl_stream;
  cublasHandle_t h = nullptr;
  static thread_local cublasHandle_t default_handle = nullptr;  // for work outside a stream scope
  cublasHandle_t* slot = s ? &s->blas : &default_handle;
  if (!*slot) {
    if (cublasCreate(slot) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("pycnn CUDA: cublasCreate failed");
    cublasSetStream(*slot, raw_stream(s));
  }
  h = *slot;
  const cublasStatus_t st =
      cublasSgemm(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(N), as_int(M),
                  as_int(K), &alpha, B, as_int(ldb), A, as_int(lda), &beta, C, as_int(ldc));
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("pycnn CUDA: cublasSgemm failed with status " + std::to_string(static_cast<int>(st)));
#else
  // One thread per output element (no cuBLAS in this build).
  const int64_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
  const int64_t rsb = trans_b ? 1 : ldb, csb = trans_b ? ldb : 1;
  for_each(M * N, "gemm", PYCNN_DEVICE_LAMBDA(int64_t e) {
    const int64_t i = e / N, j = e % N;
    float acc = 0.f;
    for (int64_t k = 0; k < K; ++k) acc += A[i * rsa + k * csa] * B[k * rsb + j * csb];
    C[i * ldc + j] = beta == 0.f ? alpha * acc : alpha * acc + beta * C[i * ldc + j];
  });
#endif
}

PYCNN_DEVICE_NAMESPACE_END
