// Fully connected layer on the device: out (N, OUT) = act(inp (N, IN) @ weight (IN, OUT) + bias).
//
// With PYCNN_CUBLAS the three GEMMs go through cuBLAS (column-major: a row-major (r, c)
// matrix is read as its (c, r) transpose, so each product is written transposed), and bias,
// activation and dbias are element-wise kernels over the bodies. Without it every output
// element is one thread running the body's dot product (bodies.h), the formula the CPU
// tests check.
#include "cuda/bodies.h"
#include "cuda/kernels.h"
#include "cuda/launch.cuh"

#ifdef PYCNN_CUBLAS
#include <cublas_v2.h>

#include <climits>
#endif

namespace pycnn {
namespace cuda {

#ifdef PYCNN_CUBLAS
namespace {

void check_cublas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("pycnn CUDA: cuBLAS ") + what + " failed with status " +
                             std::to_string(static_cast<int>(st)));
}

// One handle for the process, created on first use (on the default stream, like the kernels).
cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t made = nullptr;
    check_cublas(cublasCreate(&made), "cublasCreate");
    return made;
  }();
  return h;
}

int as_int(int64_t v, const char* what) {
  if (v > INT_MAX) throw std::runtime_error(std::string("pycnn CUDA: ") + what + " exceeds cuBLAS's int range");
  return static_cast<int>(v);
}

}  // namespace
#endif

bool cublas_enabled() {
#ifdef PYCNN_CUBLAS
  return true;
#else
  return false;
#endif
}

void dense_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N, int64_t IN,
                   int64_t OUT, Activation act) {
#ifdef PYCNN_CUBLAS
  // out^T (OUT, N) = weight^T (OUT, IN) @ inp^T (IN, N), all column-major views of the row-major buffers.
  const float one = 1.f, zero = 0.f;
  check_cublas(cublasSgemm(handle(), CUBLAS_OP_N, CUBLAS_OP_N, as_int(OUT, "OUT"), as_int(N, "N"), as_int(IN, "IN"),
                           &one, weight, as_int(OUT, "OUT"), inp, as_int(IN, "IN"), &zero, out, as_int(OUT, "OUT")),
               "dense_forward GEMM");
  for_each(N * OUT, "dense_forward (bias, activation)", [=] __device__(int64_t i) {
    const float z = out[i] + (bias ? bias[i % OUT] : 0.f);
    out[i] = bodies::activation_forward_at(z, act);
  });
#else
  for_each(N * OUT, "dense_forward", [=] __device__(int64_t i) {
    out[i] = bodies::dense_forward_at(inp, weight, bias, IN, OUT, act, i);
  });
#endif
}

// dz (N, OUT) scratch = dout * act'(out); dinp (N, IN) or null, dweight (IN, OUT), dbias (OUT) or null.
void dense_backward(float* dinp, float* dweight, float* dbias, float* dz, const float* dout, const float* inp,
                    const float* weight, const float* out, int64_t N, int64_t IN, int64_t OUT, Activation act) {
  activation_backward(dz, dout, out, N * OUT, act);
#ifdef PYCNN_CUBLAS
  const float one = 1.f, zero = 0.f;
  const int n = as_int(N, "N"), in = as_int(IN, "IN"), o = as_int(OUT, "OUT");
  // dinp = dz @ weight^T  ->  dinp^T (IN, N) = weight (IN, OUT) @ dz^T (OUT, N).
  if (dinp)
    check_cublas(cublasSgemm(handle(), CUBLAS_OP_T, CUBLAS_OP_N, in, n, o, &one, weight, o, dz, o, &zero, dinp, in),
                 "dense_backward dinp GEMM");
  // dweight = inp^T @ dz  ->  dweight^T (OUT, IN) = dz^T (OUT, N) @ inp (N, IN).
  check_cublas(cublasSgemm(handle(), CUBLAS_OP_N, CUBLAS_OP_T, o, in, n, &one, dz, o, inp, in, &zero, dweight, o),
               "dense_backward dweight GEMM");
#else
  if (dinp)
    for_each(N * IN, "dense_backward (dinp)", [=] __device__(int64_t i) {
      dinp[i] = bodies::dense_backward_input_at(dz, weight, IN, OUT, i);
    });
  for_each(IN * OUT, "dense_backward (dweight)", [=] __device__(int64_t i) {
    dweight[i] = bodies::dense_backward_weight_at(dz, inp, N, IN, OUT, i);
  });
#endif
  if (dbias)
    for_each(OUT, "dense_backward (dbias)", [=] __device__(int64_t j) { dbias[j] = bodies::column_sum_at(dz, N, OUT, j); });
}

}  // namespace cuda
}  // namespace pycnn
