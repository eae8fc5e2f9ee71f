// Thread count, CPU feature detection for run-time dispatch, scratch arenas, and the
// activation helpers shared by the fused conv2d / dense kernels.
#include "runtime.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#ifdef PYCNN_OPENMP
#include <omp.h>
#endif

namespace pycnn {

namespace {
std::atomic<int> g_threads{0};  // 0 = not initialised yet
std::atomic<int> g_isa_cap{static_cast<int>(Isa::avx512)};

constexpr int kMaxSlots = 256;
constexpr int kMaxWhich = kScratchKinds;
struct Buffer {
  float* data = nullptr;
  std::size_t capacity = 0;
};
// One buffer per (thread slot, purpose). A slot is only ever touched by the thread that
// owns it, so no locking is needed.
Buffer g_scratch[kMaxSlots][kMaxWhich];

thread_local int tl_slot_base = 0;
thread_local bool tl_serial = false;
}  // namespace

int slot_base() { return tl_slot_base; }

int team_thread() {
#ifdef PYCNN_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

SerialKernels::SerialKernels(int slot) : saved_base_(tl_slot_base), saved_serial_(tl_serial) {
  tl_slot_base = slot;
  tl_serial = true;
}

SerialKernels::~SerialKernels() {
  tl_slot_base = saved_base_;
  tl_serial = saved_serial_;
}

int get_num_threads() {
  if (tl_serial) return 1;
  int n = g_threads.load(std::memory_order_relaxed);
  if (n == 0) {
#ifdef PYCNN_OPENMP
    n = omp_get_max_threads();
#else
    n = 1;
#endif
    if (n < 1) n = 1;
    if (n > kMaxSlots) n = kMaxSlots;
    g_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) {
  if (n < 1) n = 1;
  if (n > kMaxSlots) n = kMaxSlots;
#ifndef PYCNN_OPENMP
  n = 1;
#endif
  g_threads.store(n, std::memory_order_relaxed);
}

bool openmp_enabled() {
#ifdef PYCNN_OPENMP
  return true;
#else
  return false;
#endif
}

std::string openmp_version() {
#ifdef _OPENMP
  return std::to_string(_OPENMP);
#else
  return "";
#endif
}

Isa detected_isa() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
    return Isa::baseline;
  }();
  return isa;
#else
  return Isa::baseline;
#endif
}

Isa active_isa() {
  int cap = g_isa_cap.load(std::memory_order_relaxed);
  int det = static_cast<int>(detected_isa());
  return static_cast<Isa>(cap < det ? cap : det);
}

void set_isa_cap(Isa cap) { g_isa_cap.store(static_cast<int>(cap), std::memory_order_relaxed); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "baseline";
  }
}

float* scratch(int slot, std::size_t count, Scratch which) {
  if (slot < 0 || slot >= kMaxSlots || which < 0 || which >= kMaxWhich) std::abort();
  Buffer& b = g_scratch[slot][which];
  if (b.capacity < count) {
    std::free(b.data);
    // 64-byte alignment for full-width vector loads; round the size up as aligned_alloc requires.
    std::size_t bytes = ((count * sizeof(float) + 63) / 64) * 64;
    b.data = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!b.data) {
      b.capacity = 0;
      throw std::bad_alloc();
    }
    b.capacity = bytes / sizeof(float);
  }
  return b.data;
}

void tune_allocator() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

void apply_activation(float* y, int64_t n, Activation act) {
  switch (act) {
    case Activation::linear: return;
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) y[i] = y[i] < 0.f ? 0.f : y[i];  // keeps NaN, as NumPy and Keras do
      return;
    case Activation::sigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = 1.f / (1.f + std::exp(-y[i]));
      return;
    case Activation::tanh:
      for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(y[i]);
      return;
  }
}

void activation_grad_inplace(float* dy, const float* y, int64_t n, Activation act) {
  switch (act) {
    case Activation::linear: return;
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) dy[i] = y[i] > 0.f ? dy[i] : 0.f;
      return;
    case Activation::sigmoid:
      for (int64_t i = 0; i < n; ++i) dy[i] *= y[i] * (1.f - y[i]);
      return;
    case Activation::tanh:
      for (int64_t i = 0; i < n; ++i) dy[i] *= 1.f - y[i] * y[i];
      return;
  }
}

}  // namespace pycnn
