// Process-wide runtime state shared by the kernels: the thread count, which SIMD
// instruction sets this CPU has (for run-time dispatch), and grow-only scratch buffers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pycnn {

// Threads used by every parallel kernel. Starts at omp_get_max_threads() (so it honours
// OMP_NUM_THREADS); 1 in the serial build.
int get_num_threads();
void set_num_threads(int n);
bool openmp_enabled();
std::string openmp_version();

// Scratch slot of thread 0 of the current team: 0, except while a SerialKernels guard is
// alive on this thread. Kernels index their scratch with slot_base() + team thread index.
int slot_base();

// This thread's index in the current OpenMP team (0 outside a parallel region or without OpenMP).
int team_thread();

// Makes the kernels called on this thread run serially (get_num_threads() == 1) with
// scratch slots from `slot` up: lets a caller run one kernel sequence per thread inside its
// own parallel region (network.cpp) without the threads sharing scratch.
class SerialKernels {
 public:
  explicit SerialKernels(int slot);
  ~SerialKernels();
  SerialKernels(const SerialKernels&) = delete;
  SerialKernels& operator=(const SerialKernels&) = delete;

 private:
  int saved_base_;
  bool saved_serial_;
};

// Instruction-set levels the kernels can dispatch to, best first.
enum class Isa { baseline = 0, avx2 = 1, avx512 = 2 };
Isa detected_isa();   // what this CPU supports (and this build can use)
Isa active_isa();     // what the kernels use now (detected, unless capped)
void set_isa_cap(Isa cap);  // tests force the baseline path through this
const char* isa_name(Isa isa);

// Activations the conv2d / dense / depthwise kernels fuse themselves. Backward uses the
// *output* y: relu' = (y > 0), sigmoid' = y (1 - y), tanh' = 1 - y^2. Every other activation
// (activation.h) runs after the kernel.
enum class Activation { linear = 0, relu = 1, sigmoid = 2, tanh = 3 };

// Aligned scratch memory, one arena per thread slot, reused across calls so that training
// steps do not allocate. slot 0 .. get_num_threads()-1 belong to OpenMP threads; callers
// outside a parallel region use slot_base(). Contents are undefined on return.
// What each of a slot's buffers holds; one kernel never uses the same buffer for two things.
enum Scratch {
  kScratchCol = 0,       // im2col rows / padded planar or NHWC input (direct convs)
  kScratchOut = 1,       // dcol rows / planar outputs
  kScratchPackA = 2,     // GEMM packed A block
  kScratchPackB = 3,     // GEMM packed B panel
  kScratchPartial = 4,   // per-thread partial weight gradients
  kScratchGrad = 5,      // gradient times activation derivative
  kScratchPadGrad = 6,   // padded planar or NHWC gradient (direct convs) / dense activation gradient
  kScratchRotated = 7,   // rotated kernel (direct conv input gradient)
  kScratchPackedA = 8,   // a fully packed GEMM A operand (gemm.h)
  kScratchPackedB = 9,   // a fully packed GEMM B operand / channel-blocked gradient (over-F conv)
  kScratchPackedW = 10,  // weights packed (or channel-blocked) once per call, shared by all threads
  kScratchNetActs = 11,  // executor.cpp: every node's output for a thread's samples
  kScratchNetGrad = 12,  // executor.cpp: the gradient buffers of the values, reused in turn
  kScratchNetParams = 13,  // executor.cpp: a thread's weight gradients
  kScratchNetIndex = 14,   // executor.cpp: the nodes' aux cells (argmax, kept pre-activations)
  kScratchNetFrozen = 15,  // executor.cpp: discarded weight gradients of frozen layers
  kScratchNetChunk = 16,   // executor.cpp: weight gradients of a thread's later sample chunks
  kScratchSeparable = 17,  // depthwise_conv2d.cpp: the depthwise output's gradient (network step)
  kScratchGroupedConv = 18,  // conv2d_grouped.cpp: phase / group copies of input, output, weight
  kScratchActivation = 19,   // activation.cpp: the gradient before an activation an op applies itself
  kScratchInt8A = 20,        // quantized.cpp: im2col rows of bytes (or padded dense rows)
  kScratchInt8Tail = 21,     // quantized.cpp: the GEMM's last rows, copied where a whole tile can be read
  kScratchKinds = 22
};
float* scratch(int slot, std::size_t count, Scratch which);

// Keeps freed memory in the process heap instead of returning it to the OS after every
// call (glibc only; a no-op elsewhere). Training allocates and frees the same few-megabyte
// arrays every step, and fresh pages from the OS cost a page fault each on first touch.
void tune_allocator();

// y = act(y) in place, and dy *= act'(y) in place (y is the activation's output).
void apply_activation(float* y, int64_t n, Activation act);
void activation_grad_inplace(float* dy, const float* y, int64_t n, Activation act);

}  // namespace pycnn
