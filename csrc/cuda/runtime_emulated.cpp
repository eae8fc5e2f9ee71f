// The host emulation of the device runtime (device_api.h): device memory is host memory from
// an arena that remembers every allocation, so each copy checks that its device side lies
// inside one allocation (and its host side inside none) and that the bytes fit; launches are
// loops (device_api.h's for_each); a GEMM is the CPU sgemm. The stream is the host's program
// order: every call has finished when it returns.
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>

#include "cuda/device_api.h"
#include "gemm.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

namespace {

constexpr size_t kAlign = 256;  // what cudaMalloc guarantees

struct Arena {
  std::mutex mutex;
  std::map<const char*, size_t> blocks;  // start -> bytes
};
Arena& arena() {
  static Arena a;
  return a;
}

// Whether [p, p + bytes) lies inside one device allocation; with bytes = 0, whether p points
// into one (a host pointer must not).
bool inside(const void* ptr, size_t bytes) {
  const char* p = static_cast<const char*>(ptr);
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  auto it = a.blocks.upper_bound(p);
  if (it == a.blocks.begin()) return false;
  --it;
  return p >= it->first && (bytes ? p + bytes <= it->first + it->second : p < it->first + it->second);
}

void expect_host(const void* ptr, const char* what) {
  if (inside(ptr, 0))
    throw std::logic_error(std::string("pycnn CUDA (emulated): ") + what + " was given device memory where host "
                           "memory belongs");
}

}  // namespace

bool emulated() { return true; }

void* device_alloc(size_t bytes, const char* what) {
  const size_t size = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, size ? size : kAlign);
  if (!p) throw std::bad_alloc();
  Arena& a = arena();
  std::lock_guard<std::mutex> lock(a.mutex);
  // The recorded size is the one asked for: a copy past it is an error even inside the padding.
  a.blocks[static_cast<const char*>(p)] = bytes;
  (void)what;
  return p;
}

void device_free(void* ptr) {
  if (!ptr) return;
  {
    Arena& a = arena();
    std::lock_guard<std::mutex> lock(a.mutex);
    auto it = a.blocks.find(static_cast<const char*>(ptr));
    if (it == a.blocks.end())
      throw std::logic_error("pycnn CUDA (emulated): device_free of a pointer device_alloc did not return");
    a.blocks.erase(it);
  }
  std::free(ptr);
}

void* pinned_alloc(size_t bytes) {
  void* p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign + (bytes ? 0 : kAlign));
  if (!p) throw std::bad_alloc();
  return p;
}
void pinned_free(void* ptr) { std::free(ptr); }

void expect_device(const void* ptr, size_t bytes, const char* what) {
  if (!inside(ptr, bytes))
    throw std::logic_error(std::string("pycnn CUDA (emulated): ") + what + ": " + std::to_string(bytes) +
                           " bytes at that address are not inside one device allocation");
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  expect_device(dst, bytes, "copy_to_device (destination)");
  expect_host(src, "copy_to_device (source)");
  std::memcpy(dst, src, bytes);
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  expect_device(src, bytes, "copy_to_host (source)");
  expect_host(dst, "copy_to_host (destination)");
  std::memcpy(dst, src, bytes);
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  expect_device(dst, bytes, "copy_on_device (destination)");
  expect_device(src, bytes, "copy_on_device (source)");
  std::memmove(dst, src, bytes);
}

void fill_zero(void* dst, size_t bytes) {
  if (!bytes) return;
  expect_device(dst, bytes, "fill_zero");
  std::memset(dst, 0, bytes);
}

void synchronize_stream() {}
void check_launch(const char*) {}

struct Stream {};
Stream* create_stream() { return new Stream(); }
void destroy_stream(Stream* stream) { delete stream; }
namespace {
thread_local Stream* tl_stream = nullptr;
}
Stream* current_stream() { return tl_stream; }
StreamScope::StreamScope(Stream* stream) : saved_(tl_stream) { tl_stream = stream; }
StreamScope::~StreamScope() { tl_stream = saved_; }

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (beta != 0.f && beta != 1.f)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] *= beta;
  if (beta == 0.f && K <= 0)
    for (int64_t i = 0; i < M; ++i) std::memset(C + i * ldc, 0, sizeof(float) * N);
  if (K <= 0 || alpha == 0.f) return;
  // op(A)[i, k] = A[i * lda + k] or A[k * lda + i]; likewise B.
  const int64_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
  const int64_t rsb = trans_b ? 1 : ldb, csb = trans_b ? ldb : 1;
  if (alpha == 1.f) {
    sgemm(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, 1, beta != 0.f, true);
    return;
  }
  // alpha != 1: the product into scratch, then C += alpha * product (beta already applied).
  float* tmp = static_cast<float*>(std::malloc(sizeof(float) * M * N));
  if (!tmp) throw std::bad_alloc();
  sgemm(M, N, K, A, rsa, csa, B, rsb, csb, tmp, N, 1, false, true);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const float v = alpha * tmp[i * N + j];
      C[i * ldc + j] = beta == 0.f ? v : C[i * ldc + j] + v;
    }
  std::free(tmp);
}

PYCNN_DEVICE_NAMESPACE_END
